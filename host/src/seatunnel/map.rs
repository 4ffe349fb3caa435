//! A SeaTunnel job (parsed HOCON) -> etlhost's spec tree, key by key. Every key is either mapped,
//! accepted with a note saying why etlhost needs no equivalent, or refused naming its line and
//! what to write instead: nothing is silently ignored.

use std::collections::HashMap;

use serde_json::{json, Map, Value as J};

use super::hocon::{escape, Entry, Node, Object, Value};

/// The etlhost spec tree of a SeaTunnel job, with where each of its keys came from.
#[derive(Debug, Default)]
pub struct Mapped {
    pub tree: J,
    /// etlhost key path (`source.options.url`) -> line in the `.conf` file.
    pub lines: HashMap<String, usize>,
    /// etlhost key path -> SeaTunnel key path (`source.Jdbc.url`), for messages.
    pub names: HashMap<String, String>,
    /// Notes on keys whose meaning changed or that etlhost does not need, by etlhost key path
    /// (the converted spec writes them as comments above the key).
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone)]
pub struct Note {
    /// The etlhost key the note is written above.
    pub path: String,
    pub line: usize,
    /// The SeaTunnel key it is about.
    pub key: String,
    pub text: String,
}

/// A refused key: `(line, SeaTunnel key path, message)`.
pub type Refusal = (usize, String, String);

type R<T> = Result<T, Refusal>;

/// A value with the line and key it was written at.
type Located<T = String> = (T, usize, String);

fn refuse<T>(line: usize, key: &str, msg: impl Into<String>) -> R<T> {
    Err((line, key.to_string(), msg.into()))
}

const ENV_KEYS: &str =
    "`parallelism`, `execution.parallelism`, `job.mode`, `job.name`, `checkpoint.interval`, `checkpoint.timeout`";
const JDBC_KEYS: &str = "`url`, `driver`, `user`, `password`, `query`, `table_path`, `fetch_size`, `connection_check_timeout_sec`, `partition_column`, `partition_num`, `partition_lower_bound`, `partition_upper_bound`, `parallelism`, `result_table_name`";
const NEO4J_KEYS: &str = "`uri`, `username`, `password`, `database`, `query`, `queryParamPosition`, `queryConfigList`, `write_mode`, `max_batch_size`, `max_transaction_retry_time`, `max_connection_timeout`, `format`, `parallelism`, `source_table_name`";
const CONSOLE_KEYS: &str =
    "`log.print.data`, `log.print.delay.ms`, `parallelism`, `source_table_name`";

struct Source<'a> {
    /// `source.Jdbc` (or `source.Jdbc[1]` for a second block of the same plugin).
    key: String,
    entry: &'a Entry,
    table: Option<String>,
    used: bool,
}

/// Maps a whole job file; `stem` names the job when `env.job.name` is not set.
pub fn map(root: &Object, stem: &str) -> R<Mapped> {
    let mut m = Mapped::default();
    let merged = root.merged();
    for e in &merged.entries {
        if !["env", "source", "transform", "sink"].contains(&e.key.as_str()) {
            return refuse(
                e.line,
                &e.key,
                "unknown block: a SeaTunnel job has `env`, `source`, `transform` and `sink`",
            );
        }
    }
    let env = m.env(merged.get("env"), stem)?;
    if let Some(t) = merged.get("transform") {
        refuse_transforms(t)?;
    }
    let mut sources = sources(root)?;
    let sinks = sinks(root)?;
    if sources.is_empty() {
        return refuse(
            1,
            "source",
            "a job needs a source: `source { Jdbc { ... } }`",
        );
    }
    if sinks.is_empty() {
        return refuse(
            1,
            "sink",
            "a job needs a sink: `sink { Neo4j { ... } }` or `sink { Console { } }`",
        );
    }
    let multi = sinks.len() > 1;
    let mut flows = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        let sink_key = numbered("sink", &sink.key, sinks[..i].iter().map(|s| &s.key));
        let so = object(sink, &sink_key)?.merged();
        let wanted = wanted_table(&so, &sink_key)?;
        let src = feeding_source(&sources, wanted.as_ref(), sink, &sink_key)?;
        sources[src].used = true;
        let flow = if multi {
            let label = wanted
                .as_ref()
                .map(|w| w.0.clone())
                .unwrap_or_else(|| format!("flow{i}"));
            let prefix = format!("flows[{i}].");
            let mut flow = Map::new();
            // Flow names are also file names.
            let label = crate::state_file::file_stem(&label);
            flow.insert("name".into(), J::String(format!("{label}_{i}")));
            m.at(&format!("{prefix}name"), sink.line, &sink_key);
            m.flow(flow, &prefix, &env, &sources[src], (sink, &sink_key, &so))?
        } else {
            m.flow(Map::new(), "", &env, &sources[src], (sink, &sink_key, &so))?
        };
        flows.push(flow);
    }
    if let Some(s) = sources.iter().find(|s| !s.used) {
        return refuse(
            s.entry.line,
            &s.key,
            "no sink reads this source: give a sink `source_table_name` equal to its \
             result_table_name, or remove it",
        );
    }
    m.tree = m.assemble(env, flows, multi);
    Ok(m)
}

