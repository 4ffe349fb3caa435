//! Every row read is written or accounted for: bad rows are isolated into the dead-letter file,
//! and a graph server that dies mid-job costs retries, not rows.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use neo4rs::query;
use xtask::graph::{fresh_graph_at, graph_count_at};
use xtask::services::{start_arcadedb, BOLT_PORT};

use crate::support::{
    etlhost_with_spec, graph, one, person_table, read_summary, spawn_run, Proxy, SpecBuilder, Way,
};

fn scratch(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn dead_ids(path: &PathBuf) -> Vec<i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ids: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["row"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn constraint_violations_are_isolated_into_the_dead_letter_file() {
    person_table("e2e_dlq", 10_000, "person-").await;
    let g = graph("e2e_dlq").await;
    g.run(query(
        "CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE",
    ))
    .await
    .unwrap();
    for id in [17, 4242, 7777] {
        g.run(query(&format!(
            "CREATE (:Person {{id: {id}, name: 'existing'}})"
        )))
        .await
        .unwrap();
    }

    let dlq = scratch("dlq.jsonl");
    let text = SpecBuilder::new("dlq")
        .mysql_table("e2e_dlq", "person")
        .sink_bolt(
            "e2e_dlq",
            "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})",
        )
        .batch(1000)
        .extra_yaml(&format!(
            "max_failed_rows: 10\ndead_letter: {}\n",
            dlq.display()
        ))
        .build();
    let summary_path = scratch("dlq.summary.json");
    let (_, out) = etlhost_with_spec(
        "run",
        "dlq.yaml",
        &text,
        &["--summary-json", &summary_path.display().to_string()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = read_summary(&summary_path);
    assert_eq!(summary["read"], 10_000);
    assert_eq!(summary["written"], 9_997);
    assert_eq!(summary["failed"], 3);

    assert_eq!(dead_ids(&dlq), [17, 4242, 7777]);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&dlq)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("Neo.ClientError.Schema.ConstraintValidationFailed"),
        "{first}"
    );
    assert_eq!(first["split"], 0);
    assert_eq!(first["stage"], "sink");
    assert!(first["row"]["name"]
        .as_str()
        .unwrap()
        .starts_with("person-"));

    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(p) AS n").await,
        10_000
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (p:Person {name: 'existing'}) RETURN count(p) AS n"
        )
        .await,
        3
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(DISTINCT p.id) AS n").await,
        10_000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_failed_rows_fail_the_job_with_every_row_accounted_for() {
    person_table("e2e_dlq_limit", 20, "p").await;
    let g = graph("e2e_dlq_limit").await;
    g.run(query(
        "CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE",
    ))
    .await
    .unwrap();
    g.run(query("UNWIND range(1, 20) AS i CREATE (:Person {id: i})"))
        .await
        .unwrap();

    let dlq = scratch("dlq_limit.jsonl");
    let text = SpecBuilder::new("dlq_limit")
        .mysql_table("e2e_dlq_limit", "person")
        .sink_bolt(
            "e2e_dlq_limit",
            "UNWIND $batch AS row CREATE (:Person {id: row.id})",
        )
        .batch(8)
        .extra_yaml(&format!("dead_letter: {}\n", dlq.display()))
        .build();
    let summary_path = scratch("dlq_limit.summary.json");
    let (_, out) = etlhost_with_spec(
        "run",
        "dlq_limit.yaml",
        &text,
        &["--summary-json", &summary_path.display().to_string()],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "error: job failed: 20 rows failed, more than max_failed_rows (0); they are in {}",
            dlq.display()
        )),
        "{}",
        out.stderr
    );
    let summary = read_summary(&summary_path);
    assert_eq!(summary["read"], 20);
    assert_eq!(summary["written"], 0);
    assert_eq!(summary["failed"], 20);
    assert_eq!(dead_ids(&dlq), (1..=20).collect::<Vec<_>>());
}

/// Kills the private server when the test ends, however it ends.
struct Server(u32);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_server_dies_mid_job_and_every_row_still_arrives() {
    const BOLT: u16 = 7697;
    const HTTP: u16 = 2497;
    const ROWS: u64 = 200_000;
    person_table("e2e_retry", ROWS, "person-").await;

