//! Jobs of several flows: dependency order, statistics per flow and in total, defaults inherited
//! from the top of the file, and errors that point at the file's own lines.

use std::path::PathBuf;

use crate::support::{
    etlhost_with_spec, exec, graph, one, person_table, read_summary, run_job, SpecBuilder,
    PERSON_MERGE,
};

/// People and who knows whom; the relationship flow is listed first and must still run second.
fn social(db: &str, people_query: &str) -> String {
    SpecBuilder::new("social")
        .source_mysql(db)
        .sink_bolt_db(db)
        .sink_line("max_retries: 0")
        .flows(&format!(
            "  - name: knows
    after: [people]
    source:
      options:
        table: knows
    sink:
      options:
        query: \"UNWIND $batch AS row MATCH (a:Person {{id: row.a}}) MATCH (b:Person {{id: row.b}}) MERGE (a)-[r:KNOWS]->(b) SET r.since = row.since\"
  - name: people
    parallelism: 2
    source:
      partition_column: id
      options:
        table: person
    sink:
      options:
        setup: [\"CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE\"]
        query: \"{people_query}\"
"
        ))
        .build()
}

async fn social_tables(db: &str, people: u64) {
    let pool = person_table(db, people, "p").await;
    exec(&pool, "CREATE TABLE knows (a INT, b INT, since INT)").await;
    exec(
        &pool,
        &format!(
            "INSERT INTO knows SELECT seq, seq + 1, 2000 + seq % 20 FROM seq_1_to_{}",
            people - 1
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flows_run_after_the_flows_they_depend_on_with_statistics_per_flow() {
    social_tables("e2e_flows", 1000).await;
    let g = graph("e2e_flows").await;
    let summary = run_job("flows", &social("e2e_flows", PERSON_MERGE));
    let flows = summary["flows"].as_array().unwrap();
    let names: Vec<&str> = flows.iter().map(|f| f["flow"].as_str().unwrap()).collect();
    assert_eq!(names, ["people", "knows"]);
    assert_eq!(flows[0]["read"], 1000);
    assert_eq!(flows[0]["read_per_reader"].as_array().unwrap().len(), 2);
    assert_eq!(flows[1]["read"], 999);
    assert_eq!(summary["read"], 1999);
    assert_eq!(summary["written"], 1999);
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (:Person)-[r:KNOWS]->(:Person) RETURN count(r) AS n"
        )
        .await,
        999
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (:Person {id: 7})-[r:KNOWS]->(:Person {id: 8}) RETURN r.since AS n"
        )
        .await,
        2007
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_flow_stops_the_flows_after_it() {
    social_tables("e2e_flows_fail", 10).await;
    let g = graph("e2e_flows_fail").await;
    let summary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_fail.summary.json");
    let s = summary.display().to_string();
    // Every person is in the graph already, so each row breaks the unique constraint, with an
    // error naming its own key: bad rows, not a failing sink (which would stop the job at once).
    // The constraint is made here, before the job's two writers run the same setup: a write
    // racing ArcadeDB's index build could otherwise slip one duplicate in.
    g.run(neo4rs::query(
        "CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE",
    ))
    .await
    .unwrap();
    g.run(neo4rs::query(
        "UNWIND range(1, 10) AS id CREATE (:Person {id: id})",
    ))
    .await
    .unwrap();
    let (_, out) = etlhost_with_spec(
        "run",
        "flows_fail.yaml",
        &social(
            "e2e_flows_fail",
            "UNWIND $batch AS row CREATE (p:Person {id: row.id, name: row.name})",
        ),
        &["--summary-json", &s],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    let summary = read_summary(&summary);
    let flows = summary["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "`knows` must not run after `people` failed");
    // Past max_failed_rows (0) the flow stops reading and writes only what it read: its second
    // reader may not have read all its rows by then, so the counts depend on timing, but they
    // balance and name the same number.
    let failed = flows[0]["failed"].as_u64().unwrap();
    assert!((1..=10).contains(&failed), "{summary}");
    assert_eq!(summary["failed"], failed);
    assert_eq!(
        summary["read"].as_u64().unwrap(),
        summary["written"].as_u64().unwrap() + failed,
        "{summary}"
    );
    assert!(
        out.stderr.contains(&format!(
            "error: job failed: flow `people`: {failed} rows failed, more than max_failed_rows (0)"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        one::<i64>(&g, "MATCH ()-[r:KNOWS]->() RETURN count(r) AS n").await,
        0
    );
}

fn validate(name: &str, text: &str) -> (String, String) {
    let (path, out) = etlhost_with_spec("validate", name, text, &["--offline"]);
    (
        path.display().to_string(),
        format!("{}{}", out.stdout, out.stderr)
            .trim_end()
            .to_string(),
    )
}

#[test]
fn a_job_of_flows_validates_and_names_each_flow() {
    let (path, out) = validate("flows_ok.yaml", &social("x", PERSON_MERGE));
    assert_eq!(
        out,
        format!("{path}: ok (job 'social': flow 'people': mysql 0.1.0 -> bolt 0.1.0; flow 'knows': mysql 0.1.0 -> bolt 0.1.0)")
    );
}

#[test]
fn flow_errors_point_at_the_file() {
    let good = social("x", PERSON_MERGE);
    let (path, err) = validate(
        "flows_after.yaml",
        &good.replace("after: [people]", "after: [peeple]"),
    );
    assert_eq!(
        err,
        format!(
            "error: {path}:18: flows[0].after[0]: no flow is named `peeple` (flows: knows, people)"
        )
    );

    let cyclic = good.replace(
        "  - name: people\n",
        "  - name: people\n    after: [knows]\n",
    );
    let (path, err) = validate("flows_cycle.yaml", &cyclic);
    assert_eq!(
        err,
        format!("error: {path}:18: flows[0].after: the flows knows, people wait for each other in a cycle")
    );

    // An option inherited from the top is reported where it is written: at the top.
    let (path, err) = validate(
        "flows_inherited.yaml",
        &good.replace("    uri: bolt://", "    uri: http://"),
    );
    assert!(
        err.starts_with(&format!("error: {path}:12: sink.options.uri: ")),
        "{err}"
    );

    let (path, err) = validate(
        "flows_own.yaml",
        &good.replace(
            "      partition_column: id\n",
            "      partition_column: id\n      partition_num: 0\n",
        ),
    );
    assert_eq!(
        err,
        format!("error: {path}:29: flows[1].source.partition_num: must be at least 1")
    );

    let (path, err) = validate(
        "flows_dup.yaml",
        &good.replace("  - name: people", "  - name: knows"),
    );
    assert_eq!(
        err,
        format!("error: {path}:25: flows[1].name: flow `knows` is already defined (flow 0)")
    );
}
