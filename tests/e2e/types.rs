//! The types a graph user expects (README, "Types"): one MySQL row per case of the type table,
//! moved through the bolt sink and read back from the graph, each property's Bolt type and value.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;
use neo4rs::BoltType;

use crate::support::{etlhost_command, graph, mysql, mysql_url, one, run_job, SpecBuilder};

/// A table with a column for every row of the README's type table: row 1 holds values, row 2 only
/// NULLs, row 3 the edge cases (an empty SET, a TINYINT(1) holding 2, BIT(1) 0).
async fn types_table(db: &str) {
    let pool = mysql(db).await;
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop(
        "CREATE TABLE types (
            id INT PRIMARY KEY,
            p POINT NULL,
            c POINT NULL,
            g GEOMETRY NULL,
            b1 BIT(1) NULL,
            b8 BIT(8) NULL,
            t1 TINYINT(1) NULL,
            s SET('a','b','c') NULL,
            ts TIMESTAMP(6) NULL,
            dt DATETIME(6) NULL,
            doc JSON NULL,
            dec_ DECIMAL(10,2) NULL
        )",
    )
    .await
    .unwrap();
    // Written in another time zone: the source must read the instant in UTC all the same.
    c.query_drop("SET time_zone = '+02:00'").await.unwrap();
    c.query_drop(
        "INSERT INTO types VALUES
         (1, ST_GeomFromText('POINT(13.4 52.5)', 4326), ST_GeomFromText('POINT(1.5 -2)'),
          ST_GeomFromText('LINESTRING(0 0,1 1)'), b'1', b'10100101', 1, 'c,a',
          '2024-01-02 05:04:05.123456', '2024-01-02 03:04:05.123456',
          '{\"name\": \"Ada\", \"tags\": [\"x\", \"y\"]}', 12.5),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (3, NULL, NULL, NULL, b'0', NULL, 2, '', NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
}

/// Property `key` of row `id`, as the Bolt value the server returns.
async fn prop(g: &neo4rs::Graph, id: i64, key: &str) -> BoltType {
    one(
        &g.clone(),
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

/// Point property `key` of row `id`: srid, x, y (neo4rs reads a point only as its own type).
async fn point(g: &neo4rs::Graph, id: i64, key: &str) -> (i64, f64, f64) {
    let p: neo4rs::Point2D = one(
        g,
        &format!("MATCH (r:Row {{id: {id}}}) RETURN r.{key} AS n"),
    )
    .await;
    (p.sr_id(), p.x(), p.y())
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

fn bytes(v: BoltType) -> Vec<u8> {
    match v {
        BoltType::Bytes(b) => b.value.to_vec(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

const WRITE: &str = "UNWIND $batch AS row CREATE (r:Row {id: row.id, p: row.p, c: row.c, \
    g: row.g, b1: row.b1, b8: row.b8, t1: row.t1, s: row.s, ts: row.ts, \
    ts_text: toString(row.ts), dt: row.dt, dt_text: toString(row.dt), dec: row.dec_, \
    DOC})";

#[tokio::test(flavor = "multi_thread")]
async fn types_every_type_arrives_as_the_bolt_type_the_readme_names() {
    types_table("types_default").await;
    let g = graph("types_default").await;
    let cypher = WRITE.replace("DOC", "doc: row.doc");
    let summary = run_job(
        "types_default",
        &types_spec("types_default", &cypher).build(),
    );
    assert_eq!(summary["written"], 3, "{summary}");

    // POINT with SRID 4326: a WGS-84 point, x = longitude, y = latitude as stored.
    assert_eq!(point(&g, 1, "p").await, (4326, 13.4, 52.5));
    // SRID 0: cartesian.
    assert_eq!(point(&g, 1, "c").await, (7203, 1.5, -2.0));
    // Other shapes keep MySQL's bytes: SRID 0, then the WKB of LINESTRING(0 0,1 1).
    let mut line = vec![0, 0, 0, 0, 1, 2, 0, 0, 0, 2, 0, 0, 0];
    line.extend([0.0f64, 0.0, 1.0, 1.0].iter().flat_map(|f| f.to_le_bytes()));
    assert_eq!(bytes(prop(&g, 1, "g").await), line);
    // BIT(1) is a boolean by default; BIT(8) stays bytes.
    assert!(matches!(prop(&g, 1, "b1").await, BoltType::Boolean(b) if b.value));
    assert!(matches!(prop(&g, 3, "b1").await, BoltType::Boolean(b) if !b.value));
    assert_eq!(bytes(prop(&g, 1, "b8").await), [0b1010_0101]);
    // TINYINT(1) stays an integer by default, so 2 stays 2.
    assert!(matches!(prop(&g, 1, "t1").await, BoltType::Integer(i) if i.value == 1));
    assert!(matches!(prop(&g, 3, "t1").await, BoltType::Integer(i) if i.value == 2));
    // SET: a list of its members (MySQL orders them as declared); the empty set an empty list.
    assert_eq!(strings(prop(&g, 1, "s").await), ["a", "c"]);
    assert_eq!(strings(prop(&g, 3, "s").await), Vec::<String>::new());
    // TIMESTAMP: a zoned DateTime in UTC (written at +02:00 as 05:04:05). ArcadeDB stores a
    // DateTime property as its local date and time, which is the UTC time here.
    assert_eq!(text(&g, 1, "ts_text").await, "2024-01-02T03:04:05.123456Z");
    let ts: String = one(&g, "MATCH (r:Row {id: 1}) RETURN toString(r.ts) AS n").await;
    assert_eq!(ts, "2024-01-02T03:04:05.123456");
    // DATETIME stays a LocalDateTime.
    assert!(matches!(
        prop(&g, 1, "dt").await,
        BoltType::LocalDateTime(_)
    ));
    assert_eq!(text(&g, 1, "dt_text").await, "2024-01-02T03:04:05.123456");
    // JSON stays text by default (MariaDB keeps it as written); DECIMAL its exact text.
    assert_eq!(
        text(&g, 1, "doc").await,
        r#"{"name": "Ada", "tags": ["x", "y"]}"#
    );
    assert_eq!(text(&g, 1, "dec").await, "12.50");
    // NULLs: no property at all.
    let keys: Vec<String> = one(&g, "MATCH (r:Row {id: 2}) RETURN keys(r) AS n").await;
    assert_eq!(keys, ["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn types_options_make_tinyint1_booleans_bit1_bytes_json_values_and_temporals_text() {
    types_table("types_options").await;
    let g = graph("types_options").await;
    // Neo4j (and ArcadeDB) cannot store a map as a property: the query takes it apart.
    let cypher = WRITE.replace("DOC", "doc_name: row.doc.name, doc_tags: row.doc.tags");
    let text_spec = types_spec("types_options", &cypher)
        .source_option("tinyint1_as_bool: true")
        .source_option("bit1_as_bool: false")
        .source_option("json_columns: [doc]")
        .sink_option("temporal: string")
        .build();
    let summary = run_job("types_options", &text_spec);
    assert_eq!(summary["written"], 3, "{summary}");

    // Any TINYINT(1) other than 0 is true: the option trades 2 for true.
    assert!(matches!(prop(&g, 1, "t1").await, BoltType::Boolean(b) if b.value));
    assert!(matches!(prop(&g, 3, "t1").await, BoltType::Boolean(b) if b.value));
    assert_eq!(bytes(prop(&g, 1, "b1").await), [1]);
    assert_eq!(bytes(prop(&g, 3, "b1").await), [0]);
    // MariaDB's JSON (a LONGTEXT) parsed because the column is named in json_columns.
    assert_eq!(text(&g, 1, "doc_name").await, "Ada");
    assert_eq!(strings(prop(&g, 1, "doc_tags").await), ["x", "y"]);
    // temporal: string writes the zoned datetime as ISO 8601 with Z, the local one without.
    assert_eq!(text(&g, 1, "ts").await, "2024-01-02T03:04:05.123456Z");
    assert_eq!(text(&g, 1, "dt").await, "2024-01-02T03:04:05.123456");
    // Points are not temporal: they stay points.
    assert_eq!(point(&g, 1, "p").await, (4326, 13.4, 52.5));
}

/// A transform built by `cargo xtask build`.
fn component(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
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

/// The job of `types` into graph `db` (named alike), batches of 100.
fn types_spec(db: &str, cypher: &str) -> SpecBuilder {
    SpecBuilder::new(db)
        .mysql_table(db, "types")
        .sink_bolt(db, cypher)
        .batch(100)
}

/// The job of `types` into graph `db` (named alike), its JSON column read as values, with the
/// spec's `transforms:` list.
fn transformed_job(db: &str, cypher: &str, transforms: &str) -> String {
    types_spec(db, cypher)
        .source_option("json_columns: [doc]")
        .transforms(transforms)
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn types_new_values_pass_through_transforms_unchanged() {
    types_table("types_wasm").await;
    let g = graph("types_wasm").await;
    // field-map hands every value back (a row of its own, plus a computed column); the Rust
    // identity (encoded world, among values-world transforms) keeps them as they are; the Python
    // and JS identities receive them all.
    let transforms = format!(
        "  - name: label
    component: {}
    config: {{compute: {{label: \"row {{id}}\"}}}}
  - name: rust
    component: {}
  - name: py
    component: {}
  - name: js
    component: {}",
        component("field-map"),
        component("identity"),
        component("py-identity"),
        component("js-identity")
    );
    let cypher = WRITE.replace(
        "DOC",
        "doc_name: row.doc.name, doc_tags: row.doc.tags, label: row.label",
    );
    let summary = run_job(
        "types_wasm",
        &transformed_job("types_wasm", &cypher, &transforms),
    );
    assert_eq!(summary["written"], 3, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    assert_eq!(text(&g, 1, "label").await, "row 1");
    assert_eq!(point(&g, 1, "p").await, (4326, 13.4, 52.5));
    assert_eq!(point(&g, 1, "c").await, (7203, 1.5, -2.0));
    assert_eq!(strings(prop(&g, 1, "s").await), ["a", "c"]);
    assert_eq!(strings(prop(&g, 3, "s").await), Vec::<String>::new());
    assert_eq!(text(&g, 1, "ts_text").await, "2024-01-02T03:04:05.123456Z");
    assert_eq!(text(&g, 1, "dt_text").await, "2024-01-02T03:04:05.123456");
    assert_eq!(text(&g, 1, "doc_name").await, "Ada");
    assert_eq!(strings(prop(&g, 1, "doc_tags").await), ["x", "y"]);
    assert!(matches!(prop(&g, 1, "b1").await, BoltType::Boolean(b) if b.value));
}

#[tokio::test(flavor = "multi_thread")]
async fn types_new_values_cross_an_encoded_transform_unchanged() {
    types_table("types_encoded").await;
    let g = graph("types_encoded").await;
    // Row 1 comes back twice, decoded and encoded again in the guest; rows 2 and 3 stay the
    // source's bytes (kept); row 3 is then dropped by a second transform.
    let transforms = format!(
        "  - name: twice
    component: {c}
    config: {{expand_on: 1}}
  - name: less
    component: {c}
    config: {{drop_on: 3}}",
        c = component("faulty-encoded")
    );
    let cypher = WRITE.replace("DOC", "doc_name: row.doc.name, doc_tags: row.doc.tags");
    let job = transformed_job("types_encoded", &cypher, &transforms);
    let summary = run_job("types_encoded", &job);
    assert_eq!(summary["read"], 3, "{summary}");
    assert_eq!(summary["written"], 3, "{summary}");
    assert_eq!(summary["added"], 1, "{summary}");
    assert_eq!(summary["filtered"], 1, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    assert_eq!(
        one::<i64>(&g, "MATCH (r:Row {id: 1}) RETURN count(r) AS n").await,
        2
    );
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (r:Row {id: 2}) WHERE r.p IS NULL RETURN count(r) AS n"
        )
        .await,
        1
    );
    assert_eq!(
        one::<i64>(&g, "MATCH (r:Row {id: 3}) RETURN count(r) AS n").await,
        0
    );
    // Both copies of row 1 hold every value.
    assert_eq!(
        one::<i64>(
            &g,
            "MATCH (r:Row {id: 1}) WHERE r.ts_text = '2024-01-02T03:04:05.123456Z' \
             AND r.dt_text = '2024-01-02T03:04:05.123456' AND r.doc_name = 'Ada' \
             AND r.doc_tags = ['x', 'y'] AND r.s = ['a', 'c'] AND r.b1 = true \
             RETURN count(r) AS n"
        )
        .await,
        2
    );
    assert_eq!(point(&g, 1, "p").await, (4326, 13.4, 52.5));
    assert_eq!(point(&g, 1, "c").await, (7203, 1.5, -2.0));
    assert!(matches!(prop(&g, 1, "b1").await, BoltType::Boolean(b) if b.value));
}

#[tokio::test(flavor = "multi_thread")]
async fn types_text_that_is_not_json_in_a_json_column_fails_the_read_naming_it() {
    let pool = mysql("types_badjson").await;
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop("CREATE TABLE notes (id INT PRIMARY KEY, note TEXT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO notes VALUES (1, '{\"ok\": 1}'), (2, 'oops')")
        .await
        .unwrap();
    graph("types_badjson").await;
    let job = SpecBuilder::new("types_badjson")
        .mysql_table("types_badjson", "notes")
        .source_option("json_columns: [note]")
        .sink_bolt(
            "types_badjson",
            "UNWIND $batch AS row CREATE (:Note {id: row.id})",
        )
        .batch(100)
        .build();
    let (_, out) = crate::support::etlhost_with_spec("run", "types_badjson.yaml", &job, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("column `note`: not JSON: expected value at line 1 column 1"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn types_a_timestamp_column_splits_and_keeps_an_incremental_cursor_in_utc() {
    let pool = mysql("types_cursor").await;
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop("CREATE TABLE ev (id INT PRIMARY KEY, at TIMESTAMP(6) NOT NULL)")
        .await
        .unwrap();
    // Written at +05:00: row i is i minutes after 2026-01-01T00:00Z.
    c.query_drop("SET time_zone = '+05:00'").await.unwrap();
    c.query_drop(
        "INSERT INTO ev SELECT seq, TIMESTAMP('2026-01-01 05:00:00') + INTERVAL seq MINUTE \
         FROM seq_1_to_100",
    )
    .await
    .unwrap();
    let g = graph("types_cursor").await;
    let state = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("types-cursor-state");
    let _ = std::fs::remove_dir_all(&state);
    let job = SpecBuilder::new("types_cursor")
        .top(format_args!("checkpoint:\n  dir: {}", state.display()))
        .mysql_table("types_cursor", "ev")
        .partition("at", 4)
        .source_line("cursor_column: at")
        .sink_bolt(
            "types_cursor",
            "UNWIND $batch AS row MERGE (e:Ev {id: row.id}) SET e.at = toString(row.at)",
        )
        .batch(1000)
        .build();
    let first = run_job("types_cursor", &job);
    assert_eq!(first["read"], 100, "{first}");
    let cursor: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("types_cursor.cursor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cursor["text"], "2026-01-01T01:40:00Z");
    let at: String = one(&g, "MATCH (e:Ev {id: 100}) RETURN e.at AS n").await;
    // (ArcadeDB's toString, like Java's, leaves out seconds that are zero.)
    assert_eq!(at, "2026-01-01T01:40Z");

    c.query_drop(
        "INSERT INTO ev SELECT seq, TIMESTAMP('2026-01-01 06:00:00') + INTERVAL seq MINUTE \
         FROM seq_101_to_110",
    )
    .await
    .unwrap();
    // The 10 new rows and the one at the stored cursor (the bound is inclusive).
    let second = run_job("types_cursor", &job);
    assert_eq!(second["read"], 11, "{second}");
    assert_eq!(
        one::<i64>(&g, "MATCH (e:Ev) RETURN count(e) AS n").await,
        110
    );
}

/// Every MySQL type at its extremes, NULLs, text that is not ASCII, values over 64 KiB and 16 MiB
/// of rows in all, read by the built-in client and by mysql_async: the same rows, line for line.
/// Every row of `every` in MySQL database `db` as the console sink prints it, sorted, read with
/// the mysql source's `client` (3 splits).
fn read_every(db: &str, client: &str) -> Vec<String> {
    let text = SpecBuilder::new(&format!("types_clients_{client}"))
        .source_url(&mysql_url(db))
        .table("every")
        .partition("id", 3)
        .source_option("fetch_size: 100")
        .source_option(format_args!("client: {client}"))
        .build();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("specs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("types_clients_{client}.yaml"));
    std::fs::write(&path, text).unwrap();
    let out = etlhost_command()
        .args(["run", "--fresh"])
        .arg(&path)
        .env("RUST_LOG", "warn,plugin=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{client}: {stderr}");
    // Each split says which client read it.
    let splits = stderr.matches(&format!("client=\"{client}\"")).count()
        + stderr.matches(&format!("client={client}")).count();
    assert_eq!(splits, 3, "{client}: {stderr}");
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn types_both_clients_read_every_mysql_type_alike() {
    let db = "types_clients";
    let pool = mysql(db).await;
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop(
        "CREATE TABLE every (
            id INT PRIMARY KEY,
            ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
            mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
            bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec_ DECIMAL(30,10),
            b1 BIT(1), b8 BIT(8), t1 TINYINT(1), ch CHAR(10), vc VARCHAR(100),
            l1 VARCHAR(10) CHARACTER SET latin1, tx TEXT, lt LONGTEXT,
            bin BINARY(4), vb VARBINARY(10), bl BLOB, da DATE, dt DATETIME(6),
            ts TIMESTAMP(6) NULL, tm TIME(6), yr YEAR, en ENUM('x','y'), st SET('a','b'),
            js JSON, p POINT, g GEOMETRY
        )",
    )
    .await
    .unwrap();
    // No strict mode, so that the zero date is stored as MySQL users meet it.
    c.query_drop("SET sql_mode = ''").await.unwrap();
    c.query_drop(
        "INSERT INTO every VALUES
         (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
          -9223372036854775808, 18446744073709551615, 1.5, -2.25e300,
          '-12345678901234567890.0123456789', b'1', b'11111111', 1, 'ab',
          'héllo ✓ 日本 🎉', 'çà', REPEAT('x', 70000), REPEAT('y', 3000000), 0x00FF10FE,
          0xC328, REPEAT(0xAB, 60000), '1000-01-01', '9999-12-31 23:59:59.999999',
          '2038-01-19 03:14:07.999999', '-838:59:59.000000', 2155, 'y', 'a,b',
          '{\"k\": [1, null, \"ü\"]}', ST_GeomFromText('POINT(1 2)', 4326),
          ST_GeomFromText('LINESTRING(0 0,1 1)')),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (3, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0, -0.0, 5e-324,
          0, b'0', b'0', 2, '', '', '', '', '', '', '', '', '0000-00-00',
          '0000-00-00 00:00:00', NULL, '838:59:59.999999', 0, '', '', '[]', NULL, NULL)",
    )
    .await
    .unwrap();
    // Enough rows, each 3 MB, for batches to span many packets and the reader's buffer.
    c.query_drop(
        "INSERT INTO every (id, i, vc, lt) \
         SELECT seq, seq, CONCAT('n-', seq), REPEAT('z', 3000000 + seq) FROM seq_4_to_10",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO every (id, i, vc) SELECT seq, -seq, CONCAT('ñ-', seq) FROM seq_11_to_3000",
    )
    .await
    .unwrap();
    drop(c);
    pool.disconnect().await.unwrap();

    let built_in = read_every(db, "built_in");
    let mysql_async = read_every(db, "mysql_async");
    assert_eq!(built_in.len(), 3000);
    assert!(
        built_in.iter().any(|r| r.contains("héllo ✓ 日本 🎉")),
        "{}",
        built_in[0]
    );
    for (a, b) in built_in.iter().zip(&mysql_async) {
        assert_eq!(
            a, b,
            "the built-in client and mysql_async read a row differently"
        );
    }
    assert_eq!(built_in.len(), mysql_async.len());
}
