//! WASM transforms between MySQL and Bolt: a chain of the example transforms (of both worlds), and
//! a misbehaving one (built for each world) whose traps, endless loop, memory hog and row errors
//! fail only the rows concerned.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::support::{
    etlhost_with_spec, exec, graph, mysql, one, person_table, run_job, SpecBuilder,
};

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
    SpecBuilder::new(name)
        .top(format_args!("dead_letter: {}", dead_letter(name).display()))
        .top("max_failed_rows: 100")
        .mysql_table(db, table)
        .transforms(transforms)
        .sink_bolt(db, cypher)
        .build()
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
  - name: same
    component: {}
  - name: mask
    component: {}
    config: {{columns: [email], salt: pepper}}",
        component("field-map"),
        component("filter"),
        component("identity"),
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
    misbehaving("faulty", "e2e_faulty_wasm").await;
}

/// The same misbehaviour on the encoded world's path, where kept rows stay the source's bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_encoded_transform_fails_only_its_rows() {
    misbehaving("faulty-encoded", "e2e_faulty_encoded").await;
}

async fn misbehaving(component_name: &str, db: &str) {
    person_table(db, 1000, "p").await;
    let g = graph(db).await;
    let transforms = format!(
        "  - name: faulty
    component: {}
    deadline: 200ms
    memory_mib: 16
    config: {{trap_on: 7, error_on: 13, expand_on: 21, drop_on: 30, spin_on: 42, hog_on: 55, hold_on: 77}}",
        component(component_name)
    );
    let text = job(
        db,
        db,
        "person",
        &transforms,
        "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})",
    );
    let summary = run(db, &text);
    assert_eq!(summary["read"], 1000);
    assert_eq!(summary["failed"], 4);
    // 30, and 77 until `finish` gives it back (added).
    assert_eq!(summary["filtered"], 2);
    assert_eq!(summary["added"], 2);
    assert_eq!(summary["written"], 996);
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person) RETURN count(p) AS n").await,
        996
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (p:Person {id: 21}) RETURN count(p) AS n").await,
        2
    );
    let held: String = one(&g, "MATCH (p:Person {id: 77}) RETURN p.name AS n").await;
    assert_eq!(held, "p77");
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (p:Person) WHERE p.id IN [7, 13, 30, 42, 55] RETURN count(p) AS n"
        )
        .await,
        0
    );
    let mut errors: Vec<(i64, String)> = std::fs::read_to_string(dead_letter(db))
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
    refused("faulty");
    refused("faulty-encoded");
}

