//! Every PostgreSQL type of issue 33 (point 3), moved through the postgres source and the bolt sink
//! and read back from the graph: each property's Bolt type and exact value, for a row of ordinary
//! values, a row of NULLs and rows of edge values (NaN and infinities, the integer extremes, a
//! numeric wider than any float, a text over 8 kB, non-ASCII, an empty array); and `etlhost verify`
//! of the same table, clean, then finding an interval and a timetz changed.

use neo4rs::BoltType;

use crate::postgres_schema::etlhost;
use crate::support::{
    graph, one, pg_init, pg_schema, pg_spec, pg_sql, pg_url, run_job_output, scratch_dir,
    SpecBuilder,
};

const SCHEMA: &str = "e2e_pg_types";

/// The table `types` in a fresh schema `schema` of database `etl`: a column per type, rows 1
/// (ordinary), 2 (NULLs), 3 and 4 (edge values).
fn types_table(schema: &str) {
    pg_schema(schema);
    pg_sql(
        "etl",
        &TYPES.replacen("e2e_pg_types,", &format!("{schema},"), 1),
    );
}

const TYPES: &str = "CREATE EXTENSION IF NOT EXISTS cube;
         SET search_path = e2e_pg_types, public;
         CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
         CREATE TABLE types (
           id int PRIMARY KEY,
           i2 smallint, i4 integer, i8 bigint, num numeric, num_s numeric(12,4),
           f4 real, f8 double precision,
           t text, vc varchar(20), ch char(5), by bytea, b boolean,
           d date, tm time, tz timetz, ts timestamp, tstz timestamptz, iv interval,
           u uuid, js json, jb jsonb, ai int[], at2 text[][],
           mood mood, pos positive, ip inet, net cidr, mac macaddr, cash money,
           rng int4range, tsv tsvector,
           pt geometry(Point, 4326), ln geometry(LineString, 4326),
           embedding cube, num_special numeric
         );
         SET TIME ZONE 'Europe/Berlin';
         INSERT INTO types VALUES
         (1, 12, 123456, 1234567890123, 12345678901234567890.123456789012, 12.5, 1.5, 2.25,
          'Grüße, 世界 🌍', 'héllo', 'ab', '\\x00ff10', true,
          '2024-02-29', '13:14:15.123456', '13:14:15.5+02:00', '2024-01-02 03:04:05.123456',
          '2024-01-02 03:04:05.123456+02', '1 year 2 mons 3 days 04:05:06.5',
          'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"b\": 1,  \"a\": [1, 2]}',
          '{\"b\": 1,  \"a\": [1, 2]}', '{1,NULL,3}', '{{a,b},{c,NULL}}',
          'happy', 42, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34,
          '[1,10)', 'a fat cat',
          ST_SetSRID(ST_MakePoint(13.4, 52.5), 4326),
          ST_GeomFromText('LINESTRING(0 0,1 1)', 4326), '(1, 2, 3)', 'NaN'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL),
         (3, 32767, -2147483648, -9223372036854775808, 0.000000000000000000001, -0.0001,
          'NaN', '-Infinity', repeat('ab€', 3000), '', 'abcde', '', false,
          '0001-01-01', '00:00:00', '23:59:59-11:30', '1900-01-01 00:00:00',
          '1970-01-01 00:00:00+00', '-3 days -00:00:01', '00000000-0000-0000-0000-000000000000',
          '[]', 'null', '{}', '{}', 'sad', 1, '::1', '::/0', '00:00:00:00:00:00',
          -92233720368547758.08, 'empty', '', NULL, NULL, NULL, 'Infinity'),
         (4, -32768, 2147483647, 9223372036854775807, -99999999999999999999999999999.5,
          99999999.9999, 'Infinity', 'NaN', 'x', NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity');";

/// A Bolt value as text to compare with: scalars as themselves (strings in JSON quotes, floats
/// with `f`, bytes in hex), lists in brackets, points and temporals by their fields.
fn render(v: &BoltType) -> String {
    match v {
        BoltType::Null(_) => "null".into(),
        BoltType::Boolean(b) => b.value.to_string(),
        BoltType::Integer(i) => i.value.to_string(),
        BoltType::Float(f) => format!("{:?}f", f.value),
        BoltType::String(s) => serde_json::to_string(&s.value).unwrap(),
        BoltType::Bytes(b) => {
            let hex: String = b.value.iter().map(|x| format!("{x:02x}")).collect();
            format!("0x{hex}")
        }
        BoltType::List(l) => {
            let items: Vec<String> = l.value.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        other => {
            // Temporals: their Bolt fields, without neo4rs's wrappers.
            format!("{other:?}")
                .replace("BoltInteger { value: ", "")
                .replace(" }", "")
                .replace(" {", "")
        }
    }
}

/// Property `key` of row `id`, rendered; neo4rs reads a point only as its own type.
async fn prop(g: &neo4rs::Graph, id: i64, key: &str) -> String {
    let cypher = format!("MATCH (r:PgRow {{id: {id}}}) RETURN r.{key} AS n");
    let mut rows = g.execute(neo4rs::query(&cypher)).await.unwrap();
    let row = rows.next().await.unwrap().expect("a row");
    match row.get::<BoltType>("n") {
        Ok(v) => render(&v),
        Err(_) => {
            let p: neo4rs::Point2D = row
                .get("n")
                .unwrap_or_else(|e| panic!("{cypher}: neither a Bolt value nor a point: {e}"));
            format!("point({}, {:?}, {:?})", p.sr_id(), p.x(), p.y())
        }
    }
}

/// Row, column, the value the graph must hold.
const EXPECTED: &[(i64, &str, &str)] = &[
    (1, "i2", "12"),
    (3, "i2", "32767"),
    (4, "i2", "-32768"),
    (1, "i4", "123456"),
    (3, "i4", "-2147483648"),
    (4, "i4", "2147483647"),
    (1, "i8", "1234567890123"),
    (3, "i8", "-9223372036854775808"),
    (4, "i8", "9223372036854775807"),
    // numeric: exact, as text (the mysql source's DECIMAL), its scale kept.
    (1, "num", "\"12345678901234567890.123456789012\""),
    (3, "num", "\"0.000000000000000000001\""),
    (4, "num", "\"-99999999999999999999999999999.5\""),
    // numeric's NaN and infinities (which no decimal holds) as their PostgreSQL text.
    (1, "num_special", "\"NaN\""),
    (3, "num_special", "\"Infinity\""),
    (4, "num_special", "\"-Infinity\""),
    (1, "num_s", "\"12.5000\""),
    (3, "num_s", "\"-0.0001\""),
    (4, "num_s", "\"99999999.9999\""),
    (1, "f4", "1.5f"),
    (3, "f4", "NaNf"),
    (4, "f4", "inff"),
    (1, "f8", "2.25f"),
    (3, "f8", "-inff"),
    (4, "f8", "NaNf"),
    (1, "t", "\"Grüße, 世界 🌍\""),
    (4, "t", "\"x\""),
    (1, "vc", "\"héllo\""),
    (3, "vc", "\"\""),
    // char(n) keeps its padding, as PostgreSQL returns it.
    (1, "ch", "\"ab   \""),
    (3, "ch", "\"abcde\""),
    (1, "by", "0x00ff10"),
    (3, "by", "0x"),
    (1, "b", "true"),
    (3, "b", "false"),
    // uuid: canonical lowercase text.
    (1, "u", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""),
    (3, "u", "\"00000000-0000-0000-0000-000000000000\""),
    // json keeps its text as written; jsonb is PostgreSQL's normalised text.
    (1, "js", "\"{\\\"b\\\": 1,  \\\"a\\\": [1, 2]}\""),
    (1, "jb", "\"{\\\"a\\\": [1, 2], \\\"b\\\": 1}\""),
    (3, "js", "\"[]\""),
    (3, "jb", "\"null\""),
    (1, "ai", "[1, null, 3]"),
    (3, "ai", "[]"),
    (1, "at2", "[[\"a\", \"b\"], [\"c\", null]]"),
    (1, "mood", "\"happy\""),
    (3, "mood", "\"sad\""),
    (1, "pos", "42"),
    (3, "pos", "1"),
    (1, "ip", "\"192.168.0.1/24\""),
    (3, "ip", "\"::1\""),
    (1, "net", "\"10.0.0.0/8\""),
    (3, "net", "\"::/0\""),
    (1, "mac", "\"08:00:2b:01:02:03\""),
    // money: exact decimal text, without the currency symbol of the server's locale.
    (1, "cash", "\"12.34\""),
    (3, "cash", "\"-92233720368547758.08\""),
    // ranges and tsvector: PostgreSQL's text forms.
    (1, "rng", "\"[1,10)\""),
    (3, "rng", "\"empty\""),
    (1, "tsv", "\"'a' 'cat' 'fat'\""),
    (3, "tsv", "\"\""),
    (1, "pt", "point(4326, 13.4, 52.5)"),
    // Other shapes as the mysql source gives them: the SRID (little-endian), then the WKB.
    (
        1,
        "ln",
        "0xe610000001020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f",
    ),
    // An unknown extension type arrives as its text.
    (1, "embedding", "\"(1, 2, 3)\""),
];

/// Temporal columns: row, column, the Bolt value's fields as neo4rs shows them.
const TEMPORAL: &[(i64, &str, &str)] = &[
    // Days since 1970-01-01.
    (1, "d", "Date(BoltDate days: 19782)"),
    // Nanoseconds since midnight; timetz with its offset in seconds.
    (
        1,
        "tm",
        "LocalTime(BoltLocalTime nanoseconds: 47655123456000)",
    ),
    (
        1,
        "tz",
        "Time(BoltTime nanoseconds: 47655500000000, tz_offset_seconds: 7200)",
    ),
    (
        1,
        "ts",
        "LocalDateTime(BoltLocalDateTime seconds: 1704164645, nanoseconds: 123456000)",
    ),
    // timestamptz is written as a DateTime at offset 0 (the instant, 01:04:05.123456 UTC);
    // ArcadeDB keeps it as a local date-time, which is the UTC time.
    (
        1,
        "tstz",
        "LocalDateTime(BoltLocalDateTime seconds: 1704157445, nanoseconds: 123456000)",
    ),
];

/// Values read with Cypher's `toString`: row, expression on `r`, the text. ArcadeDB keeps and
/// returns an interval's Bolt Duration whole (months, days, seconds and nanoseconds apart, as
/// `etlhost-bolt-client`'s `tests/temporal.rs` and `etlhost verify` read it), but neo4rs folds a
/// Duration into seconds and nanoseconds (a month as 30.4375 days, a negative one garbled), so
/// this test reads the stored value as its ISO-8601 text.
const AS_TEXT: &[(i64, &str, &str)] = &[
    (1, "toString(r.iv)", "P1Y2M3DT4H5M6.5S"),
    (3, "toString(r.iv)", "P-3DT-1S"),
    (1, "toString(r.tstz)", "2024-01-02T01:04:05.123456"),
    (3, "toString(r.tstz)", "1970-01-01T00:00"),
    (3, "toString(r.tz)", "23:59:59-11:30"),
    (3, "toString(r.d)", "0001-01-01"),
];

#[tokio::test(flavor = "multi_thread")]
async fn pg_every_type_is_read_back_from_the_graph() {
    types_table(SCHEMA);
    let g = graph("pg_types").await;
    let spec = SpecBuilder::new("pg_types")
        .source_url(&pg_url("etl"))
        .table("e2e_pg_types.types")
        .sink_bolt(
            "pg_types",
            "UNWIND $batch AS row CREATE (r:PgRow) SET r = row",
        );
    let (summary, out) = run_job_output("pg_types", &pg_spec(&spec));
    assert_eq!(summary["written"], 4, "{summary}\n{}", out.stderr);
    assert_eq!(summary["failed"], 0, "{summary}");
    // The unknown type's warning names the column, once.
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("embedding"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);

    let mut wrong = Vec::new();
    for (id, key, want) in EXPECTED {
        let got = prop(&g, *id, key).await;
        if got != *want {
            wrong.push(format!("row {id} {key}: got {got}, want {want}"));
        }
    }
    for (id, key, want) in TEMPORAL {
        let got = prop(&g, *id, key).await;
        if got != *want {
            wrong.push(format!("row {id} {key}: got {got}, want {want}"));
        }
    }
    for (id, expr, want) in AS_TEXT {
        let got: String = one(
            &g,
            &format!("MATCH (r:PgRow {{id: {id}}}) RETURN {expr} AS n"),
        )
        .await;
        if got != *want {
            wrong.push(format!("row {id} {expr}: got {got}, want {want}"));
        }
    }
    // The 8 kB text arrives whole; row 2's NULLs leave no property at all.
    let long: String = one(&g, "MATCH (r:PgRow {id: 3}) RETURN r.t AS n").await;
    assert_eq!(long, "ab€".repeat(3000));
    let keys: Vec<String> = one(&g, "MATCH (r:PgRow {id: 2}) RETURN keys(r) AS n").await;
    assert_eq!(keys, ["id"]);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // `json: value`: json and jsonb documents as maps and lists, their members reachable.
    let g = graph("pg_types_json").await;
    let spec = SpecBuilder::new("pg_types_json")
        .source_url(&pg_url("etl"))
        .query("SELECT id, js, jb FROM e2e_pg_types.types WHERE id = 1")
        .source_option("json: value")
        .sink_bolt(
            "pg_types_json",
            "UNWIND $batch AS row CREATE (r:PgRow {id: row.id, js_a: row.js.a, jb_b: row.jb.b})",
        );
    let (summary, out) = run_job_output("pg_types_json", &pg_spec(&spec));
    assert_eq!(summary["written"], 1, "{summary}\n{}", out.stderr);
    assert_eq!(prop(&g, 1, "js_a").await, "[1, 2]");
    assert_eq!(prop(&g, 1, "jb_b").await, "1");
}

/// A date or timestamp at PostgreSQL's +-infinity has no counterpart in the graph: refused,
/// naming the column and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn pg_infinite_timestamps_are_refused_naming_the_column() {
    pg_schema("e2e_pg_types_inf");
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_types_inf.t (id int PRIMARY KEY, valid_until timestamptz);
         INSERT INTO e2e_pg_types_inf.t VALUES (1, now()), (2, 'infinity');",
    );
    let spec = SpecBuilder::new("pg_types_inf")
        .source_url(&pg_url("etl"))
        .table("e2e_pg_types_inf.t");
    let (_, out) =
        crate::support::etlhost_with_spec("run", "pg_types_inf.yaml", &pg_spec(&spec), &[]);
    assert_ne!(out.code, 0);
    let last = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert_eq!(
        last,
        "error: job failed: reading split 0 (whole source) failed after 0 rows: plugin postgres: \
         reading table `e2e_pg_types_inf.t` failed: column `valid_until`: timestamptz \
         'infinity' or '-infinity' has no counterpart in the graph: leave such rows out or map \
         them in a `query:` (e.g. `NULLIF(col, 'infinity')`)",
        "{}",
        out.stderr
    );
}