/// `source.Jdbc`, or `source.Jdbc[1]` for the second block of one plugin (`earlier`: the plugin
/// names written before it).
fn numbered<'a>(block: &str, plugin: &str, earlier: impl Iterator<Item = &'a String>) -> String {
    match earlier.filter(|k| *k == plugin).count() {
        0 => format!("{block}.{plugin}"),
        n => format!("{block}.{plugin}[{n}]"),
    }
}

fn refuse_transforms(t: &Entry) -> R<()> {
    let obj = object(t, "transform")?;
    match obj.entries.first() {
        Some(first) => refuse(
            first.line,
            &format!("transform.{}", first.key),
            format!(
                "transform plugin `{}` is not supported: etlhost transforms are WASM \
                 components, listed under `transforms:` in a YAML or TOML spec (docs/transforms.md)",
                first.key
            ),
        ),
        None => Ok(()),
    }
}

/// Sources as written: two blocks of one plugin are two plugins.
fn sources(root: &Object) -> R<Vec<Source<'_>>> {
    let mut sources: Vec<Source> = Vec::new();
    for block in root.entries.iter().filter(|e| e.key == "source") {
        let obj = object(block, "source")?;
        for e in &obj.entries {
            let key = numbered("source", &e.key, sources.iter().map(|s| &s.entry.key));
            let o = object(e, &key)?.merged();
            let table = match o.get("result_table_name").or(o.get("plugin_output")) {
                Some(t) => Some(text(t, &format!("{key}.{}", t.key))?),
                None => None,
            };
            sources.push(Source {
                key,
                entry: e,
                table,
                used: false,
            });
        }
    }
    Ok(sources)
}

fn sinks(root: &Object) -> R<Vec<&Entry>> {
    let mut sinks = Vec::new();
    for block in root.entries.iter().filter(|e| e.key == "sink") {
        sinks.extend(&object(block, "sink")?.entries);
    }
    Ok(sinks)
}

/// The table a sink reads (`source_table_name`), as SeaTunnel connects sinks to sources.
fn wanted_table(so: &Object, sink_key: &str) -> R<Option<Located>> {
    let Some(t) = so.get("source_table_name").or(so.get("plugin_input")) else {
        return Ok(None);
    };
    let k = format!("{sink_key}.{}", t.key);
    let name = match &t.value.value {
        Value::Array(items) if items.len() == 1 => text_node(&items[0], &k)?,
        Value::Array(_) => {
            return refuse(
                t.line,
                &k,
                "one table per sink: etlhost writes each source through its own \
                 sink block (write one sink block per table)",
            )
        }
        _ => text(t, &k)?,
    };
    Ok(Some((name, t.line, k)))
}

