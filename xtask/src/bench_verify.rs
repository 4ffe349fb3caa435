//! `cargo xtask bench verify [ROWS]`: `etlhost verify` of a node flow against the load of the
//! same flow (`etlhost run`), on the same rows in the same run (default 1,000,000). The goal is a
//! verify that takes at most half the load's time. Prints the figures and writes
//! `target/bench/verify.json`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, graph_count};
use xtask::services::{
    self, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};
use xtask::{build_demo, root};

const DB: &str = "bench";
const GRAPH: &str = "vf_bench";

/// `bench.vf_person_<rows>`, seeded unless it already holds `rows` rows.
fn seed(table: &str, rows: u64) -> Result<()> {
    let out = xtask::mariadb()
        .args([
            "-N",
            "-B",
            "-e",
            &format!("SELECT COUNT(*) FROM {DB}.{table}"),
        ])
        .output()?;
    if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == rows.to_string() {
        return Ok(());
    }
    eprintln!("xtask: seeding {DB}.{table} with {rows} rows");
    xtask::run(xtask::mariadb().args([
        "-e",
        &format!(
            "CREATE DATABASE IF NOT EXISTS {DB}; USE {DB}; DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200),
               created_at DATETIME);
             INSERT INTO {table} SELECT seq, CONCAT('person-', seq),
               CONCAT('person', seq, '@example.com'), '2020-01-01 00:00:00' + INTERVAL seq SECOND
             FROM seq_1_to_{rows};"
        ),
    ]))
}

/// The flow `etlhost init` writes for the table: MERGE on the key, a constraint, a verify block.
fn spec(table: &str) -> String {
    format!(
        "name: vf-bench
parallelism: 1
source:
  plugin: mysql
  partition_column: id
  options:
    url: mysql://127.0.0.1:{MYSQL_PORT}/{DB}
    user: {MYSQL_USER}
    password: {MYSQL_PASSWORD}
    table: {table}
sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {GRAPH}
    setup: ['CREATE CONSTRAINT person_id IF NOT EXISTS FOR (n:Person) REQUIRE n.id IS UNIQUE']
    query: |
      UNWIND $batch AS row
      MERGE (n:Person {{id: row.id}})
      SET n.name = row.name, n.email = row.email, n.created_at = row.created_at
verify:
  key: [id]
  query: |
    MATCH (n:Person)
    WHERE ($lo IS NULL OR n.id >= $lo) AND ($hi IS NULL OR n.id < $hi)
    WITH n ORDER BY n.id
    RETURN n.id AS id, n.name AS name, n.email AS email, n.created_at AS created_at
  lookup: |
    MATCH (n:Person)
    WHERE n.id IN $keys
    WITH n ORDER BY n.id
    RETURN n.id AS id, n.name AS name, n.email AS email, n.created_at AS created_at
"
    )
}

fn etlhost(args: &[&str]) -> Result<(f64, std::process::Output)> {
    let started = Instant::now();
    let out = Command::new(root().join("target/release/etlhost"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    Ok((started.elapsed().as_secs_f64(), out))
}

pub fn run(rows: Option<&str>) -> Result<()> {
    let rows: u64 = rows.map_or(Ok(1_000_000), str::parse).context("ROWS")?;
    services::ensure()?;
    build_demo()?;
    let table = format!("vf_person_{rows}");
    seed(&table, rows)?;
    fresh_graph(GRAPH)?;
    let dir: PathBuf = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join("verify.yaml");
    std::fs::write(&spec_path, spec(&table))?;
    let spec_arg = spec_path.display().to_string();

    let (load, out) = etlhost(&["run", "--fresh", "--quiet", &spec_arg])?;
    if !out.status.success() {
        bail!(
            "etlhost run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let nodes = graph_count(GRAPH, "MATCH (n:Person) RETURN count(n) AS n")?;
    if nodes != rows {
        bail!("the load wrote {nodes} nodes, expected {rows}");
    }
    let summary = dir.join("verify.summary.json");
    let summary_arg = summary.display().to_string();
    let (verify, out) = etlhost(&["verify", &spec_arg, "--summary-json", &summary_arg])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "etlhost verify found differences or failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (sample, out) = etlhost(&["verify", &spec_arg, "--sample", "100", "--seed", "1"])?;
    if !out.status.success() {
        bail!(
            "etlhost verify --sample failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let ratio = verify / load;
    println!("\nverify against load, {rows} rows (MySQL -> Bolt MERGE, one reader, one writer)");
    println!("{:<28} {:>9} {:>12}", "run", "secs", "rows/s");
    for (name, secs) in [
        ("etlhost run (load)", load),
        ("etlhost verify", verify),
        ("etlhost verify --sample 100", sample),
    ] {
        println!("{name:<28} {secs:>9.2} {:>12.0}", rows as f64 / secs);
    }
    println!("verify / load: {ratio:.2} (goal: at most 0.50)");
    let json = json!({
        "rows": rows,
        "load_secs": load,
        "verify_secs": verify,
        "sample_100_secs": sample,
        "verify_over_load": ratio,
        "goal": 0.5,
        "verify": serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&summary)?)?,
    });
    let file = dir.join("verify.json");
    std::fs::write(&file, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("wrote {}", file.display());
    Ok(())
}
