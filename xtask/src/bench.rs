//! `cargo xtask bench`: throughput measured side by side in one run, reported as ratios to a
//! baseline from the same run, printed as a table and written to `target/bench/*.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, graph_count};
use xtask::services::{
    self, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};
use xtask::{build, root};

use crate::demo::run_sql;

const BENCH_DB: &str = "bench";

/// Creates `bench.<table>` with `rows` rows of `person(id, name, email, created_at)` unless it
/// already holds exactly that many.
fn seed(table: &str, rows: u64) -> Result<()> {
    let out = xtask::mariadb()
        .args([
            "-N",
            "-B",
            "-e",
            &format!("SELECT COUNT(*) FROM {BENCH_DB}.{table}"),
        ])
        .output()?;
    if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == rows.to_string() {
        return Ok(());
    }
    eprintln!("xtask: seeding {BENCH_DB}.{table} with {rows} rows");
    run_sql(&format!(
        "CREATE DATABASE IF NOT EXISTS {BENCH_DB};
         USE {BENCH_DB};
         DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), created_at DATETIME);
         INSERT INTO {table}
           SELECT seq, CONCAT('person-', seq), CONCAT('person', seq, '@example.com'),
                  '2020-01-01 00:00:00' + INTERVAL seq SECOND
           FROM seq_1_to_{rows};"
    ))
}

fn bench_dir() -> PathBuf {
    root().join("target/bench")
}

