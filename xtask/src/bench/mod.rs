//! `cargo xtask bench [NAME] [--reps N] [--10m]`: throughput measured side by side in one run,
//! printed as tables, written to `target/bench/*.json`, and from there into `docs/performance.md`
//! ([`performance`]); `cargo xtask bench report` writes that page again without running anything.
//!
//! Method: every timed figure is the median of `--reps` (default 5, at least 5 for a figure to
//! quote) runs that alternate with their baseline (baseline, case 1, case 2, ..., baseline, ...),
//! with min and max beside it; ratios are of medians. Timings on a shared machine move a lot, so
//! [`callgrind`] also counts the host's own instructions per row, which do not.
//!
//! Each measurement is a module with a `run(&Opts)`; [`BENCHES`] is the one dispatch point (add a
//! line there for a new one).

mod batching;
mod callgrind;
mod compare;
mod knows;
mod performance;
mod postgres;
mod readers;
mod rss;
mod shards;
mod stream;
mod stream_cascade;
mod stream_service;
mod tls;
mod transforms;
mod verify;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xtask::services::{self, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER};
use xtask::{cargo, root};

use crate::demo::run_sql;

pub const BENCH_DB: &str = "bench";

/// What the command line asked for.
pub struct Opts {
    /// Runs per figure.
    pub reps: usize,
    /// Also measure peak RSS on 10,000,000 rows (seeding them takes minutes).
    pub ten_million: bool,
}

/// One benchmark: it prints its tables and writes its JSON.
type Bench = fn(&Opts) -> Result<()>;

/// Every benchmark, in the order `cargo xtask bench` runs them.
const BENCHES: &[(&str, Bench)] = &[
    ("compare", compare::run),
    ("transforms", transforms::run),
    ("readers", readers::run),
    ("batching", batching::run),
    ("knows", knows::run),
    ("rss", rss::run),
    ("callgrind", callgrind::run),
    ("verify", verify::run),
    ("stream", stream::run),
    ("stream_service", stream_service::run),
    ("shards", shards::run),
    ("tls", tls::run),
    ("postgres", postgres::run),
];

/// The command line of this run, as each table records it.
static COMMAND: OnceLock<String> = OnceLock::new();

pub fn usage() -> String {
    let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
    format!(
        "bench [{}] [--reps N] [--10m] | bench report",
        names.join("|")
    )
}

/// All benchmarks, or the one named, then the page of their tables; `args` are what follows
/// `bench` on the command line. `report` writes only the page, from the tables already there.
pub fn run(args: &[String]) -> Result<()> {
    if args.first().is_some_and(|a| a == "report") {
        return write_page();
    }
    let mut opts = Opts {
        reps: 5,
        ten_million: false,
    };
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => {
                opts.reps = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .context("--reps needs a number of runs, at least 1")?
            }
            "--10m" => opts.ten_million = true,
            name if only.is_none() && BENCHES.iter().any(|(n, _)| *n == name) => only = Some(a),
            other => bail!("unknown bench argument `{other}`; usage: {}", usage()),
        }
    }
    let _ = COMMAND.set(format!(
        "cargo xtask bench {}--reps {}{}",
        only.map_or(String::new(), |o| format!("{o} ")),
        opts.reps,
        if opts.ten_million { " --10m" } else { "" }
    ));
    services::ensure()?;
    build_release()?;
    println!(
        "machine: {} cores; {} runs per figure, alternating with the baseline",
        cores(),
        opts.reps
    );
    for (name, bench) in BENCHES {
        if only.is_none_or(|o| o == name) {
            bench(&opts).with_context(|| format!("bench {name}"))?;
        }
    }
    write_page()
}

/// `docs/performance.md` and its chart, from every table in `target/bench`.
fn write_page() -> Result<()> {
    performance::write(&bench_dir(), &root().join("docs"))
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// What the benchmarks run, in release mode: the binary, the plugins they use and the limit loops
/// (not the test plugins), and the WASM transforms.
fn build_release() -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--release"]).current_dir(root());
    for p in [
        "etlhost",
        "etlhost-mysql",
        "etlhost-bolt",
        "etlhost-console",
        "etlhost-limits",
    ] {
        cmd.args(["-p", p]);
    }
    xtask::run(&mut cmd)?;
    xtask::transforms::build()
}

