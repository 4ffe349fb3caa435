//! `mode: stream` from PostgreSQL (issue 33): the snapshot at the slot's exported snapshot, then
//! pgoutput's inserts, updates (key changes too), deletes and TRUNCATE reach the graph; an
//! unchanged TOASTed value is never overwritten with NULL; foreign-key cascades are the log's
//! (nothing derived twice); SIGKILL and a server restart resume; the slot confirms only what the
//! host recorded; each setting that cannot stream is refused with its fix.
//!
//! Synchronisation polls the graph until it equals the table (a generous deadline), so no test
//! depends on timing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use xtask::postgres::{ExtraPgOptions, ExtraPostgres};
use xtask::services::PG_PORT;

use crate::stream::{graph_rows_at, stream_spec, Running};
use crate::support::{pg_database, pg_sql_at, pg_url_at, scratch_dir};

type Rows = BTreeMap<i64, BTreeMap<String, String>>;

/// A fresh database `db` on the server on `port`, no slot of an earlier run's left on it.
fn fresh_db(port: u16, db: &str) {
    pg_sql_at(
        port,
        "etl",
        &format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{db}' AND NOT active"
        ),
    );
    if port == PG_PORT {
        pg_database(db);
    } else {
        // Not in a transaction, as pg_sql_at runs its SQL.
        let out = xtask::postgres::psql(port)
            .args(["-c", &format!("CREATE DATABASE \"{db}\" OWNER etl")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every row of `person` as the graph holds it: column -> text, NULLs left out.
fn pg_rows(port: u16, db: &str) -> Rows {
    let text = pg_sql_at(
        port,
        db,
        "SELECT json_strip_nulls(row_to_json(p))::text FROM person p ORDER BY id",
    );
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut m = BTreeMap::new();
        for (k, v) in v.as_object().unwrap() {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            m.insert(k.clone(), text);
        }
        out.insert(v["id"].as_i64().unwrap(), m);
    }
    out
}

/// Waits until the graph's `:Person` nodes equal the table.
fn wait_equal(job: &mut Running, port: u16, db: &str, graph_port: u16) {
    let start = Instant::now();
    let mut last = (Rows::new(), Rows::new());
    while start.elapsed() < Duration::from_secs(120) {
        if let Some(code) = job.exited() {
            panic!("etlhost exited ({code}):\n{}", job.stderr());
        }
        let (want, got) = (pg_rows(port, db), graph_rows_at(graph_port, db));
        if want == got {
            return;
        }
        last = (want, got);
        std::thread::sleep(Duration::from_millis(200));
    }
    let diff: Vec<_> = last
        .0
        .iter()
        .filter(|(k, v)| last.1.get(k) != Some(v))
        .map(|(k, _)| *k)
        .collect();
    panic!(
        "the graph never equalled the table: {} rows vs {} nodes, differing ids {diff:?}\n{}",
        last.0.len(),
        last.1.len(),
        job.stderr()
    );
}

const PERSON: &str = "CREATE TABLE person (id int PRIMARY KEY, name text, bio text, n bigint);
INSERT INTO person SELECT i, 'p' || i, NULL, i * 10 FROM generate_series(1, 50) i;";

/// How TRUNCATE finds the table's nodes in the graph.
const ROWS_QUERY: &str = "rows_query: \"UNWIND $batch AS row MATCH (n:Person) WHERE all(k IN keys(row) WHERE n[k] = row[k]) RETURN n.id AS id, n.name AS name, n.bio AS bio, n.n AS n\"\n";

/// A text of about 13 kB that compresses badly, so PostgreSQL keeps it out of line (TOASTed).
const BIG: &str = "(SELECT string_agg(md5(i::text || 'x'), '') FROM generate_series(1, 400) i)";

/// The one-flow streaming job of `stream.rs` reading `person` of PostgreSQL database `db` into a
/// fresh graph database `db`.
fn spec(dir: &Path, name: &str, port: u16, db: &str, extra: &str) -> std::path::PathBuf {
    xtask::graph::fresh_graph(db).expect("create graph database");
    let text = stream_spec(name, &pg_url_at(port, db), db, dir, extra).replacen(
        "plugin: mysql",
        "plugin: postgres",
        1,
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Changes of every kind while streaming, a kill and a resume: the graph ends equal.
#[test]
fn pg_stream_changes_toast_kill_and_resume() {
    let db = "e_pgstream";
    fresh_db(PG_PORT, db);
    pg_sql_at(PG_PORT, db, PERSON);
    let dir = scratch_dir(db);
    let spec = spec(&dir, db, PG_PORT, db, ROWS_QUERY);
    let mut job = Running::start(&spec, &dir, true);
    let graph = xtask::services::HTTP_PORT;
    wait_equal(&mut job, PG_PORT, db, graph);
    assert!(
        job.stderr().is_empty() || !job.stderr().contains("ERROR"),
        "{}",
        job.stderr()
    );

    pg_sql_at(
        PG_PORT,
        db,
        &format!(
            "INSERT INTO person SELECT i, 'p' || i, NULL, i FROM generate_series(51, 60) i;
             UPDATE person SET name = 'renamed' || id WHERE id <= 10;
             DELETE FROM person WHERE id BETWEEN 11 AND 15;
             UPDATE person SET id = 1020 WHERE id = 20;
             UPDATE person SET bio = {BIG} WHERE id = 30;"
        ),
    );
    wait_equal(&mut job, PG_PORT, db, graph);
    let stored = pg_sql_at(
        PG_PORT,
        db,
        "SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'person'::regclass",
    );
    assert_eq!(
        stored, "t",
        "the test's text is not stored out of line (TOASTed)"
    );
    // An update of another column: pgoutput sends the TOASTed bio as 'unchanged'.
    pg_sql_at(
        PG_PORT,
        db,
        "UPDATE person SET name = 'toasted' WHERE id = 30",
    );
    wait_equal(&mut job, PG_PORT, db, graph);
    let bio = &graph_rows_at(graph, db)[&30]["bio"];
    assert!(bio.len() > 8000, "bio in the graph: {} bytes", bio.len());
    // With REPLICA IDENTITY FULL the old row carries the value instead.
    pg_sql_at(
        PG_PORT,
        db,
        "ALTER TABLE person REPLICA IDENTITY FULL; UPDATE person SET name = 'full' WHERE id = 30;",
    );
    wait_equal(&mut job, PG_PORT, db, graph);

    // SIGKILL, changes while it is down, and a rerun that resumes.
    job.sigkill();
    pg_sql_at(
        PG_PORT,
        db,
        "INSERT INTO person VALUES (500, 'while down', NULL, 5); DELETE FROM person WHERE id = 1;
         UPDATE person SET n = n + 1 WHERE id BETWEEN 40 AND 45;",
    );
    let mut job = Running::start(&spec, &dir, false);
    wait_equal(&mut job, PG_PORT, db, graph);

    // TRUNCATE, then rows again.
    pg_sql_at(
        PG_PORT,
        db,
        "TRUNCATE person; INSERT INTO person VALUES (7, 'after truncate', NULL, 7);",
    );
    wait_equal(&mut job, PG_PORT, db, graph);

    // The slot confirms what the graph holds, and not beyond the server's position.
    let start = Instant::now();
    loop {
        let moved = pg_sql_at(
            PG_PORT,
            "etl",
            &format!(
                "SELECT confirmed_flush_lsn > '0/0' AND confirmed_flush_lsn <= pg_current_wal_lsn() \
                 FROM pg_replication_slots WHERE database = '{db}'"
            ),
        );
        if moved == "t" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the slot never confirmed: {moved}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(job.terminate(), 130);
}

/// ON DELETE CASCADE: PostgreSQL logs the children's deletes, so the host derives nothing (no
/// `rows_query` needed) and the graph's children equal the table.
#[test]
fn pg_stream_logged_cascades_are_not_derived_again() {
    let db = "e_pgcascade";
    fresh_db(PG_PORT, db);
    pg_sql_at(
        PG_PORT,
        db,
        "CREATE TABLE team (id int PRIMARY KEY, name text);
         CREATE TABLE person (id int PRIMARY KEY, name text, team int REFERENCES team ON DELETE CASCADE);
         INSERT INTO team SELECT i, 't' || i FROM generate_series(1, 5) i;
         INSERT INTO person SELECT i, 'p' || i, 1 + i % 5 FROM generate_series(1, 40) i;",
    );
    let dir = scratch_dir(db);
    xtask::graph::fresh_graph(db).expect("create graph database");
    let flow = |table: &str, label: &str| {
        format!(
            "  - name: {table}s
    source: {{options: {{table: {table}}}}}
    sink:
      options:
        query: \"UNWIND $batch AS row MERGE (n:{label} {{id: row.id}}) SET n = row\"
        delete_query: \"UNWIND $batch AS row MATCH (n:{label} {{id: row.id}}) DETACH DELETE n\"
"
        )
    };
    let spec = dir.join("cascade.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: {db}
mode: stream
checkpoint: {{dir: {cp}, interval: 100ms}}
source:
  plugin: postgres
  options: {{url: \"{url}\", user: etl, password: etl}}
sink:
  plugin: bolt
  options: {{uri: \"bolt://127.0.0.1:{bolt}\", user: {user}, password: {password}, database: {db}}}
flows:
{team}{person}",
            cp = dir.join("cp").display(),
            url = pg_url_at(PG_PORT, db),
            bolt = xtask::services::BOLT_PORT,
            user = xtask::services::GRAPH_USER,
            password = xtask::services::GRAPH_PASSWORD,
            team = flow("team", "Team"),
            person = flow("person", "Person"),
        ),
    )
    .unwrap();
    let mut job = Running::start(&spec, &dir, true);
    let graph = xtask::services::HTTP_PORT;
    wait_equal(&mut job, PG_PORT, db, graph);
    pg_sql_at(PG_PORT, db, "DELETE FROM team WHERE id IN (2, 3)");
    wait_equal(&mut job, PG_PORT, db, graph);
    let teams = crate::stream::cypher(db, "MATCH (t:Team) RETURN count(t) AS n");
    assert_eq!(teams[0]["n"], 3, "{teams:?}");
    let metrics = job.scrape().unwrap_or_default();
    assert!(
        metrics.contains("etlhost_stream_cascaded_changes_total 0"),
        "cascades were derived although the log has them:\n{metrics}"
    );
    assert_eq!(job.terminate(), 130);
}

/// A server restart mid-stream (a crash), changes after it: the stream reconnects and the graph
/// ends equal.
#[test]
fn pg_stream_survives_a_server_restart() {
    let dir = scratch_dir("e_pgrestart");
    let mut server = ExtraPostgres::start(&dir.join("pg"), &ExtraPgOptions::default()).unwrap();
    let (port, db) = (server.port, "e_pgrestart");
    fresh_db(port, db);
    pg_sql_at(port, db, PERSON);
    let spec = spec(&dir, db, port, db, "");
    let mut job = Running::start(&spec, &dir, true);
    let graph = xtask::services::HTTP_PORT;
    wait_equal(&mut job, port, db, graph);
    server.restart().unwrap();
    pg_sql_at(
        port,
        db,
        "INSERT INTO person VALUES (900, 'after restart', NULL, 9); DELETE FROM person WHERE id = 2;",
    );
    wait_equal(&mut job, port, db, graph);
    assert_eq!(job.terminate(), 130);
}

/// wal_level not logical, a user without REPLICATION, a table without a key or replica identity,
/// a dropped slot: each refused with its fix.
#[test]
fn pg_stream_refusals_name_the_fix() {
    let dir = scratch_dir("e_pgrefuse");
    let opts = ExtraPgOptions {
        conf: vec!["wal_level = replica".into()],
        ..Default::default()
    };
    let server = ExtraPostgres::start(&dir.join("pg"), &opts).unwrap();
    let db = "e_pgrefuse";
    fresh_db(server.port, db);
    pg_sql_at(server.port, db, PERSON);
    server
        .superuser_sql(
            db,
            "CREATE ROLE e_norepl LOGIN PASSWORD 'e_norepl'; GRANT SELECT ON person TO e_norepl;",
        )
        .unwrap();
    let spec1 = spec(&dir, db, server.port, db, "");
    let norepl = std::fs::read_to_string(&spec1).unwrap().replacen(
        "user: etl, password: etl",
        "user: e_norepl, password: e_norepl",
        1,
    );
    let spec0 = dir.join("norepl.yaml");
    std::fs::write(&spec0, norepl).unwrap();
    let out = run_to_end(&spec0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error: cannot stream from the source: plugin postgres: user e_norepl lacks the REPLICATION attribute that streaming needs: ALTER ROLE \"e_norepl\" REPLICATION (as a superuser)"),
        "{err}"
    );
    let out = run_to_end(&spec1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error: cannot stream from the source: plugin postgres: the server's wal_level is replica, and streaming reads logical replication: ALTER SYSTEM SET wal_level = logical (or wal_level = logical in postgresql.conf), then restart the server"),
        "{err}"
    );
    drop(server);

    // The shared server: a user without REPLICATION, then a table without a key.
    let db = "e_pgrefuse2";
    fresh_db(PG_PORT, db);
    pg_sql_at(
        PG_PORT,
        db,
        "CREATE TABLE person (id int, name text, bio text, n bigint);",
    );
    let spec2 = spec(&dir, db, PG_PORT, db, "");
    let out = run_to_end(&spec2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("has no primary key and no REPLICA IDENTITY")
            && err.contains("REPLICA IDENTITY FULL"),
        "{err}"
    );

    // A dropped slot: a resume cannot read what it held.
    pg_sql_at(PG_PORT, db, "ALTER TABLE person ADD PRIMARY KEY (id)");
    let mut job = Running::start(&spec2, &dir, true);
    let graph = xtask::services::HTTP_PORT;
    wait_equal(&mut job, PG_PORT, db, graph);
    // A row through the stream: the snapshot is recorded as done, so the next run resumes.
    pg_sql_at(
        PG_PORT,
        db,
        "INSERT INTO person VALUES (2, 'streamed', NULL, 2)",
    );
    wait_equal(&mut job, PG_PORT, db, graph);
    assert_eq!(job.terminate(), 130);
    pg_sql_at(
        PG_PORT,
        "etl",
        &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{db}'"),
    );
    // A change the dropped slot would have kept: no slot has it now.
    pg_sql_at(
        PG_PORT,
        db,
        "INSERT INTO person VALUES (1, 'lost', NULL, 1)",
    );
    let out = run_to_end(&spec2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("replication slot") && err.contains("is gone") && err.contains("--fresh"),
        "{err}"
    );
}

/// The pairs (member, team) of `MEMBER_OF` relationships in the graph and of the table, sorted.
fn member_teams(db: &str) -> (Vec<String>, Vec<String>) {
    let mut graph: Vec<String> = crate::stream::cypher(
        db,
        "MATCH (m:Member)-[]->(t:Team) RETURN m.id AS m, t.id AS t",
    )
    .iter()
    .map(|r| format!("{}-{}", r["m"], r["t"]))
    .collect();
    graph.sort();
    let table = pg_sql_at(
        PG_PORT,
        db,
        "SELECT id || '-' || team_id FROM member WHERE team_id IS NOT NULL ORDER BY 1",
    );
    let mut table: Vec<String> = table.lines().map(str::to_string).collect();
    table.sort();
    (graph, table)
}

/// A spec from `etlhost init --mode stream` (node and relationship flows, `rows_query`,
/// `verify:`): a foreign key moved, a cascade and inserts reach the graph's relationships, and
/// `etlhost verify` then finds the graph equal to PostgreSQL.
#[test]
fn pg_stream_init_spec_follows_fk_moves_and_cascades_then_verifies() {
    let db = "e_pginit";
    fresh_db(PG_PORT, db);
    pg_sql_at(
        PG_PORT,
        db,
        "CREATE TABLE team (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE member (id int PRIMARY KEY, name text NOT NULL,
                              team_id int REFERENCES team ON DELETE CASCADE);
         INSERT INTO team SELECT i, 't' || i FROM generate_series(1, 4) i;
         INSERT INTO member SELECT i, 'm' || i, 1 + i % 4 FROM generate_series(1, 30) i;",
    );
    xtask::graph::fresh_graph(db).expect("create graph database");
    let dir = scratch_dir(db);
    let spec = dir.join(format!("{db}.yaml"));
    let out = crate::support::pg_init(db, db, &spec, &["--mode", "stream"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut job = Running::start(&spec, &dir, true);
    let wait = |job: &mut Running| {
        let start = Instant::now();
        loop {
            if let Some(code) = job.exited() {
                panic!("etlhost exited ({code}):\n{}", job.stderr());
            }
            let (graph, table) = member_teams(db);
            if graph == table {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "graph {graph:?}\ntable {table:?}\n{}",
                job.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait(&mut job);
    pg_sql_at(
        PG_PORT,
        db,
        "UPDATE member SET team_id = 2 WHERE id IN (1, 5);
         UPDATE member SET team_id = NULL WHERE id = 9;
         DELETE FROM team WHERE id = 4;
         INSERT INTO member VALUES (100, 'new', 1);",
    );
    wait(&mut job);
    let out = crate::support::etlhost_command()
        .arg("verify")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(job.terminate(), 130);
}

/// A transaction larger than `stream.max_transaction_changes` is handed on in parts (positions
/// inside it), and a kill and a resume after it lose nothing.
#[test]
fn pg_stream_a_large_transaction_in_parts() {
    let db = "e_pgparts";
    fresh_db(PG_PORT, db);
    pg_sql_at(PG_PORT, db, PERSON);
    let dir = scratch_dir(db);
    let spec = spec(
        &dir,
        db,
        PG_PORT,
        db,
        "stream:\n  max_transaction_changes: 100\n",
    );
    let mut job = Running::start(&spec, &dir, true);
    let graph = xtask::services::HTTP_PORT;
    wait_equal(&mut job, PG_PORT, db, graph);
    pg_sql_at(
        PG_PORT,
        db,
        "INSERT INTO person SELECT i, 'big' || i, NULL, i FROM generate_series(1001, 2050) i;
         UPDATE person SET n = -n WHERE id <= 50;",
    );
    wait_equal(&mut job, PG_PORT, db, graph);
    job.sigkill();
    pg_sql_at(
        PG_PORT,
        db,
        "DELETE FROM person WHERE id BETWEEN 1001 AND 1500; INSERT INTO person VALUES (3000, 'x', NULL, 1);",
    );
    let mut job = Running::start(&spec, &dir, false);
    wait_equal(&mut job, PG_PORT, db, graph);
    assert_eq!(job.terminate(), 130);
}

/// `etlhost run spec` to its end (a refusal), killed with a panic if it is still running after
/// two minutes rather than left to hang the suite.
fn run_to_end(spec: &Path) -> std::process::Output {
    let mut child = crate::support::etlhost_command()
        .arg("run")
        .arg(spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "etlhost run {} did not stop:\n{}",
                spec.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}