/// Which source feeds a sink: the one named, or the only one.
fn feeding_source(
    sources: &[Source<'_>],
    wanted: Option<&Located>,
    sink: &Entry,
    sink_key: &str,
) -> R<usize> {
    match wanted {
        Some((name, line, k)) => sources
            .iter()
            .position(|s| s.table.as_deref() == Some(name))
            .map_or_else(
                || {
                    refuse(
                        *line,
                        k,
                        format!("no source has result_table_name = \"{name}\""),
                    )
                },
                Ok,
            ),
        None if sources.len() == 1 => Ok(0),
        None => refuse(
            sink.line,
            sink_key,
            "the job has several sources: name the one this sink reads with \
             source_table_name (the source's result_table_name)",
        ),
    }
}

impl Mapped {
    /// One source and one sink -> a flow (`prefix`: `flows[i].` when the job has several).
    fn flow(
        &mut self,
        mut flow: Map<String, J>,
        prefix: &str,
        env: &Env,
        s: &Source<'_>,
        (sink, sink_key, so): (&Entry, &str, &Object),
    ) -> R<Map<String, J>> {
        if let Some((p, line, key)) = &env.parallelism {
            flow.insert("parallelism".into(), json!(p));
            self.at(&format!("{prefix}parallelism"), *line, key);
        }
        let source = self.jdbc(s, prefix, &mut flow)?;
        flow.insert("source".into(), source);
        let sink_tree = self.sink(sink, sink_key, so, prefix, s.table.as_deref())?;
        flow.insert("sink".into(), sink_tree);
        Ok(flow)
    }

    /// The spec: the job's name and top-level keys, then its one flow's keys or `flows`.
    fn assemble(&mut self, env: Env, mut flows: Vec<Map<String, J>>, multi: bool) -> J {
        let mut tree = Map::new();
        tree.insert("name".into(), env.name);
        if let Some((line, key)) = env.name_at {
            self.at("name", line, &key);
        }
        for (k, v) in env.top {
            tree.insert(k, v);
        }
        if multi {
            tree.insert(
                "flows".into(),
                J::Array(flows.into_iter().map(J::Object).collect()),
            );
        } else {
            for (k, v) in flows.pop().expect("one flow") {
                tree.insert(k, v);
            }
        }
        J::Object(tree)
    }
}

/// What the `env` block says: the job's name (the file's stem unless `job.name`), the flows'
/// parallelism, and the job-level keys written once at the top (`checkpoint`).
struct Env {
    top: Map<String, J>,
    name: J,
    name_at: Option<(usize, String)>,
    parallelism: Option<Located<u64>>,
}

impl Mapped {
    fn env(&mut self, env: Option<&Entry>, stem: &str) -> R<Env> {
        let mut env_out = Env {
            top: Map::new(),
            name: J::String(stem.to_string()),
            name_at: None,
            parallelism: None,
        };
        let Some(env) = env else {
            return Ok(env_out);
        };
        let obj = object(env, "env")?;
        for (key, e) in leaves(obj, "env") {
            match key.as_str() {
                "env.parallelism" | "env.execution.parallelism" => {
                    env_out.parallelism = Some((int(e, &key)?, e.line, key.clone()));
                }
                "env.job.mode" => {
                    match text(e, &key)?.to_ascii_uppercase().as_str() {
                        "BATCH" => {}
                        "STREAMING" => return refuse(
                            e.line,
                            &key,
                            "STREAMING is not supported: etlhost runs batch jobs (use BATCH; for \
                         changes since the last run see `cursor_column` in docs/spec.md, \
                         \"Incremental sync\")",
                        ),
                        other => {
                            return refuse(
                                e.line,
                                &key,
                                format!("`{other}`: expected BATCH (etlhost does not stream)"),
                            )
                        }
                    }
                }
                "env.job.name" => {
                    env_out.name = J::String(passthrough(e, &key)?);
                    env_out.name_at = Some((e.line, key.clone()));
                }
                "env.checkpoint.interval" => {
                    let ms = int(e, &key)?;
                    if ms == 0 {
                        return refuse(e.line, &key, "must be more than 0 ms");
                    }
                    env_out.top.insert(
                        "checkpoint".into(),
                        json!({ "interval": format!("{ms}ms") }),
                    );
                    self.at("checkpoint.interval", e.line, &key);
                    self.note(
                        "checkpoint.interval",
                        e.line,
                        &key,
                        "SeaTunnel's milliseconds; etlhost records progress this often, never \
                     waiting for a sink (checkpoints cannot expire)",
                    );
                }
                "env.checkpoint.timeout" => self.note(
                    "checkpoint.interval",
                    e.line,
                    &key,
                    "dropped: etlhost's checkpoints only record what the sink has acknowledged \
                 and never wait for a batch in flight, so there is nothing to time out",
                ),
                _ => {
                    return refuse(
                        e.line,
                        &key,
                        format!("no etlhost equivalent; `env` accepts {ENV_KEYS}"),
                    )
                }
            }
        }
        Ok(env_out)
    }
}

impl Mapped {
    fn at(&mut self, path: &str, line: usize, key: &str) {
        self.lines.insert(path.to_string(), line);
        self.names.insert(path.to_string(), key.to_string());
    }

    fn note(&mut self, path: &str, line: usize, key: &str, text: impl Into<String>) {
        self.notes.push(Note {
            path: path.to_string(),
            line,
            key: key.to_string(),
            text: text.into(),
        });
    }

    /// A `Jdbc` source block -> the flow's `source`.
    fn jdbc(&mut self, s: &Source<'_>, prefix: &str, flow: &mut Map<String, J>) -> R<J> {
        let key = &s.key;
        if s.entry.key != "Jdbc" {
            return unsupported_source(s);
        }
        let o = object(s.entry, key)?.merged();
        let base = format!("{prefix}source");
        self.at(&base, s.entry.line, key);
        self.at(&format!("{base}.plugin"), s.entry.line, key);
        let mut src = Map::new();
        src.insert("plugin".into(), J::String("mysql".into()));
        let mut opts = Map::new();
        let mut partition = Map::new();
        for (k, e) in leaves(&o, key) {
            let name = &k[key.len() + 1..];
            let opt = |name: &str| format!("{base}.options.{name}");
            match name {
                "url" => {
                    let url = self.jdbc_url(e, &k, &opt("url"))?;
                    opts.insert("url".into(), J::String(url));
                }
                "driver" => self.note(
                    &format!("{base}.plugin"),
                    e.line,
                    &k,
                    "`driver` dropped: etlhost speaks the MySQL protocol itself, no JDBC driver",
                ),
                "user" | "password" | "query" => {
                    opts.insert(name.to_string(), J::String(passthrough(e, &k)?));
                    self.at(&opt(name), e.line, &k);
                }
                "table_path" => {
                    opts.insert("table".into(), J::String(passthrough(e, &k)?));
                    self.at(&opt("table"), e.line, &k);
                }
                "fetch_size" => {
                    let n = int(e, &k)?;
                    if n == 0 {
                        self.note(
                            &format!("{base}.plugin"),
                            e.line,
                            &k,
                            "`fetch_size = 0` (the driver's default) dropped: etlhost's default is 1000 rows",
                        );
                    } else {
                        opts.insert("fetch_size".into(), json!(n));
                        self.at(&opt("fetch_size"), e.line, &k);
                    }
                }
                "connection_check_timeout_sec" => {
                    opts.insert(name.to_string(), json!(int(e, &k)?));
                    self.at(&opt(name), e.line, &k);
                }
                "partition_column" => {
                    partition.insert(name.to_string(), J::String(text(e, &k)?));
                    self.at(&format!("{base}.{name}"), e.line, &k);
                }
                "partition_num" => {
                    partition.insert(name.to_string(), json!(int(e, &k)?));
                    self.at(&format!("{base}.{name}"), e.line, &k);
                }
                "partition_lower_bound" | "partition_upper_bound" => {
                    partition.insert(name.to_string(), scalar(e, &k)?);
                    self.at(&format!("{base}.{name}"), e.line, &k);
                }
                "parallelism" => {
                    flow.insert("parallelism".into(), json!(int(e, &k)?));
                    self.at(&format!("{prefix}parallelism"), e.line, &k);
                }
                "result_table_name" | "plugin_output" => {}
                _ => {
                    return refuse(
                        e.line,
                        &k,
                        format!("no etlhost equivalent; `Jdbc` accepts {JDBC_KEYS}"),
                    )
                }
            }
        }
        for (k, v) in partition {
            src.insert(k, v);
        }
        src.insert("options".into(), J::Object(opts));
        self.at(&format!("{base}.options"), s.entry.line, key);
        Ok(J::Object(src))
    }

    /// `url` -> the MySQL URL (escaped for the spec), with a note for each JDBC parameter it
    /// drops or maps.
    fn jdbc_url(&mut self, e: &Entry, k: &str, path: &str) -> R<String> {
        let (url, notes) = jdbc_url(&text(e, k)?).map_err(|m| (e.line, k.to_string(), m))?;
        self.at(path, e.line, k);
        for n in notes {
            self.note(path, e.line, k, n);
        }
        if matches!(
            &e.value.value,
            Value::Str {
                template: Some(_),
                ..
            }
        ) {
            self.note(
                path,
                e.line,
                k,
                "resolved from the environment when converted (etlhost needs the URL's parts)",
            );
        }
        Ok(escape(&url))
    }

    /// A sink block -> the flow's `sink`.
    fn sink(
        &mut self,
        e: &Entry,
        key: &str,
        o: &Object,
        prefix: &str,
        table: Option<&str>,
    ) -> R<J> {
        let base = format!("{prefix}sink");
        self.at(&base, e.line, key);
        self.at(&format!("{base}.plugin"), e.line, key);
        self.at(&format!("{base}.options"), e.line, key);
        match e.key.as_str() {
            "Neo4j" => self.neo4j(e, key, o, &base, table),
            "MysqlToNeo4j" => {
                self.note(
                    &format!("{base}.plugin"),
                    e.line,
                    key,
                    "`MysqlToNeo4j` (the incident's custom sink) read as SeaTunnel's `Neo4j` \
                     sink plus `queryConfigList`: its options are those; write `Neo4j` to say so",
                );
                self.neo4j(e, key, o, &base, table)
            }
            "Console" | "ConsoleBinlog" => {
                if e.key == "ConsoleBinlog" {
                    self.note(
                        &format!("{base}.plugin"),
                        e.line,
                        key,
                        "`ConsoleBinlog` (a custom sink that printed each row) read as \
                         SeaTunnel's `Console`; write `Console` to say so",
                    );
                }
                self.console(key, o, &base)
            }
            other => refuse(
                e.line,
                key,
                format!(
                    "sink connector `{other}` is not supported: etlhost writes to Neo4j-compatible \
                     graph databases with `Neo4j` and prints rows with `Console`; its own sinks \
                     are listed by `etlhost plugins`"
                ),
            ),
        }
    }

    fn console(&mut self, key: &str, o: &Object, base: &str) -> R<J> {
        let mut sink = Map::new();
        sink.insert("plugin".into(), J::String("console".into()));
        let mut mode = "rows";
        for (k, v) in leaves(o, key) {
            match &k[key.len() + 1..] {
                "log.print.data" => {
                    if !boolean(v, &k)? {
                        mode = "count";
                    }
                    self.at(&format!("{base}.options.mode"), v.line, &k);
                    self.note(
                        &format!("{base}.options.mode"),
                        v.line,
                        &k,
                        "`log.print.data = false` prints only the row count at the end",
                    );
                }
                "log.print.delay.ms" => self.note(
                    &format!("{base}.plugin"),
                    v.line,
                    &k,
                    "`log.print.delay.ms` dropped: etlhost prints every row without waiting",
                ),
                "parallelism" => {
                    sink.insert("parallelism".into(), json!(int(v, &k)?));
                    self.at(&format!("{base}.parallelism"), v.line, &k);
                }
                "source_table_name" | "plugin_input" => {}
                _ => {
                    return refuse(
                        v.line,
                        &k,
                        format!("no etlhost equivalent; `Console` accepts {CONSOLE_KEYS}"),
                    )
                }
            }
        }
        sink.insert("options".into(), json!({ "mode": mode }));
        Ok(J::Object(sink))
    }

    fn neo4j(&mut self, e: &Entry, key: &str, o: &Object, base: &str, table: Option<&str>) -> R<J> {
        let mut keys = self.neo4j_keys(e, key, o, base)?;
        if let Some(list) = keys.config_list {
            if let Some((_, line, qk)) = &keys.query {
                return refuse(
                    *line,
                    qk,
                    "write either `query` or `queryConfigList`, not both",
                );
            }
            let (q, pos) = query_config_list(list, key, table)?;
            keys.query = Some(q);
            if pos.is_some() {
                keys.positions = pos;
            }
        }
        let Some(query) = keys.query.take() else {
            return refuse(e.line, key, "missing `query` (or `queryConfigList`)");
        };
        self.neo4j_write_mode(e, key, base, &mut keys, &query)?;
        let (q, qline, qkey) = query;
        let opt = |name: &str| format!("{base}.options.{name}");
        keys.opts.insert("query".into(), J::String(q));
        self.at(&opt("query"), qline, &qkey);
        if let Some((p, line, k)) = keys.positions {
            keys.opts.insert("params_by_position".into(), p);
            self.at(&opt("params_by_position"), line, &k);
            self.note(
                &opt("params_by_position"),
                line,
                &k,
                if keys.one_by_one {
                    "queryParamPosition: each parameter is the row's field at that position (from 0)"
                } else {
                    "queryParamPosition: each $batch row is a map of these names to the row's \
                     fields at those positions (from 0)"
                },
            );
        }
        // Rename-free keys first, then the options.
        let mut out = Map::new();
        for k in [
            "plugin",
            "write_mode",
            "max_batch_size",
            "max_retries",
            "parallelism",
        ] {
            if let Some(v) = keys.sink.remove(k) {
                out.insert(k.into(), v);
            }
        }
        out.insert("options".into(), J::Object(keys.opts));
        Ok(J::Object(out))
    }

    /// The keys of a `Neo4j` block, each mapped or kept for the steps that need several of them
    /// (the query, its mode and batch size).
    fn neo4j_keys<'a>(
        &mut self,
        e: &Entry,
        key: &str,
        o: &'a Object,
        base: &str,
    ) -> R<Neo4jKeys<'a>> {
        let mut keys = Neo4jKeys {
            sink: Map::new(),
            opts: Map::new(),
            one_by_one: true,
            mode_at: None,
            query: None,
            positions: None,
            batch_size: None,
            config_list: None,
        };
        keys.sink.insert("plugin".into(), J::String("bolt".into()));
        let opt = |name: &str| format!("{base}.options.{name}");
        for v in &o.entries {
            let k = format!("{key}.{}", v.key);
            match v.key.as_str() {
                "uri" | "database" | "password" => {
                    keys.opts
                        .insert(v.key.clone(), J::String(passthrough(v, &k)?));
                    self.at(&opt(&v.key), v.line, &k);
                }
                "username" => {
                    keys.opts
                        .insert("user".into(), J::String(passthrough(v, &k)?));
                    self.at(&opt("user"), v.line, &k);
                }
                "query" => keys.query = Some((passthrough(v, &k)?, v.line, k)),
                "queryParamPosition" => keys.positions = Some((param_positions(v, &k)?, v.line, k)),
                "queryConfigList" => keys.config_list = Some(v),
                "write_mode" => {
                    keys.one_by_one = one_by_one(v, &k)?;
                    keys.mode_at = Some((v.line, k));
                }
                "max_batch_size" => keys.batch_size = Some((int(v, &k)?, v.line, k)),
                "max_transaction_retry_time" => {
                    let secs = int(v, &k)?;
                    let retries = retries_within(secs);
                    keys.sink.insert("max_retries".into(), json!(retries));
                    self.at(&format!("{base}.max_retries"), v.line, &k);
                    self.note(
                        &format!("{base}.max_retries"),
                        v.line,
                        &k,
                        format!(
                            "from max_transaction_retry_time = {secs} (seconds of retrying): \
                             etlhost counts tries instead, waiting 200ms, doubled each time up to \
                             30s; {retries} tries span about {secs}s"
                        ),
                    );
                }
                "max_connection_timeout" => {
                    let secs = int(v, &k)?.max(1);
                    keys.opts.insert("connect_timeout_secs".into(), json!(secs));
                    self.at(&opt("connect_timeout_secs"), v.line, &k);
                }
                "format" => self.neo4j_format(v, &k, base)?,
                "parallelism" => {
                    keys.sink.insert("parallelism".into(), json!(int(v, &k)?));
                    self.at(&format!("{base}.parallelism"), v.line, &k);
                }
                "bearer_token" | "kerberos_ticket" => return refuse(
                    v.line,
                    &k,
                    "not supported: etlhost's bolt sink authenticates with username and password",
                ),
                "source_table_name" | "plugin_input" => {}
                _ => {
                    let (line, k) = first_leaf(v, &k);
                    return refuse(
                        line,
                        &k,
                        format!("no etlhost equivalent; `{}` accepts {NEO4J_KEYS}", e.key),
                    );
                }
            }
        }
        Ok(keys)
    }

    fn neo4j_format(&mut self, v: &Entry, k: &str, base: &str) -> R<()> {
        let t = text(v, k)?;
        if t != "default" {
            return refuse(
                v.line,
                k,
                format!("`{t}`: only \"default\" (rows as Cypher parameters) is supported"),
            );
        }
        self.note(
            &format!("{base}.plugin"),
            v.line,
            k,
            "`format = \"default\"` dropped: rows always reach Cypher as parameters",
        );
        Ok(())
    }

    /// ONE_BY_ONE (row fields as the query's parameters) or BATCH (rows as `$batch`), checked
    /// against what the query expects.
    fn neo4j_write_mode(
        &mut self,
        e: &Entry,
        key: &str,
        base: &str,
        keys: &mut Neo4jKeys<'_>,
        (q, qline, qkey): &Located,
    ) -> R<()> {
        let (qline, batch) = (*qline, q.contains("$batch"));
        let mode_key = format!("{base}.write_mode");
        match &keys.mode_at {
            Some((line, k)) => self.at(&mode_key, *line, k),
            None => self.at(&mode_key, e.line, key),
        }
        if keys.one_by_one {
            if batch {
                let (line, k) = keys.mode_at.clone().unwrap_or((qline, qkey.clone()));
                return refuse(
                    line,
                    &k,
                    "the query uses $batch, but write_mode is ONE_BY_ONE (SeaTunnel's default): \
                     write write_mode = \"BATCH\"",
                );
            }
            keys.sink
                .insert("write_mode".into(), J::String("one_by_one".into()));
            keys.opts.insert("row_parameters".into(), J::Bool(true));
            self.at(&format!("{base}.options.row_parameters"), qline, qkey);
            self.note(
                &mode_key,
                keys.mode_at.as_ref().map(|m| m.0).unwrap_or(e.line),
                keys.mode_at.as_ref().map(|m| m.1.as_str()).unwrap_or(key),
                "ONE_BY_ONE: one transaction per row, each row's fields the query's parameters \
                 (about 40x slower than BATCH with UNWIND $batch)",
            );
            if let Some((_, line, k)) = &keys.batch_size {
                self.note(
                    &mode_key,
                    *line,
                    k,
                    "`max_batch_size` dropped: it has no effect with ONE_BY_ONE",
                );
            }
            return Ok(());
        }
        if !batch {
            return refuse(
                qline,
                qkey,
                "with write_mode = \"BATCH\" the query receives the rows as $batch \
                 (e.g. UNWIND $batch AS row CREATE ...)",
            );
        }
        keys.sink
            .insert("write_mode".into(), J::String("batch".into()));
        let (n, line, k) = keys
            .batch_size
            .take()
            .unwrap_or((500, e.line, key.to_string()));
        keys.sink.insert("max_batch_size".into(), json!(n));
        self.at(&format!("{base}.max_batch_size"), line, &k);
        if k == key {
            self.note(
                &format!("{base}.max_batch_size"),
                line,
                &k,
                "SeaTunnel's default batch size",
            );
        }
        Ok(())
    }
}

