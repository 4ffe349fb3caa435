//! etlhost against the raw limits of its source and sink, and against a hand-written script.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, graph_count};
use xtask::root;
use xtask::services::{
    self, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};

use super::{
    alternate, console_spec, etlhost_sample, external, plain, release_bin, report, seed, Case,
    Figure, Opts, Sample, BENCH_DB,
};

const ROWS: u64 = 100_000;
const BIG: u64 = 1_000_000;
const BATCH: usize = 1000;
/// The hand-written script's case: the other cases' rates are also given as multiples of its.
const PYTHON: &str = "Python: PyMySQL + neo4j driver";

pub fn bolt_spec(table: &str, mode: &str, batch: usize) -> String {
    format!(
        "name: bench-bolt
source:
  plugin: mysql
  options:
{}sink:
  plugin: bolt
  write_mode: {mode}
  max_batch_size: {batch}
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {BENCH_DB}
    query: \"UNWIND $batch AS row CREATE (:Person {{id: row.id, name: row.name, email: row.email, created_at: row.created_at}})\"
",
        super::mysql_options(table)
    )
}

pub fn nodes_must_be(rows: u64, what: &str) -> Result<()> {
    let nodes = graph_count(BENCH_DB, "MATCH (p:Person) RETURN count(p) AS n")?;
    if nodes != rows {
        bail!("{what}: {nodes} nodes in the graph, expected {rows}");
    }
    Ok(())
}

/// A sample of a run into an empty graph, whose node count is checked after, with the CPU
/// seconds the graph database used meanwhile (the server is most of a write's cost).
pub fn into_graph(
    rows: u64,
    what: &str,
    f: impl Fn() -> Result<Sample>,
) -> impl FnMut() -> Result<Sample> {
    let what = what.to_string();
    move || {
        fresh_graph(BENCH_DB)?;
        let before = graph_cpu();
        let mut s = f()?;
        s.graph_cpu = graph_cpu() - before;
        nodes_must_be(rows, &what)?;
        Ok(s)
    }
}

/// CPU seconds the graph database `cargo xtask services` runs has used.
fn graph_cpu() -> f64 {
    let home = services::services_dir().join("arcadedb");
    super::server_cpu(&format!("rootPath={}", home.display()))
}

/// The graph database's median CPU microseconds per row written over a figure's runs.
fn graph_us_per_row(f: &Figure) -> f64 {
    let per_row = f
        .samples
        .iter()
        .map(|s| s.graph_cpu * 1e6 / s.rows.max(1) as f64)
        .collect();
    super::median(per_row)
}