/// Runs etlhost on a spec and returns its summary.
fn etlhost(spec_name: &str, spec: &str) -> Result<serde_json::Value> {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join(format!("{spec_name}.yaml"));
    let summary = dir.join(format!("{spec_name}.summary.json"));
    std::fs::write(&spec_path, spec)?;
    let out = Command::new(root().join("target/release/etlhost"))
        .arg("run")
        .arg(&spec_path)
        .arg("--summary-json")
        .arg(&summary)
        .env("RUST_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!(
            "etlhost failed on {}:\n{}",
            spec_path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text =
        std::fs::read_to_string(&summary).with_context(|| format!("no {}", summary.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn console_spec(table: &str, readers: usize, splits: usize) -> String {
    format!(
        "name: bench-readers-{readers}
parallelism: {readers}
source:
  plugin: mysql
  partition_column: id
  partition_num: {splits}
  options:
    url: mysql://127.0.0.1:{MYSQL_PORT}/{BENCH_DB}
    user: {MYSQL_USER}
    password: {MYSQL_PASSWORD}
    table: {table}
sink:
  plugin: console
  options:
    mode: count
"
    )
}

struct Row {
    name: String,
    rows: u64,
    secs: f64,
    peak_rss: u64,
}

/// Runs etlhost on a spec whose source has `rows` rows and checks all of them were written.
fn measure(name: String, spec_name: &str, spec: &str, rows: u64) -> Result<Row> {
    let s = etlhost(spec_name, spec)?;
    if s["read"].as_u64() != Some(rows) || s["written"].as_u64() != Some(rows) {
        bail!(
            "{name}: read {}, written {}, expected {rows}",
            s["read"],
            s["written"]
        );
    }
    Ok(Row {
        name,
        rows,
        secs: s["duration_secs"].as_f64().unwrap_or(f64::NAN),
        peak_rss: s["peak_rss_bytes"].as_u64().unwrap_or(0),
    })
}

/// Prints the runs with their ratio to the first one, and writes them to `file`.
fn print_and_save(title: &str, file: &Path, rows: &[Row]) -> Result<()> {
    println!("\n{title}");
    println!(
        "{:<34} {:>10} {:>9} {:>12} {:>10} {:>7}",
        "run", "rows", "secs", "rows/s", "peak MiB", "ratio"
    );
    let mut out = Vec::new();
    let baseline = rows.first().map_or(f64::NAN, |r| r.rows as f64 / r.secs);
    for r in rows {
        let rate = r.rows as f64 / r.secs;
        println!(
            "{:<34} {:>10} {:>9.3} {:>12.0} {:>10.1} {:>7.2}",
            r.name,
            r.rows,
            r.secs,
            rate,
            r.peak_rss as f64 / 1048576.0,
            rate / baseline
        );
        out.push(json!({
            "run": r.name, "rows": r.rows, "seconds": r.secs, "rows_per_sec": rate,
            "peak_rss_bytes": r.peak_rss, "ratio_to_baseline": rate / baseline,
        }));
    }
    std::fs::write(
        file,
        serde_json::to_string_pretty(&json!({"title": title, "runs": out}))? + "\n",
    )?;
    println!("written to {}", file.display());
    Ok(())
}

/// Readers scale: 1, 2 and 4 readers over 1,000,000 rows into the console sink (count only).
fn readers() -> Result<()> {
    const ROWS: u64 = 1_000_000;
    seed("person_1m", ROWS)?;
    let mut results = Vec::new();
    for readers in [1, 2, 4] {
        // Twice as many splits as readers, so an uneven split does not leave a reader idle.
        let spec = console_spec("person_1m", readers, readers * 2);
        let name = format!("mysql -> console(count), {readers} reader(s)");
        results.push(measure(name, &format!("readers-{readers}"), &spec, ROWS)?);
    }
    print_and_save(
        "Readers: 1,000,000 rows, MySQL -> console (count only); ratio to 1 reader",
        &bench_dir().join("readers.json"),
        &results,
    )
}

/// The transforms the benchmark runs: component (in `target/transforms`), label, config.
const TRANSFORMS: &[(&str, &str, &str)] = &[
    ("identity", "identity (Rust)", "{}"),
    ("py-identity", "identity (Python)", "{}"),
    ("js-identity", "identity (JavaScript)", "{}"),
    (
        "field-map",
        "field-map: a computed column (Rust)",
        "{compute: {label: \"{name} <{email}>\"}}",
    ),
    (
        "py-full-name",
        "full-name, row dicts (Python)",
        "{first: name, last: email}",
    ),
    ("js-email-domain", "email-domain, row objects (JS)", "{}"),
];

/// What a WASM transform costs: 1,000,000 rows into the console sink with no transform, then
/// with each of [`TRANSFORMS`]; ratios to no transform, same run. First, per component, a
/// one-row job with an empty compile cache and again with a warm one: what compiling costs.
fn transforms() -> Result<()> {
    const ROWS: u64 = 1_000_000;
    seed("person_1m", ROWS)?;
    let dir = xtask::root().join("target/transforms");
    let state = bench_dir().join("transform-state");
    let with = |name: &str, config: &str| {
        console_spec("person_1m", 1, 1).replace(
            "sink:",
            &format!(
                "checkpoint:\n  dir: {}\ncache_dir: {}\ntransforms:\n  - name: {name}\n    component: {}\n    config: {config}\nsink:",
                state.join(name).join("checkpoints").display(),
                state.join(name).join("cache").display(),
                dir.join(format!("{name}.wasm")).display()
            ),
        )
    };

    println!(
        "\nTransform components: size, and a one-row job with a cold and a warm compile cache"
    );
    println!(
        "{:<34} {:>10} {:>12} {:>12}",
        "component", "MB", "cold run s", "warm run s"
    );
    let mut components = Vec::new();
    for (name, _, config) in TRANSFORMS {
        let one_row = with(name, config).replace(
            "    table: person_1m\n",
            "    query: SELECT * FROM person_1m WHERE id = 1\n",
        );
        let timed = || -> Result<f64> {
            let started = std::time::Instant::now();
            let s = etlhost(&format!("compile-{name}"), &one_row)?;
            if s["written"].as_u64() != Some(1) {
                bail!("{name}: one-row job wrote {}", s["written"]);
            }
            Ok(started.elapsed().as_secs_f64())
        };
        // Each component has its own state folder, so emptying its cache leaves the others'.
        match std::fs::remove_dir_all(state.join(name).join("cache")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let cold = timed()?;
        let warm = timed()?;
        let bytes = std::fs::metadata(dir.join(format!("{name}.wasm")))?.len();
        println!(
            "{:<34} {:>10.2} {:>12.2} {:>12.2}",
            name,
            bytes as f64 / 1e6,
            cold,
            warm
        );
        components.push(json!({
            "component": name, "bytes": bytes, "cold_run_seconds": cold, "warm_run_seconds": warm,
        }));
    }
    let file = bench_dir().join("transform-components.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({ "components": components }))? + "\n",
    )?;
    println!("written to {}", file.display());

    let mut results = vec![measure(
        "no transform".into(),
        "transform-none",
        &console_spec("person_1m", 1, 1),
        ROWS,
    )?];
    for (name, label, config) in TRANSFORMS {
        results.push(measure(
            label.to_string(),
            &format!("transform-{name}"),
            &with(name, config),
            ROWS,
        )?);
    }
    print_and_save(
        "Transforms: 1,000,000 rows, MySQL -> console (count only), 1 reader; ratio to no transform",
        &bench_dir().join("transforms.json"),
        &results,
    )
}

fn bolt_spec(table: &str, mode: &str, batch: usize) -> String {
    format!(
        "name: bench-bolt
source:
  plugin: mysql
  options:
    url: mysql://127.0.0.1:{MYSQL_PORT}/{BENCH_DB}
    user: {MYSQL_USER}
    password: {MYSQL_PASSWORD}
    table: {table}
sink:
  plugin: bolt
  write_mode: {mode}
  max_batch_size: {batch}
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {BENCH_DB}
    query: \"UNWIND $batch AS row CREATE (:Person {{id: row.id, name: row.name, email: row.email, created_at: row.created_at}})\"
"
    )
}

/// Batching pays: 100,000 rows one row per transaction against batches of 100, 1,000 and 10,000.
fn batching() -> Result<()> {
    const ROWS: u64 = 100_000;
    seed("person_100k", ROWS)?;
    let mut results = Vec::new();
    for (mode, batch) in [
        ("one_by_one", 1),
        ("batch", 100),
        ("batch", 1000),
        ("batch", 10_000),
    ] {
        fresh_graph(BENCH_DB)?;
        let name = if mode == "one_by_one" {
            "mysql -> bolt, one_by_one".to_string()
        } else {
            format!("mysql -> bolt, batches of {batch}")
        };
        let spec = bolt_spec("person_100k", mode, batch);
        results.push(measure(name, &format!("bolt-{mode}-{batch}"), &spec, ROWS)?);
        // A fast wrong run must not look good: the graph must hold every row.
        let nodes = graph_count(BENCH_DB, "MATCH (p:Person) RETURN count(p) AS n")?;
        if nodes != ROWS {
            bail!("{mode} {batch}: {nodes} nodes in the graph, expected {ROWS}");
        }
    }
    print_and_save(
        "Batching: 100,000 rows, MySQL -> Bolt (CREATE); ratio to one_by_one",
        &bench_dir().join("batching.json"),
        &results,
    )
}

/// A measured program's own report (its last stdout line): rows, seconds, peak RSS.
fn external(cmd: &mut Command) -> Result<Row> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or(""))
        .with_context(|| format!("no report from {cmd:?}: {text}"))?;
    Ok(Row {
        name: String::new(),
        rows: v["rows"].as_u64().unwrap_or(0),
        secs: v["seconds"].as_f64().unwrap_or(f64::NAN),
        peak_rss: v["peak_rss_bytes"].as_u64().unwrap_or(0),
    })
}

fn named(mut r: Row, name: &str) -> Row {
    r.name = name.to_string();
    r
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

fn nodes_must_be(rows: u64, what: &str) -> Result<()> {
    let nodes = graph_count(BENCH_DB, "MATCH (p:Person) RETURN count(p) AS n")?;
    if nodes != rows {
        bail!("{what}: {nodes} nodes in the graph, expected {rows}");
    }
    Ok(())
}

/// etlhost against the raw limits of its source and sink, and against a hand-written script.
fn compare() -> Result<()> {
    const ROWS: u64 = 100_000;
    const BIG: u64 = 1_000_000;
    const BATCH: usize = 1000;
    seed("person_100k", ROWS)?;
    seed("person_1m", BIG)?;
    let url = format!("mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{MYSQL_PORT}/{BENCH_DB}");
    let limits = root().join("target/release/limits");
    let sink_args = |mode: &str| {
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

    fresh_graph(BENCH_DB)?;
    let sink_raw = named(
        external(&mut sink_args("sink-raw"))?,
        "limit: Bolt UNWIND loop, TCP_NODELAY",
    );
    nodes_must_be(ROWS, "sink limit")?;
    fresh_graph(BENCH_DB)?;
    let neo4rs = named(
        external(&mut sink_args("sink-neo4rs"))?,
        "stock neo4rs UNWIND loop",
    );
    nodes_must_be(ROWS, "neo4rs")?;
    let source_raw = named(
        external(Command::new(&limits).args(["source", &url, "person_1m"]))?,
        "limit: mysql_async streaming read",
    );

    let py = python()?;
    let script = root().join("xtask/bench/hand_written.py");
    let args = json!({
        "host": "127.0.0.1", "port": MYSQL_PORT, "user": MYSQL_USER, "password": MYSQL_PASSWORD,
        "database": BENCH_DB, "table": "person_100k", "bolt_uri": format!("bolt://127.0.0.1:{BOLT_PORT}"),
        "graph_user": GRAPH_USER, "graph_password": GRAPH_PASSWORD, "graph_database": BENCH_DB, "batch": BATCH,
    });
    fresh_graph(BENCH_DB)?;
    let python = named(
        external(Command::new(&py).arg(&script).arg(args.to_string()))?,
        "Python: PyMySQL + neo4j driver",
    );
    nodes_must_be(ROWS, "python")?;

    fresh_graph(BENCH_DB)?;
    let one = measure(
        "etlhost mysql -> bolt, 1 reader".into(),
        "cmp-1",
        &bolt_spec("person_100k", "batch", BATCH),
        ROWS,
    )?;
    nodes_must_be(ROWS, "etlhost 1 reader")?;
    fresh_graph(BENCH_DB)?;
    let parallel_spec = bolt_spec("person_100k", "batch", BATCH)
        .replacen("source:\n  plugin: mysql\n", "parallelism: 2\nsource:\n  plugin: mysql\n  partition_column: id\n  partition_num: 4\n", 1)
        .replacen("  write_mode: batch\n", "  write_mode: batch\n  parallelism: 2\n", 1);
    let two = measure(
        "etlhost mysql -> bolt, 2 readers, 2 writers".into(),
        "cmp-2",
        &parallel_spec,
        ROWS,
    )?;
    nodes_must_be(ROWS, "etlhost 2 readers")?;
    let console = measure(
        "etlhost mysql -> console(count)".into(),
        "cmp-console",
        &console_spec("person_1m", 1, 1),
        BIG,
    )?;
    fresh_graph(BENCH_DB)?;
    let slice = bolt_spec("person_100k", "one_by_one", 1).replace(
        "    table: person_100k\n",
        "    query: SELECT * FROM person_100k WHERE id <= 10000\n",
    );
    let obo = measure(
        "etlhost one_by_one (10,000 rows)".into(),
        "cmp-obo",
        &slice,
        10_000,
    )?;
    nodes_must_be(10_000, "one_by_one")?;

    let rate = |r: &Row| r.rows as f64 / r.secs;
    let rows: Vec<(&Row, Option<&Row>, bool)> = vec![
        (&sink_raw, None, false),
        (&neo4rs, Some(&sink_raw), false),
        (&source_raw, None, false),
        (&python, None, false),
        (&one, Some(&sink_raw), true),
        (&two, Some(&sink_raw), true),
        (&console, Some(&source_raw), false),
        (&obo, Some(&sink_raw), true),
    ];
    println!(
        "\nComparison: MySQL -> Bolt, batches of {BATCH} (100,000 rows; source runs 1,000,000)"
    );
    println!(
        "{:<46} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "run", "rows", "secs", "rows/s", "peak MiB", "vs limit", "vs Python"
    );
    let mut out = Vec::new();
    for (r, limit, vs_python) in rows {
        let to_limit = limit.map(|l| rate(r) / rate(l));
        let to_python = vs_python.then(|| rate(r) / rate(&python));
        let fmt = |x: Option<f64>| x.map_or("".to_string(), |x| format!("{x:.2}"));
        println!(
            "{:<46} {:>9} {:>8.3} {:>10.0} {:>9.1} {:>9} {:>9}",
            r.name,
            r.rows,
            r.secs,
            rate(r),
            r.peak_rss as f64 / 1048576.0,
            fmt(to_limit),
            fmt(to_python)
        );
        out.push(json!({
            "run": r.name, "rows": r.rows, "seconds": r.secs, "rows_per_sec": rate(r),
            "peak_rss_bytes": r.peak_rss, "ratio_to_limit": to_limit, "ratio_to_python": to_python,
        }));
    }
    let file = bench_dir().join("results.json");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({"cores": cores, "runs": out}))? + "\n",
    )?;
    println!("written to {}", file.display());
    Ok(())
}

/// One benchmark: it prints its table and writes its JSON.
type Bench = fn() -> Result<()>;

/// All benchmarks, or the one named.
pub fn run(only: Option<&str>) -> Result<()> {
    services::ensure()?;
    build(true)?;
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let all: [(&str, Bench); 4] = [
        ("readers", readers),
        ("batching", batching),
        ("transforms", transforms),
        ("compare", compare),
    ];
    if let Some(name) = only {
        if !all.iter().any(|(n, _)| *n == name) {
            bail!("no benchmark named {name}");
        }
    }
    for (name, bench) in all {
        if only.is_none_or(|o| o == name) {
            bench()?;
        }
    }
    Ok(())
}
