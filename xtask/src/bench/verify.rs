//! `etlhost verify` of a node flow against the load of the same flow (`etlhost run`, MERGE into a
//! fresh graph), 1,000,000 rows, alternating: load, verify, `verify --sample 100`, and again. The
//! goal is a verify that takes at most half the load's time (a ratio of rates of at least 2).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, graph_count};
use xtask::services::{BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER};

use super::{
    alternate, bench_dir, etlhost_sample, mysql_options, release_bin, report, seed, timed_output,
    Case, Opts, Sample,
};

const ROWS: u64 = 1_000_000;
const TABLE: &str = "vf_person_1000000";
const GRAPH: &str = "vf_bench";

/// The flow and `verify:` block `etlhost init` writes for the table.
fn spec() -> String {
    format!(
        "name: vf-bench
source:
  plugin: mysql
  partition_column: id
  options:
{}sink:
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
",
        mysql_options(TABLE)
    )
}

/// `etlhost verify` of the loaded graph, which must match; `rows` is what it compared.
fn verify(extra: &[&str], rows: u64) -> Result<Sample> {
    let spec = bench_dir().join("vf-bench.yaml");
    let started = Instant::now();
    let (out, cpu) = timed_output(
        Command::new(release_bin("etlhost"))
            .arg("verify")
            .arg(&spec)
            .args(extra)
            .env("RUST_LOG", "warn"),
    )?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "etlhost verify {extra:?} found differences or failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Sample {
        rows,
        secs,
        cpu,
        ..Sample::default()
    })
}

pub fn run(opts: &Opts) -> Result<()> {
    seed(TABLE, ROWS)?;
    let spec = spec();
    let figures = alternate(
        opts.reps,
        vec![
            Case::new("etlhost run (load: MERGE, fresh graph)", None, || {
                fresh_graph(GRAPH)?;
                let s = etlhost_sample("load", "vf-bench", &spec, ROWS)?;
                let nodes = graph_count(GRAPH, "MATCH (n:Person) RETURN count(n) AS n")?;
                if nodes != ROWS {
                    bail!("the load wrote {nodes} nodes, expected {ROWS}");
                }
                Ok(s)
            }),
            Case::new("etlhost verify (the whole table)", Some(0), || {
                verify(&[], ROWS)
            }),
            // Rows per second of a sample are keys per second: its ratio is not comparable.
            Case::new("etlhost verify --sample 100", None, || {
                verify(&["--sample", "100", "--seed", "1"], 100)
            }),
        ],
    )?;
    report(
        &format!(
            "verify against load, {ROWS} rows (MySQL -> Bolt MERGE, one reader, one writer); \
             goal: verify at least 2x the load's rate"
        ),
        "verify.json",
        &figures,
        &|f| (None, json!({"median_secs": f.median_secs()})),
    )
}