/// `etlhost verify` of the types table with the `verify:` block `etlhost init` writes (all 37
/// columns): clean after a run. Then an interval whose month moved into its days (equal for
/// PostgreSQL's `=`, which counts 30 days a month, but another value in the graph) and a timetz
/// at another offset (the same instant) are each found by row and column.
#[test]
fn pg_verify_every_type_then_finds_an_interval_and_a_timetz_changed() {
    const TABLE: &str = "e2e_pg_types_verify";
    types_table(TABLE);
    xtask::graph::fresh_graph("pg_types_verify").expect("create graph database");
    let spec = scratch_dir("pg_types_verify").join("types.yaml");
    let table = format!("{TABLE}.types");
    let out = pg_init("etl", "pg_types_verify", &spec, &["--tables", &table]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = etlhost("run", &spec, &["--fresh", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = |status: &str, different: &str| {
        format!(
            "flow e2e_pg_types_verify_types: {status}\n  rows in source     4\n  entities in graph  4\n  \
             missing            0\n  extra              0\n  different          {different}\n"
        )
    };
    let out = etlhost("verify", &spec, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        report("match", "0") + "verify: 1 of 1 flows match, 0 different, 0 not verifiable\n"
    );

    let equal = pg_sql(
        "etl",
        "SELECT '1 year 1 mon 33 days 04:05:06.5'::interval = '1 year 2 mons 3 days 04:05:06.5'",
    );
    assert_eq!(equal, "t");
    pg_sql(
        "etl",
        &format!(
            "UPDATE {table} SET iv = '1 year 1 mon 33 days 04:05:06.5' WHERE id = 1;
             UPDATE {table} SET tz = '22:29:59-13:00' WHERE id = 3;"
        ),
    );
    let out = etlhost("verify", &spec, &[]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        report("DIFFERENT", "2  id=1 [iv], id=3 [tz]")
            + "verify: 0 of 1 flows match, 1 different, 0 not verifiable\n"
    );
}