    // A private Bolt server: the shared one serves the other tests.
    let home = scratch("arcadedb-restart");
    let mut server = Server(start_arcadedb(&home, BOLT, HTTP).unwrap());
    fresh_graph_at(HTTP, "retry").unwrap();

    // The job writes through a proxy that holds its writes once some batches have gone: the
    // server is killed mid-job, however fast the job is.
    let proxy = Proxy::start(BOLT);
    let text = SpecBuilder::new("retry")
        .mysql_table("e2e_retry", "person")
        .sink_bolt_at(proxy.port, "retry")
        .batch(200)
        .sink_line("max_retries: 40")
        .sink_line("retry_backoff: 100ms")
        .merge_people()
        .build();
    let (path, _) = etlhost_with_spec("validate", "retry.yaml", &text, &[]);
    let summary_path = scratch("retry.summary.json");
    proxy.hold_after(Way::ToServer, 256 * 1024);
    let mut job = spawn_run(&path, &summary_path, Stdio::null());

    proxy.wait_holding(&mut job);
    let before_kill =
        graph_count_at(HTTP, "retry", "MATCH (p:Person) RETURN count(p) AS n").unwrap();
    assert!(
        before_kill < ROWS,
        "the job finished before the server could be killed"
    );
    assert!(Command::new("kill")
        .args(["-9", &server.0.to_string()])
        .status()
        .unwrap()
        .success());
    server.0 = start_arcadedb(&home, BOLT, HTTP).unwrap();
    proxy.resume();

    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = read_summary(&summary_path);
    assert_eq!(summary["read"], ROWS);
    assert_eq!(summary["written"], ROWS);
    assert_eq!(summary["failed"], 0);
    assert!(
        summary["retries"].as_u64().unwrap() > 0,
        "no write was retried: {summary}"
    );
    eprintln!(
        "restart test: {before_kill} nodes before the kill, {} retries, {} rows in {:.1} s",
        summary["retries"], summary["written"], summary["duration_secs"]
    );

    let count = |q: &str| graph_count_at(HTTP, "retry", q).unwrap();
    assert_eq!(count("MATCH (p:Person) RETURN count(p) AS n"), ROWS);
    assert_eq!(
        count("MATCH (p:Person) RETURN count(DISTINCT p.id) AS n"),
        ROWS
    );
    assert_eq!(
        count("MATCH (p:Person) WHERE p.name = 'person-' + toString(p.id) RETURN count(p) AS n"),
        ROWS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_reading_and_writes_every_row_already_read() {
    person_table("e2e_sigint", 300_000, "p").await;
    let g = graph("e2e_sigint").await;
    // Writes go through a proxy that holds them after the first batches: the signal comes while
    // the readers are held back by the sink, whatever the machine's speed.
    let proxy = Proxy::start(BOLT_PORT);
    let text = SpecBuilder::new("sigint")
        .mysql_table("e2e_sigint", "person")
        .sink_bolt_at(proxy.port, "e2e_sigint")
        .batch(100)
        .cypher("UNWIND $batch AS row CREATE (:Person {id: row.id})")
        .build();
    let (path, _) = etlhost_with_spec("validate", "sigint.yaml", &text, &[]);
    let summary_path = scratch("sigint.summary.json");
    proxy.hold_after(Way::ToServer, 64 * 1024);
    let mut job = spawn_run(&path, &summary_path, Stdio::null());
    proxy.wait_holding(&mut job);
    assert!(Command::new("kill")
        .args(["-INT", &job.id().to_string()])
        .status()
        .unwrap()
        .success());
    proxy.resume();
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: finishing the rows already read"),
        "{stderr}"
    );

    let summary = read_summary(&summary_path);
    assert_eq!(summary["status"], "interrupted");
    let (read, written) = (
        summary["read"].as_i64().unwrap(),
        summary["written"].as_i64().unwrap(),
    );
    assert!(
        read < 300_000,
        "the job read everything before the signal: {summary}"
    );
    assert_eq!(written, read, "rows read but not written: {summary}");
    assert_eq!(summary["failed"], 0);
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(p) AS n").await,
        written
    );
}