fn unsupported_source<T>(s: &Source<'_>) -> R<T> {
    refuse(
        s.entry.line,
        &s.key,
        format!(
            "source connector `{}` is not supported: etlhost reads MySQL and MariaDB with `Jdbc` \
             (url = \"jdbc:mysql://host:3306/db\"); its own sources are listed by `etlhost plugins`",
            s.entry.key
        ),
    )
}

/// What a `Neo4j` block says, before the query and its mode are checked against each other.
struct Neo4jKeys<'a> {
    /// The sink's own keys (`write_mode`, `max_retries`, ...).
    sink: Map<String, J>,
    /// Its `options`.
    opts: Map<String, J>,
    one_by_one: bool,
    mode_at: Option<(usize, String)>,
    query: Option<Located>,
    positions: Option<Located<J>>,
    batch_size: Option<Located<u64>>,
    config_list: Option<&'a Entry>,
}

/// `write_mode`: ONE_BY_ONE (SeaTunnel's default) or BATCH.
fn one_by_one(v: &Entry, k: &str) -> R<bool> {
    let t = text(v, k)?;
    match t.to_ascii_uppercase().replace('_', "").as_str() {
        "ONEBYONE" => Ok(true),
        "BATCH" => Ok(false),
        _ => refuse(v.line, k, format!("`{t}`: expected ONE_BY_ONE or BATCH")),
    }
}

