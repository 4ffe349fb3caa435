//! `cargo xtask bench stream`: what streaming costs against the same Cypher in batch mode, in one
//! run on this machine, and how long a committed change takes to reach the graph.
//!
//! - throughput: N rows written in batch mode (`MERGE`), then the same N rows inserted in
//!   transactions of 1,000 while a `mode: stream, snapshot: false` job follows the binlog; the
//!   stream's rate is N over the time from the first insert to the stream acknowledging the
//!   server's head (its Prometheus endpoint), reported as a ratio to the batch rate;
//! - latency at 1,000 changes/s: rows carry the time MySQL ran their INSERT (`at`, ms) and the
//!   graph stamps its own time when it writes them (`timestamp()`); p50 / p99 of the difference.
//!
//! Uses the release binary and plugins of `cargo xtask demo`'s build (no WASM engine).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, http};
use xtask::services::{self, free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PORT};
use xtask::{build_demo, root};

const DB: &str = "bench_stream";
const ROWS: u64 = 20_000;

fn sql(text: &str) -> Result<String> {
    let out = xtask::mariadb().args(["-N", "-B", "-e", text]).output()?;
    if !out.status.success() {
        bail!("{text}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spec(name: &str, table: &str, stream: bool) -> String {
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
    database: {DB}
    setup: [\"CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)\"]
    query: \"UNWIND $batch AS row MERGE (p:Person {{id: row.id}}) SET p.name = row.name, p.at = row.at, p.written = timestamp()\"
    delete_query: \"UNWIND $batch AS row MATCH (p:Person {{id: row.id}}) DETACH DELETE p\"
",
        cp = dir().join("cp").display()
    )
}

fn dir() -> PathBuf {
    root().join("target/bench")
}

fn etlhost() -> PathBuf {
    root().join("target/release/etlhost")
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

pub fn run() -> Result<()> {
    services::ensure()?;
    build_demo()?;
    std::fs::create_dir_all(dir())?;
    sql(&format!(
        "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB};
         CREATE TABLE base (id INT PRIMARY KEY, name VARCHAR(100), at BIGINT);
         INSERT INTO base SELECT seq, CONCAT('person-', seq), 0 FROM seq_1_to_{ROWS};
         CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100), at BIGINT);"
    ))?;

    // Batch: the same query over the same number of rows.
    fresh_graph(DB)?;
    let batch_spec = dir().join("stream-batch.yaml");
    std::fs::write(&batch_spec, spec("stream_batch", "base", false))?;
    let summary = dir().join("stream-batch.summary.json");
    let out = Command::new(etlhost())
        .arg("run")
        .arg(&batch_spec)
        .args(["--fresh", "--quiet", "--summary-json"])
        .arg(&summary)
        .env("RUST_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!("batch run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
    let batch_rate = s["rows_per_sec"].as_f64().unwrap_or(0.0);

    // Stream: follow the binlog from its head, then insert the rows.
    fresh_graph(DB)?;
    let stream_spec = dir().join("stream-stream.yaml");
    std::fs::write(&stream_spec, spec("stream_stream", "person", true))?;
    let port = free_port()?;
    let mut job = Command::new(etlhost())
        .arg("run")
        .arg(&stream_spec)
        .args(["--fresh", "--quiet", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| -> Result<serde_json::Value> {
        wait_acked(port, &head()?)?;
        let start = Instant::now();
        let mut text = format!("USE {DB};\n");
        for i in 0..ROWS / 1000 {
            let from = i * 1000 + 1;
            let to = from + 999;
            text.push_str(&format!(
                "INSERT INTO person SELECT seq, CONCAT('person-', seq), 0 FROM seq_{from}_to_{to};\n"
            ));
        }
        sql(&text)?;
        wait_acked(port, &head()?)?;
        let stream_rate = ROWS as f64 / start.elapsed().as_secs_f64();

        // Latency at 1,000 changes/s: 10 rows every 10 ms for 10 s, each INSERT its own commit.
        let mut client = xtask::mariadb()
            .args(["-N", "-B", DB])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let mut stdin = client.stdin.take().context("client stdin")?;
        let t0 = Instant::now();
        let mut id = 1_000_000u64;
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
            "command": "MATCH (p:Person) WHERE p.id > 1000000 RETURN p.written - p.at AS ms"});
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
        Ok(json!({
            "rows": ROWS,
            "batch_rows_per_sec": batch_rate,
            "stream_changes_per_sec": stream_rate,
            "ratio": stream_rate / batch_rate,
            "latency_offered_changes_per_sec": offered,
            "latency_samples": ms.len(),
            "latency_p50_ms": percentile(&ms, 0.5),
            "latency_p99_ms": percentile(&ms, 0.99),
        }))
    })();
    let _ = job.kill();
    let _ = job.wait();
    let r = result?;
    println!("stream vs batch, MERGE, {ROWS} rows, one writer (release build):");
    println!(
        "  batch {:.0} rows/s, stream {:.0} changes/s: ratio {:.2}",
        r["batch_rows_per_sec"].as_f64().unwrap_or(0.0),
        r["stream_changes_per_sec"].as_f64().unwrap_or(0.0),
        r["ratio"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  commit-to-graph latency at {:.0} changes/s offered: p50 {:.0} ms, p99 {:.0} ms ({} samples)",
        r["latency_offered_changes_per_sec"].as_f64().unwrap_or(0.0),
        r["latency_p50_ms"].as_f64().unwrap_or(f64::NAN),
        r["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
        r["latency_samples"]
    );
    let file = dir().join("stream.json");
    std::fs::write(&file, serde_json::to_string_pretty(&r)? + "\n")?;
    println!("  written to {}", file.display());
    Ok(())
}
