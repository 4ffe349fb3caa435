//! JavaScript transforms of both worlds over a row of every MySQL type: each value read into
//! JavaScript and written back arrives in the graph as it left MySQL; a row the function throws
//! a `RowError` for is dead-lettered with its reason, one it returns null for is filtered out.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;
use neo4rs::BoltType;

use crate::support::{graph, mysql, one, run_job, SpecBuilder};

/// A transform built by `cargo xtask build`.
fn component(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(format!("transforms/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build`",
        path.display()
    );
    path.display().to_string()
}

/// Every column type of the README's type table: row 1 values, row 2 NULLs, row 3 edge cases,
/// rows 4 and 5 for the transform to refuse and to drop.
async fn types_table(db: &str) {
    let pool = mysql(db).await;
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop(
        "CREATE TABLE types (
            id INT PRIMARY KEY, p POINT NULL, c POINT NULL, g GEOMETRY NULL, b1 BIT(1) NULL,
            b8 BIT(8) NULL, t1 TINYINT(1) NULL, s SET('a','b','c') NULL, ts TIMESTAMP(6) NULL,
            dt DATETIME(6) NULL, d DATE NULL, tm TIME(6) NULL, doc JSON NULL,
            dec_ DECIMAL(10,2) NULL, f DOUBLE NULL, big BIGINT UNSIGNED NULL, txt TEXT NULL,
            blb BLOB NULL
        )",
    )
    .await
    .unwrap();
    c.query_drop("SET time_zone = '+02:00'").await.unwrap();
    c.query_drop(
        "INSERT INTO types VALUES
         (1, ST_GeomFromText('POINT(13.4 52.5)', 4326), ST_GeomFromText('POINT(1.5 -2)'),
          ST_GeomFromText('LINESTRING(0 0,1 1)'), b'1', b'10100101', 1, 'c,a',
          '2024-01-02 05:04:05.123456', '2024-01-02 03:04:05.123456', '2024-02-29',
          '-838:59:58.999999', '{\"name\": \"Ada\", \"tags\": [\"x\", \"y\"], \"n\": 7}',
          12.5, -0.25, 18446744073709551615, 'Grüße, 世界 🌍', x'00ff10'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL),
         (3, NULL, NULL, NULL, b'0', NULL, 2, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          '', ''),
         (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, 'refused', NULL),
         (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, 'dropped', NULL)",
    )
    .await
    .unwrap();
}

const COLUMNS: &str = "[id, p, c, g, b1, b8, t1, s, ts, dt, d, tm, doc, dec_, f, big, txt, blb]";

const WRITE: &str = "UNWIND $batch AS row CREATE (r:Row {id: row.id, p: row.p, c: row.c, \
    g: row.g, b1: row.b1, b8: row.b8, t1: row.t1, s: row.s, ts_text: toString(row.ts), \
    dt_text: toString(row.dt), d_text: toString(row.d), tm: row.tm, doc_name: row.doc.name, \
    doc_tags: row.doc.tags, doc_n: row.doc.n, dec: row.dec_, f: row.f, big: toString(row.big), \
    txt: row.txt, blb: row.blb, touched: row.touched})";

fn dead_letter(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.dead-letter.jsonl"))
}

/// The job of `types` in `db` through `transforms`, JSON read as values, batches of 2 (so the
/// rows cross in several calls).
fn run_types(db: &str, transforms: &str) -> serde_json::Value {
    let _ = std::fs::remove_file(dead_letter(db));
    let spec = SpecBuilder::new(db)
        .top(format_args!("dead_letter: {}", dead_letter(db).display()))
        .top("max_failed_rows: 10")
        .mysql_table(db, "types")
        .source_option("json_columns: [doc]")
        .transforms(transforms)
        .sink_bolt(db, WRITE)
        .batch(2)
        .build();
    run_job(db, &spec)
}

async fn prop(g: &neo4rs::Graph, id: i64, key: &str) -> BoltType {
    one(
        g,
        &format!("MATCH (r:Row {{id: {id}}}) RETURN r.{key} AS n"),
    )
    .await
}

async fn text(g: &neo4rs::Graph, id: i64, key: &str) -> String {
    match prop(g, id, key).await {
        BoltType::String(s) => s.value,
        other => panic!("{key} of row {id}: expected a string, got {other:?}"),
    }
}

