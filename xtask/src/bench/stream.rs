//! Streaming: what following the binlog costs against the same Cypher in batch mode, and how long
//! a committed change takes to reach the graph.
//!
//! - throughput, in alternating turns: N rows written in batch mode (`MERGE`, a fresh graph), then
//!   N new rows inserted in transactions of 1,000 while a `mode: stream, snapshot: false` job
//!   (started anew on a fresh graph each turn, caught up first) follows the binlog; the stream's
//!   rate is N over the time from the first insert to the stream acknowledging the server's head
//!   (its Prometheus endpoint); ratio of medians to the batch rate (goal: at least 0.8);
//! - latency at 1,000 changes/s, once: rows carry the time MySQL ran their INSERT (`at`, ms) and
//!   the graph stamps its own time when it writes them (`timestamp()`); p50 / p99 of the
//!   difference over 10,000 changes (goal: p99 under 1 s);
//! - one huge transaction, in the same alternating turns: `UPDATE huge SET v = v + 1` of 1,000,000
//!   rows (`BENCH_HUGE_ROWS` to change it) followed with the default `max_transaction_changes`
//!   into a fresh graph; changes/s from the UPDATE's commit to the stream acknowledging the head,
//!   the etlhost process's peak RSS (`VmHWM`, goal: under 64 MiB), and the graph checked exact;
//! - the same transaction once more, the job SIGKILLed once its checkpoint is inside it and run
//!   again without `--fresh`: the graph checked exact.

use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, http};
use xtask::services::{free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PORT};

use super::stream_service::{binlog_head as head, sql};
use super::{alternate, bench_dir, etlhost_sample, release_bin, report, Case, Opts, Sample};

const DB: &str = "bench_stream";
/// The batch runs' graph; the stream's is `DB`.
const BATCH_GRAPH: &str = "bench_stream_batch";
const ROWS: u64 = 20_000;
/// The huge transaction's graph.
const HUGE_GRAPH: &str = "bench_stream_huge";
/// Rows of the huge transaction, unless `BENCH_HUGE_ROWS` says otherwise.
const HUGE_ROWS: u64 = 1_000_000;

