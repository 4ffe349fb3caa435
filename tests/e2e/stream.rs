//! `mode: stream` (issue 15): snapshot, then the binlog's inserts, updates (key changes included)
//! and deletes reach the graph; SIGKILL and a rerun resume from the recorded position; SIGTERM
//! records it and exits 130; server settings that cannot stream are refused with their fix.
//!
//! Synchronisation is on real signals: the stream's Prometheus endpoint says which binlog position
//! is acknowledged, and a test waits until it reaches the server's own `SHOW MASTER STATUS`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use xtask::mariadb::ExtraMariaDb;
use xtask::services::{free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, HTTP_PORT, MYSQL_PORT};

use crate::support::{
    etlhost_command, exec, graph, mysql, person_table, scratch_dir, Proxy, SpecBuilder, Way,
    PERSON_ID_INDEX,
};

const NODE_QUERY: &str = "UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p = row";
const DELETE_QUERY: &str = "UNWIND $batch AS row MATCH (p:Person {id: row.id}) DETACH DELETE p";

/// A streaming job of one flow reading `table` of `url`'s database into graph `graph_db`.
pub(crate) fn stream_spec(
    name: &str,
    url: &str,
    graph_db: &str,
    dir: &Path,
    extra: &str,
) -> String {
    format!(
        "name: {name}
mode: stream
checkpoint: {{dir: {cp}, interval: 100ms}}
source:
  plugin: mysql
  options: {{url: \"{url}\", user: etl, password: etl, table: person}}
sink:
  plugin: bolt
  parallelism: 2
  max_retries: 3
  retry_backoff: 100ms
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {graph_db}
    setup: [\"CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)\"]
    query: \"{NODE_QUERY}\"
    delete_query: \"{DELETE_QUERY}\"
{extra}",
        cp = dir.join("cp").display()
    )
}

/// Starts job `name` streaming `person` of MySQL database `name` into graph `name`, fresh, in
/// scratch folder `name`; that folder and the spec's path.
pub(crate) fn start_stream(name: &str) -> (PathBuf, PathBuf, Running) {
    let dir = scratch_dir(name);
    let spec = dir.join(format!("{name}.yaml"));
    let url = format!("mysql://127.0.0.1:{MYSQL_PORT}/{name}");
    std::fs::write(&spec, stream_spec(name, &url, name, &dir, "")).unwrap();
    let job = Running::start(&spec, &dir, true);
    (dir, spec, job)
}

pub(crate) struct Running {
    child: Child,
    metrics: u16,
    stderr: PathBuf,
}

impl Running {
    pub(crate) fn start(spec: &Path, dir: &Path, fresh: bool) -> Running {
        Running::spawn(spec, dir, fresh, "e2e", "warn")
    }

    /// As [`Running::start`], as process `holder` of the job's lease, logging what it does with
    /// the lease (`info`).
    pub(crate) fn start_as(spec: &Path, dir: &Path, fresh: bool, holder: &str) -> Running {
        Running::spawn(spec, dir, fresh, holder, "info")
    }

    fn spawn(spec: &Path, dir: &Path, fresh: bool, holder: &str, log: &str) -> Running {
        let metrics = free_port().unwrap();
        let stderr = dir.join(format!("stderr-{metrics}.log"));
        let mut cmd = etlhost_command();
        cmd.arg("run").arg(spec);
        if fresh {
            cmd.arg("--fresh");
        }
        let child = cmd
            .arg("--summary-json")
            .arg(dir.join("summary.json"))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics}"))
            .env("RUST_LOG", log)
            // One name for every start of a test's job: a restart after a kill takes its own
            // lease over at once instead of waiting for it to expire.
            .env("ETLHOST_HOLDER", holder)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            metrics,
            stderr,
        }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The metrics text, `None` while the stream has not started serving it.
    pub(crate) fn scrape(&self) -> Option<String> {
        xtask::metrics::scrape(self.metrics)
    }

    /// The acknowledged position from the metrics: `(file, pos)`.
    pub(crate) fn acked(&mut self) -> Option<(String, u64)> {
        xtask::metrics::acked(&self.scrape()?)
    }

    /// Waits until every change up to `target` (the server's binlog head) is acknowledged.
    pub(crate) fn wait_until_acked(&mut self, target: &(String, u64)) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etlhost exited ({status}):\n{}", self.stderr());
            }
            if let Some((file, pos)) = self.acked() {
                if file > target.0 || (file == target.0 && pos >= target.1) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the stream never acknowledged {target:?} (at {:?}):\n{}",
            self.acked(),
            self.stderr()
        );
    }

    /// SIGTERM: drains, records the position, exits 130.
    pub(crate) fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }

    pub(crate) fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, ...) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// The process, for a proxy that holds or kills it.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The port its `/metrics`, `/healthz` and `/readyz` answer on.
    pub(crate) fn metrics_port(&self) -> u16 {
        self.metrics
    }

    /// The exit code, once the process has ended on its own.
    pub(crate) fn exited(&mut self) -> Option<i32> {
        let status = self.child.try_wait().unwrap()?;
        Some(status.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn head(pool: &mysql_async::Pool) -> (String, u64) {
    let mut c = pool.get_conn().await.unwrap();
    let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Every row of `person` as the graph should hold it: column -> text, NULLs left out.
pub(crate) async fn mysql_rows(
    pool: &mysql_async::Pool,
) -> BTreeMap<i64, BTreeMap<String, String>> {
    let mut c = pool.get_conn().await.unwrap();
    let rows: Vec<mysql_async::Row> = c.query("SELECT * FROM person").await.unwrap();
    let mut out = BTreeMap::new();
    for r in rows {
        let cols = r.columns();
        let mut m = BTreeMap::new();
        let mut id = 0;
        for (i, col) in cols.iter().enumerate() {
            let v: mysql_async::Value = r.get(i).unwrap();
            let text = match v {
                mysql_async::Value::NULL => continue,
                mysql_async::Value::Int(n) => n.to_string(),
                mysql_async::Value::UInt(n) => n.to_string(),
                mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                other => other.as_sql(true).trim_matches('\'').to_string(),
            };
            if col.name_str() == "id" {
                id = text.parse().unwrap();
            }
            m.insert(col.name_str().into_owned(), normalise(&text));
        }
        out.insert(id, m);
    }
    out
}

/// Dates as the two sides print them: `2020-01-01 10:00:00.000000` and `2020-01-01T10:00`.
pub(crate) fn normalise(text: &str) -> String {
    let t = text.replace('T', " ");
    let t = t.trim_end_matches(".000000").to_string();
    if t.len() == 16 && t.as_bytes()[13] == b':' {
        format!("{t}:00")
    } else {
        t
    }
}

/// Every `:Person` node's properties as text, by id.
pub(crate) fn graph_rows(db: &str) -> BTreeMap<i64, BTreeMap<String, String>> {
    graph_rows_at(HTTP_PORT, db)
}

pub(crate) fn graph_rows_at(port: u16, db: &str) -> BTreeMap<i64, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for node in &cypher_at(port, db, "MATCH (p:Person) RETURN p") {
        let mut m = BTreeMap::new();
        for (k, v) in node.as_object().unwrap() {
            if k.starts_with('@') || v.is_null() {
                continue;
            }
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            m.insert(k.clone(), normalise(&text));
        }
        let id = node["id"].as_i64().expect("every node has an id");
        assert!(out.insert(id, m).is_none(), "two nodes with id {id}");
    }
    out
}

pub(crate) fn assert_graph_equals(pool_rows: &BTreeMap<i64, BTreeMap<String, String>>, db: &str) {
    let g = graph_rows(db);
    let missing: Vec<_> = pool_rows.keys().filter(|k| !g.contains_key(k)).collect();
    let extra: Vec<_> = g.keys().filter(|k| !pool_rows.contains_key(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing in the graph: {missing:?}, deleted in MySQL but in the graph: {extra:?}"
    );
    for (id, row) in pool_rows {
        assert_eq!(&g[id], row, "node {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn st_snapshot_then_changes_survive_sigkill_and_stop_on_sigterm() {
    let pool = mysql("st_basic").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100), score DECIMAL(10,2), \
         born DATETIME(6), big BIGINT UNSIGNED, mid MEDIUMINT) CHARACTER SET utf8mb4",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO person SELECT seq, CONCAT('p', seq), seq / 4, \
         TIMESTAMP('2020-01-01 10:00:00.123456') + INTERVAL seq MINUTE, NULL, seq \
         FROM seq_1_to_300",
    )
    .await;
    let _g = graph("st_basic").await;
    let (dir, spec, mut job) = start_stream("st_basic");
    // Changes while the snapshot may still run, and after: all of them must arrive.
    exec(&pool, "INSERT INTO person (id, name) VALUES (1001, 'new')").await;
    job.wait_until_acked(&head(&pool).await);
    exec(
        &pool,
        // The binlog holds a MEDIUMINT in three bytes whose sign the reader must extend.
        "UPDATE person SET name = 'Ünïcode 🦀', big = 18446744073709551615, mid = -8388608 \
         WHERE id = 1",
    )
    .await;
    exec(&pool, "DELETE FROM person WHERE id BETWEEN 10 AND 19").await;
    // A new primary key is the old row's delete and the new row's upsert.
    exec(
        &pool,
        "UPDATE person SET id = id + 5000 WHERE id BETWEEN 20 AND 24",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO person (id, name, score, mid) SELECT seq, 'batch', 1.5, -seq \
         FROM seq_2000_to_2199",
    )
    .await;
    exec(
        &pool,
        "UPDATE person SET score = score + 1 WHERE id % 7 = 0",
    )
    .await;
    job.wait_until_acked(&head(&pool).await);
    assert_graph_equals(&mysql_rows(&pool).await, "st_basic");

    // SIGKILL: nothing recorded after the last interval is lost, what is replayed is harmless.
    exec(
        &pool,
        "UPDATE person SET name = 'before kill' WHERE id < 100",
    )
    .await;
    job.sigkill();
    exec(&pool, "DELETE FROM person WHERE id BETWEEN 30 AND 39").await;
    // A schema change while it is down: later rows carry the new column.
    exec(&pool, "ALTER TABLE person ADD COLUMN email VARCHAR(100)").await;
    exec(
        &pool,
        "INSERT INTO person (id, name, email) VALUES (3000, 'mail', 'a@b.c')",
    )
    .await;
    exec(
        &pool,
        "UPDATE person SET email = CONCAT(id, '@x') WHERE id BETWEEN 40 AND 49",
    )
    .await;
    let mut job = Running::start(&spec, &dir, false);
    job.wait_until_acked(&head(&pool).await);
    assert_graph_equals(&mysql_rows(&pool).await, "st_basic");

    let target = head(&pool).await;
    let stderr_path = job.stderr.clone();
    let code = job.terminate();
    assert_eq!(
        code,
        130,
        "SIGTERM exits 130:\n{}",
        std::fs::read_to_string(stderr_path).unwrap_or_default()
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "interrupted");
    assert_eq!(summary["stream"]["position"]["file"], target.0.as_str());
    assert!(summary["stream"]["position"]["pos"].as_u64().unwrap() >= target.1);
    assert_eq!(summary["stream"]["lag_seconds"], 0);
    // The position is in the graph (no local file), and the lease was released at once.
    assert!(!dir.join("cp/st_basic.stream.json").exists());
    assert_eq!(
        recorded_position("st_basic", "st_basic"),
        Some(summary["stream"]["position"].clone())
    );
    let job = cypher(
        "st_basic",
        "MATCH (s:EtlhostStream {job: 'st_basic'}) RETURN s.snapshot_done AS done, s.expires AS expires, s.holder AS holder",
    );
    assert_eq!(job[0]["done"], true);
    assert_eq!(job[0]["expires"], 0);
    assert_eq!(job[0]["holder"], "e2e");
}

/// Where the stream of `job` resumes, as its records in graph `db` say (the job's record, or a
/// writer's that is further on, as etlhost reads them); `None` before it has any.
pub(crate) fn recorded_position(db: &str, job: &str) -> Option<serde_json::Value> {
    let rows = cypher(
        db,
        &format!(
            "MATCH (s:EtlhostStream {{job: '{job}'}}) RETURN s.resume AS r UNION ALL \
             MATCH (w:EtlhostStreamWriter {{job: '{job}'}}) RETURN w.resume AS r"
        ),
    );
    rows.iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(r["r"].as_str()?).ok())
        .max_by_key(|p| {
            (
                p["file"].as_str().unwrap_or_default().to_string(),
                p["pos"].as_u64().unwrap_or(0),
                p["skip"].as_u64().unwrap_or(0),
            )
        })
}

/// `etlhost run` of a spec, to the end: exit code and stderr.
pub(crate) fn run_to_end(spec: &Path, extra: &[&str]) -> (i32, String) {
    let out = etlhost_command()
        .arg("run")
        .arg(spec)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("ETLHOST_HOLDER", "e2e")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn first_error(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or(stderr)
}

/// A session logging partial images (`binlog_row_image = MINIMAL`) while the server's global
/// setting is FULL: the stream stops naming the fix instead of writing the values it has onto
/// the wrong columns.
#[tokio::test(flavor = "multi_thread")]
async fn st_a_partial_row_image_stops_the_stream_naming_the_fix() {
    let pool = mysql("st_partial").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100), score INT)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO person SELECT seq, CONCAT('p', seq), seq FROM seq_1_to_10",
    )
    .await;
    let _g = graph("st_partial").await;
    let (_dir, _spec, mut job) = start_stream("st_partial");
    job.wait_until_acked(&head(&pool).await);
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop("SET SESSION binlog_row_image = 'MINIMAL'")
        .await
        .unwrap();
    c.query_drop("UPDATE person SET score = 0 WHERE id = 2")
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Some(code) = job.exited() {
            break code;
        }
        assert!(Instant::now() < deadline, "the stream did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = job.stderr();
    assert_eq!(code, 3, "{stderr}");
    // The position varies from run to run; the rest of the text is exact.
    let (at, what) = first_error(&stderr).split_once(" holds ").unwrap();
    assert!(
        at.starts_with("error: job failed: plugin mysql: the binlog at binlog."),
        "{stderr}"
    );
    assert_eq!(
        what,
        "a change of `st_partial.person` without every column (a session set binlog_row_image \
         to MINIMAL or NOBLOB), which the stream cannot map: keep binlog_row_image = FULL in \
         every session that writes the tables it follows, then run again with --fresh (the \
         events already logged stay partial)"
    );
    let g = graph_rows("st_partial");
    assert_eq!(g.len(), 10);
    assert_eq!(g[&2]["score"], "2");
    assert_eq!(g[&2]["name"], "p2");
}

