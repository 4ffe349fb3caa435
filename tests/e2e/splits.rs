//! The host splits a table into key ranges and reads them in parallel, and no row is lost or read
//! twice whatever the keys look like. Rows are collected from the console sink's JSON lines.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;

use mysql_async::prelude::Queryable;

use crate::support::{
    etlhost_with_spec, exec, mysql, person_table, read_summary, run_job_output, spawn_run,
    SpecBuilder,
};

/// A MySQL -> console spec; `relation` is `table: NAME` or `query: SQL`, `source_extra` lines
/// (indented or not) go under `source:`.
fn console_spec(
    name: &str,
    db: &str,
    relation: &str,
    source_extra: &str,
    parallelism: usize,
) -> String {
    let spec = SpecBuilder::new(name)
        .top(format_args!("parallelism: {parallelism}"))
        .source_mysql(db);
    let spec = match relation.split_once(": ") {
        Some(("query", sql)) => spec.query(sql),
        _ => spec.table(relation.trim_start_matches("table: ")),
    };
    source_extra
        .lines()
        .fold(spec, |spec, line| spec.source_line(line.trim()))
        .batch(7)
        .build()
}

/// How often each key was delivered.
fn delivered(stdout: &str, key: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in stdout.lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        *seen.entry(row[key].to_string()).or_insert(0) += 1;
    }
    seen
}

/// Runs the job and checks every row of `table` arrived exactly once.
async fn assert_exactly_once(
    pool: &mysql_async::Pool,
    name: &str,
    db: &str,
    table: &str,
    extra: &str,
) -> serde_json::Value {
    let mut c = pool.get_conn().await.unwrap();
    let keys: Vec<u64> = c.query(format!("SELECT id FROM {table}")).await.unwrap();
    let (summary, out) = run_job_output(
        name,
        &console_spec(name, db, &format!("table: {table}"), extra, 3),
    );
    let seen = delivered(&out.stdout, "id");
    assert!(
        seen.values().all(|n| *n == 1),
        "rows delivered twice: {seen:?}"
    );
    assert_eq!(seen.len(), keys.len(), "rows lost: {seen:?}");
    assert_eq!(summary["read"], keys.len());
    assert_eq!(summary["written"], keys.len());
    summary
}

