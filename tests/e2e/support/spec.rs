//! One builder for the job specs the tests write: a MySQL source and a sink, each with the lines a
//! test adds, in one fixed layout (the line numbers some tests' errors name depend on it):
//!
//! ```text
//! name, top-level lines, source: (plugin, source lines, options: url, user, password,
//! table/query, option lines), transforms:, sink: (plugin, sink lines, options: ...), the tail
//! ```

use std::fmt::Display;

use xtask::services::{
    BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};

/// The index the person jobs merge on.
pub const PERSON_ID_INDEX: &str = "CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)";

/// `person` rows merged into `:Person` nodes on `id`: a row written again makes no duplicate.
pub const PERSON_MERGE: &str =
    "UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p.name = row.name";

/// A job spec in YAML, built from what a test varies. Lines are given without their indent.
#[derive(Clone)]
pub struct SpecBuilder {
    name: String,
    top: Vec<String>,
    source_url: String,
    source_lines: Vec<String>,
    relation: Option<String>,
    source_options: Vec<String>,
    transforms: Option<String>,
    sink_plugin: String,
    sink_lines: Vec<String>,
    sink_options: Vec<String>,
    tail: String,
}

impl SpecBuilder {
    /// Job `name`, with no source database yet and a console sink.
    pub fn new(name: &str) -> SpecBuilder {
        SpecBuilder {
            name: name.to_string(),
            top: Vec::new(),
            source_url: String::new(),
            source_lines: Vec::new(),
            relation: None,
            source_options: Vec::new(),
            transforms: None,
            sink_plugin: "console".to_string(),
            sink_lines: Vec::new(),
            sink_options: Vec::new(),
            tail: String::new(),
        }
    }

    /// Reads MySQL database `db` on the shared server; a table or query comes with
    /// [`SpecBuilder::table`] or [`SpecBuilder::query`] (flows name their own).
    pub fn source_mysql(self, db: &str) -> SpecBuilder {
        self.source_url(&format!("mysql://127.0.0.1:{MYSQL_PORT}/{db}"))
    }

    /// Reads the MySQL server at `url` (another port, a proxy, credentials in the URL).
    pub fn source_url(mut self, url: &str) -> SpecBuilder {
        self.source_url = url.to_string();
        self
    }

    /// `source_mysql(db)` reading `table`.
    pub fn mysql_table(self, db: &str, table: &str) -> SpecBuilder {
        self.source_mysql(db).table(table)
    }

    pub fn table(mut self, table: &str) -> SpecBuilder {
        self.relation = Some(format!("table: {table}"));
        self
    }

    pub fn query(mut self, sql: &str) -> SpecBuilder {
        self.relation = Some(format!("query: {sql}"));
        self
    }

    /// A top-level line after `name:` (`parallelism: 2`, `dead_letter: ...`).
    pub fn top(mut self, line: impl Display) -> SpecBuilder {
        self.top.push(line.to_string());
        self
    }

    /// A line under `source:` before its options (`partition_column: id`).
    pub fn source_line(mut self, line: impl Display) -> SpecBuilder {
        self.source_lines.push(line.to_string());
        self
    }

    /// `partition_column: column` and, if `n > 0`, `partition_num: n`.
    pub fn partition(self, column: &str, n: u32) -> SpecBuilder {
        let b = self.source_line(format!("partition_column: {column}"));
        if n > 0 {
            b.source_line(format!("partition_num: {n}"))
        } else {
            b
        }
    }

    /// A line under `source.options:` after the table (`fetch_size: 10`).
    pub fn source_option(mut self, line: impl Display) -> SpecBuilder {
        self.source_options.push(line.to_string());
        self
    }

    /// The `transforms:` list, its YAML as it stands under the key.
    pub fn transforms(mut self, yaml: &str) -> SpecBuilder {
        self.transforms = Some(yaml.to_string());
        self
    }

    /// Writes with Cypher `query` to graph database `graph_db` on the shared Bolt server.
    pub fn sink_bolt(self, graph_db: &str, query: &str) -> SpecBuilder {
        self.sink_bolt_db(graph_db).cypher(query)
    }

    /// The sink's `query:`.
    pub fn cypher(self, query: &str) -> SpecBuilder {
        self.sink_option(format!("query: \"{query}\""))
    }

