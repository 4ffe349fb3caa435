//! `etlhost verify`: a generated spec verifies clean after `run`; a deleted node, a changed
//! property, an extra relationship and a row inserted after the load are each reported with
//! their keys and nothing else; hand-written flows with and without `verify:`; the exit codes; a
//! types table verifies clean.

use std::path::{Path, PathBuf};

use xtask::services::GRAPH_PASSWORD;

use crate::support::{
    etlhost_command, etlhost_init, etlhost_with_spec, exec, graph, mysql, run_job, Output,
    SpecBuilder,
};

async fn shop_schema(db: &str) -> mysql_async::Pool {
    let pool = mysql(db).await;
    for sql in [
        "CREATE TABLE company (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, founded DATE)",
        "CREATE TABLE employee (id BIGINT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), \
         company_id INT, manager_id BIGINT, salary DECIMAL(10,2), hired DATETIME(6), \
         FOREIGN KEY (company_id) REFERENCES company(id), \
         FOREIGN KEY (manager_id) REFERENCES employee(id))",
        "CREATE TABLE project (code VARCHAR(20) PRIMARY KEY, title VARCHAR(100))",
        "CREATE TABLE employee_project (employee_id BIGINT, project_code VARCHAR(20), \
         role VARCHAR(50), hours INT, PRIMARY KEY (employee_id, project_code), \
         FOREIGN KEY (employee_id) REFERENCES employee(id), \
         FOREIGN KEY (project_code) REFERENCES project(code))",
        "INSERT INTO company VALUES (1, 'Acme', '1990-01-02'), (2, 'Globex', NULL)",
        "INSERT INTO employee VALUES \
         (10, 'Ann', 'ann@acme.test', 1, NULL, 5000.50, '2020-01-02 03:04:05.000006'), \
         (11, 'Bob', 'bob@acme.test', 1, 10, 4000, NULL), \
         (12, 'Cy', NULL, 2, NULL, NULL, '2021-06-30 23:59:59'), \
         (13, 'Dee', 'dee@x.test', NULL, NULL, 1, NULL)",
        "INSERT INTO project VALUES ('P1', 'Rocket'), ('P2', 'Anvil'), ('a3', 'lower')",
        "INSERT INTO employee_project VALUES (10, 'P1', 'lead', 30), (11, 'P1', 'dev', 40), \
         (11, 'P2', 'dev', 10), (12, 'a3', NULL, 5)",
    ] {
        exec(&pool, sql).await;
    }
    pool
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn init(db: &str, output: &Path) {
    let out = etlhost_init(db, db, output, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn etlhost(args: &[&str], spec: &Path) -> Output {
    let out = etlhost_command()
        .args(args)
        .arg(spec)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    Output::from(out)
}

fn verify(spec: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify"];
    args.extend(extra);
    etlhost(&args, spec)
}

/// The table of a flow that matches: its counts, nothing missing, extra or different.
fn clean(flow: &str, rows: u64) -> String {
    format!(
        "flow {flow}: match
  rows in source     {rows}
  entities in graph  {rows}
  missing            0
  extra              0
  different          0
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_generated_spec_is_clean_then_reports_each_change_by_key() {
    let pool = shop_schema("vf_shop").await;
    let g = graph("vf_shop").await;
    let spec = scratch("vf_shop.yaml");
    init("vf_shop", &spec);
    let out = etlhost(&["run", "--quiet"], &spec);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = verify(&spec, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let expect = [
        clean("company", 2),
        clean("employee", 4),
        clean("project", 3),
        clean("employee_company", 3),
        clean("employee_manager", 1),
        clean("employee_project", 4),
    ]
    .concat()
        + "verify: 6 of 6 flows match, 0 different, 0 not verifiable\n";
    assert_eq!(out.stdout, expect, "{}", out.stderr);

    // Four changes, each in one flow.
    for cypher in [
        "MATCH (n:Employee {id: 13}) DELETE n",
        "MATCH (n:Employee {id: 11}) SET n.email = 'bob@evil.test'",
        "MATCH (a:Employee {id: 12}), (b:Employee {id: 10}) CREATE (a)-[:MANAGER]->(b)",
    ] {
        g.run(neo4rs::query(cypher)).await.unwrap();
    }
    exec(
        &pool,
        "INSERT INTO company VALUES (3, 'Initech', '1999-02-19')",
    )
    .await;

    let json = scratch("vf_shop.verify.json");
    let out = verify(&spec, &["--summary-json", json.to_str().unwrap()]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    let expect = [
        "flow company: DIFFERENT
  rows in source     3
  entities in graph  2
  missing            1  id=3
  extra              0
  different          0
"
        .to_string(),
        "flow employee: DIFFERENT
  rows in source     4
  entities in graph  3
  missing            1  id=13
  extra              0
  different          1  id=11 [email]
"
        .to_string(),
        clean("project", 3),
        clean("employee_company", 3),
        "flow employee_manager: DIFFERENT
  rows in source     1
  entities in graph  2
  missing            0
  extra              1  (id=12, manager_id=10)
  different          0
"
        .to_string(),
        clean("employee_project", 4),
    ]
    .concat()
        + "verify: 3 of 6 flows match, 3 different, 0 not verifiable\n";
    assert_eq!(out.stdout, expect, "{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["match"], false);
    assert_eq!(summary["flows"][1]["first_different"][0]["key"]["id"], "11");
    assert_eq!(
        summary["flows"][1]["first_different"][0]["columns"],
        serde_json::json!(["email"])
    );

    // A sample finds the changed employee when it draws every key.
    let out = verify(&spec, &["--sample", "100", "--seed", "7"]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "flow employee: DIFFERENT (sample of 4 keys)
  rows in source     4
  entities in graph  3
  missing            1  id=13
  extra              0
  different          1  id=11 [email]
"
        ),
        "{}",
        out.stdout
    );
}

/// A MySQL table -> Bolt spec of several flows; `flows` is the YAML of the `flows:` list.
fn hand_spec(name: &str, db: &str, flows: &str) -> String {
    SpecBuilder::new(name)
        .source_mysql(db)
        .sink_bolt_db(db)
        .flows(flows)
        .build()
}

const PEOPLE: &str = "  - name: people
    source: {partition_column: id, partition_num: 3, options: {table: person}}
    sink: {options: {query: 'UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p.name = row.name'}}
    verify:
      key: [id]
      query: >-
        MATCH (p:Person) WHERE ($lo IS NULL OR p.id >= $lo) AND ($hi IS NULL OR p.id < $hi)
        RETURN p.id AS id, p.name AS name ORDER BY id
";

/// A sink that cannot read back: not verifiable, never a match.
fn assert_a_console_sink_is_not_verifiable() {
    let console = SpecBuilder::new("vf_console")
        .mysql_table("vf_hand", "person")
        .sink_option("mode: count")
        .extra_yaml("verify: {key: [id], query: 'MATCH (p:Person) RETURN p.id AS id'}\n")
        .build();
    let (_, out) = etlhost_with_spec("verify", "vf_console.yaml", &console, &[]);
    assert_eq!(out.code, 6, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "flow vf_console: not verifiable: the sink plugin cannot read (plugin 'console' exports no `etlhost_sink_query`)
verify: 0 of 1 flows match, 0 different, 1 not verifiable
"
    );
}

/// A graph `spec`'s verify cannot read (a wrong password): exit code 3, and the password stays
/// out of the message.
fn assert_an_unreadable_graph_fails_without_the_password(spec: &str) {
    let wrong = spec.replace(
        &format!("password: {GRAPH_PASSWORD}"),
        "password: vf-wrong-pass",
    );
    let (_, out) = etlhost_with_spec("verify", "vf_hand_wrong.yaml", &wrong, &[]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .starts_with("error: flow people: cannot read the graph: plugin bolt: "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("vf-wrong-pass"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_hand_written_flows_with_and_without_a_verify_block() {
    let pool = crate::support::person_table("vf_hand", 50, "p").await;
    let g = graph("vf_hand").await;
    let flows = format!(
        "{PEOPLE}  - name: tags
    source: {{options: {{table: person}}}}
    sink: {{options: {{query: 'UNWIND $batch AS row CREATE (:Tag {{id: row.id}})'}}}}
"
    );
    let text = hand_spec("vf_hand", "vf_hand", &flows);
    let summary = run_job("vf_hand", &text);
    assert_eq!(summary["written"], 100, "{summary}");

    let (_, out) = etlhost_with_spec("verify", "vf_hand.yaml", &text, &[]);
    assert_eq!(out.code, 6, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        clean("people", 50)
            + "flow tags: not verifiable: the flow has no `verify:` block naming the graph's side (its query and key)
verify: 1 of 2 flows match, 0 different, 1 not verifiable
"
    );

    // Only the verifiable flow: exit 0 when it matches, 5 once it does not.
    let one = hand_spec("vf_hand", "vf_hand", PEOPLE);
    let (_, out) = etlhost_with_spec("verify", "vf_hand_one.yaml", &one, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    exec(
        &pool,
        "UPDATE person SET name = 'changed' WHERE id IN (7, 40)",
    )
    .await;
    exec(&pool, "DELETE FROM person WHERE id = 33").await;
    g.run(neo4rs::query("CREATE (:Person {id: 1000, name: 'ghost'})"))
        .await
        .unwrap();
    let (_, out) = etlhost_with_spec("verify", "vf_hand_one.yaml", &one, &["--chunk-rows", "4"]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "flow people: DIFFERENT
  rows in source     49
  entities in graph  51
  missing            0
  extra              2  id=33, id=1000
  different          2  id=7 [name], id=40 [name]
verify: 0 of 1 flows match, 1 different, 0 not verifiable
"
    );

    // Without a `lookup` query, a sample runs the block's query once per key.
    let (_, out) = etlhost_with_spec(
        "verify",
        "vf_hand_one.yaml",
        &one,
        &["--sample", "10", "--seed", "3"],
    );
    assert!(
        out.stdout.contains(" (sample of 10 keys)\n"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );

    assert_a_console_sink_is_not_verifiable();

    assert_an_unreadable_graph_fails_without_the_password(&one);

    // A mistake in the block is reported at its line, before anything is read.
    let refused = |to: &str, error: &str| {
        let bad = one.replace("key: [id]", to);
        let (path, out) = etlhost_with_spec("verify", "vf_hand_bad.yaml", &bad, &[]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(
            out.stderr.trim(),
            format!("error: {}:{error}", path.display())
        );
    };
    refused(
        "key: [name]",
        "20: flows[0].verify.key[0]: `name` must be the source's partition_column `id`: splits are compared by key range",
    );
    refused(
        "key: [id]\n      compare: [name, age]",
        "21: flows[0].verify.compare: the source's rows have no column `age` (they have: id, name)",
    );
    refused(
        "key: []",
        "20: flows[0].verify.key: must name at least one column",
    );
}

/// Every type of the README's type table, with the edge cases: a correct load must verify clean.
async fn types_table(db: &str) {
    let pool = mysql(db).await;
    exec(
        &pool,
        "CREATE TABLE types (
            id INT PRIMARY KEY,
            p POINT NULL, c POINT NULL, g GEOMETRY NULL,
            b1 BIT(1) NULL, b8 BIT(8) NULL, t1 TINYINT(1) NULL,
            s SET('a','b','c') NULL,
            ts TIMESTAMP(6) NULL, dt DATETIME(6) NULL, d DATE NULL, tm TIME(6) NULL,
            doc JSON NULL, dec_ DECIMAL(10,2) NULL, big BIGINT UNSIGNED NULL,
            f FLOAT NULL, db DOUBLE NULL, vb VARBINARY(10) NULL, txt TEXT NULL
        )",
    )
    .await;
    exec(&pool, "SET time_zone = '+02:00'").await;
    exec(
        &pool,
        "INSERT INTO types VALUES
         (1, ST_GeomFromText('POINT(13.4 52.5)', 4326), ST_GeomFromText('POINT(1.5 -2)'),
          ST_GeomFromText('LINESTRING(0 0,1 1)'), b'1', b'10100101', 1, 'c,a',
          '2024-01-02 05:04:05.123456', '2024-01-02 03:04:05.123456', '2024-02-29',
          '-838:59:59', '{\"name\": \"Ada\", \"tags\": [\"x\", \"y\"]}', 12.5,
          18446744073709551615, 0.1, 2.5e-300, x'00ff', 'Grüße ✓'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL),
         (3, NULL, NULL, NULL, b'0', NULL, 2, '', '1970-01-01 02:00:01', '1000-01-01 00:00:00',
          '9999-12-31', '12:30:00.5', '[]', -0.01, 5, -1, 0, '', '')",
    )
    .await;
}

const TYPES_VERIFY: &str = "
verify:
  key: [id]
  query: >-
    MATCH (r:Row) WHERE ($lo IS NULL OR r.id >= $lo) AND ($hi IS NULL OR r.id < $hi)
    RETURN r.id AS id, r.p AS p, r.c AS c, r.g AS g, r.b1 AS b1, r.b8 AS b8, r.t1 AS t1,
    r.s AS s, r.ts AS ts, r.dt AS dt, r.d AS d, r.tm AS tm, r.doc AS doc, r.dec_ AS dec_,
    r.big AS big, r.f AS f, r.db AS db, r.vb AS vb, r.txt AS txt ORDER BY id
";

const TYPES_WRITE: &str = "UNWIND $batch AS row CREATE (r:Row {id: row.id, p: row.p, c: row.c, \
    g: row.g, b1: row.b1, b8: row.b8, t1: row.t1, s: row.s, ts: row.ts, dt: row.dt, d: row.d, \
    tm: row.tm, doc: row.doc, dec_: row.dec_, big: row.big, f: row.f, db: row.db, vb: row.vb, \
    txt: row.txt})";

#[tokio::test(flavor = "multi_thread")]
async fn verify_types_table_is_clean_as_mapped() {
    types_table("vf_types").await;
    let g = graph("vf_types").await;
    let base = SpecBuilder::new("vf_types")
        .mysql_table("vf_types", "types")
        .partition("id", 2)
        .sink_bolt("vf_types", TYPES_WRITE)
        .batch(100)
        .extra_yaml(TYPES_VERIFY)
        .build();
    run_job("vf_types", &base);
    let (_, out) = etlhost_with_spec("verify", "vf_types.yaml", &base, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        clean("vf_types", 3) + "verify: 1 of 1 flows match, 0 different, 0 not verifiable\n"
    );
    // A value changed in the graph is found, in its column.
    g.run(neo4rs::query(
        "MATCH (r:Row {id: 1}) SET r.dt = localdatetime('2024-01-02T03:04:05.123457')",
    ))
    .await
    .unwrap();
    let (_, out) = etlhost_with_spec("verify", "vf_types.yaml", &base, &[]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("  different          1  id=1 [dt]\n"),
        "{}",
        out.stdout
    );

    // The other mappings: booleans from TINYINT(1), BIT(1) as bytes, temporals and decimals as
    // the sink wrote them (text, floats).
    let g2 = graph("vf_types_opt").await;
    let options = base
        .replacen(
            "    table: types\n",
            "    table: types\n    tinyint1_as_bool: true\n    bit1_as_bool: false\n",
            1,
        )
        .replacen(
            "    database: vf_types\n",
            "    database: vf_types_opt\n    temporal: string\n    decimal: float\n",
            1,
        );
    run_job("vf_types_opt", &options);
    drop(g2);
    let (_, out) = etlhost_with_spec("verify", "vf_types_opt.yaml", &options, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_applies_the_flows_transforms_to_the_source_side() {
    crate::support::person_table("vf_wasm", 30, "n").await;
    let g = graph("vf_wasm").await;
    let component = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("transforms/field-map.wasm");
    assert!(component.exists(), "run `cargo xtask build` first");
    let flows = format!(
        "  - name: labels
    source: {{partition_column: id, options: {{table: person}}}}
    transforms:
      - name: label
        component: {}
        config: {{compute: {{label: \"x-{{name}}\"}}, drop: [name]}}
    sink: {{options: {{query: 'UNWIND $batch AS row MERGE (p:Person {{id: row.id}}) SET p.label = row.label'}}}}
    verify:
      key: [id]
      query: >-
        MATCH (p:Person) WHERE ($lo IS NULL OR p.id >= $lo) AND ($hi IS NULL OR p.id < $hi)
        RETURN p.id AS id, p.label AS label ORDER BY id
",
        component.display()
    );
    let text = hand_spec("vf_wasm", "vf_wasm", &flows);
    run_job("vf_wasm", &text);
    let (_, out) = etlhost_with_spec("verify", "vf_wasm.yaml", &text, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        clean("labels", 30) + "verify: 1 of 1 flows match, 0 different, 0 not verifiable\n"
    );
    g.run(neo4rs::query(
        "MATCH (p:Person {id: 9}) SET p.label = 'x-n99'",
    ))
    .await
    .unwrap();
    let (_, out) = etlhost_with_spec("verify", "vf_wasm.yaml", &text, &[]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("  different          1  id=9 [label]\n"),
        "{}",
        out.stdout
    );
}