#[tokio::test(flavor = "multi_thread")]
async fn bounds_nulls_negatives_and_extremes_lose_nothing() {
    let pool = mysql("e2e_split_keys").await;
    exec(
        &pool,
        "CREATE TABLE narrow (id INT AUTO_INCREMENT PRIMARY KEY, k INT NULL)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO narrow (k) SELECT CAST(seq AS SIGNED) - 50 FROM seq_1_to_100",
    )
    .await;
    exec(&pool, "INSERT INTO narrow (k) VALUES (NULL), (NULL)").await;
    // Bounds narrower than the data: rows below and above them must still be read.
    let extra = "  partition_column: k\n  partition_lower_bound: -20\n  partition_upper_bound: 30\n  partition_num: 4";
    let s = assert_exactly_once(&pool, "split_narrow", "e2e_split_keys", "narrow", extra).await;
    assert_eq!(s["read"], 102);

    exec(
        &pool,
        "CREATE TABLE ext (id INT AUTO_INCREMENT PRIMARY KEY, k BIGINT NULL)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO ext (k) VALUES (-9223372036854775808), (-1), (0), (1), (9223372036854775807), (NULL)",
    )
    .await;
    let extra = "  partition_column: k\n  partition_num: 3";
    assert_exactly_once(&pool, "split_bigint", "e2e_split_keys", "ext", extra).await;

    exec(
        &pool,
        "CREATE TABLE uext (id INT AUTO_INCREMENT PRIMARY KEY, k BIGINT UNSIGNED)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO uext (k) VALUES (0), (1), (9223372036854775807), (9223372036854775808), (18446744073709551615)",
    )
    .await;
    let extra = "  partition_column: k\n  partition_num: 4";
    assert_exactly_once(&pool, "split_ubigint", "e2e_split_keys", "uext", extra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_single_row_and_more_splits_than_rows() {
    let pool = mysql("e2e_split_small").await;
    let extra = "  partition_column: k\n  partition_num: 10";
    exec(
        &pool,
        "CREATE TABLE empty (id INT AUTO_INCREMENT PRIMARY KEY, k INT)",
    )
    .await;
    let s = assert_exactly_once(&pool, "split_empty", "e2e_split_small", "empty", extra).await;
    assert_eq!(s["read"], 0);
    exec(
        &pool,
        "CREATE TABLE one (id INT AUTO_INCREMENT PRIMARY KEY, k INT)",
    )
    .await;
    exec(&pool, "INSERT INTO one (k) VALUES (42)").await;
    assert_exactly_once(&pool, "split_one", "e2e_split_small", "one", extra).await;
    exec(
        &pool,
        "CREATE TABLE three (id INT AUTO_INCREMENT PRIMARY KEY, k INT)",
    )
    .await;
    exec(&pool, "INSERT INTO three (k) VALUES (1), (2), (3)").await;
    assert_exactly_once(&pool, "split_three", "e2e_split_small", "three", extra).await;
    exec(
        &pool,
        "CREATE TABLE nulls (id INT AUTO_INCREMENT PRIMARY KEY, k INT)",
    )
    .await;
    exec(&pool, "INSERT INTO nulls (k) VALUES (NULL), (NULL)").await;
    assert_exactly_once(&pool, "split_nulls", "e2e_split_small", "nulls", extra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decimal_date_and_datetime_keys() {
    let pool = mysql("e2e_split_types").await;
    let extra = "  partition_column: k\n  partition_num: 4";
    exec(
        &pool,
        "CREATE TABLE dec_k (id INT AUTO_INCREMENT PRIMARY KEY, k DECIMAL(12,3))",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO dec_k (k) SELECT seq / 7 - 3 FROM seq_1_to_50",
    )
    .await;
    assert_exactly_once(&pool, "split_decimal", "e2e_split_types", "dec_k", extra).await;
    exec(
        &pool,
        "CREATE TABLE date_k (id INT AUTO_INCREMENT PRIMARY KEY, k DATE)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO date_k (k) SELECT '2020-01-01' + INTERVAL seq * 11 DAY FROM seq_1_to_60",
    )
    .await;
    assert_exactly_once(&pool, "split_date", "e2e_split_types", "date_k", extra).await;
    exec(
        &pool,
        "CREATE TABLE dt_k (id INT AUTO_INCREMENT PRIMARY KEY, k DATETIME(6))",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO dt_k (k) SELECT '2020-01-01 00:00:00' + INTERVAL seq * 12345 SECOND FROM seq_1_to_60",
    )
    .await;
    let extra =
        "  partition_column: k\n  partition_num: 4\n  partition_lower_bound: '2020-01-02 00:00:00'";
    assert_exactly_once(&pool, "split_datetime", "e2e_split_types", "dt_k", extra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_source_is_split_too() {
    person_table("e2e_split_query", 1000, "p").await;
    let text = console_spec(
        "split_query",
        "e2e_split_query",
        "query: SELECT id AS k, name FROM person WHERE id % 2 = 0",
        "  partition_column: k\n  partition_num: 5",
        2,
    );
    let (summary, out) = run_job_output("split_query", &text);
    let seen = delivered(&out.stdout, "k");
    assert_eq!(seen.len(), 500);
    assert!(seen.values().all(|n| *n == 1));
    assert_eq!(summary["read"], 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_column_is_refused() {
    let pool = mysql("e2e_split_time").await;
    exec(&pool, "CREATE TABLE t (d TIME)").await;
    exec(&pool, "INSERT INTO t VALUES ('01:00:00')").await;
    let text = console_spec(
        "split_time",
        "e2e_split_time",
        "table: t",
        "  partition_column: d",
        2,
    );
    let (path, out) = etlhost_with_spec("run", "split_time.yaml", &text, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: {}:5: source.partition_column: column `d` has type time, which cannot be split into \
             ranges; partition on a number, date, datetime or text column",
            path.display()
        )
    );
}

/// A split as `plan` prints it: start and end (`None` for an open end), estimated rows.
type Planned = (Option<String>, Option<String>, u64);

fn planned(stdout: &str) -> Vec<Planned> {
    stdout
        .lines()
        .skip(1)
        .map(|line| {
            let est: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            let range = line.split_once(" in [").unwrap().1;
            let (start, rest) = range.split_once(", ").unwrap();
            let end = rest.split_once(')').unwrap().0;
            let bound = |b: &str| (!b.ends_with("inf")).then(|| b.to_string());
            (bound(start), bound(end), est)
        })
        .collect()
}

/// The rows of each planned split, counted by the server.
async fn real_counts(
    pool: &mysql_async::Pool,
    table: &str,
    column: &str,
    splits: &[Planned],
) -> Vec<u64> {
    let mut c = pool.get_conn().await.unwrap();
    let mut counts = Vec::new();
    for (start, end, _) in splits {
        let mut conds = vec!["TRUE".to_string()];
        let mut params: Vec<String> = Vec::new();
        if let Some(s) = start {
            conds.push(format!("{column} >= ?"));
            params.push(s.clone());
        }
        if let Some(e) = end {
            conds.push(format!("{column} < ?"));
            params.push(e.clone());
        }
        let nulls = match start {
            None => format!(" OR {column} IS NULL"),
            Some(_) => String::new(),
        };
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE ({}){nulls}",
            conds.join(" AND ")
        );
        let n: u64 = c.exec_first(sql, params).await.unwrap().unwrap();
        counts.push(n);
    }
    counts
}

/// Row counts within 2x of each other, and every estimate within 20% of its split's real count.
fn assert_even_and_estimated(splits: &[Planned], counts: &[u64]) {
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(*max <= 2 * *min, "uneven splits: {counts:?}");
    for ((_, _, est), real) in splits.iter().zip(counts) {
        let off = (*est as f64 - *real as f64).abs() / *real as f64;
        assert!(off <= 0.2, "estimated {est} for {real} rows: {splits:?}");
    }
}

/// Plans `n` splits of table `t` in database `e2e_<name>` on `column`, checks them with
/// [`assert_even_and_estimated`] against the server's counts, then reads them with 3 readers:
/// every row exactly once.
async fn assert_planned_by_rows(
    pool: &mysql_async::Pool,
    name: &str,
    column: &str,
    n: usize,
    rows: u64,
) {
    let db = format!("e2e_{name}");
    let extra = format!("  partition_column: {column}\n  partition_num: {n}");
    let text = console_spec(name, &db, "table: t", &extra, 3);
    let (_, out) = etlhost_with_spec("plan", &format!("{name}.yaml"), &text, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let splits = planned(&out.stdout);
    assert_eq!(splits.len(), n, "{}", out.stdout);
    let counts = real_counts(pool, "t", column, &splits).await;
    assert_eq!(counts.iter().sum::<u64>(), rows);
    assert_even_and_estimated(&splits, &counts);
    assert_exactly_once(pool, &format!("{name}_run"), &db, "t", &extra).await;
}

/// The case equal key ranges get wrong: 1,000 ids near 1 and 50,000 from 10^12 up. Eight equal
/// ranges would leave six empty and one with 50,000 rows.
#[tokio::test(flavor = "multi_thread")]
async fn skewed_keys_are_split_by_their_rows() {
    let pool = mysql("e2e_split_skew").await;
    exec(&pool, "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)").await;
    exec(&pool, "INSERT INTO t SELECT seq, 'a' FROM seq_1_to_1000").await;
    exec(
        &pool,
        "INSERT INTO t SELECT 1000000000000 + seq, 'b' FROM seq_1_to_50000",
    )
    .await;
    assert_planned_by_rows(&pool, "split_skew", "id", 8, 51_000).await;
}

/// Text keys (UUIDs, words in either case, accents, 4-byte Unicode) are cut at sampled keys in
/// the server's collation and read in key order, every row exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_text_key_is_split_by_a_sample_of_its_values() {
    let pool = mysql("e2e_split_text").await;
    exec(
        &pool,
        "CREATE TABLE t (id INT, code VARCHAR(40) PRIMARY KEY) CHARACTER SET utf8mb4",
    )
    .await;
    exec(&pool, "INSERT INTO t SELECT seq, UUID() FROM seq_1_to_3000").await;
    exec(
        &pool,
        "INSERT INTO t VALUES (3001, 'Zebra'), (3002, 'apple'), (3003, '\u{1F600} smile'), \
         (3004, 'Ähre')",
    )
    .await;
    assert_planned_by_rows(&pool, "split_text", "code", 5, 3004).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_prints_the_splits() {
    let pool = mysql("e2e_split_plan").await;
    exec(&pool, "CREATE TABLE t (k INT)").await;
    exec(&pool, "INSERT INTO t SELECT seq FROM seq_1_to_100").await;
    let text = console_spec(
        "split_plan",
        "e2e_split_plan",
        "table: t",
        "  partition_column: k\n  partition_num: 3",
        2,
    );
    let (_, out) = etlhost_with_spec("plan", "split_plan.yaml", &text, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "SPLIT       EST. ROWS  RANGE
    0              34  k in [-inf, 35) or NULL
    1              33  k in [35, 68)
    2              33  k in [68, +inf)
"
    );
}

/// The incident's failure: ten splits, all read by reader 0. Here the readers are held mid-split
/// (the console sink's stdout is not drained, so the pipeline backs up into every reader), and the
/// server's own process list must show `parallelism` split queries open at once.
#[tokio::test(flavor = "multi_thread")]
async fn readers_really_read_splits_at_the_same_time() {
    let pool = mysql("e2e_split_par").await;
    exec(
        &pool,
        "CREATE TABLE big (id INT PRIMARY KEY, pad CHAR(200))",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO big SELECT seq, REPEAT('x', 200) FROM seq_1_to_400000",
    )
    .await;
    let text = console_spec(
        "split_par",
        "e2e_split_par",
        "table: big",
        "  partition_column: id\n  partition_num: 4",
        4,
    );
    let (path, _) = etlhost_with_spec("validate", "split_par.yaml", &text, &[]);
    let summary = path.with_extension("summary.json");
    let mut child = spawn_run(&path, &summary, Stdio::piped());

    let mut c = pool.get_conn().await.unwrap();
    let open_split_queries = "SELECT COUNT(*) FROM information_schema.processlist \
         WHERE db = 'e2e_split_par' AND info LIKE 'SELECT * FROM `big` WHERE%'";
    let mut most = 0;
    // Polls the server's view until all four readers are inside a split query; the job cannot
    // finish meanwhile because nobody reads its output.
    for _ in 0..600 {
        let n: u64 = c.query_first(open_split_queries).await.unwrap().unwrap();
        most = most.max(n);
        if most == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(most, 4, "the server never saw 4 split queries open at once");

    let summary = read_summary(&summary);
    assert_eq!(summary["read"], 400_000);
    assert_eq!(stdout.lines().count(), 400_000);
    let per_reader: Vec<u64> = serde_json::from_value(summary["read_per_reader"].clone()).unwrap();
    assert_eq!(per_reader.len(), 4);
    assert!(
        per_reader.iter().all(|n| *n > 0),
        "a reader read nothing: {per_reader:?}"
    );
    assert_eq!(per_reader.iter().sum::<u64>(), 400_000);
}

/// A two-column primary key is split at sampled tuples, compared column by column by the server,
/// and read in key order by several readers, every row exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_composite_key_is_split_by_a_sample_of_its_tuples() {
    let pool = mysql("e2e_split_pair").await;
    exec(
        &pool,
        "CREATE TABLE t (region VARCHAR(8), id INT, PRIMARY KEY (region, id))",
    )
    .await;
    // Three regions of very different sizes: cuts fall inside a region, on its ids.
    exec(
        &pool,
        "INSERT INTO t SELECT ELT(1 + (seq % 10 > 0) + (seq % 10 > 6), 'eu', 'us', 'apac'), seq \
         FROM seq_1_to_20000",
    )
    .await;
    let extra = "  partition_column: [region, id]\n  partition_num: 5";
    let text = console_spec("split_pair", "e2e_split_pair", "table: t", extra, 3);
    let (_, out) = etlhost_with_spec("plan", "split_pair.yaml", &text, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("(region, id) in [-inf, [\"apac\","),
        "{}",
        out.stdout
    );
    let lines: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    let mut c = pool.get_conn().await.unwrap();
    let mut counts = Vec::new();
    for line in &lines {
        let est: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        counts.push(est);
    }
    assert_eq!(counts.iter().sum::<u64>(), 20_000);
    assert!(
        counts.iter().all(|n| (3_200..=4_800).contains(n)),
        "{counts:?}"
    );
    let total: u64 = c
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, 20_000);
    assert_exactly_once(&pool, "split_pair_run", "e2e_split_pair", "t", extra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_composite_key_with_nulls_is_refused() {
    let pool = mysql("e2e_split_pair_null").await;
    exec(&pool, "CREATE TABLE t (a INT, b INT)").await;
    exec(&pool, "INSERT INTO t VALUES (1, 1), (1, NULL), (NULL, 2)").await;
    let extra = "  partition_column: [a, b]\n  partition_num: 2";
    let text = console_spec(
        "split_pair_null",
        "e2e_split_pair_null",
        "table: t",
        extra,
        2,
    );
    let (path, out) = etlhost_with_spec("plan", "split_pair_null.yaml", &text, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: {}:5: source.partition_column: 2 rows have a NULL in (a, b); a key of several \
             columns must have no NULLs (partition on a primary key)",
            path.display()
        )
    );
}