/// Creates `bench.<table>` with `rows` rows of `person(id, name, email, created_at)` unless it
/// already holds exactly that many.
pub fn seed(table: &str, rows: u64) -> Result<()> {
    seed_with(
        table,
        rows,
        "id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), created_at DATETIME",
        "seq, CONCAT('person-', seq), CONCAT('person', seq, '@example.com'), \
         '2020-01-01 00:00:00' + INTERVAL seq SECOND",
        1,
    )
}

/// Creates `bench.<table>` (`columns`) with `rows` rows `SELECT <select> FROM seq_<from>_to_...`
/// unless it already holds exactly that many.
pub fn seed_with(table: &str, rows: u64, columns: &str, select: &str, from: u64) -> Result<()> {
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
    let to = from + rows - 1;
    run_sql(&format!(
        "CREATE DATABASE IF NOT EXISTS {BENCH_DB};
         USE {BENCH_DB};
         DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} ({columns});
         INSERT INTO {table} SELECT {select} FROM seq_{from}_to_{to};"
    ))
}

pub fn bench_dir() -> PathBuf {
    root().join("target/bench")
}

pub fn release_bin(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

/// CPU seconds (user + system) of the children this process has waited for, so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Runs a command to completion: its output, and the CPU seconds it used.
pub fn timed_output(cmd: &mut Command) -> Result<(std::process::Output, f64)> {
    let before = children_cpu();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok((out, children_cpu() - before))
}

/// Writes `spec` as `target/bench/<spec_name>.yaml`, runs `etlhost run` on it and returns its
/// summary and the CPU seconds the process used.
pub fn etlhost(spec_name: &str, spec: &str) -> Result<(Value, f64)> {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join(format!("{spec_name}.yaml"));
    let summary = dir.join(format!("{spec_name}.summary.json"));
    std::fs::write(&spec_path, spec)?;
    let (out, cpu) = timed_output(
        Command::new(release_bin("etlhost"))
            .arg("run")
            .arg(&spec_path)
            .arg("--fresh")
            .arg("--summary-json")
            .arg(&summary)
            .env("RUST_LOG", "warn"),
    )?;
    if !out.status.success() {
        bail!(
            "etlhost failed on {}:\n{}",
            spec_path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text =
        std::fs::read_to_string(&summary).with_context(|| format!("no {}", summary.display()))?;
    Ok((serde_json::from_str(&text)?, cpu))
}

/// The mysql source options for a table of the bench database, as YAML under `options:`.
pub fn mysql_options(table: &str) -> String {
    format!(
        "    url: mysql://127.0.0.1:{MYSQL_PORT}/{BENCH_DB}
    user: {MYSQL_USER}
    password: {MYSQL_PASSWORD}
    table: {table}
"
    )
}

/// A spec reading `table` (split `splits` ways by `readers` readers) into the console sink,
/// counting only.
pub fn console_spec(table: &str, readers: usize, splits: usize) -> String {
    let partition = if splits > 1 {
        format!("  partition_column: id\n  partition_num: {splits}\n")
    } else {
        String::new()
    };
    format!(
        "name: bench-console
parallelism: {readers}
source:
  plugin: mysql
{partition}  options:
{}sink:
  plugin: console
  options:
    mode: count
",
        mysql_options(table)
    )
}

/// One timed run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub rows: u64,
    pub secs: f64,
    pub peak_rss: u64,
    pub retries: u64,
    /// CPU seconds of the measured process.
    pub cpu: f64,
    /// Where they were measured: wall seconds of the whole process, and CPU seconds the graph
    /// database and MariaDB used meanwhile (0 when not measured).
    pub wall: f64,
    pub graph_cpu: f64,
    pub mysql_cpu: f64,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.secs
    }
}

/// An etlhost run: `rows` read and written is checked, so that a fast wrong run fails the bench.
pub fn etlhost_sample(what: &str, spec_name: &str, spec: &str, rows: u64) -> Result<Sample> {
    etlhost_sample_writing(what, spec_name, spec, rows, rows)
}

/// As [`etlhost_sample`], of a job that writes `written` of the `rows` it reads (the others
/// filtered out); rows/s counts the rows read.
pub fn etlhost_sample_writing(
    what: &str,
    spec_name: &str,
    spec: &str,
    rows: u64,
    written: u64,
) -> Result<Sample> {
    let (s, cpu) = etlhost(spec_name, spec)?;
    if s["read"].as_u64() != Some(rows)
        || s["written"].as_u64() != Some(written)
        || s["filtered"].as_u64() != Some(rows - written)
    {
        bail!(
            "{what}: read {}, written {}, filtered {}, expected {rows}, {written}, {}",
            s["read"],
            s["written"],
            s["filtered"],
            rows - written
        );
    }
    Ok(Sample {
        rows,
        secs: s["duration_secs"].as_f64().unwrap_or(f64::NAN),
        peak_rss: s["peak_rss_bytes"].as_u64().unwrap_or(0),
        retries: s["retries"].as_u64().unwrap_or(0),
        cpu,
        ..Sample::default()
    })
}

/// A measured program's own report (its last stdout line): rows, seconds, peak RSS.
pub fn external(cmd: &mut Command) -> Result<Sample> {
    let (out, cpu) = timed_output(cmd)?;
    if !out.status.success() {
        bail!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().unwrap_or(""))
        .with_context(|| format!("no report from {cmd:?}: {text}"))?;
    Ok(Sample {
        rows: v["rows"].as_u64().unwrap_or(0),
        secs: v["seconds"].as_f64().unwrap_or(f64::NAN),
        peak_rss: v["peak_rss_bytes"].as_u64().unwrap_or(0),
        retries: 0,
        cpu,
        ..Sample::default()
    })
}

/// A figure to measure: its name, the index of its baseline among the cases (none for a
/// baseline), and how to take one sample.
pub struct Case<'a> {
    pub name: String,
    pub baseline: Option<usize>,
    pub sample: Box<dyn FnMut() -> Result<Sample> + 'a>,
}

