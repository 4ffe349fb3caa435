//! WASM transforms between MySQL and Bolt: a chain of the example transforms, and a misbehaving
//! one whose traps, endless loop, memory hog and row errors fail only the rows concerned.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use xtask::services::{
    BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};

use crate::support::{etlhost_with_spec, exec, graph, mysql, one, person_table, run_job};

/// A transform built by `cargo xtask build`.
fn component(name: &str) -> String {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = target.join(format!("transforms/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`",
        path.display()
    );
    path.display().to_string()
}

fn job(name: &str, db: &str, table: &str, transforms: &str, cypher: &str) -> String {
    format!(
        "name: {name}
dead_letter: {dl}
max_failed_rows: 100
source:
  plugin: mysql
  options:
    url: mysql://127.0.0.1:{MYSQL_PORT}/{db}
    user: {MYSQL_USER}
    password: {MYSQL_PASSWORD}
    table: {table}
transforms:
{transforms}
sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {db}
    query: \"{cypher}\"
",
        dl = dead_letter(name).display()
    )
}

fn dead_letter(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.dead-letter.jsonl"))
}

/// Runs the job with an empty dead-letter file; returns its summary.
fn run(name: &str, text: &str) -> serde_json::Value {
    let _ = std::fs::remove_file(dead_letter(name));
    run_job(name, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_transforms_maps_filters_and_masks() {
    let pool = mysql("e2e_chain").await;
    exec(
        &pool,
        "CREATE TABLE customer (id INT PRIMARY KEY, first VARCHAR(20), last VARCHAR(20), \
         email VARCHAR(50), age INT)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO customer SELECT seq, CONCAT('F', seq), CONCAT('L', seq), \
         CONCAT('c', seq, '@example.test'), seq % 40 FROM seq_1_to_1000",
    )
    .await;
    let g = graph("e2e_chain").await;
    let transforms = format!(
        "  - name: names
    component: {}
    config: {{compute: {{full_name: \"{{first}} {{last}}\"}}, drop: [first, last]}}
  - name: adults
    component: {}
    config: {{column: age, op: \">=\", value: 18}}
  - name: mask
    component: {}
    config: {{columns: [email], salt: pepper}}",
        component("field-map"),
        component("filter"),
        component("pii-mask")
    );
    let text = job(
        "chain",
        "e2e_chain",
        "customer",
        &transforms,
        "UNWIND $batch AS row CREATE (:Customer {id: row.id, full_name: row.full_name, email: row.email, age: row.age, first: row.first})",
    );
    let summary = run("chain", &text);
    // Ages are id % 40: 18..=39 is 22 of every 40 ids.
    assert_eq!(summary["read"], 1000);
    assert_eq!(summary["written"], 550);
    assert_eq!(summary["filtered"], 450);
    assert_eq!(summary["failed"], 0);
    assert_eq!(
        one::<i64>(&g, "MATCH (c:Customer) RETURN count(c) AS n").await,
        550
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (c:Customer) WHERE c.age < 18 RETURN count(c) AS n"
        )
        .await,
        0
    );
    let name: String = one(&g, "MATCH (c:Customer {id: 20}) RETURN c.full_name AS n").await;
    assert_eq!(name, "F20 L20");
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (c:Customer) WHERE c.first IS NOT NULL RETURN count(c) AS n"
        )
        .await,
        0,
        "dropped columns are gone"
    );
    let email: String = one(&g, "MATCH (c:Customer {id: 20}) RETURN c.email AS n").await;
    let hex: String = Sha256::digest(b"pepperc20@example.test")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(email, hex);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_transform_fails_only_its_rows() {
    person_table("e2e_faulty_wasm", 1000, "p").await;
    let g = graph("e2e_faulty_wasm").await;
    let transforms = format!(
        "  - name: faulty
    component: {}
    deadline: 200ms
    memory_mib: 16
    config: {{trap_on: 7, error_on: 13, expand_on: 21, drop_on: 30, spin_on: 42, hog_on: 55}}",
        component("faulty")
    );
    let text = job(
        "faulty_wasm",
        "e2e_faulty_wasm",
        "person",
        &transforms,
        "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})",
    );
    let summary = run("faulty_wasm", &text);
    assert_eq!(summary["read"], 1000);
    assert_eq!(summary["failed"], 4);
    assert_eq!(summary["filtered"], 1);
    assert_eq!(summary["added"], 1);
    assert_eq!(summary["written"], 996);
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(p) AS n").await,
        996
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person {id: 21}) RETURN count(p) AS n").await,
        2
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (p:Person) WHERE p.id IN [7, 13, 30, 42, 55] RETURN count(p) AS n"
        )
        .await,
        0
    );
    let mut errors: Vec<(i64, String)> = std::fs::read_to_string(dead_letter("faulty_wasm"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["stage"], "transform faulty");
            (
                v["row"]["id"].as_i64().unwrap(),
                v["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    errors.sort();
    let ids: Vec<i64> = errors.iter().map(|e| e.0).collect();
    assert_eq!(ids, [7, 13, 42, 55]);
    assert!(
        errors[0].1.starts_with(
            "transform faulty: trapped (wasm trap: wasm `unreachable` instruction executed): "
        ) && errors[0].1.ends_with("boom at id 7"),
        "{}",
        errors[0].1
    );
    assert_eq!(errors[1].1, "transform faulty: id 13 is not welcome");
    assert_eq!(
        errors[2].1,
        "transform faulty: ran past its deadline of 200ms"
    );
    assert_eq!(
        errors[3].1,
        "transform faulty: exceeded its memory limit of 16 MiB"
    );
}

#[test]
fn a_transform_that_refuses_its_config_fails_the_job_before_any_row() {
    let transforms = format!(
        "  - name: faulty\n    component: {}\n    config: {{refuse: true}}",
        component("faulty")
    );
    let text = job(
        "refuse",
        "test",
        "person",
        &transforms,
        "UNWIND $batch AS row RETURN row",
    );
    let (path, out) = etlhost_with_spec("run", "refuse.yaml", &text, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: {}:14: transforms[0].config: transform `faulty` refused its config: told to refuse",
            path.display()
        )
    );
}