fn bytes(v: BoltType) -> Vec<u8> {
    match v {
        BoltType::Bytes(b) => b.value.to_vec(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn strings(v: BoltType) -> Vec<String> {
    match v {
        BoltType::List(l) => l
            .value
            .into_iter()
            .map(|s| match s {
                BoltType::String(s) => s.value,
                other => panic!("expected strings, got {other:?}"),
            })
            .collect(),
        other => panic!("expected a list, got {other:?}"),
    }
}

/// What every test here expects of the graph: each value of rows 1-3 as MySQL holds it.
async fn assert_types(g: &neo4rs::Graph, touched: bool) {
    let p: neo4rs::Point2D = one(g, "MATCH (r:Row {id: 1}) RETURN r.p AS n").await;
    assert_eq!((p.sr_id(), p.x(), p.y()), (4326, 13.4, 52.5));
    let c: neo4rs::Point2D = one(g, "MATCH (r:Row {id: 1}) RETURN r.c AS n").await;
    assert_eq!((c.sr_id(), c.x(), c.y()), (7203, 1.5, -2.0));
    let mut line = vec![0, 0, 0, 0, 1, 2, 0, 0, 0, 2, 0, 0, 0];
    line.extend([0.0f64, 0.0, 1.0, 1.0].iter().flat_map(|f| f.to_le_bytes()));
    assert_eq!(bytes(prop(g, 1, "g").await), line);
    assert!(matches!(prop(g, 1, "b1").await, BoltType::Boolean(b) if b.value));
    assert!(matches!(prop(g, 3, "b1").await, BoltType::Boolean(b) if !b.value));
    assert_eq!(bytes(prop(g, 1, "b8").await), [0b1010_0101]);
    assert!(matches!(prop(g, 3, "t1").await, BoltType::Integer(i) if i.value == 2));
    assert_eq!(strings(prop(g, 1, "s").await), ["a", "c"]);
    assert_eq!(strings(prop(g, 3, "s").await), Vec::<String>::new());
    // Microseconds survive JavaScript's millisecond Dates.
    assert_eq!(text(g, 1, "ts_text").await, "2024-01-02T03:04:05.123456Z");
    assert_eq!(text(g, 1, "dt_text").await, "2024-01-02T03:04:05.123456");
    assert_eq!(text(g, 1, "d_text").await, "2024-02-29");
    assert_eq!(text(g, 1, "doc_name").await, "Ada");
    assert_eq!(strings(prop(g, 1, "doc_tags").await), ["x", "y"]);
    assert!(matches!(prop(g, 1, "doc_n").await, BoltType::Integer(i) if i.value == 7));
    assert_eq!(text(g, 1, "dec").await, "12.50");
    assert!(matches!(prop(g, 1, "f").await, BoltType::Float(x) if x.value == -0.25));
    assert_eq!(text(g, 1, "big").await, "18446744073709551615");
    assert_eq!(text(g, 1, "txt").await, "Grüße, 世界 🌍");
    assert_eq!(text(g, 3, "txt").await, "");
    assert_eq!(bytes(prop(g, 1, "blb").await), [0, 0xff, 0x10]);
    let tm = prop(g, 1, "tm").await;
    assert!(
        !matches!(tm, BoltType::Null(_)),
        "TIME -838:59:58.999999 went missing"
    );
    let keys: Vec<String> = one(g, "MATCH (r:Row {id: 2}) RETURN keys(r) AS n").await;
    let expected: &[&str] = if touched { &["id", "touched"] } else { &["id"] };
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
}

fn dead_letters(db: &str) -> Vec<(i64, String)> {
    std::fs::read_to_string(dead_letter(db))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["row"]["id"].as_i64().unwrap(),
                v["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_js_every_mysql_type_crosses_both_worlds_and_back() {
    let db = "tjs_types";
    types_table(db).await;
    let g = graph(db).await;
    // Every value decoded into a new object and encoded again (encoded world), set on the row
    // again, the row handed back as it came (kept: the host's own bytes), then the same copy in
    // the values world (the SDK's row functions built for `transform`).
    let transforms = format!(
        "  - name: copy
    component: {rt}
    config: {{columns: {COLUMNS}, error_id: 4, drop_id: 5}}
  - name: set
    component: {rt}
    config: {{columns: {COLUMNS}, mode: set}}
  - name: same
    component: {rt}
    config: {{mode: same}}
  - name: values
    component: {values}
    config: {{columns: {cols}}}",
        rt = component("js-roundtrip"),
        values = component("js-roundtrip-values"),
        cols = COLUMNS.replace(']', ", touched]"),
    );
    let summary = run_types(db, &transforms);
    assert_eq!(summary["read"], 5, "{summary}");
    assert_eq!(summary["written"], 3, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["filtered"], 1, "{summary}");
    assert_types(&g, true).await;
    assert!(matches!(prop(&g, 1, "touched").await, BoltType::Boolean(b) if b.value));
    assert_eq!(
        dead_letters(db),
        [(4, "transform copy: row 4 refused on purpose".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_js_rows_kept_whole_are_the_sources_bytes() {
    let db = "tjs_kept";
    types_table(db).await;
    let g = graph(db).await;
    // The row function returns the row it was given: every row is answered `keep` and no value
    // is decoded, except the id it compares (row 4 is refused, row 5 dropped).
    let transforms = format!(
        "  - name: same
    component: {}
    config: {{mode: same, error_id: 4, drop_id: 5}}
  - name: identity
    component: {}",
        component("js-roundtrip"),
        component("js-identity")
    );
    let summary = run_types(db, &transforms);
    assert_eq!(summary["written"], 3, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["filtered"], 1, "{summary}");
    assert_types(&g, false).await;
    assert_eq!(
        dead_letters(db),
        [(4, "transform same: row 4 refused on purpose".to_string())]
    );
}