fn refused(component_name: &str) {
    let transforms = format!(
        "  - name: faulty\n    component: {}\n    config: {{refuse: true}}",
        component(component_name)
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

/// What the Python and JavaScript examples should make of customer `id` (see the INSERT below):
/// `None` when a transform drops it, `Err(reason)` when it dead-letters it, else the e-mail
/// domain the JS transform adds.
fn polyglot_outcome(id: i64) -> Option<Result<String, String>> {
    if id % 10 == 0 {
        return None; // inactive: py-full-name drops it
    }
    if id % 97 == 0 {
        return Some(Err(format!("transform names: no last_name for id {id}")));
    }
    if id % 50 == 3 {
        return Some(Err(format!(
            "transform domains: email \"c{id}.example.test\" has no @ (id {id})"
        )));
    }
    if id % 7 == 0 {
        return None; // spam.example is excluded by js-email-domain
    }
    Some(Ok("example.test".into()))
}

/// `customer` of MySQL database `db`: 1,000 rows of names, e-mail addresses of every shape
/// [`polyglot_outcome`] knows, flags, DECIMALs and DATETIMEs with microseconds.
async fn polyglot_customers(db: &str) {
    let pool = mysql(db).await;
    exec(
        &pool,
        "CREATE TABLE customer (id INT PRIMARY KEY, first_name VARCHAR(20), \
         last_name VARCHAR(20), email VARCHAR(50), inactive BOOLEAN, balance DECIMAL(12,4), \
         seen DATETIME(6))",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO customer SELECT seq, CONCAT('ann ', seq), \
         IF(seq % 97 = 0, NULL, CONCAT('LEE', seq)), \
         CASE WHEN seq % 50 = 3 THEN CONCAT('c', seq, '.example.test') \
              WHEN seq % 7 = 0 THEN CONCAT('c', seq, '@Spam.Example') \
              ELSE CONCAT('c', seq, '@Example.TEST') END, \
         seq % 10 = 0, seq * 1000 + 0.0001, \
         TIMESTAMP('2024-02-29 01:02:03.000004') + INTERVAL seq SECOND \
         FROM seq_1_to_1000",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_javascript_transforms_chain() {
    polyglot_customers("e2e_polyglot").await;
    let g = graph("e2e_polyglot").await;
    let transforms = format!(
        "  - name: names
    component: {}
    config: {{skip_when: inactive}}
  - name: domains
    component: {}
    config: {{exclude: [spam.example]}}",
        component("py-full-name"),
        component("js-email-domain"),
    );
    let text = job(
        "polyglot",
        "e2e_polyglot",
        "customer",
        &transforms,
        "UNWIND $batch AS row CREATE (:Customer {id: row.id, full_name: row.full_name, \
         domain: row.email_domain, balance: row.balance, seen: row.seen, inactive: row.inactive})",
    );
    let summary = run("polyglot", &text);

    let outcomes: Vec<_> = (1..=1000).map(|id| (id, polyglot_outcome(id))).collect();
    let written = outcomes
        .iter()
        .filter(|o| matches!(o.1, Some(Ok(_))))
        .count();
    let mut expected_errors: Vec<(i64, String)> = outcomes
        .iter()
        .filter_map(|(id, o)| match o {
            Some(Err(e)) => Some((*id, e.clone())),
            _ => None,
        })
        .collect();
    let filtered = 1000 - written - expected_errors.len();
    assert_eq!(summary["read"], 1000);
    assert_eq!(summary["written"], written);
    assert_eq!(summary["filtered"], filtered);
    assert_eq!(summary["failed"], expected_errors.len());
    assert_eq!(
        one::<i64>(&g, "MATCH (c:Customer) RETURN count(c) AS n").await,
        written as i64
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (c:Customer) WHERE c.domain = 'example.test' RETURN count(c) AS n"
        )
        .await,
        written as i64
    );
    let name: String = one(&g, "MATCH (c:Customer {id: 22}) RETURN c.full_name AS n").await;
    assert_eq!(name, "Ann 22 Lee22");
    // Values the guests did not touch cross both of them unchanged: a DECIMAL's digits, a
    // DATETIME's microseconds (JS Dates hold milliseconds), a TINYINT.
    let balance: String = one(&g, "MATCH (c:Customer {id: 22}) RETURN c.balance AS n").await;
    assert_eq!(balance, "22000.0001");
    let inactive: i64 = one(&g, "MATCH (c:Customer {id: 22}) RETURN c.inactive AS n").await;
    assert_eq!(inactive, 0);
    assert!(
        one::<bool>(
            &g,
            "MATCH (c:Customer {id: 22}) \
             RETURN c.seen = localdatetime('2024-02-29T01:02:25.000004') AS n"
        )
        .await,
        "the DATETIME lost its microseconds"
    );
    let mut errors: Vec<(i64, String)> = std::fs::read_to_string(dead_letter("polyglot"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let e = v["error"].as_str().unwrap().to_string();
            assert!(e.starts_with(&format!("{}: ", v["stage"].as_str().unwrap())));
            (v["row"]["id"].as_i64().unwrap(), e)
        })
        .collect();
    errors.sort();
    expected_errors.sort();
    assert_eq!(errors, expected_errors);
}
