//! One flow or several: a spec file either has one flow's keys (`source`, `sink`, ...) at the top,
//! or a `flows:` list whose entries inherit those keys from the top as defaults. Both are turned
//! into the same model, a list of flows, before typing; [`Origins`] remembers where each inherited
//! key was written so that errors still point at the file's own key and line.

use serde_json::{Map, Value};

use super::FlowSpec;

/// Keys of a flow that may also be written at the top of the file.
const FLOW_KEYS: [&str; 7] = [
    "mode",
    "snapshot",
    "parallelism",
    "source",
    "transforms",
    "sink",
    "max_failed_rows",
];

/// Keys that belong to the job as a whole.
const JOB_KEYS: [&str; 8] = [
    "name",
    "stream",
    "flows",
    "dead_letter",
    "checkpoint",
    "cache_dir",
    "progress_interval",
    "shards",
];

/// Model paths that came from somewhere else in the file: `(model prefix, file prefix)`.
#[derive(Debug, Default)]
pub struct Origins {
    moved: Vec<(String, String)>,
}

impl Origins {
    /// The path in the file of a model path such as `flows[1].sink.options.uri`.
    pub fn file_key(&self, key: &str) -> String {
        let best = self
            .moved
            .iter()
            .filter(|(model, _)| {
                key == model
                    || key
                        .strip_prefix(model.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .max_by_key(|(model, _)| model.len());
        match best {
            Some((model, file)) => {
                let rest = key[model.len()..].trim_start_matches('.');
                match (file.is_empty(), rest.is_empty()) {
                    (true, _) => rest.to_string(),
                    (false, true) => file.clone(),
                    (false, false) if rest.starts_with('[') => format!("{file}{rest}"),
                    (false, false) => format!("{file}.{rest}"),
                }
            }
            None => key.to_string(),
        }
    }
}

/// Rewrites `tree` to the model's shape (`flows` always present) and records where moved keys were.
pub fn normalise(tree: &mut Value) -> Origins {
    let mut origins = Origins::default();
    let Some(top) = tree.as_object_mut() else {
        return origins;
    };
    match top.get("flows") {
        None => {
            // One flow: everything that is not the job's moves into it, unknown keys included, so
            // that a typo is reported by the flow's model under its own name.
            let mut flow = Map::new();
            let keys: Vec<String> = top
                .keys()
                .filter(|k| !JOB_KEYS.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in keys {
                flow.insert(k.clone(), top.remove(&k).expect("listed"));
            }
            if let Some(name) = top.get("name") {
                flow.insert("name".into(), name.clone());
            }
            top.insert("flows".into(), Value::Array(vec![Value::Object(flow)]));
            origins.moved.push(("flows[0]".into(), String::new()));
        }
        Some(Value::Array(_)) => {
            let defaults: Map<String, Value> = FLOW_KEYS
                .iter()
                .filter_map(|k| top.remove(*k).map(|v| (k.to_string(), v)))
                .collect();
            let Some(Value::Array(flows)) = top.get_mut("flows") else {
                unreachable!("matched above")
            };
            for (i, flow) in flows.iter_mut().enumerate() {
                if let Value::Object(flow) = flow {
                    inherit(flow, &defaults, &format!("flows[{i}]"), "", &mut origins);
                }
            }
        }
        // Not a list: the typed model reports it.
        Some(_) => {}
    }
    origins
}

/// Copies into `flow` every key of `defaults` it lacks, merging maps key by key.
fn inherit(
    flow: &mut Map<String, Value>,
    defaults: &Map<String, Value>,
    model: &str,
    file: &str,
    origins: &mut Origins,
) {
    for (k, v) in defaults {
        let model_k = format!("{model}.{k}");
        let file_k = if file.is_empty() {
            k.clone()
        } else {
            format!("{file}.{k}")
        };
        match (flow.get_mut(k), v) {
            (None, _) => {
                flow.insert(k.clone(), v.clone());
                origins.moved.push((model_k, file_k));
            }
            (Some(Value::Object(own)), Value::Object(default)) => {
                inherit(own, default, &model_k, &file_k, origins)
            }
            // The flow's own value wins, lists included.
            (Some(_), _) => {}
        }
    }
}

/// The order flows run in: the file's order, except that a flow waits for the flows in its
/// `after`. An error is `(flow index, key below the flow, message)`.
pub fn order(flows: &[FlowSpec]) -> Result<Vec<usize>, (usize, String, String)> {
    let index = |name: &str| flows.iter().position(|f| f.name == name);
    for (i, f) in flows.iter().enumerate() {
        if let Some(j) = flows[..i].iter().position(|g| g.name == f.name) {
            return Err((
                i,
                "name".into(),
                format!("flow `{}` is already defined (flow {j})", f.name),
            ));
        }
    }
    for (i, f) in flows.iter().enumerate() {
        for (k, dep) in f.after.iter().enumerate() {
            match index(dep) {
                None => {
                    let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
                    return Err((
                        i,
                        format!("after[{k}]"),
                        format!("no flow is named `{dep}` (flows: {})", names.join(", ")),
                    ));
                }
                Some(j) if j == i => {
                    return Err((
                        i,
                        format!("after[{k}]"),
                        "a flow cannot run after itself".into(),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let mut done = vec![false; flows.len()];
    let mut out = Vec::with_capacity(flows.len());
    while out.len() < flows.len() {
        let ready = (0..flows.len()).find(|&i| {
            !done[i]
                && flows[i]
                    .after
                    .iter()
                    .all(|d| index(d).is_some_and(|j| done[j]))
        });
        match ready {
            Some(i) => {
                done[i] = true;
                out.push(i);
            }
            None => {
                let stuck = (0..flows.len()).find(|&i| !done[i]).expect("some left");
                let cycle: Vec<&str> = (0..flows.len())
                    .filter(|&i| !done[i])
                    .map(|i| flows[i].name.as_str())
                    .collect();
                return Err((
                    stuck,
                    "after".into(),
                    format!(
                        "the flows {} wait for each other in a cycle",
                        cycle.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_flow_moves_under_flows_and_keys_map_back() {
        let mut t = json!({"name": "j", "source": {"plugin": "a"}, "sink": {"plugin": "b"}});
        let o = normalise(&mut t);
        assert_eq!(t["flows"][0]["name"], "j");
        assert_eq!(t["flows"][0]["source"]["plugin"], "a");
        assert_eq!(o.file_key("flows[0].sink.options.uri"), "sink.options.uri");
        assert_eq!(o.file_key("flows[0].name"), "name");
        assert_eq!(o.file_key("progress_interval"), "progress_interval");
    }

    #[test]
    fn flows_inherit_defaults_key_by_key() {
        let mut t = json!({
            "name": "j",
            "sink": {"plugin": "bolt", "options": {"uri": "bolt://x", "query": "q0"}},
            "flows": [
                {"name": "a", "source": {"plugin": "m"}, "sink": {"options": {"query": "q1"}}},
                {"name": "b", "source": {"plugin": "m"}, "sink": {"plugin": "other"}},
            ]
        });
        let o = normalise(&mut t);
        assert_eq!(t["flows"][0]["sink"]["options"]["uri"], "bolt://x");
        assert_eq!(t["flows"][0]["sink"]["options"]["query"], "q1");
        assert_eq!(t["flows"][1]["sink"]["plugin"], "other");
        assert_eq!(t["flows"][1]["sink"]["options"]["query"], "q0");
        assert_eq!(o.file_key("flows[0].sink.options.uri"), "sink.options.uri");
        assert_eq!(
            o.file_key("flows[0].sink.options.query"),
            "flows[0].sink.options.query"
        );
        assert_eq!(o.file_key("flows[1].sink.options"), "sink.options");
        assert_eq!(o.file_key("flows[1].sink.plugin"), "flows[1].sink.plugin");
        assert!(t.get("sink").is_none());
    }
}