/// The one INSERT query of a `queryConfigList` (for `table`, the source's result_table_name), and
/// its `queryParamPosition`: (text, line, key) each.
fn query_config_list(
    list: &Entry,
    key: &str,
    table: Option<&str>,
) -> R<(Located, Option<Located<J>>)> {
    let k = format!("{key}.queryConfigList");
    let Value::Array(items) = &list.value.value else {
        return refuse(
            list.line,
            &k,
            "must be a list of { tableName, rowKind, query }",
        );
    };
    let mut chosen = None;
    for (i, item) in items.iter().enumerate() {
        let ik = format!("{k}[{i}]");
        let Value::Object(io) = &item.value else {
            return refuse(item.line, &ik, "must be { tableName, rowKind, query }");
        };
        let io = io.merged();
        let mut q = None;
        let mut kind = "INSERT".to_string();
        let mut tname = None;
        let mut pos = None;
        for f in &io.entries {
            let fk = format!("{ik}.{}", f.key);
            match f.key.as_str() {
                "tableName" => tname = Some((text(f, &fk)?, f.line, fk)),
                "rowKind" => kind = text(f, &fk)?.to_ascii_uppercase(),
                "query" => q = Some((passthrough(f, &fk)?, f.line, fk)),
                "queryParamPosition" => pos = Some((param_positions(f, &fk)?, f.line, fk)),
                _ => {
                    return refuse(
                        f.line,
                        &fk,
                        "no etlhost equivalent; an entry has `tableName`, `rowKind`, \
                             `query`, `queryParamPosition`",
                    )
                }
            }
        }
        match kind.as_str() {
            "INSERT" => {}
            "UPDATE" | "UPDATE_AFTER" | "UPDATE_BEFORE" | "DELETE" => {
                let at = io.get("rowKind").map(|e| e.line).unwrap_or(item.line);
                return refuse(
                    at,
                    &format!("{ik}.rowKind"),
                    format!(
                        "{kind} rows only come from a streaming (CDC) source, which etlhost \
                             does not have yet: a batch job reads INSERT rows only (use MERGE \
                             in the INSERT query to update existing nodes)"
                    ),
                );
            }
            other => {
                return refuse(
                    item.line,
                    &format!("{ik}.rowKind"),
                    format!("`{other}`: expected INSERT"),
                )
            }
        }
        if let (Some((t, line, tk)), Some(table)) = (&tname, table) {
            if t != table {
                return refuse(
                    *line,
                    tk,
                    format!(
                        "`{t}` is not the table this sink reads (`{table}`, the source's \
                             result_table_name)"
                    ),
                );
            }
        }
        if chosen.is_some() {
            return refuse(
                item.line,
                &ik,
                "a second INSERT query for the same table: etlhost runs one query per sink",
            );
        }
        let Some(q) = q else {
            return refuse(item.line, &ik, "missing `query`");
        };
        chosen = Some((q, pos));
    }
    match chosen {
        Some(c) => Ok(c),
        None => refuse(list.line, &k, "has no INSERT query"),
    }
}

