//! A sink that fails every row (a full disk, a database made read-only, a user who may not write)
//! fails the job as a sink error (exit 3) after a few rows, instead of putting every row read into
//! the dead-letter file; the rows it did not write are read again by the next run.

use std::path::Path;
use std::process::Stdio;

use xtask::graph::{fresh_graph_at, graph_count_at, http_at};
use xtask::services::{ExtraArcadeDb, GRAPH_PASSWORD, GRAPH_USER};

use crate::support::{
    etlhost_command, etlhost_with_spec, mysql_url, person_table, read_summary, scratch_dir,
    spawn_run, Output, Proxy, SpecBuilder, Way, PERSON_ID_INDEX, PERSON_MERGE,
};

/// What the host says when it concludes that the sink, not the rows, is failing.
fn sink_failure(error: &str) -> String {
    format!(
        "error: job failed: the sink is failing, not the rows: 3 rows written one by one all \
         failed with the same error, and no part of their batch could be written: {error}\n"
    )
}

fn dead_rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The summary of a failed run: every row read is accounted for, none failed (the rows of a
/// failing sink are given back, not dead-lettered), and fewer were written than the table holds.
fn assert_given_back(summary: &serde_json::Value, rows: u64) -> u64 {
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(summary["status"], "failed", "{summary}");
    assert_eq!(n("failed"), 0, "{summary}");
    assert_eq!(n("read"), n("written") + n("filtered"), "{summary}");
    assert!(n("written") < rows, "{summary}");
    n("written")
}

/// Runs `POST /api/v1/server {"command": ...}` as root on the server whose HTTP API is on `port`.
fn server_command(port: u16, command: &str) {
    let body = serde_json::json!({ "command": command }).to_string();
    let (status, text) = http_at(port, "POST", "/api/v1/server", Some(&body)).unwrap();
    assert!(status < 300, "{command}: {status} {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_job_as_a_sink_error_and_a_rerun_writes_every_row() {
    const ROWS: u64 = 5_000;
    person_table("e2e_sink_full", ROWS, "p").await;
    let dir = scratch_dir("sink-full");
    let dlq = dir.join("dead.jsonl");
    let summary_path = dir.join("summary.json");
    // The test sink `faulty` appends each batch to `append_to` and syncs it; on /dev/full every
    // write fails with ENOSPC, as on a full disk. (The example sink `jsonl` would report
    // `Invalid argument`: cutting /dev/full back to its length after the failed write fails too.)
    // The spec names a link to it, so that the rerun's spec is the same when the disk has room.
    let file = dir.join("rows.jsonl");
    std::os::unix::fs::symlink("/dev/full", &file).unwrap();
    let text = SpecBuilder::new("sink_full")
        .source_url(&mysql_url("e2e_sink_full"))
        .table("person")
        .sink_plugin("faulty")
        .batch(100)
        .sink_option(format_args!("append_to: {}", file.display()))
        .extra_yaml(&format!("dead_letter: {}\n", dlq.display()))
        .build();
    let (spec_path, out) = etlhost_with_spec(
        "run",
        "sink_full.yaml",
        &text,
        &["--summary-json", &summary_path.display().to_string()],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&sink_failure(
            "plugin faulty: write failed: No space left on device (os error 28)"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(dead_rows(&dlq), 0, "no row is at fault");
    assert_eq!(assert_given_back(&read_summary(&summary_path), ROWS), 0);
    let halvings = out.stderr.matches("writing it in halves").count();
    assert!(halvings < 50, "{halvings} batches halved for {ROWS} rows");

    // The disk has room again: the next run, resumed, writes every row, each once.
    std::fs::remove_file(&file).unwrap();
    let out = Output::from(
        etlhost_command()
            .arg("run")
            .arg(&spec_path)
            .args(["--summary-json", &summary_path.display().to_string()])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut ids: Vec<u64> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=ROWS).collect::<Vec<_>>());
}

/// A MySQL `person` table -> database `db` of the Bolt server on `bolt`, MERGE on an index (a
/// rerun writes a row written before again without a duplicate), dead letters into `dlq`.
fn bolt_spec(mysql_db: &str, db: &str, bolt: u16, dlq: &Path) -> SpecBuilder {
    SpecBuilder::new(&format!("sink_{db}"))
        .mysql_table(mysql_db, "person")
        .sink_bolt_at(bolt, db)
        .batch(100)
        .cypher(PERSON_MERGE)
        .extra_yaml(&format!("dead_letter: {}\n", dlq.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graph_database_made_read_only_mid_run_fails_the_job_as_a_sink_error() {
    const ROWS: u64 = 200_000;
    person_table("e2e_sink_readonly", ROWS, "p").await;
    let dir = scratch_dir("sink-readonly");
    // A server of its own: making a database read-only takes a server setting.
    let server = ExtraArcadeDb::start(&dir.join("home"), &[]).unwrap();
    fresh_graph_at(server.http, "readonly").unwrap();
    let dlq = dir.join("dead.jsonl");
    // The job writes through a proxy that holds its writes once some batches have gone: the
    // database turns read-only mid-job, however fast the job is.
    let proxy = Proxy::start(server.bolt);
    let text = bolt_spec("e2e_sink_readonly", "readonly", proxy.port, &dlq)
        .setup(PERSON_ID_INDEX)
        .build();
    let (path, _) = etlhost_with_spec("validate", "sink_readonly.yaml", &text, &[]);
    let summary_path = dir.join("summary.json");
    proxy.hold_after(Way::ToServer, 256 * 1024);
    let mut job = spawn_run(&path, &summary_path, Stdio::null());

    // ArcadeDB opens a database read-only when its default mode says so at the time it opens it:
    // the database is closed and opened again under that setting while the job writes.
    proxy.wait_holding(&mut job);
    let before = graph_count_at(
        server.http,
        "readonly",
        "MATCH (p:Person) RETURN count(p) AS n",
    )
    .unwrap();
    assert!(
        before < ROWS,
        "the job finished before the database was made read-only"
    );
    for command in [
        "set server setting arcadedb.server.defaultDatabaseMode READ_ONLY",
        "close database readonly",
        "open database readonly",
    ] {
        server_command(server.http, command);
    }
    proxy.resume();

    let out = Output::from(job.wait_with_output().unwrap());
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&sink_failure(
            "plugin bolt: write failed: Neo.DatabaseError.General.UnknownError: \
             Cannot execute command on a read only database"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(dead_rows(&dlq), 0, "no row is at fault");
    let written = assert_given_back(&read_summary(&summary_path), ROWS);

    // Writable again: the graph holds what the summary says was written, and a rerun, resumed,
    // brings every row (rows given back are read again; none was recorded as done).
    for command in [
        "set server setting arcadedb.server.defaultDatabaseMode READ_WRITE",
        "close database readonly",
        "open database readonly",
    ] {
        server_command(server.http, command);
    }
    let count = |q: &str| graph_count_at(server.http, "readonly", q).unwrap();
    assert_eq!(count("MATCH (p:Person) RETURN count(p) AS n"), written);
    let out = Output::from(
        etlhost_command()
            .arg("run")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(count("MATCH (p:Person) RETURN count(p) AS n"), ROWS);
    assert_eq!(
        count("MATCH (p:Person) RETURN count(DISTINCT p.id) AS n"),
        ROWS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graph_user_without_write_permission_fails_the_job_as_a_sink_error() {
    const ROWS: u64 = 2_000;
    person_table("e2e_sink_reader", ROWS, "p").await;
    let dir = scratch_dir("sink-reader");
    let home = dir.join("home");
    // Groups live in the server's `config/server-groups.json` (no server command makes one):
    // `reader` may read every type of every database, and do nothing else.
    std::fs::create_dir_all(home.join("config")).unwrap();
    let groups = serde_json::json!({
        "version": 2,
        "databases": {"*": {"groups": {
            "admin": {
                "resultSetLimit": -1, "readTimeout": -1,
                "access": ["updateSecurity", "updateSchema", "updateDatabaseSettings"],
                "types": {"*": {"access": ["createRecord", "readRecord", "updateRecord", "deleteRecord"]}}
            },
            "reader": {
                "resultSetLimit": -1, "readTimeout": -1, "access": [],
                "types": {"*": {"access": ["readRecord"]}}
            },
            "*": {
                "resultSetLimit": -1, "readTimeout": -1, "access": [],
                "types": {"*": {"access": []}}
            }
        }}}
    });
    std::fs::write(home.join("config/server-groups.json"), groups.to_string()).unwrap();
    let server = ExtraArcadeDb::start(&home, &[]).unwrap();
    fresh_graph_at(server.http, "reader").unwrap();
    // The type and its index exist, as in a graph loaded before: what the user lacks is the
    // right to create records.
    for cypher in [PERSON_ID_INDEX, "CREATE (:Person {id: 0})"] {
        let body = serde_json::json!({"language": "cypher", "command": cypher}).to_string();
        let (status, text) =
            http_at(server.http, "POST", "/api/v1/command/reader", Some(&body)).unwrap();
        assert!(status < 300, "{cypher}: {status} {text}");
    }
    server_command(
        server.http,
        r#"create user {"name": "etl_reader", "password": "reader-pass", "databases": {"reader": ["reader"]}}"#,
    );

    let dlq = dir.join("dead.jsonl");
    // Progress kept in a local file: in the target it would need writing the run's plan there
    // first, which fails the job at its start, before any row is read.
    let text = bolt_spec("e2e_sink_reader", "reader", server.bolt, &dlq)
        .extra_yaml("checkpoint:\n  store: local\n")
        .build()
        .replace(
            &format!("    user: {GRAPH_USER}\n    password: {GRAPH_PASSWORD}\n"),
            "    user: etl_reader\n    password: reader-pass\n",
        );
    let summary_path = dir.join("summary.json");
    let (_, out) = etlhost_with_spec(
        "run",
        "sink_reader.yaml",
        &text,
        &["--summary-json", &summary_path.display().to_string()],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&sink_failure(
            "plugin bolt: write failed: Neo.ClientError.Security.Forbidden: \
             User 'etl_reader' is not allowed to create records on type 'Person'"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(dead_rows(&dlq), 0, "no row is at fault");
    assert_eq!(assert_given_back(&read_summary(&summary_path), ROWS), 0);
    let count = graph_count_at(
        server.http,
        "reader",
        "MATCH (p:Person) RETURN count(p) AS n",
    );
    assert_eq!(count.unwrap(), 1, "only the node made before");
}
