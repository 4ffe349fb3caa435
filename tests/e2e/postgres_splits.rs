//! A PostgreSQL table is cut into key ranges at sampled quantiles and read by several readers at
//! once, every row exactly once, whatever its key: integer, numeric, date, text in a collation
//! that is not byte order, UUID, a composite key, no key at all (`ctid` ranges), a partitioned
//! table read through its parent, and a schema and table with quoted non-ASCII names. Each row is
//! CREATEd as a node, so the graph shows a row lost or read twice.

use crate::support::{
    etlhost_with_spec, graph, one, pg_schema, pg_spec, pg_sql, run_job_output, SpecBuilder,
};

const READERS: usize = 4;
const SPLITS: u32 = 6;

/// A postgres -> Bolt spec of `table` (as written in the spec) in database etl, split on `column`
/// (a name or a YAML list) into [`SPLITS`] ranges read by [`READERS`] readers, each row CREATEd
/// as a node of graph `name` (so a row read twice would be two nodes).
fn split_spec(name: &str, table: &str, column: &str) -> String {
    pg_spec(
        &SpecBuilder::new(name)
            .top(format_args!("parallelism: {READERS}"))
            .source_url(&crate::support::pg_url("etl"))
            .table(table)
            .partition(column, SPLITS)
            .sink_bolt(name, "UNWIND $batch AS row CREATE (n:Row) SET n = row")
            .batch(50),
    )
}