/// How many retries, each waiting 200 ms doubled up to 30 s (the host's backoff; its jitter only
/// lengthens a wait), span at least `secs`.
fn retries_within(secs: u64) -> u64 {
    let (mut total, mut wait, mut n) = (0.0, 0.2, 0u64);
    while total < secs as f64 && n < 10_000 {
        total += wait;
        wait = (wait * 2.0f64).min(30.0);
        n += 1;
    }
    n
}

/// `jdbc:mysql://host:port/db?params` -> `mysql://host:port/db`, with a note per parameter
/// etlhost does without; a parameter that would change what is read is refused.
fn jdbc_url(url: &str) -> Result<(String, Vec<String>), String> {
    let rest = url
        .strip_prefix("jdbc:mysql://")
        .or_else(|| url.strip_prefix("jdbc:mariadb://"))
        .ok_or_else(|| {
            format!(
                "`{}`: etlhost reads MySQL and MariaDB only (jdbc:mysql:// or jdbc:mariadb://)",
                url.split("//").next().unwrap_or(url)
            )
        })?;
    let (main, params) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = main.split('/').next().unwrap_or("");
    if authority.contains(',') {
        return Err("several hosts (failover) are not supported: name one host".into());
    }
    if authority.contains('@') {
        return Err("credentials in the URL: write them as `user` and `password`".into());
    }
    let mut notes = Vec::new();
    for p in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let lower = v.to_ascii_lowercase();
        match k {
            "useSSL" | "requireSSL" if lower == "false" => notes.push(format!(
                "`{k}={v}` dropped: etlhost's mysql source connects without TLS"
            )),
            "sslMode" if lower == "disabled" => notes.push(format!(
                "`{k}={v}` dropped: etlhost's mysql source connects without TLS"
            )),
            "useSSL" | "requireSSL" | "sslMode" => {
                return Err(format!(
                    "URL parameter `{k}={v}`: etlhost's mysql source does not support TLS yet"
                ))
            }
            "serverTimezone" | "serverTimeZone" | "connectionTimeZone" => notes.push(format!(
                "`{k}={v}` dropped: etlhost reads DATETIME as the wall-clock value stored and \
                 TIMESTAMP in UTC, whatever the server's time zone"
            )),
            "characterEncoding" | "useUnicode" => notes.push(format!(
                "`{k}={v}` dropped: etlhost always reads text as UTF-8 (utf8mb4)"
            )),
            "zeroDateTimeBehavior" => notes.push(format!(
                "`{k}={v}` dropped: etlhost reads the zero date 0000-00-00 as NULL"
            )),
            "allowPublicKeyRetrieval" | "useCursorFetch" | "rewriteBatchedStatements" => notes
                .push(format!(
                    "`{k}={v}` dropped: not needed (etlhost streams results with its own client)"
                )),
            _ => {
                return Err(format!(
                    "URL parameter `{k}` has no etlhost equivalent; etlhost accepts useSSL=false, \
                     serverTimezone, characterEncoding, useUnicode, zeroDateTimeBehavior, \
                     allowPublicKeyRetrieval, useCursorFetch, rewriteBatchedStatements"
                ))
            }
        }
    }
    Ok((format!("mysql://{main}"), notes))
}