#[tokio::test(flavor = "multi_thread")]
async fn st_a_user_without_replication_privileges_is_refused() {
    let pool = mysql("st_priv").await;
    exec(&pool, "CREATE TABLE person (id INT PRIMARY KEY)").await;
    // The test user cannot grant: root does, over the shared server's socket.
    for host in ["127.0.0.1", "localhost"] {
        let sql = format!(
            "DROP USER IF EXISTS 'st_norepl'@'{host}'; \
             CREATE USER 'st_norepl'@'{host}' IDENTIFIED BY 'etl'; \
             GRANT SELECT ON st_priv.* TO 'st_norepl'@'{host}';"
        );
        let ok = std::process::Command::new("mariadb")
            .args(["-uroot", "-e", &sql])
            .status()
            .unwrap();
        assert!(ok.success(), "{sql}");
    }
    let dir = scratch_dir("st_priv");
    let spec = dir.join("st_priv.yaml");
    let text = stream_spec(
        "st_priv",
        "mysql://127.0.0.1:3306/st_priv",
        "st_priv",
        &dir,
        "",
    )
    .replace("user: etl,", "user: st_norepl,");
    std::fs::write(&spec, text).unwrap();
    let (code, stderr) = run_to_end(&spec, &["--fresh"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        "error: cannot stream from the source: plugin mysql: user st_norepl@localhost lacks the \
         REPLICATION SLAVE and REPLICATION CLIENT privileges that streaming needs: GRANT \
         REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'st_norepl'@'localhost'"
    );
}

#[test]
fn st_a_streaming_flow_without_a_delete_query_is_refused_at_validate() {
    let dir = scratch_dir("st_nodelete");
    let spec = dir.join("st_nodelete.yaml");
    let text = stream_spec(
        "st_nodelete",
        "mysql://127.0.0.1:3306/st_nodelete",
        "st_nodelete",
        &dir,
        "",
    )
    .replace(&format!("    delete_query: \"{DELETE_QUERY}\"\n"), "");
    std::fs::write(&spec, text).unwrap();
    let out = etlhost_command()
        .args(["validate", "--offline"])
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: {}:12: sink.options.delete_query: missing: a streaming flow also deletes rows; \
             give the Cypher for them (`$batch` holds the deleted rows as they were, e.g. `UNWIND \
             $batch AS row MATCH (n:Person {{id: row.id}}) DETACH DELETE n`)",
            spec.display()
        )
    );
}

