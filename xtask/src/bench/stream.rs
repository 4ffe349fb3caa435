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
//!   difference over 10,000 changes (goal: p99 under 1 s).

use std::cell::Cell;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, http};
use xtask::services::{free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PORT};

use super::{alternate, bench_dir, etlhost_sample, release_bin, report, Case, Opts, Sample};

const DB: &str = "bench_stream";
/// The batch runs' graph; the stream's is `DB`.
const BATCH_GRAPH: &str = "bench_stream_batch";
const ROWS: u64 = 20_000;

fn sql(text: &str) -> Result<String> {
    let out = xtask::mariadb().args(["-N", "-B", "-e", text]).output()?;
    if !out.status.success() {
        bail!("{text}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

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
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("etlhost_stream_position{"))?;
    let file = line.split("file=\"").nth(1)?.split('"').next()?.to_string();
    let pos = line.rsplit(' ').next()?.parse().ok()?;
    let caught_up = text.lines().any(|l| l == "etlhost_stream_caught_up 1");
    Some((file, pos, caught_up))
}

fn head() -> Result<(String, u64)> {
    let out = sql("SHOW MASTER STATUS")?;
    let mut f = out.split_whitespace();
    Ok((
        f.next().context("no binlog file")?.to_string(),
        f.next().context("no binlog position")?.parse()?,
    ))
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

pub fn run(opts: &Opts) -> Result<()> {
    std::fs::create_dir_all(dir())?;
    sql(&format!(
        "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB};
         CREATE TABLE base (id INT PRIMARY KEY, name VARCHAR(100), at BIGINT);
         INSERT INTO base SELECT seq, CONCAT('person-', seq), 0 FROM seq_1_to_{ROWS};
         CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100), at BIGINT);"
    ))?;
    let batch = spec("stream_batch", "base", false);
    // Each stream turn inserts ids of its own.
    let next = Cell::new(1u64);
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
        ],
    )?;
    let (offered, p50, p99, samples) = latency(next.get() + 1_000_000)?;
    println!(
        "\ncommit-to-graph latency at {offered:.0} changes/s offered: p50 {p50:.0} ms, p99 \
         {p99:.0} ms ({samples} changes; goal: p99 under 1,000 ms)"
    );
    report(
        &format!(
            "stream against batch, MERGE, {ROWS} rows, one writer (goal: stream at least 0.8 of \
             batch)"
        ),
        "stream.json",
        &figures,
        &|f| {
            let latency = f.baseline.map(|_| {
                json!({"offered_changes_per_sec": offered, "p50_ms": p50, "p99_ms": p99,
                       "samples": samples})
            });
            (None, json!({ "latency": latency }))
        },
    )
}