    /// A Bolt sink to `graph_db` with no query of its own (flows give theirs).
    pub fn sink_bolt_db(self, graph_db: &str) -> SpecBuilder {
        self.sink_bolt_at(BOLT_PORT, graph_db)
    }

    /// A Bolt sink to `graph_db` of the server on `port` (another server, a proxy).
    pub fn sink_bolt_at(self, port: u16, graph_db: &str) -> SpecBuilder {
        self.sink_bolt_uri(&format!("bolt://127.0.0.1:{port}"), graph_db)
    }

    /// A Bolt sink to `graph_db` at `uri`, any scheme, logged in as the shared server's user.
    pub fn sink_bolt_uri(mut self, uri: &str, graph_db: &str) -> SpecBuilder {
        self.sink_plugin = "bolt".to_string();
        self.sink_options.splice(
            0..0,
            [
                format!("uri: {uri}"),
                format!("user: {GRAPH_USER}"),
                format!("password: {GRAPH_PASSWORD}"),
                format!("database: {graph_db}"),
            ],
        );
        self
    }

    /// Any sink plugin, by name or path; its options with [`SpecBuilder::sink_option`].
    pub fn sink_plugin(mut self, plugin: impl Display) -> SpecBuilder {
        self.sink_plugin = plugin.to_string();
        self
    }

    /// `setup: [cypher]` before the sink's query.
    pub fn setup(mut self, cypher: &str) -> SpecBuilder {
        let at = self
            .sink_options
            .iter()
            .position(|o| o.starts_with("query: "))
            .unwrap_or(self.sink_options.len());
        self.sink_options
            .insert(at, format!("setup: [\"{cypher}\"]"));
        self
    }

    /// [`PERSON_MERGE`] on [`PERSON_ID_INDEX`], made by the sink's setup.
    pub fn merge_people(self) -> SpecBuilder {
        self.setup(PERSON_ID_INDEX).cypher(PERSON_MERGE)
    }

    /// `max_batch_size: n`.
    pub fn batch(self, n: usize) -> SpecBuilder {
        self.sink_line(format!("max_batch_size: {n}"))
    }

    /// A line under `sink:` before its options (`parallelism: 2`, `max_retries: 0`).
    pub fn sink_line(mut self, line: impl Display) -> SpecBuilder {
        self.sink_lines.push(line.to_string());
        self
    }

    /// A line under `sink.options:` (after the query).
    pub fn sink_option(mut self, line: impl Display) -> SpecBuilder {
        self.sink_options.push(line.to_string());
        self
    }

    /// `checkpoint:` with its `dir:` (and the lines after it, such as `interval: 100ms`).
    pub fn checkpoint_dir(self, dir: &std::path::Path, more: &[&str]) -> SpecBuilder {
        let mut yaml = format!("checkpoint:\n  dir: {}\n", dir.display());
        for line in more {
            yaml += &format!("  {line}\n");
        }
        self.extra_yaml(&yaml)
    }

    /// The `flows:` list, its YAML as it stands under the key (at the end).
    pub fn flows(self, yaml: &str) -> SpecBuilder {
        self.extra_yaml(&format!("flows:\n{yaml}"))
    }

    /// YAML appended as it is at the end (`flows:`, `checkpoint:`, ...).
    pub fn extra_yaml(mut self, yaml: &str) -> SpecBuilder {
        self.tail += yaml;
        self
    }

    pub fn build(&self) -> String {
        let mut out = format!("name: {}\n", self.name);
        for line in &self.top {
            out += &format!("{line}\n");
        }
        out += "source:\n  plugin: mysql\n";
        for line in &self.source_lines {
            out += &format!("  {line}\n");
        }
        out += &format!(
            "  options:\n    url: {}\n    user: {MYSQL_USER}\n    password: {MYSQL_PASSWORD}\n",
            self.source_url
        );
        for line in self.relation.iter().chain(&self.source_options) {
            out += &format!("    {line}\n");
        }
        if let Some(t) = &self.transforms {
            out += &format!("transforms:\n{t}\n");
        }
        out += &format!("sink:\n  plugin: {}\n", self.sink_plugin);
        for line in &self.sink_lines {
            out += &format!("  {line}\n");
        }
        if !self.sink_options.is_empty() {
            out += "  options:\n";
            for line in &self.sink_options {
                out += &format!("    {line}\n");
            }
        }
        out + &self.tail
    }
}