/// The venv with PyMySQL and the official neo4j driver, for the hand-written baseline.
fn python() -> Result<PathBuf> {
    let venv = services::services_dir().join("bench-venv");
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import pymysql, neo4j"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "xtask: installing PyMySQL and neo4j from PyPI into {}",
            venv.display()
        );
        xtask::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        xtask::run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "PyMySQL==1.2.4",
            "neo4j==6.4.1",
        ]))?;
    }
    Ok(py)
}

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_100k", ROWS)?;
    seed("person_1m", BIG)?;
    let url = format!("mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{MYSQL_PORT}/{BENCH_DB}");
    let limits = release_bin("limits");
    let sink_limit = |mode: &str| {
        let mut c = Command::new(&limits);
        c.args([
            mode,
            &url,
            "person_100k",
            &format!("127.0.0.1:{BOLT_PORT}"),
            GRAPH_USER,
            GRAPH_PASSWORD,
        ])
        .args([BENCH_DB, &BATCH.to_string()]);
        c
    };
    let py = python()?;
    let script = root().join("xtask/bench/hand_written.py");
    let py_args = json!({
        "host": "127.0.0.1", "port": MYSQL_PORT, "user": MYSQL_USER, "password": MYSQL_PASSWORD,
        "database": BENCH_DB, "table": "person_100k", "bolt_uri": format!("bolt://127.0.0.1:{BOLT_PORT}"),
        "graph_user": GRAPH_USER, "graph_password": GRAPH_PASSWORD, "graph_database": BENCH_DB, "batch": BATCH,
    })
    .to_string();
    let parallel = bolt_spec("person_100k", "batch", BATCH)
        .replacen("source:\n  plugin: mysql\n", "parallelism: 2\nsource:\n  plugin: mysql\n  partition_column: id\n  partition_num: 4\n", 1)
        .replacen("  write_mode: batch\n", "  write_mode: batch\n  parallelism: 2\n", 1);
    let slice = bolt_spec("person_100k", "one_by_one", 1).replace(
        "    table: person_100k\n",
        "    query: SELECT * FROM person_100k WHERE id <= 10000\n",
    );
    let one = bolt_spec("person_100k", "batch", BATCH);
    // Without progress in the target (exactly-once `CREATE`): what recording it per batch costs.
    let local_dir = super::bench_dir().join("cmp-local-checkpoints");
    let with_local = |spec: &str| {
        spec.replacen(
            "sink:",
            &format!(
                "checkpoint:\n  store: local\n  dir: {}\nsink:",
                local_dir.display()
            ),
            1,
        )
    };
    let local = with_local(&one);
    let parallel_local = with_local(&parallel);

    let sink = alternate(
        opts.reps,
        vec![
            Case::new(
                "limit: Bolt UNWIND loop, TCP_NODELAY",
                None,
                into_graph(ROWS, "sink limit", || external(&mut sink_limit("sink-raw"))),
            ),
            Case::new(
                "etlhost, 1 reader, 1 writer",
                Some(0),
                into_graph(ROWS, "etlhost 1 reader", || {
                    etlhost_sample("etlhost 1 reader", "cmp-1", &one, ROWS)
                }),
            ),
            Case::new(
                "etlhost, 1 reader, 1 writer, local checkpoint",
                Some(0),
                into_graph(ROWS, "etlhost local checkpoint", || {
                    etlhost_sample("etlhost local checkpoint", "cmp-1-local", &local, ROWS)
                }),
            ),
            Case::new(
                "etlhost, 2 readers, 2 writers",
                Some(0),
                into_graph(ROWS, "etlhost 2 readers", || {
                    etlhost_sample("etlhost 2 readers", "cmp-2", &parallel, ROWS)
                }),
            ),
            Case::new(
                "etlhost, 2 readers, 2 writers, local checkpoint",
                Some(0),
                into_graph(ROWS, "etlhost 2 readers local checkpoint", || {
                    etlhost_sample(
                        "etlhost 2 readers local checkpoint",
                        "cmp-2-local",
                        &parallel_local,
                        ROWS,
                    )
                }),
            ),
            Case::new(
                "stock neo4rs UNWIND loop",
                Some(0),
                into_graph(ROWS, "neo4rs", || external(&mut sink_limit("sink-neo4rs"))),
            ),
            Case::new(
                PYTHON,
                Some(0),
                into_graph(ROWS, "python", || {
                    external(Command::new(&py).arg(&script).arg(&py_args))
                }),
            ),
            Case::new(
                "etlhost, one_by_one (10,000 rows)",
                Some(0),
                into_graph(10_000, "one_by_one", || {
                    etlhost_sample("one_by_one", "cmp-obo", &slice, 10_000)
                }),
            ),
        ],
    )?;
    let python = sink
        .iter()
        .find(|f| f.name == PYTHON)
        .expect("the Python case runs")
        .median_rate();
    report(
        "Sink path: MySQL -> Bolt, 100,000 rows, batches of 1,000; ratio of medians to the raw Bolt loop",
        "sink.json",
        &sink,
        &|f| {
            let vs = f.median_rate() / python;
            let graph = graph_us_per_row(f);
            (
                Some(format!("({vs:.1}x Python, graph {graph:.2} CPU us/row)")),
                json!({"ratio_to_python": vs, "graph_cpu_us_per_row_median": graph}),
            )
        },
    )?;

    let console = console_spec("person_1m", 1, 1);
    let source = alternate(
        opts.reps,
        vec![
            Case::new("limit: mysql_async streaming read", None, || {
                external(Command::new(&limits).args(["source", &url, "person_1m"]))
            }),
            Case::new(
                "etlhost mysql -> console (count), 1 reader",
                Some(0),
                || etlhost_sample("console", "cmp-console", &console, BIG),
            ),
        ],
    )?;
    report(
        "Source path: 1,000,000 rows, MySQL -> console (count only); ratio of medians to the raw mysql_async stream",
        "source.json",
        &source,
        &plain,
    )
}