fn spec(name: &str, table: &str, stream: bool) -> String {
    let graph = if stream { DB } else { BATCH_GRAPH };
    let mode = if stream {
        "mode: stream\nsnapshot: false\n"
    } else {
        ""
    };
    format!(
        "name: {name}
{mode}checkpoint: {{dir: {cp}}}
source:
  plugin: mysql
  options: {{url: \"mysql://127.0.0.1:{MYSQL_PORT}/{DB}\", user: etl, password: etl, table: {table}}}
sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {graph}
    setup: [\"CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)\"]
    query: \"UNWIND $batch AS row MERGE (p:Person {{id: row.id}}) SET p.name = row.name, p.at = row.at, p.written = timestamp()\"
    delete_query: \"UNWIND $batch AS row MATCH (p:Person {{id: row.id}}) DETACH DELETE p\"
",
        cp = dir().join("cp").display()
    )
}

fn dir() -> PathBuf {
    bench_dir()
}

/// The acknowledged position and whether the stream is caught up, from its metrics.
fn scrape(port: u16) -> Option<(String, u64, bool)> {
    let text = xtask::metrics::scrape(port)?;
    let (file, pos) = xtask::metrics::acked(&text)?;
    Some((file, pos, xtask::metrics::caught_up(&text)))
}

fn wait_acked(port: u16, target: &(String, u64)) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if let Some((file, pos, _)) = scrape(port) {
            if file > target.0 || (file == target.0 && pos >= target.1) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!("the stream never reached {target:?}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A streaming job on a fresh graph, following the binlog from its head, with its metrics port.
fn start_stream() -> Result<(Child, u16)> {
    fresh_graph(DB)?;
    let stream_spec = dir().join("stream-stream.yaml");
    std::fs::write(&stream_spec, spec("stream_stream", "person", true))?;
    let port = free_port()?;
    let job = Command::new(release_bin("etlhost"))
        .arg("run")
        .arg(&stream_spec)
        .args(["--fresh", "--quiet", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((job, port))
}

/// One turn of the stream: `ROWS` new rows (ids from `first`) inserted and followed into a fresh
/// graph.
fn stream_sample(first: u64) -> Result<Sample> {
    let (mut job, port) = start_stream()?;
    let result = (|| {
        wait_acked(port, &head()?)?;
        let start = Instant::now();
        let mut text = format!("USE {DB};\n");
        for i in 0..ROWS / 1000 {
            let from = first + i * 1000;
            let to = from + 999;
            text.push_str(&format!(
                "INSERT INTO person SELECT seq, CONCAT('person-', seq), 0 FROM seq_{from}_to_{to};\n"
            ));
        }
        sql(&text)?;
        wait_acked(port, &head()?)?;
        Ok(Sample {
            rows: ROWS,
            secs: start.elapsed().as_secs_f64(),
            ..Sample::default()
        })
    })();
    let _ = job.kill();
    let _ = job.wait();
    result
}

/// Commit-to-graph latency at 1,000 changes/s: (offered rate, p50 ms, p99 ms, samples).
fn latency(first: u64) -> Result<(f64, f64, f64, usize)> {
    let (mut job, port) = start_stream()?;
    let result = (|| {
        wait_acked(port, &head()?)?;
        // 10 rows every 10 ms for 10 s, each INSERT its own commit.
        let mut client = xtask::mariadb()
            .args(["-N", "-B", DB])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let mut stdin = client.stdin.take().context("client stdin")?;
        let t0 = Instant::now();
        let mut id = first;
        for tick in 0..1000u64 {
            while t0.elapsed() < Duration::from_millis(tick * 10) {
                std::thread::sleep(Duration::from_micros(500));
            }
            for _ in 0..10 {
                id += 1;
                writeln!(
                    stdin,
                    "INSERT INTO person VALUES ({id}, 'l', ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000));"
                )?;
            }
            stdin.flush()?;
        }
        drop(stdin);
        client.wait()?;
        let offered = 10_000.0 / t0.elapsed().as_secs_f64();
        wait_acked(port, &head()?)?;
        let body = json!({"language": "cypher",
            "command": format!("MATCH (p:Person) WHERE p.id > {first} RETURN p.written - p.at AS ms")});
        let (code, text) = http(
            "POST",
            &format!("/api/v1/command/{DB}"),
            Some(&body.to_string()),
        )?;
        if code != 200 {
            bail!("reading latencies failed: {text}");
        }
        let rows: serde_json::Value = serde_json::from_str(&text)?;
        let mut ms: Vec<f64> = rows["result"]
            .as_array()
            .context("no result")?
            .iter()
            .filter_map(|r| r["ms"].as_f64())
            .collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        Ok((
            offered,
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.len(),
        ))
    })();
    let _ = job.kill();
    let _ = job.wait();
    result
}

/// The huge transaction's size.
fn huge_rows() -> Result<u64> {
    match std::env::var("BENCH_HUGE_ROWS") {
        Ok(n) => n
            .parse()
            .with_context(|| format!("BENCH_HUGE_ROWS={n}: not a number of rows")),
        Err(_) => Ok(HUGE_ROWS),
    }
}

/// Following `huge` into `HUGE_GRAPH` from the binlog's head, the default threshold.
fn huge_spec() -> String {
    format!(
        "name: stream_huge
mode: stream
snapshot: false
checkpoint: {{dir: {cp}, interval: 200ms}}
source:
  plugin: mysql
  options: {{url: \"mysql://127.0.0.1:{MYSQL_PORT}/{DB}\", user: etl, password: etl, table: huge}}
sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {HUGE_GRAPH}
    setup: [\"CREATE INDEX huge_id IF NOT EXISTS FOR (h:Huge) ON (h.id)\"]
    query: \"UNWIND $batch AS row MERGE (h:Huge {{id: row.id}}) SET h.v = row.v\"
    delete_query: \"UNWIND $batch AS row MATCH (h:Huge {{id: row.id}}) DETACH DELETE h\"
",
        cp = dir().join("cp-huge").display()
    )
}

/// The huge job, anew (`--fresh`, on a fresh graph) or resumed, with its metrics port.
fn start_huge(fresh: bool) -> Result<(Child, u16)> {
    let spec = dir().join("stream-huge.yaml");
    if fresh {
        fresh_graph(HUGE_GRAPH)?;
        std::fs::write(&spec, huge_spec())?;
        // A killed turn's checkpoint may lie inside its transaction: none may outlive it.
        let _ = std::fs::remove_dir_all(dir().join("cp-huge"));
    }
    let port = free_port()?;
    let mut cmd = Command::new(release_bin("etlhost"));
    cmd.arg("run").arg(&spec);
    if fresh {
        cmd.arg("--fresh");
    }
    let job = cmd
        .args(["--quiet", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(huge_log(port))?)
        .spawn()?;
    Ok((job, port))
}

/// Where the huge job with metrics on `port` logs.
fn huge_log(port: u16) -> PathBuf {
    dir().join(format!("stream-huge-{port}.stderr"))
}

/// [`wait_acked`] for the huge job, failing with its log if it ends meanwhile (its metrics port
/// might then answer for another process).
fn wait_huge(job: &mut Child, port: u16, target: &(String, u64)) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(600) {
        if let Some(status) = job.try_wait()? {
            let log = std::fs::read_to_string(huge_log(port)).unwrap_or_default();
            bail!("the huge transaction's job ended ({status}):\n{log}");
        }
        if let Some((file, pos, _)) = scrape(port) {
            if file > target.0 || (file == target.0 && pos >= target.1) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!("the huge transaction's job never reached {target:?}")
}

/// A process's peak resident set (`VmHWM`), in bytes.
pub(super) fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

/// Fails unless the graph holds `rows` `:Huge` nodes, ids 1..=rows, each with `v = v`.
fn check_huge_graph(rows: u64, v: u64) -> Result<()> {
    let q = format!(
        "MATCH (h:Huge) RETURN count(h) AS n, count(DISTINCT h.id) AS ids, \
         sum(CASE WHEN h.v = {v} THEN 1 ELSE 0 END) AS exact, min(h.id) AS lo, max(h.id) AS hi"
    );
    let body = json!({"language": "cypher", "command": q});
    let (code, text) = http(
        "POST",
        &format!("/api/v1/command/{HUGE_GRAPH}"),
        Some(&body.to_string()),
    )?;
    if code != 200 {
        bail!("counting the graph failed: {text}");
    }
    let r: serde_json::Value = serde_json::from_str(&text)?;
    let r = &r["result"][0];
    let got = [&r["n"], &r["ids"], &r["exact"], &r["lo"], &r["hi"]].map(|x| x.as_u64());
    let want = [rows, rows, rows, 1, rows].map(Some);
    if got != want {
        bail!("the graph is not MySQL's: (nodes, ids, v = {v}, min id, max id) {got:?}, expected {want:?}");
    }
    Ok(())
}

/// One turn of the huge transaction: `UPDATE huge SET v = v + 1` (the `turn`-th, so every row's
/// v is `turn` after it) followed into a fresh graph.
fn huge_sample(rows: u64, turn: u64) -> Result<Sample> {
    let (mut job, port) = start_huge(true)?;
    let result = (|| {
        wait_huge(&mut job, port, &head()?)?;
        sql(&format!("UPDATE {DB}.huge SET v = v + 1"))?;
        // From the commit: the binlog holds the transaction only from then on.
        let start = Instant::now();
        wait_huge(&mut job, port, &head()?)?;
        let secs = start.elapsed().as_secs_f64();
        let peak = peak_rss(job.id())?;
        check_huge_graph(rows, turn)?;
        Ok(Sample {
            rows,
            secs,
            peak_rss: peak,
            ..Sample::default()
        })
    })();
    let _ = job.kill();
    let _ = job.wait();
    result
}

/// The checkpoint's position once it is inside a transaction (`skip` > 0).
fn checkpoint_inside() -> Option<serde_json::Value> {
    let cp = std::fs::read_dir(dir().join("cp-huge")).ok()?;
    let file = cp
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".stream.json"))?;
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
    (st["position"]["skip"].as_u64() > Some(0)).then(|| st["position"].clone())
}

/// The huge transaction once more (the `turn`-th), the job SIGKILLed inside it and run again
/// without `--fresh`: where it was killed, and the peak RSS of the second run.
fn huge_killed(rows: u64, turn: u64) -> Result<(serde_json::Value, u64)> {
    let (mut job, port) = start_huge(true)?;
    wait_huge(&mut job, port, &head()?)?;
    sql(&format!("UPDATE {DB}.huge SET v = v + 1"))?;
    let start = Instant::now();
    let inside = loop {
        if let Some(p) = checkpoint_inside() {
            break p;
        }
        if start.elapsed() > Duration::from_secs(300) || job.try_wait()?.is_some() {
            let _ = job.kill();
            bail!("the checkpoint never went inside the transaction");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    job.kill()?;
    job.wait()?;
    let (mut job, port) = start_huge(false)?;
    let result = (|| {
        wait_huge(&mut job, port, &head()?)?;
        let peak = peak_rss(job.id())?;
        check_huge_graph(rows, turn)?;
        Ok((inside, peak))
    })();
    let _ = job.kill();
    let _ = job.wait();
    result
}

pub fn run(opts: &Opts) -> Result<()> {
    std::fs::create_dir_all(dir())?;
    let huge = huge_rows()?;
    sql(&format!(
        "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB};
         CREATE TABLE base (id INT PRIMARY KEY, name VARCHAR(100), at BIGINT);
         INSERT INTO base SELECT seq, CONCAT('person-', seq), 0 FROM seq_1_to_{ROWS};
         CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100), at BIGINT);
         CREATE TABLE huge (id INT PRIMARY KEY, v BIGINT NOT NULL);
         INSERT INTO huge SELECT seq, 0 FROM seq_1_to_{huge};"
    ))?;
    let batch = spec("stream_batch", "base", false);
    // Each stream turn inserts ids of its own.
    let next = Cell::new(1u64);
    let turn = Cell::new(0u64);
    let huge_name = format!("stream: one transaction of {huge} updates");
    let figures = alternate(
        opts.reps,
        vec![
            Case::new("batch: etlhost run, MERGE", None, || {
                fresh_graph(BATCH_GRAPH)?;
                etlhost_sample("batch", "stream-batch", &batch, ROWS)
            }),
            Case::new("stream: binlog -> graph, MERGE", Some(0), || {
                let first = next.get();
                next.set(first + ROWS);
                stream_sample(first)
            }),
            Case::new(huge_name.clone(), None, || {
                turn.set(turn.get() + 1);
                huge_sample(huge, turn.get())
            }),
        ],
    )?;
    let (killed_at, killed_rss) = huge_killed(huge, turn.get() + 1)?;
    println!(
        "\none transaction of {huge} updates, SIGKILLed at {killed_at} and run again: graph exact, \
         peak RSS of the second run {:.1} MiB",
        killed_rss as f64 / 1048576.0
    );
    let (offered, p50, p99, samples) = latency(next.get() + 1_000_000)?;
    println!(
        "\ncommit-to-graph latency at {offered:.0} changes/s offered: p50 {p50:.0} ms, p99 \
         {p99:.0} ms ({samples} changes; goal: p99 under 1,000 ms)"
    );
    // Cascades' cost per parent delete: a table of its own (target/bench/stream_cascade.json).
    super::stream_cascade::run(opts)?;
    report(
        &format!(
            "stream against batch, MERGE, {ROWS} rows, one writer (goal: stream at least 0.8 of \
             batch)"
        ),
        "stream.json",
        &figures,
        &|f| {
            if f.name == huge_name {
                let killed = json!({"killed_at": killed_at, "graph_exact": true,
                                    "restart_peak_rss_bytes": killed_rss});
                return (
                    Some("changes/s; goal RSS < 64 MiB".into()),
                    json!({"transaction_changes": huge, "killed_and_restarted": killed}),
                );
            }
            let latency = f.baseline.map(|_| {
                json!({"offered_changes_per_sec": offered, "p50_ms": p50, "p99_ms": p99,
                       "samples": samples})
            });
            (None, json!({ "latency": latency }))
        },
    )
}
