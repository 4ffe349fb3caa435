//! The soak's own MariaDB and ArcadeDB, its schema and its spec.
//!
//! Both servers are private to the run (free ports, data in the run's temp dir): the soak restarts
//! them, which must not break tests or benches that use the shared services at the same time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_yaml_ng::{Mapping, Value};
use xtask::graph::fresh_graph_at;
use xtask::mariadb::ExtraMariaDb;
use xtask::services::{ExtraArcadeDb, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_USER};

/// The MySQL database and the graph database the soak streams between.
pub const DB: &str = "soak";
/// Teams and members at the start (copied by the snapshot).
const TEAMS: u64 = 200;
const MEMBERS: u64 = 10_000;
/// The lease of the spec: a replica that stops renewing it is replaced after this long.
pub const LEASE_SECS: u64 = 10;

pub struct Servers {
    pub mysql: ExtraMariaDb,
    pub graph: ExtraArcadeDb,
}

impl Servers {
    /// A MariaDB with its binary log as streaming needs it, and an ArcadeDB with the Bolt plugin.
    pub fn start(dir: &Path) -> Result<Servers> {
        let binlog = [
            "--log-bin={dir}/data/binlog",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
        ]
        .map(String::from);
        let mysql = ExtraMariaDb::start(&dir.join("mariadb"), &binlog)?;
        let graph = ExtraArcadeDb::start(&dir.join("arcadedb"), &[])?;
        Ok(Servers { mysql, graph })
    }

    pub fn mysql_port(&self) -> u16 {
        self.mysql.port
    }
}

/// The `mariadb` client logged in over TCP to the soak's server (password in the environment).
pub fn client(port: u16) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "-h127.0.0.1",
        &format!("-P{port}"),
        &format!("-u{MYSQL_USER}"),
    ])
    .env("MYSQL_PWD", MYSQL_PASSWORD);
    cmd
}