impl<'a> Case<'a> {
    pub fn new(
        name: impl Into<String>,
        baseline: Option<usize>,
        sample: impl FnMut() -> Result<Sample> + 'a,
    ) -> Self {
        Case {
            name: name.into(),
            baseline,
            sample: Box::new(sample),
        }
    }
}

/// A figure's runs.
pub struct Figure {
    pub name: String,
    pub baseline: Option<usize>,
    pub samples: Vec<Sample>,
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

impl Figure {
    fn rates(&self) -> Vec<f64> {
        self.samples.iter().map(Sample::rate).collect()
    }
    pub fn median_rate(&self) -> f64 {
        median(self.rates())
    }
    pub fn min_rate(&self) -> f64 {
        self.rates().into_iter().fold(f64::INFINITY, f64::min)
    }
    pub fn max_rate(&self) -> f64 {
        self.rates().into_iter().fold(0.0, f64::max)
    }
    pub fn median_secs(&self) -> f64 {
        median(self.samples.iter().map(|s| s.secs).collect())
    }
    pub fn peak_rss(&self) -> u64 {
        self.samples.iter().map(|s| s.peak_rss).max().unwrap_or(0)
    }
    pub fn retries(&self) -> Vec<u64> {
        self.samples.iter().map(|s| s.retries).collect()
    }
    pub fn median_cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu).collect())
    }
    pub fn rows(&self) -> u64 {
        self.samples.first().map_or(0, |s| s.rows)
    }
}

/// Takes `reps` samples of every case, in turns (each turn runs every case once, in order), so
/// that a case and its baseline see the same moments of a noisy machine.
pub fn alternate(reps: usize, mut cases: Vec<Case<'_>>) -> Result<Vec<Figure>> {
    let mut figures: Vec<Figure> = cases
        .iter()
        .map(|c| Figure {
            name: c.name.clone(),
            baseline: c.baseline,
            samples: Vec::new(),
        })
        .collect();
    for rep in 0..reps {
        for (c, f) in cases.iter_mut().zip(&mut figures) {
            let s = (c.sample)().with_context(|| format!("{} (run {})", c.name, rep + 1))?;
            f.samples.push(s);
        }
        eprintln!("xtask: bench: turn {} of {reps} done", rep + 1);
    }
    Ok(figures)
}