pub(crate) async fn private_pool(db: &ExtraMariaDb, name: &str) -> mysql_async::Pool {
    let url = format!("mysql://etl:etl@127.0.0.1:{}/mysql", db.port);
    let admin = mysql_async::Pool::new(url.as_str());
    exec(&admin, &format!("CREATE DATABASE IF NOT EXISTS {name}")).await;
    admin.disconnect().await.unwrap();
    mysql_async::Pool::new(format!("mysql://etl:etl@127.0.0.1:{}/{name}", db.port).as_str())
}

/// Purges the binary logs of `server` before `newest`; MariaDB keeps a log until its binlog
/// checkpoint has passed it, so this asks until it is gone.
pub(crate) async fn purge_binary_logs_to(
    pool: &mysql_async::Pool,
    server: &ExtraMariaDb,
    newest: &str,
) {
    let start = Instant::now();
    loop {
        exec(pool, &format!("PURGE BINARY LOGS TO '{newest}'")).await;
        let logs = server.root_sql("SHOW BINARY LOGS").unwrap();
        if logs.lines().next().is_some_and(|l| l.starts_with(newest)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cannot purge: {logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn st_servers_that_cannot_stream_are_refused_with_the_fix() {
    let dir = scratch_dir("st_settings");
    // Binary logging off: a server of its own, without --log-bin.
    let off = ExtraMariaDb::start(&dir.join("off"), &[]).unwrap();
    let pool = private_pool(&off, "st_settings").await;
    exec(&pool, "CREATE TABLE person (id INT PRIMARY KEY)").await;
    let url = format!("mysql://127.0.0.1:{}/st_settings", off.port);
    let spec = dir.join("off.yaml");
    std::fs::write(&spec, stream_spec("st_off", &url, "st_settings", &dir, "")).unwrap();
    let (code, stderr) = run_to_end(&spec, &["--fresh"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        "error: cannot stream from the source: plugin mysql: the server's binary log is off \
         (log_bin = OFF), and streaming reads it: restart the server with \
         --log-bin=<dir>/binlog --binlog-format=ROW --binlog-row-image=FULL --server-id=1"
    );
    drop(pool);
    drop(off);

    let on = ExtraMariaDb::start(
        &dir.join("on"),
        &[
            "--log-bin={dir}/binlog".into(),
            "--binlog-format=ROW".into(),
            "--server-id=1".into(),
        ],
    )
    .unwrap();
    let pool = private_pool(&on, "st_settings").await;
    exec(&pool, "CREATE TABLE person (id INT PRIMARY KEY)").await;
    let url = format!("mysql://127.0.0.1:{}/st_settings", on.port);
    let _g = graph("st_settings").await;
    let spec = dir.join("on.yaml");
    std::fs::write(
        &spec,
        stream_spec("st_on", &url, "st_settings", &dir, "snapshot: false\n"),
    )
    .unwrap();
    on.root_sql("SET GLOBAL binlog_format = 'MIXED'").unwrap();
    let (code, stderr) = run_to_end(&spec, &["--fresh"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        "error: cannot stream from the source: plugin mysql: binlog_format is MIXED, streaming \
         needs ROW: SET GLOBAL binlog_format = 'ROW' (and binlog-format=ROW in the server's \
         configuration)"
    );
    on.root_sql("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'MINIMAL'")
        .unwrap();
    let (code, stderr) = run_to_end(&spec, &["--fresh"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        first_error(&stderr),
        "error: cannot stream from the source: plugin mysql: binlog_row_image is MINIMAL, \
         streaming needs FULL: SET GLOBAL binlog_row_image = 'FULL' (and binlog-row-image=FULL \
         in the server's configuration)"
    );
    on.root_sql("SET GLOBAL binlog_row_image = 'FULL'").unwrap();

    // A recorded position the server has purged since: a clear error, and --fresh starts over.
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    let recorded = job.acked().unwrap();
    assert_eq!(job.terminate(), 130);
    exec(&pool, "INSERT INTO person VALUES (1)").await;
    exec(&pool, "FLUSH BINARY LOGS").await;
    let newest = head(&pool).await.0;
    purge_binary_logs_to(&pool, &on, &newest).await;
    let (code, stderr) = run_to_end(&spec, &[]);
    assert_eq!(code, 3, "{stderr}");
    let position = recorded_position("st_settings", "st_on").unwrap();
    let gtid = position["gtid"].as_str().unwrap();
    assert_eq!(
        first_error(&stderr),
        format!(
            "error: job failed: plugin mysql: the binlog position {}:{} (GTID {gtid}) is no longer \
             on the server (purged; the oldest binary log is {newest}): run with --fresh to start \
             over with a new snapshot",
            recorded.0, recorded.1
        )
    );
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(job.terminate(), 130);
}

/// Rows of a Cypher query through the HTTP API of the shared server.
pub(crate) fn cypher(db: &str, q: &str) -> Vec<serde_json::Value> {
    cypher_at(HTTP_PORT, db, q)
}

/// Rows of a Cypher query through the HTTP API on `port`.
pub(crate) fn cypher_at(port: u16, db: &str, q: &str) -> Vec<serde_json::Value> {
    let body = serde_json::json!({"language": "cypher", "command": q});
    let (code, text) = xtask::graph::http_at(
        port,
        "POST",
        &format!("/api/v1/command/{db}"),
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(code, 200, "{q}: {text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["result"].as_array().unwrap().clone()
}

/// A small deterministic generator (no dependency for randomness in a test).
struct Lcg(u64);

impl Lcg {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

const BIG_SPEC_FLOWS: &str = "flows:
  - name: teams
    source: {options: {table: team}}
    sink:
      options:
        query: \"UNWIND $batch AS row MERGE (t:Team {id: row.id}) SET t.name = row.name\"
        delete_query: \"UNWIND $batch AS row MATCH (t:Team {id: row.id}) DETACH DELETE t\"
  - name: members
    source: {options: {table: member}}
    sink:
      options:
        query: \"UNWIND $batch AS row MERGE (m:Member {id: row.id}) SET m.name = row.name\"
        delete_query: \"UNWIND $batch AS row MATCH (m:Member {id: row.id}) DETACH DELETE m\"
  - name: member_team
    after: [teams, members]
    source: {options: {table: member}}
    sink:
      options:
        query: \"UNWIND $batch AS row MATCH (m:Member {id: row.id}) OPTIONAL MATCH (m)-[r:TEAM]->() DELETE r WITH DISTINCT m, row WHERE row.team_id IS NOT NULL MATCH (t:Team {id: row.team_id}) MERGE (m)-[:TEAM]->(t)\"
        delete_query: \"UNWIND $batch AS row MATCH (m:Member {id: row.id})-[r:TEAM]->() DELETE r\"
";

/// `team` and `member`, whose `team_id` refers to a team or is NULL.
pub(crate) async fn team_and_member(pool: &mysql_async::Pool) {
    exec(
        pool,
        "CREATE TABLE team (id INT PRIMARY KEY, name VARCHAR(50))",
    )
    .await;
    exec(
        pool,
        "CREATE TABLE member (id INT PRIMARY KEY, name VARCHAR(50), team_id INT NULL, \
         FOREIGN KEY (team_id) REFERENCES team (id))",
    )
    .await;
}

/// The random workload's state: teams and members are added with ids above the tables' own.
pub(crate) struct Workload {
    rng: Lcg,
    next_team: u64,
    next_member: u64,
}

impl Workload {
    /// One random insert, update (key changes included) or delete, of a team or a member.
    pub(crate) fn statement(&mut self) -> String {
        let member = 1 + self.rng.below(self.next_member);
        let team = 1 + self.rng.below(self.next_team.min(400));
        match self.rng.below(10) {
            0 => {
                self.next_team += 1;
                let id = self.next_team;
                format!("INSERT INTO team VALUES ({id}, 'nt{id}')")
            }
            1 | 2 => {
                self.next_member += 1;
                format!(
                    "INSERT INTO member VALUES ({}, 'nm', {team})",
                    self.next_member
                )
            }
            3 => format!("UPDATE member SET name = CONCAT(name, 'x') WHERE id = {member}"),
            4 | 5 => format!("UPDATE member SET team_id = {team} WHERE id = {member}"),
            6 => format!("UPDATE member SET team_id = NULL WHERE id = {member}"),
            7 => {
                self.next_member += 1;
                format!(
                    "UPDATE member SET id = {} WHERE id = {member}",
                    self.next_member
                )
            }
            8 => format!("DELETE FROM member WHERE id = {member}"),
            _ => format!("DELETE FROM team WHERE id = {team}"),
        }
    }
}

/// The graph of `st_big` holds exactly MySQL's teams, members and member-team links, all read
/// by one binlog connection.
pub(crate) async fn assert_the_graph_equals(pool: &mysql_async::Pool) {
    let mut c = pool.get_conn().await.unwrap();
    // Three streaming flows over two tables: one binlog connection.
    let dumps: i64 = c
        .query_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dumps, 1, "binlog connections");
    let teams: BTreeMap<i64, String> = c
        .query::<(i64, String), _>("SELECT id, name FROM team")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let members: BTreeMap<i64, (String, Option<i64>)> = c
        .query::<(i64, String, Option<i64>), _>("SELECT id, name, team_id FROM member")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, name, team)| (id, (name, team)))
        .collect();
    let g_teams: BTreeMap<i64, String> =
        cypher("st_big", "MATCH (t:Team) RETURN t.id AS id, t.name AS name")
            .iter()
            .map(|r| {
                (
                    r["id"].as_i64().unwrap(),
                    r["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    assert_eq!(g_teams, teams, "teams");
    let g_members: BTreeMap<i64, String> = cypher(
        "st_big",
        "MATCH (m:Member) RETURN m.id AS id, m.name AS name",
    )
    .iter()
    .map(|r| {
        (
            r["id"].as_i64().unwrap(),
            r["name"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    let want: BTreeMap<i64, String> = members.iter().map(|(k, v)| (*k, v.0.clone())).collect();
    assert_eq!(g_members.len(), want.len(), "member count");
    assert_eq!(g_members, want, "members");
    let mut rels: Vec<(i64, i64)> = cypher(
        "st_big",
        "MATCH (m:Member)-[:TEAM]->(t:Team) RETURN m.id AS m, t.id AS t",
    )
    .iter()
    .map(|r| (r["m"].as_i64().unwrap(), r["t"].as_i64().unwrap()))
    .collect();
    rels.sort();
    let mut want_rels: Vec<(i64, i64)> = members
        .iter()
        .filter_map(|(id, (_, team))| team.map(|t| (*id, t)))
        .collect();
    want_rels.sort();
    assert_eq!(
        rels.len(),
        want_rels.len(),
        "one relationship per non-NULL foreign key"
    );
    assert_eq!(rels, want_rels);
}

#[tokio::test(flavor = "multi_thread")]
async fn st_random_changes_with_a_kill_and_a_mysql_restart_leave_the_graph_equal() {
    const CHANGES: u64 = 20_000;
    let dir = scratch_dir("st_big");
    let mut server = ExtraMariaDb::start(
        &dir.join("mysql"),
        &[
            "--log-bin={dir}/binlog".into(),
            "--binlog-format=ROW".into(),
            "--server-id=1".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
        ],
    )
    .unwrap();
    let mut pool = private_pool(&server, "st_big").await;
    team_and_member(&pool).await;
    exec(
        &pool,
        "INSERT INTO team SELECT seq, CONCAT('t', seq) FROM seq_1_to_200",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO member SELECT seq, CONCAT('m', seq), IF(seq % 5 = 0, NULL, seq % 200 + 1) \
         FROM seq_1_to_3000",
    )
    .await;
    let _g = graph("st_big").await;
    let url = format!("mysql://127.0.0.1:{}/st_big", server.port);
    let text = SpecBuilder::new("st_big")
        .top("mode: stream")
        .top(format_args!(
            "checkpoint: {{dir: {}, interval: 100ms}}",
            dir.join("cp").display()
        ))
        .source_url(&url)
        .sink_bolt_db("st_big")
        .sink_line("parallelism: 2")
        .sink_option(
            "setup: [\"CREATE INDEX member_id IF NOT EXISTS FOR (m:Member) ON (m.id)\", \
             \"CREATE INDEX team_id IF NOT EXISTS FOR (t:Team) ON (t.id)\"]",
        )
        .extra_yaml(BIG_SPEC_FLOWS)
        .build();
    let spec = dir.join("st_big.yaml");
    std::fs::write(&spec, text).unwrap();
    let mut job = Running::start(&spec, &dir, true);

    let mut work = Workload {
        rng: Lcg(15),
        next_team: 10_000,
        next_member: 10_000,
    };
    let mut done = 0;
    let mut restarted = false;
    let mut killed = false;
    while done < CHANGES {
        if !killed && done >= CHANGES / 3 {
            // SIGKILL mid-stream, and on again from the recorded position.
            killed = true;
            job.sigkill();
            job = Running::start(&spec, &dir, false);
        }
        if !restarted && done >= 2 * CHANGES / 3 {
            // MariaDB crashes and comes back: the stream reconnects from where it got.
            restarted = true;
            pool.disconnect().await.unwrap();
            server.restart().unwrap();
            pool = mysql_async::Pool::new(
                format!("mysql://etl:etl@127.0.0.1:{}/st_big", server.port).as_str(),
            );
        }
        let mut c = pool.get_conn().await.unwrap();
        // One to four statements a transaction.
        let n = 1 + work.rng.below(4);
        c.query_drop("BEGIN").await.unwrap();
        for _ in 0..n {
            let sql = work.statement();
            // A foreign key refusal or a missing row is part of the game: only real changes count.
            if let Ok(()) = c.query_drop(&sql).await {
                done += c.affected_rows();
            }
        }
        c.query_drop("COMMIT").await.unwrap();
    }
    let target = head(&pool).await;
    job.wait_until_acked(&target);

    assert_the_graph_equals(&pool).await;
    assert_eq!(job.terminate(), 130);
}

#[tokio::test(flavor = "multi_thread")]
async fn st_init_mode_stream_writes_flows_that_keep_relationships_in_sync() {
    let pool = mysql("st_init").await;
    team_and_member(&pool).await;
    exec(
        &pool,
        "CREATE TABLE likes (a INT, b INT, since INT, PRIMARY KEY (a, b), \
         FOREIGN KEY (a) REFERENCES member (id), FOREIGN KEY (b) REFERENCES member (id))",
    )
    .await;
    exec(&pool, "INSERT INTO team VALUES (1, 'red'), (2, 'blue')").await;
    exec(
        &pool,
        "INSERT INTO member VALUES (1, 'ann', 1), (2, 'bob', 1), (3, 'cy', NULL)",
    )
    .await;
    exec(&pool, "INSERT INTO likes VALUES (1, 2, 2020), (2, 1, 2021)").await;
    let _g = graph("st_init").await;
    let dir = scratch_dir("st_init");
    let spec = dir.join("st_init.yaml");
    let out = etlhost_command()
        .arg("init")
        .arg(&spec)
        .args([
            "--mode",
            "stream",
            "--source-url",
            "mysql://127.0.0.1:3306/st_init",
        ])
        .args(["--source-user", "etl", "--source-password", "etl"])
        .args(["--sink-uri", &format!("bolt://127.0.0.1:{BOLT_PORT}")])
        .args(["--sink-user", GRAPH_USER, "--sink-password", GRAPH_PASSWORD])
        .args(["--sink-database", "st_init"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&spec).unwrap()
        + &format!(
            "checkpoint: {{dir: {}, interval: 100ms}}\n",
            dir.join("cp").display()
        );
    assert!(text.contains("mode: stream"), "{text}");
    std::fs::write(&spec, text).unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    exec(&pool, "INSERT INTO team VALUES (3, 'green')").await;
    exec(&pool, "INSERT INTO member VALUES (4, 'dee', 3)").await;
    exec(&pool, "UPDATE member SET team_id = 2 WHERE id = 1").await;
    exec(&pool, "UPDATE member SET team_id = NULL WHERE id = 2").await;
    exec(&pool, "UPDATE member SET team_id = 3 WHERE id = 3").await;
    exec(&pool, "INSERT INTO likes VALUES (4, 1, 2024)").await;
    exec(&pool, "DELETE FROM likes WHERE a = 1 AND b = 2").await;
    exec(&pool, "UPDATE likes SET since = 1999 WHERE a = 2").await;
    exec(&pool, "DELETE FROM likes WHERE a = 2").await;
    exec(&pool, "DELETE FROM member WHERE id = 2").await;
    exec(&pool, "UPDATE member SET id = 30 WHERE id = 3").await;
    job.wait_until_acked(&head(&pool).await);
    let rows = |q: &str| {
        let mut v: Vec<String> = cypher("st_init", q).iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        rows("MATCH (m:Member) RETURN m.id AS id, m.name AS name"),
        [
            r#"{"id":1,"name":"ann"}"#,
            r#"{"id":30,"name":"cy"}"#,
            r#"{"id":4,"name":"dee"}"#
        ]
    );
    assert_eq!(
        rows("MATCH (m:Member)-[:TEAM]->(t:Team) RETURN m.id AS m, t.id AS t"),
        [r#"{"m":1,"t":2}"#, r#"{"m":30,"t":3}"#, r#"{"m":4,"t":3}"#]
    );
    assert_eq!(
        rows("MATCH (a:Member)-[r:LIKES]->(b:Member) RETURN a.id AS a, b.id AS b, r.since AS s"),
        [r#"{"a":4,"b":1,"s":2024}"#]
    );
    assert_eq!(job.terminate(), 130);
}

#[tokio::test(flavor = "multi_thread")]
async fn st_the_stream_survives_a_bolt_server_restart() {
    let pool = person_table("st_bolt", 500, "p").await;
    let dir = scratch_dir("st_bolt");
    let mut server = xtask::services::ExtraArcadeDb::start(&dir.join("home"), &[]).unwrap();
    xtask::graph::fresh_graph_at(server.http, "st_bolt").unwrap();
    let text = stream_spec(
        "st_bolt",
        "mysql://127.0.0.1:3306/st_bolt",
        "st_bolt",
        &dir,
        "",
    )
    .replace(
        &format!("bolt://127.0.0.1:{BOLT_PORT}"),
        &format!("bolt://127.0.0.1:{}", server.bolt),
    );
    let spec = dir.join("st_bolt.yaml");
    std::fs::write(&spec, text).unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    // Changes keep coming while the graph server is down and starting again.
    let restart = std::thread::spawn(move || {
        server.restart().unwrap();
        server
    });
    let mut id = 1000;
    while !restart.is_finished() {
        id += 1;
        exec(
            &pool,
            &format!("INSERT INTO person VALUES ({id}, 'during')"),
        )
        .await;
        exec(
            &pool,
            &format!("UPDATE person SET name = 'moved' WHERE id = {}", id - 900),
        )
        .await;
    }
    let server = restart.join().unwrap();
    exec(&pool, "DELETE FROM person WHERE id < 50").await;
    job.wait_until_acked(&head(&pool).await);
    assert!(
        job.stderr().contains("writing changes failed"),
        "no write failed while the server was down:\n{}",
        job.stderr()
    );
    let want = mysql_rows(&pool).await;
    let got = graph_rows_at(server.http, "st_bolt");
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!(job.terminate(), 130);
}

#[tokio::test(flavor = "multi_thread")]
async fn st_a_snapshot_split_is_read_on_from_its_safe_key_after_a_mysql_restart() {
    const ROWS: u64 = 100_000;
    let dir = scratch_dir("st_split_retry");
    let pool = person_table("st_split", ROWS, "p").await;
    pool.disconnect().await.unwrap();
    let _g = graph("st_split").await;
    // The job reads through a proxy, which stops the rows mid-split and then drops every
    // connection, as a restarting server does; the splits hold about 2 MB between them.
    let proxy = Proxy::start(MYSQL_PORT);
    proxy.hold_after(Way::ToClient, 600_000);
    let text = SpecBuilder::new("st_split")
        .top("parallelism: 2")
        .top(format_args!(
            "checkpoint: {{dir: {}}}",
            dir.join("cp").display()
        ))
        .source_url(&format!("mysql://127.0.0.1:{}/st_split", proxy.port))
        .table("person")
        .partition("id", 0)
        .source_option("fetch_size: 100")
        .sink_bolt("st_split", NODE_QUERY)
        .setup(PERSON_ID_INDEX)
        .batch(100)
        .sink_line("retry_backoff: 200ms")
        .build();
    let spec = dir.join("st_split.yaml");
    std::fs::write(&spec, text).unwrap();
    let summary = dir.join("summary.json");
    let mut job = crate::support::spawn_run(&spec, &summary, Stdio::null());
    proxy.wait_holding(&mut job);
    proxy.cut();
    proxy.resume();
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reading the split again after key"),
        "no split was read again: {stderr}"
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["read"], ROWS, "every row read once");
    assert_eq!(s["written"], ROWS);
    let n = xtask::graph::graph_count("st_split", "MATCH (p:Person) RETURN count(p) AS n").unwrap();
    assert_eq!(n, ROWS);
    eprintln!(
        "split retry: {} bytes read through the proxy",
        proxy.sent(Way::ToClient)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn st_enum_and_set_columns_stream_as_their_names() {
    let pool = mysql("st_enum").await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, mood ENUM('ok', 'it''s bad', 'great'), \
         tags SET('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'))",
    )
    .await;
    exec(&pool, "INSERT INTO person VALUES (1, 'ok', 'a')").await;
    let _g = graph("st_enum").await;
    let (_, _, mut job) = start_stream("st_enum");
    job.wait_until_acked(&head(&pool).await);
    exec(
        &pool,
        "INSERT INTO person VALUES (2, 'it''s bad', 'b,i'), (3, NULL, '')",
    )
    .await;
    exec(
        &pool,
        "UPDATE person SET mood = 'great', tags = 'a,c,h' WHERE id = 1",
    )
    .await;
    job.wait_until_acked(&head(&pool).await);
    let mut rows: Vec<String> = cypher(
        "st_enum",
        "MATCH (p:Person) RETURN p.id AS id, p.mood AS mood, p.tags AS tags",
    )
    .iter()
    .map(|r| r.to_string())
    .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            r#"{"id":1,"mood":"great","tags":["a","c","h"]}"#,
            r#"{"id":2,"mood":"it's bad","tags":["b","i"]}"#,
            r#"{"id":3,"mood":null,"tags":[]}"#
        ]
    );
    assert_eq!(job.terminate(), 130);
}

/// `TRUNCATE TABLE` of a streamed table removes its nodes and their relationships, in order with
/// the changes around it (rows before it go, rows after it stay), more rows than one page of
/// the lookup; `etlhost verify` then finds the graph equal to MySQL. DROP TABLE still stops the
/// stream: `stream_cascade::sc_a_drop_of_a_streamed_table_stops_the_stream_at_its_position`.
#[tokio::test(flavor = "multi_thread")]
async fn st_a_truncate_of_a_streamed_table_removes_its_nodes_in_order() {
    let db = "st_truncate";
    let pool = mysql(db).await;
    team_and_member(&pool).await;
    exec(&pool, "INSERT INTO team VALUES (1, 'red'), (2, 'blue')").await;
    let values: Vec<String> = (1..=6_000)
        .map(|i| format!("({i}, 'm{i}', {})", 1 + i % 2))
        .collect();
    exec(
        &pool,
        &format!("INSERT INTO member VALUES {}", values.join(", ")),
    )
    .await;
    let _g = graph(db).await;
    let dir = scratch_dir(db);
    let spec = crate::stream_cascade::init_stream_spec(db, &dir);
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    exec(&pool, "INSERT INTO member VALUES (6001, 'late', 1)").await;
    exec(
        &pool,
        "UPDATE member SET name = 'moved', team_id = 1 WHERE id = 2",
    )
    .await;
    exec(&pool, "TRUNCATE TABLE member").await;
    exec(
        &pool,
        "INSERT INTO member VALUES (7001, 'a', 1), (7002, 'b', 2), (7003, 'c', NULL)",
    )
    .await;
    exec(&pool, "UPDATE member SET name = 'bb' WHERE id = 7002").await;
    job.wait_until_acked(&head(&pool).await);
    let rows = |q: &str| {
        let mut v: Vec<String> = cypher(db, q).iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        rows("MATCH (m:Member) RETURN m.id AS id, m.name AS name"),
        [
            r#"{"id":7001,"name":"a"}"#,
            r#"{"id":7002,"name":"bb"}"#,
            r#"{"id":7003,"name":"c"}"#
        ]
    );
    assert_eq!(
        rows("MATCH (m)-[:TEAM]->(t:Team) RETURN m.id AS m, t.id AS t"),
        [r#"{"m":7001,"t":1}"#, r#"{"m":7002,"t":2}"#]
    );
    let out = etlhost_command().arg("verify").arg(&spec).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(job.terminate(), 130);
}
