//! SeaTunnel job files (`.conf`, HOCON) run as they are: [`hocon`] parses them with the line of
//! every key, [`map`] turns them into etlhost's spec tree, and from there loading is the same as
//! for YAML and TOML, so validate, plan, run and checkpoints are unchanged. `etlhost convert`
//! writes that tree as a YAML or TOML spec, with the notes as comments.

pub mod hocon;
pub mod map;

use std::path::Path;

use serde_json::Value as J;

use crate::spec::{Format, Locator, SpecError};

/// The spec tree of a `.conf` file and a locator that maps its keys to the file's lines and
/// SeaTunnel names; the notes are printed on stderr.
pub fn spec_tree(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(J, Locator), SpecError> {
    let m = mapped(path, text, env)?;
    let file = path.display().to_string();
    for n in &m.notes {
        eprintln!("note: {file}:{}: {}: {}", n.line, n.key, n.text);
    }
    Ok((m.tree, Locator::from_parts(m.lines, m.names)))
}

fn mapped(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<map::Mapped, SpecError> {
    let file = path.display().to_string();
    let root = hocon::parse(text, env).map_err(|e| SpecError {
        file: file.clone(),
        line: Some(e.line),
        key: String::new(),
        message: e.message,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    map::map(&root, &stem).map_err(|(line, key, message)| SpecError {
        file,
        line: Some(line),
        key,
        message,
    })
}

/// `etlhost convert INPUT -o OUTPUT`: writes the etlhost spec of a SeaTunnel job; the written
/// file is loaded back (plugins included) before this returns. Returns the notes written.
pub fn convert(input: &Path, output: &Path, force: bool) -> Result<usize, String> {
    let out = output.display().to_string();
    let format = Format::from_path(output)
        .ok_or_else(|| format!("{out}: the file name must end in .yaml, .yml or .toml"))?;
    if input.extension().and_then(|e| e.to_str()) != Some("conf") {
        return Err(format!(
            "{}: expected a SeaTunnel job file (.conf)",
            input.display()
        ));
    }
    if output.exists() && !force {
        return Err(format!("{out} exists; use --force to replace it"));
    }
    let text = std::fs::read_to_string(input)
        .map_err(|e| format!("{}: cannot read: {e}", input.display()))?;
    let m = mapped(input, &text, &|n| std::env::var(n).ok()).map_err(|e| e.to_string())?;
    let mut header = format!(
        "Converted by `etlhost convert` from {}; comments mark keys whose meaning changed.",
        input.display()
    );
    // Notes about keys with no place in the spec (a dropped `checkpoint.timeout`) go on top.
    let mut paths = std::collections::HashSet::new();
    all_paths(&m.tree, "", &mut paths);
    for n in m.notes.iter().filter(|n| !paths.contains(&n.path)) {
        header.push_str(&format!("\n{} (line {}): {}", n.key, n.line, n.text));
    }
    let comments = |path: &str| -> Vec<String> {
        m.notes
            .iter()
            .filter(|n| n.path == path)
            .map(|n| format!("{} (line {}): {}", n.key, n.line, n.text))
            .collect()
    };
    let written = match format {
        Format::Toml => emit::toml(&m.tree, &header, &comments),
        Format::Yaml => emit::yaml(&m.tree, &header, &comments),
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(output, written).map_err(|e| format!("cannot write {out}: {e}"))?;
    // What was written must load, as `init` checks its output: a converter bug shows here.
    crate::spec::Spec::load(output)
        .and_then(crate::job::Job::prepare)
        .map_err(|e| format!("the converted spec does not load: {e}"))?;
    Ok(m.notes.len())
}

/// Every key path of a spec tree (`sink.options.uri`, `flows[0].name`).
fn all_paths(v: &J, path: &str, out: &mut std::collections::HashSet<String>) {
    match v {
        J::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                all_paths(v, &p, out);
                out.insert(p);
            }
        }
        J::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                all_paths(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// YAML and TOML text of a spec tree, with comment lines above keys.
mod emit {
    use serde_json::Value as J;

    type Comments<'a> = &'a dyn Fn(&str) -> Vec<String>;

    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    }

    fn comment_lines(out: &mut String, indent: &str, lines: &[String]) {
        for l in lines {
            out.push_str(&format!("{indent}# {l}\n"));
        }
    }

    fn yaml_scalar(v: &J) -> String {
        match v {
            J::String(s) => {
                let plain = !s.is_empty()
                    && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
                    && !matches!(
                        s.to_ascii_lowercase().as_str(),
                        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
                    );
                if plain {
                    s.clone()
                } else {
                    serde_json::to_string(s).expect("strings serialise")
                }
            }
            J::Object(m) if m.is_empty() => "{}".into(),
            J::Array(a) if a.is_empty() => "[]".into(),
            other => other.to_string(),
        }
    }

    fn yaml_key(k: &str) -> String {
        yaml_scalar(&J::String(k.to_string()))
    }

    fn header_lines(header: &str) -> String {
        header.lines().map(|l| format!("# {l}\n")).collect()
    }

    pub fn yaml(tree: &J, header: &str, comments: Comments<'_>) -> String {
        let mut out = header_lines(header);
        if let J::Object(m) = tree {
            yaml_map(&mut out, m, "", 0, comments);
        }
        out
    }

    fn yaml_map(
        out: &mut String,
        m: &serde_json::Map<String, J>,
        path: &str,
        depth: usize,
        comments: Comments<'_>,
    ) {
        let indent = "  ".repeat(depth);
        for (k, v) in m {
            let p = join(path, k);
            comment_lines(out, &indent, &comments(&p));
            match v {
                J::Object(inner) if !inner.is_empty() => {
                    out.push_str(&format!("{indent}{}:\n", yaml_key(k)));
                    yaml_map(out, inner, &p, depth + 1, comments);
                }
                J::Array(items) if items.iter().any(|i| i.is_object()) => {
                    out.push_str(&format!("{indent}{}:\n", yaml_key(k)));
                    for (i, item) in items.iter().enumerate() {
                        out.push_str(&format!("{indent}  -\n"));
                        if let J::Object(im) = item {
                            yaml_map(out, im, &format!("{p}[{i}]"), depth + 2, comments);
                        }
                    }
                }
                J::Array(items) => {
                    let parts: Vec<String> = items.iter().map(yaml_scalar).collect();
                    out.push_str(&format!(
                        "{indent}{}: [{}]\n",
                        yaml_key(k),
                        parts.join(", ")
                    ));
                }
                _ => out.push_str(&format!("{indent}{}: {}\n", yaml_key(k), yaml_scalar(v))),
            }
        }
    }

    fn toml_key(k: &str) -> String {
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            k.to_string()
        } else {
            serde_json::to_string(k).expect("strings serialise")
        }
    }

    fn toml_inline(v: &J) -> String {
        match v {
            J::String(s) => serde_json::to_string(s).expect("strings serialise"),
            J::Array(a) => format!(
                "[{}]",
                a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")
            ),
            J::Object(m) => format!(
                "{{ {} }}",
                m.iter()
                    .map(|(k, v)| format!("{} = {}", toml_key(k), toml_inline(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_string(),
        }
    }

    pub fn toml(tree: &J, header: &str, comments: Comments<'_>) -> String {
        let mut out = header_lines(header);
        if let J::Object(m) = tree {
            toml_table(&mut out, m, "", "", comments);
        }
        out
    }

    /// `path` is the model path (for comments), `name` the TOML table name.
    fn toml_table(
        out: &mut String,
        m: &serde_json::Map<String, J>,
        path: &str,
        name: &str,
        comments: Comments<'_>,
    ) {
        let is_table = |v: &J| matches!(v, J::Object(o) if !o.is_empty());
        let is_table_list =
            |v: &J| matches!(v, J::Array(a) if !a.is_empty() && a.iter().all(|i| i.is_object()));
        // Plain keys first: in TOML they belong to the table above them.
        for (k, v) in m {
            if (is_table(v) && k != "params_by_position") || is_table_list(v) {
                continue;
            }
            comment_lines(out, "", &comments(&join(path, k)));
            out.push_str(&format!("{} = {}\n", toml_key(k), toml_inline(v)));
        }
        for (k, v) in m {
            let p = join(path, k);
            let n = if name.is_empty() {
                toml_key(k)
            } else {
                format!("{name}.{}", toml_key(k))
            };
            if is_table(v) && k != "params_by_position" {
                out.push('\n');
                comment_lines(out, "", &comments(&p));
                out.push_str(&format!("[{n}]\n"));
                if let J::Object(inner) = v {
                    toml_table(out, inner, &p, &n, comments);
                }
            } else if is_table_list(v) {
                if let J::Array(items) = v {
                    for (i, item) in items.iter().enumerate() {
                        out.push('\n');
                        out.push_str(&format!("[[{n}]]\n"));
                        if let J::Object(inner) = item {
                            toml_table(out, inner, &format!("{p}[{i}]"), &n, comments);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCIDENT: &str = r#"env {
  execution.parallelism = 2
  job.mode = "BATCH"
  job.name = "merge-test-person-BATCH"
  checkpoint.interval = 60000
}
source {
  Jdbc {
    url = "jdbc:mysql://127.0.0.1:3306/test?useSSL=false&serverTimezone=Asia/Shanghai"
    driver = "com.mysql.jdbc.Driver"
    user = "admin"
    password = "123456"
    query = "SELECT ID,NAME FROM person"
    result_table_name = "merge.test.person"
    fetch_size = 1000
    connection_check_timeout_sec = 20000
    partition_column = "ID"     # numeric primary key used to split the table
    partition_num = 10          # number of splits; default: the job parallelism
  }
}
transform { }
sink {
  MysqlToNeo4j {                       # a custom sink the user wrote
    source_table_name = "merge.test.person"
    uri = "bolt://localhost:7687"
    username = "neo4j"
    password = "12345678"
    database = "neo4j"
    max_transaction_retry_time = 30000
    max_connection_timeout = 30000
    max_batch_size = 1000
    write_mode = "BATCH"               # or one row per transaction
    queryConfigList = [{
      tableName = "merge.test.person"
      rowKind = "INSERT"
      query = "unwind $batch as row create(p:merge_person {ID: row.ID, NAME: row.NAME})"
      queryParamPosition = { ID = 0, NAME = 1 }   # row field index -> Cypher parameter name
    }]
  }
}
"#;

    fn map_text(text: &str) -> Result<map::Mapped, SpecError> {
        mapped(Path::new("job.conf"), text, &|_| None)
    }

    #[test]
    fn the_incidents_job() {
        let m = map_text(INCIDENT).unwrap();
        let t = &m.tree;
        assert_eq!(t["name"], "merge-test-person-BATCH");
        assert_eq!(t["parallelism"], 2);
        assert_eq!(t["checkpoint"]["interval"], "60000ms");
        assert_eq!(t["source"]["plugin"], "mysql");
        assert_eq!(t["source"]["partition_column"], "ID");
        assert_eq!(t["source"]["partition_num"], 10);
        assert_eq!(t["source"]["options"]["url"], "mysql://127.0.0.1:3306/test");
        assert_eq!(
            t["source"]["options"]["connection_check_timeout_sec"],
            20000
        );
        assert_eq!(t["sink"]["plugin"], "bolt");
        assert_eq!(t["sink"]["write_mode"], "batch");
        assert_eq!(t["sink"]["max_batch_size"], 1000);
        assert_eq!(t["sink"]["options"]["user"], "neo4j");
        assert_eq!(t["sink"]["options"]["connect_timeout_secs"], 30000);
        assert_eq!(
            t["sink"]["options"]["params_by_position"],
            serde_json::json!({"ID": 0, "NAME": 1})
        );
        assert_eq!(m.lines["sink.options.query"], 36);
        assert_eq!(
            m.names["sink.options.query"],
            "sink.MysqlToNeo4j.queryConfigList[0].query"
        );
        assert_eq!(m.lines["source.partition_num"], 18);
    }

    #[test]
    fn refusals_name_line_and_key() {
        let e = map_text("source {\n  FakeSource {\n  }\n}\nsink { Console {} }\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "job.conf:2: source.FakeSource: source connector `FakeSource` is not supported: \
             etlhost reads MySQL and MariaDB with `Jdbc` (url = \"jdbc:mysql://host:3306/db\"); \
             its own sources are listed by `etlhost plugins`"
        );
        let streaming = INCIDENT.replace("job.mode = \"BATCH\"", "job.mode = \"STREAMING\"");
        let e = map_text(&streaming).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(3), "env.job.mode"));
        let update = INCIDENT.replace("rowKind = \"INSERT\"", "rowKind = \"UPDATE\"");
        let e = map_text(&update).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(35), "sink.MysqlToNeo4j.queryConfigList[0].rowKind")
        );
        let odd = INCIDENT.replace("fetch_size = 1000", "fetch_size = 1000\n    split.size = 3");
        let e = map_text(&odd).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "source.Jdbc.split.size")
        );
    }

    #[test]
    fn one_by_one_with_positions() {
        let text = INCIDENT
            .replace("    max_batch_size = 1000\n", "")
            .replace(
                "    write_mode = \"BATCH\"               # or one row per transaction\n",
                "",
            )
            .replace(
                "unwind $batch as row create(p:merge_person {ID: row.ID, NAME: row.NAME})",
                "create(p:merge_person {ID: $ID, NAME: $NAME})",
            );
        let m = map_text(&text).unwrap();
        assert_eq!(m.tree["sink"]["write_mode"], "one_by_one");
        assert_eq!(m.tree["sink"]["options"]["row_parameters"], true);
    }

    #[test]
    fn environment_references_stay_references() {
        let text = INCIDENT
            .replace(
                "password = \"123456\"",
                "password = \"dev\"\n    password = ${?ST_PW}",
            )
            .replace("user = \"admin\"", "user = \"a${b}\"");
        let env = |n: &str| (n == "ST_PW").then(|| "secret".to_string());
        let m = mapped(Path::new("job.conf"), &text, &env).unwrap();
        assert_eq!(m.tree["source"]["options"]["password"], "${ST_PW:-dev}");
        // A literal `${` in the file stays literal once etlhost expands `${VAR}`.
        assert_eq!(m.tree["source"]["options"]["user"], "a$${b}");
        let unset = mapped(Path::new("job.conf"), &text, &|_| None).unwrap();
        assert_eq!(unset.tree["source"]["options"]["password"], "${ST_PW:-dev}");
    }

    #[test]
    fn console_binlog_and_mismatched_tables() {
        let start = INCIDENT.find("sink {").unwrap();
        let m = map_text(&format!(
            "{}sink {{ ConsoleBinlog {{ }} }}\n",
            &INCIDENT[..start]
        ))
        .unwrap();
        assert_eq!(m.tree["sink"]["plugin"], "console");
        assert!(m.notes.iter().any(|n| n.text.contains("ConsoleBinlog")));
        let other = INCIDENT.replace("tableName = \"merge.test.person\"", "tableName = \"other\"");
        let e = map_text(&other).unwrap_err();
        assert_eq!(
            e.to_string(),
            "job.conf:34: sink.MysqlToNeo4j.queryConfigList[0].tableName: `other` is not the \
             table this sink reads (`merge.test.person`, the source's result_table_name)"
        );
    }

    #[test]
    fn converted_yaml_and_toml_parse_to_the_same_tree() {
        let m = map_text(INCIDENT).unwrap();
        let none = |_: &str| Vec::new();
        let y: J = serde_yaml_ng::from_str(&emit::yaml(&m.tree, "h", &none)).unwrap();
        assert_eq!(y, m.tree);
        let t: J = toml::from_str(&emit::toml(&m.tree, "h", &none)).unwrap();
        assert_eq!(t, m.tree);
    }
}