/// The ratio of a figure's median to its baseline's.
pub fn ratio(figures: &[Figure], i: usize) -> Option<f64> {
    let f = &figures[i];
    f.baseline
        .map(|b| f.median_rate() / figures[b].median_rate())
}

/// Prints the figures (median rows/s with min and max, peak RSS, ratio of medians to the
/// baseline) and writes them, every sample included, to `target/bench/<file>`; `extra` adds
/// fields to each figure's JSON (and a column when it returns a text).
pub fn report(
    title: &str,
    file: &str,
    figures: &[Figure],
    extra: &dyn Fn(&Figure) -> (Option<String>, Value),
) -> Result<()> {
    println!("\n{title}");
    println!(
        "{:<46} {:>9} {:>11} {:>11} {:>11} {:>8} {:>6} {:<28}",
        "run", "rows", "median/s", "min/s", "max/s", "RSS MiB", "ratio", ""
    );
    let mut out = Vec::new();
    for (i, f) in figures.iter().enumerate() {
        let ratio = ratio(figures, i);
        let (col, fields) = extra(f);
        let vs = f
            .baseline
            .map_or(String::new(), |b| format!("to {}", figures[b].name));
        println!(
            "{:<46} {:>9} {:>11.0} {:>11.0} {:>11.0} {:>8.1} {:>6} {vs} {}",
            f.name,
            f.rows(),
            f.median_rate(),
            f.min_rate(),
            f.max_rate(),
            f.peak_rss() as f64 / 1048576.0,
            ratio.map_or(String::new(), |r| format!("{r:.2}")),
            col.unwrap_or_default(),
        );
        let mut j = json!({
            "run": f.name,
            "rows": f.rows(),
            "rows_per_sec": {"median": f.median_rate(), "min": f.min_rate(), "max": f.max_rate()},
            "seconds_median": f.median_secs(),
            "peak_rss_bytes": f.peak_rss(),
            "cpu_seconds_median": f.median_cpu(),
            "baseline": f.baseline.map(|b| figures[b].name.clone()),
            "ratio_of_medians": ratio,
            "samples": f.samples.iter().map(|s| json!({
                "seconds": s.secs, "rows_per_sec": s.rate(), "peak_rss_bytes": s.peak_rss,
                "retries": s.retries, "cpu_seconds": s.cpu, "wall_seconds": s.wall,
                "graph_cpu_seconds": s.graph_cpu, "mysql_cpu_seconds": s.mysql_cpu,
            })).collect::<Vec<_>>(),
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut j, fields) {
            m.extend(e);
        }
        out.push(j);
    }
    write_json(
        file,
        &json!({"title": title, "cores": cores(), "figures": out}),
    )
}

/// No extra column or fields.
pub fn plain(_: &Figure) -> (Option<String>, Value) {
    (None, json!({}))
}

/// Writes a table, with what the page says of the run that made it: the command, the time, the
/// runs per figure and the machine.
pub fn write_json(file: &str, v: &Value) -> Result<()> {
    std::fs::create_dir_all(bench_dir())?;
    let path = bench_dir().join(file);
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let command = COMMAND.get().cloned().unwrap_or_default();
        let reps = command
            .split_once("--reps ")
            .and_then(|(_, r)| r.split(' ').next()?.parse::<u64>().ok());
        m.insert("command".into(), json!(command));
        m.insert("written_at".into(), json!(now.as_secs()));
        m.insert("reps".into(), json!(reps));
        m.insert("machine".into(), machine());
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// Cores, memory and processor model of this machine, as `/proc` gives them.
fn machine() -> Value {
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let memory_kib = field(&read("/proc/meminfo"), "MemTotal")
        .and_then(|v| v.trim_end_matches(" kB").parse::<f64>().ok());
    json!({
        "cores": cores(),
        "memory_gib": memory_kib.map(|k| k / 1048576.0),
        "cpu": field(&read("/proc/cpuinfo"), "model name"),
    })
}

/// CPU seconds (user + system) used so far by the processes whose command line contains
/// `pattern` (the servers the bench runs against).
pub fn server_cpu(pattern: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for e in dir.flatten() {
        let p = e.path();
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(pattern) {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| {
                f.get(i - 3)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            total += (ticks(14) + ticks(15)) / tick;
        }
    }
    total
}