fn object<'a>(e: &'a Entry, key: &str) -> R<&'a Object> {
    match &e.value.value {
        Value::Object(o) => Ok(o),
        _ => refuse(e.line, key, "must be a block `{ ... }`"),
    }
}

/// Every non-object value below `o` with its dotted SeaTunnel key (`env.job.mode`).
fn leaves<'a>(o: &'a Object, prefix: &str) -> Vec<(String, &'a Entry)> {
    let mut out = Vec::new();
    fn walk<'a>(o: &'a Object, prefix: &str, out: &mut Vec<(String, &'a Entry)>) {
        for e in &o.entries {
            let k = format!("{prefix}.{}", e.key);
            match &e.value.value {
                Value::Object(inner) => walk(inner, &k, out),
                _ => out.push((k, e)),
            }
        }
    }
    walk(o, prefix, &mut out);
    out
}

/// The first plain value below an entry (the key a user wrote, for a dotted or nested key).
fn first_leaf(e: &Entry, key: &str) -> (usize, String) {
    match &e.value.value {
        Value::Object(o) => leaves(o, key)
            .first()
            .map(|(k, l)| (l.line, k.clone()))
            .unwrap_or((e.line, key.to_string())),
        _ => (e.line, key.to_string()),
    }
}

fn text_node(n: &Node, key: &str) -> R<String> {
    match &n.value {
        Value::Str { text, .. } | Value::Num(text) => Ok(text.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => refuse(n.line, key, "must be a string"),
    }
}

fn text(e: &Entry, key: &str) -> R<String> {
    text_node(&e.value, key)
}

/// A string handed on as written: a `${VAR}` reference stays one.
fn passthrough(e: &Entry, key: &str) -> R<String> {
    match &e.value.value {
        Value::Str {
            template: Some(t), ..
        } => Ok(t.clone()),
        _ => text(e, key).map(|t| escape(&t)),
    }
}

fn int(e: &Entry, key: &str) -> R<u64> {
    let t = text(e, key)?;
    t.trim()
        .parse::<u64>()
        .or_else(|_| refuse(e.line, key, format!("`{t}` is not a whole number")))
}

fn boolean(e: &Entry, key: &str) -> R<bool> {
    match &e.value.value {
        Value::Bool(b) => Ok(*b),
        Value::Str { text, .. } if text == "true" || text == "false" => Ok(text == "true"),
        _ => refuse(e.line, key, "must be true or false"),
    }
}

/// A bound: a number stays a number, anything else (a date) a string.
fn scalar(e: &Entry, key: &str) -> R<J> {
    match &e.value.value {
        Value::Num(t) => Ok(t
            .parse::<i64>()
            .map(J::from)
            .or_else(|_| t.parse::<f64>().map(J::from))
            .unwrap_or_else(|_| J::String(t.clone()))),
        _ => text(e, key).map(J::String),
    }
}

/// `{ ID = 0, NAME = 1 }` -> `{"ID": 0, "NAME": 1}`.
fn param_positions(e: &Entry, key: &str) -> R<J> {
    let Value::Object(o) = &e.value.value else {
        return refuse(e.line, key, "must be a block of `name = position`");
    };
    let mut m = Map::new();
    for f in &o.merged().entries {
        let fk = format!("{key}.{}", f.key);
        m.insert(f.key.clone(), json!(int(f, &fk)?));
    }
    Ok(J::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls() {
        let (u, notes) =
            jdbc_url("jdbc:mysql://127.0.0.1:3306/test?useSSL=false&serverTimezone=Asia/Shanghai")
                .unwrap();
        assert_eq!(u, "mysql://127.0.0.1:3306/test");
        assert_eq!(notes.len(), 2);
        assert!(jdbc_url("jdbc:postgresql://h/db")
            .unwrap_err()
            .contains("MySQL and MariaDB only"));
        assert!(jdbc_url("jdbc:mysql://h/db?useSSL=true")
            .unwrap_err()
            .contains("TLS"));
        assert!(jdbc_url("jdbc:mysql://h/db?tinyInt1isBit=false")
            .unwrap_err()
            .contains("`tinyInt1isBit` has no etlhost equivalent"));
    }

    #[test]
    fn retry_time_to_tries() {
        assert_eq!(retries_within(0), 0);
        // 0.2 + 0.4 + ... + 25.6 = 51 s >= 30 s.
        assert_eq!(retries_within(30), 8);
    }
}