/// Runs SQL; its tab-separated output.
pub fn sql(port: u16, text: &str) -> Result<String> {
    let out = client(port).args(["-N", "-B", "-e", text]).output()?;
    if !out.status.success() {
        bail!("{text}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The server's binary log head: (file, offset).
pub fn head(port: u16) -> Result<(String, u64)> {
    let out = sql(port, "SHOW MASTER STATUS")?;
    let mut f = out.split_whitespace();
    Ok((
        f.next().context("no binlog file")?.to_string(),
        f.next().context("no binlog position")?.parse()?,
    ))
}

/// `team`, `member` (cascading foreign key) and the insert-only `event`, made anew, with the
/// starting teams and members.
pub fn create_schema(port: u16) -> Result<()> {
    sql(
        port,
        &format!(
            "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB};
             CREATE TABLE team (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL);
             CREATE TABLE member (id BIGINT PRIMARY KEY, team_id BIGINT NOT NULL,
               name VARCHAR(64) NOT NULL, score BIGINT NOT NULL,
               FOREIGN KEY (team_id) REFERENCES team (id) ON DELETE CASCADE ON UPDATE CASCADE);
             CREATE TABLE event (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL,
               kind VARCHAR(16) NOT NULL, at BIGINT NOT NULL);
             INSERT INTO team SELECT seq, CONCAT('team-', seq) FROM seq_1_to_{TEAMS};
             INSERT INTO member SELECT seq, 1 + seq % {TEAMS}, CONCAT('member-', seq), 0
               FROM seq_1_to_{MEMBERS};"
        ),
    )?;
    Ok(())
}

/// The first ids the load may give new teams and members.
pub fn first_ids() -> (u64, u64) {
    (TEAMS + 1, MEMBERS + 1)
}

/// `etlhost init --mode stream` of the schema, then edited as the soak needs; its path.
pub fn write_spec(dir: &Path, etlhost: &Path, servers: &Servers) -> Result<PathBuf> {
    fresh_graph_at(servers.graph.http, DB)?;
    let spec = dir.join("soak.yaml");
    let out = Command::new(etlhost)
        .args(["init", "--mode", "stream", "--force", "--name", DB])
        .arg(format!(
            "--source-url=mysql://127.0.0.1:{}/{DB}",
            servers.mysql.port
        ))
        .args([
            "--source-user",
            MYSQL_USER,
            "--source-password",
            MYSQL_PASSWORD,
        ])
        .arg(format!(
            "--sink-uri=bolt://127.0.0.1:{}",
            servers.graph.bolt
        ))
        .args(["--sink-user", GRAPH_USER, "--sink-password", GRAPH_PASSWORD])
        .args(["--sink-database", DB])
        .arg(&spec)
        .stdout(Stdio::null())
        .output()
        .context("cannot run etlhost init")?;
    if !out.status.success() {
        bail!(
            "etlhost init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&spec)?;
    std::fs::write(&spec, edit_spec(&text, &dir.join("checkpoint"))?)?;
    Ok(spec)
}

/// The generated spec with the soak's choices: the lease and the size of a transaction's parts,
/// and an `event` flow that writes with `CREATE` (no unique constraint, so a change applied twice
/// would show as a duplicate node rather than stop the stream) and starts at the binlog's head.
fn edit_spec(text: &str, checkpoint: &Path) -> Result<String> {
    let mut spec: Value = serde_yaml_ng::from_str(text)?;
    let root = spec.as_mapping_mut().context("the spec is not a map")?;
    let set = |m: &mut Mapping, k: &str, v: Value| m.insert(Value::from(k), v);
    let stream: Value = serde_yaml_ng::from_str(&format!(
        "{{lease: {LEASE_SECS}s, max_transaction_changes: 2000}}"
    ))?;
    set(root, "stream", stream);
    let cp: Value = serde_yaml_ng::from_str(&format!("{{dir: '{}'}}", checkpoint.display()))?;
    set(root, "checkpoint", cp);
    let event = root
        .get_mut("flows")
        .and_then(Value::as_sequence_mut)
        .and_then(|flows| {
            flows
                .iter_mut()
                .find(|f| f.get("name").and_then(Value::as_str) == Some("event"))
        })
        .and_then(Value::as_mapping_mut)
        .context("`etlhost init` wrote no flow named event")?;
    set(event, "snapshot", Value::Bool(false));
    let options = event
        .get_mut("sink")
        .and_then(|s| s.get_mut("options"))
        .and_then(Value::as_mapping_mut)
        .context("the event flow has no sink.options")?;
    set(
        options,
        "query",
        Value::from(
            "UNWIND $batch AS row CREATE (n:Event {id: row.id, member_id: row.member_id, \
             kind: row.kind, at: row.at, written: timestamp()})",
        ),
    );
    let setup = vec![Value::from(
        "CREATE INDEX event_id IF NOT EXISTS FOR (n:Event) ON (n.id)",
    )];
    set(options, "setup", Value::Sequence(setup));
    Ok(serde_yaml_ng::to_string(&spec)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_flow_creates_from_the_head_and_the_job_has_its_lease() {
        let init = "name: soak\nmode: stream\nflows:\n- name: event\n  sink:\n    options:\n      \
                    setup: [\"CREATE CONSTRAINT event_id IF NOT EXISTS FOR (n:Event) REQUIRE n.id IS UNIQUE\"]\n      \
                    query: MERGE\n- name: team\n  sink:\n    options:\n      query: MERGE\n";
        let text = super::edit_spec(init, std::path::Path::new("/tmp/cp")).unwrap();
        let spec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(spec["stream"]["lease"].as_str(), Some("10s"));
        assert_eq!(
            spec["stream"]["max_transaction_changes"].as_u64(),
            Some(2000)
        );
        let event = &spec["flows"][0];
        assert_eq!(event["snapshot"].as_bool(), Some(false));
        let options = &event["sink"]["options"];
        assert!(options["query"]
            .as_str()
            .unwrap()
            .contains(" CREATE (n:Event"));
        assert!(!options["setup"][0].as_str().unwrap().contains("UNIQUE"));
        assert_eq!(
            spec["flows"][1]["sink"]["options"]["query"].as_str(),
            Some("MERGE")
        );
        assert!(super::edit_spec("flows: []\n", std::path::Path::new("/tmp/cp")).is_err());
    }
}