/// Plans and runs the job: several splits planned, more than one reader busy, and in the graph
/// exactly `rows` nodes with `rows` distinct `key`s (the properties joined).
async fn assert_split_exactly_once(
    name: &str,
    table: &str,
    column: &str,
    key: &[&str],
    rows: usize,
) {
    let g = graph(name).await;
    let text = split_spec(name, table, column);
    let (_, plan) = etlhost_with_spec("plan", &format!("{name}.yaml"), &text, &[]);
    assert_eq!(
        plan.code, 0,
        "{name}: etlhost plan failed:\n{}",
        plan.stderr
    );
    let planned = plan.stdout.lines().skip(1).count();
    assert!(
        planned >= 3,
        "{name}: {planned} splits planned, expected several:\n{}",
        plan.stdout
    );
    let (summary, _) = run_job_output(name, &text);
    assert_eq!(summary["read"], rows, "{name}: {summary}");
    assert_eq!(summary["written"], rows, "{name}: {summary}");
    let per_reader: Vec<u64> =
        serde_json::from_value(summary["read_per_reader"].clone()).unwrap_or_default();
    assert!(
        per_reader.iter().filter(|n| **n > 0).count() > 1,
        "{name}: one reader read everything: {summary}"
    );
    let nodes: i64 = one(&g, "MATCH (n:Row) RETURN count(n) AS n").await;
    assert_eq!(
        nodes, rows as i64,
        "{name}: nodes (a row read twice is two)"
    );
    let joined: Vec<String> = key.iter().map(|k| format!("toString(n.`{k}`)")).collect();
    let distinct: i64 = one(
        &g,
        &format!(
            "MATCH (n:Row) RETURN count(DISTINCT {}) AS n",
            joined.join(" + '|' + ")
        ),
    )
    .await;
    assert_eq!(distinct, rows as i64, "{name}: distinct keys (rows lost)");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_integer_keys_with_gaps_and_extremes_are_split() {
    pg_schema("e2e_pg_split_int");
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_int.t (id bigint PRIMARY KEY, v text);
         INSERT INTO e2e_pg_split_int.t SELECT g * 7 - 3000, 'v' || g FROM generate_series(1, 3000) g;
         INSERT INTO e2e_pg_split_int.t VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max');
         ANALYZE e2e_pg_split_int.t;",
    );
    assert_split_exactly_once("pg_split_int", "e2e_pg_split_int.t", "id", &["id"], 3002).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_numeric_keys_are_split_exactly() {
    pg_schema("e2e_pg_split_num");
    // Keys that differ in the last of 10 decimals: a cut rounded through a float would lose them.
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_num.t (k numeric(30,10) PRIMARY KEY);
         INSERT INTO e2e_pg_split_num.t SELECT 12345678901234567890 + g * 0.0000000001
           FROM generate_series(1, 1500) g;
         INSERT INTO e2e_pg_split_num.t SELECT -g * 1.5 FROM generate_series(1, 1500) g;
         ANALYZE e2e_pg_split_num.t;",
    );
    assert_split_exactly_once("pg_split_num", "e2e_pg_split_num.t", "k", &["k"], 3000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_date_keys_are_split() {
    pg_schema("e2e_pg_split_date");
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_date.t (d date PRIMARY KEY, n int);
         INSERT INTO e2e_pg_split_date.t SELECT DATE '1901-01-01' + g * 13, g FROM generate_series(0, 2999) g;
         ANALYZE e2e_pg_split_date.t;",
    );
    assert_split_exactly_once("pg_split_date", "e2e_pg_split_date.t", "d", &["n"], 3000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_text_keys_are_split_in_the_columns_collation() {
    pg_schema("e2e_pg_split_text");
    // An ICU collation orders case and accents unlike bytes ('a' < 'B' < 'é' < 'Z'): ranges cut
    // and compared in byte order would drop or repeat rows.
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_text.t (k text COLLATE \"und-x-icu\" PRIMARY KEY, n int NOT NULL);
         INSERT INTO e2e_pg_split_text.t
           SELECT (ARRAY['a','B','é','Z','ß','Ä','z','É'])[1 + g % 8] || g, g FROM generate_series(1, 3000) g;
         ANALYZE e2e_pg_split_text.t;",
    );
    assert_split_exactly_once("pg_split_text", "e2e_pg_split_text.t", "k", &["n"], 3000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_uuid_keys_are_split() {
    pg_schema("e2e_pg_split_uuid");
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_uuid.t (k uuid PRIMARY KEY, n int NOT NULL);
         INSERT INTO e2e_pg_split_uuid.t SELECT gen_random_uuid(), g FROM generate_series(1, 3000) g;
         ANALYZE e2e_pg_split_uuid.t;",
    );
    assert_split_exactly_once("pg_split_uuid", "e2e_pg_split_uuid.t", "k", &["k"], 3000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_composite_keys_are_split_by_tuples() {
    pg_schema("e2e_pg_split_pair");
    // Regions of very different sizes: cuts fall inside a region, on its numbers.
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_pair.t (region text, n int, PRIMARY KEY (region, n));
         INSERT INTO e2e_pg_split_pair.t
           SELECT CASE WHEN g % 10 = 0 THEN 'apac' WHEN g % 10 > 6 THEN 'us' ELSE 'eu' END, g
           FROM generate_series(1, 4000) g;
         ANALYZE e2e_pg_split_pair.t;",
    );
    assert_split_exactly_once(
        "pg_split_pair",
        "e2e_pg_split_pair.t",
        "[region, n]",
        &["region", "n"],
        4000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_a_table_without_a_key_is_split_by_ctid_ranges() {
    pg_schema("e2e_pg_split_ctid");
    // No key, duplicate values, and rows updated and deleted so the heap has holes and moved
    // tuples: block ranges must still cover every live row once.
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_ctid.t (n int, pad text);
         INSERT INTO e2e_pg_split_ctid.t SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g;
         DELETE FROM e2e_pg_split_ctid.t WHERE n % 7 = 0;
         UPDATE e2e_pg_split_ctid.t SET pad = 'moved' WHERE n % 11 = 0;
         ANALYZE e2e_pg_split_ctid.t;",
    );
    let rows: usize = pg_sql("etl", "SELECT count(*) FROM e2e_pg_split_ctid.t")
        .parse()
        .unwrap();
    assert_eq!(rows, 5000 - 714);
    assert_split_exactly_once("pg_split_ctid", "e2e_pg_split_ctid.t", "ctid", &["n"], rows).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_a_partitioned_table_is_read_through_its_parent_once() {
    pg_schema("e2e_pg_split_part");
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_part.m (id int, at date NOT NULL, PRIMARY KEY (id, at))
           PARTITION BY RANGE (at);
         CREATE TABLE e2e_pg_split_part.m_2023 PARTITION OF e2e_pg_split_part.m
           FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE e2e_pg_split_part.m_2024 PARTITION OF e2e_pg_split_part.m
           FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE e2e_pg_split_part.m_rest PARTITION OF e2e_pg_split_part.m DEFAULT;
         INSERT INTO e2e_pg_split_part.m SELECT g, DATE '2022-07-01' + (g % 900) FROM generate_series(1, 3000) g;
         ANALYZE e2e_pg_split_part.m;",
    );
    assert_split_exactly_once("pg_split_part", "e2e_pg_split_part.m", "id", &["id"], 3000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_quoted_non_ascii_schema_table_and_key_names_are_split() {
    pg_schema("Größe \"x\" Schéma");
    pg_sql(
        "etl",
        "CREATE TABLE \"Größe \"\"x\"\" Schéma\".\"Zähler.Tabelle\" (\"Schlüssel\" int PRIMARY KEY, \"Wert Ü\" text);
         INSERT INTO \"Größe \"\"x\"\" Schéma\".\"Zähler.Tabelle\" SELECT g, 'ü' || g FROM generate_series(1, 2000) g;
         ANALYZE \"Größe \"\"x\"\" Schéma\".\"Zähler.Tabelle\";",
    );
    // YAML single quotes: the PostgreSQL double quotes are kept as they are.
    assert_split_exactly_once(
        "pg_split_quoted",
        "'\"Größe \"\"x\"\" Schéma\".\"Zähler.Tabelle\"'",
        "'Schlüssel'",
        &["Schlüssel"],
        2000,
    )
    .await;
}

/// `ctid` is per partition, so a partitioned parent cannot be cut by it: refused before reading,
/// with the fix.
#[tokio::test(flavor = "multi_thread")]
async fn pg_a_ctid_split_of_a_partitioned_parent_is_refused() {
    pg_schema("e2e_pg_split_part_ctid");
    pg_sql(
        "etl",
        "CREATE TABLE e2e_pg_split_part_ctid.m (id int, at date NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE e2e_pg_split_part_ctid.m_all PARTITION OF e2e_pg_split_part_ctid.m DEFAULT;
         INSERT INTO e2e_pg_split_part_ctid.m SELECT g, DATE '2024-01-01' + g FROM generate_series(1, 10) g;",
    );
    let _g = graph("pg_split_part_ctid").await;
    let text = split_spec("pg_split_part_ctid", "e2e_pg_split_part_ctid.m", "ctid");
    let (path, out) = etlhost_with_spec("run", "pg_split_part_ctid.yaml", &text, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: {}:5: source.partition_column: cannot query the bounds of ctid: plugin \
             postgres: partition_column `ctid` cannot split the partitioned table \
             `e2e_pg_split_part_ctid.m`: ctid is per partition (partition on a key column, or \
             read each partition as a table)",
            path.display()
        )
    );
}
