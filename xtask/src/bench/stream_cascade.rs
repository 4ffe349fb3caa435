//! Streaming cascades (issue 31, point 2): what one parent delete costs when InnoDB removes its
//! children through `ON DELETE CASCADE` and the stream has to find them in the graph and remove
//! them itself.
//!
//! In alternating turns, for N children per parent (10, 100, 1,000): `team` with `PARENTS` rows,
//! `member` with N rows per team (`FOREIGN KEY (team_id) REFERENCES team (id) ON DELETE CASCADE`),
//! flows from `etlhost init --mode stream` (nodes, the member -> team relationship, `rows_query`),
//! the stream started and caught up on a fresh graph, then every team deleted, one statement (and
//! transaction) each; the time from the first DELETE to the stream acknowledging the server's
//! head, per parent delete. The graph is checked empty of members afterwards, so a fast wrong run
//! fails the bench. Called from `cargo xtask bench stream`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, http};
use xtask::services::{free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PORT};

use super::stream_service::{binlog_head as head, sql};
use super::{alternate, bench_dir, release_bin, report, Case, Opts, Sample};

const DB: &str = "bench_cascade";
/// Parents deleted per turn.
const PARENTS: u64 = 20;
/// Children per parent, one case each.
const CHILDREN: [u64; 3] = [10, 100, 1_000];

/// The acknowledged position from the stream's metrics.
fn acked(port: u16) -> Option<(String, u64)> {
    xtask::metrics::acked(&xtask::metrics::scrape(port)?)
}

fn wait_acked(job: &mut Child, port: u16, target: &(String, u64)) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(600) {
        if let Some(status) = job.try_wait()? {
            bail!("the stream exited ({status})");
        }
        if let Some((file, pos)) = acked(port) {
            if file > target.0 || (file == target.0 && pos >= target.1) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!("the stream never reached {target:?}")
}

/// `PARENTS` teams with `children` members each, and the stream's spec from `etlhost init`.
fn seed(children: u64) -> Result<std::path::PathBuf> {
    let members = PARENTS * children;
    sql(&format!(
        "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB};
         CREATE TABLE team (id INT PRIMARY KEY, name VARCHAR(50));
         CREATE TABLE member (id INT PRIMARY KEY, name VARCHAR(50), team_id INT,
           FOREIGN KEY (team_id) REFERENCES team (id) ON DELETE CASCADE);
         INSERT INTO team SELECT seq, CONCAT('team-', seq) FROM seq_1_to_{PARENTS};
         INSERT INTO member SELECT seq, CONCAT('member-', seq), 1 + (seq - 1) DIV {children}
           FROM seq_1_to_{members};"
    ))?;
    fresh_graph(DB)?;
    let dir = bench_dir().join("cascade");
    std::fs::create_dir_all(&dir)?;
    let spec = dir.join("cascade.yaml");
    let out = Command::new(release_bin("etlhost"))
        .arg("init")
        .arg(&spec)
        .args(["--force", "--mode", "stream"])
        .args([
            "--source-url",
            &format!("mysql://127.0.0.1:{MYSQL_PORT}/{DB}"),
        ])
        .args(["--source-user", "etl", "--source-password", "etl"])
        .args(["--sink-uri", &format!("bolt://127.0.0.1:{BOLT_PORT}")])
        .args(["--sink-user", GRAPH_USER, "--sink-password", GRAPH_PASSWORD])
        .args(["--sink-database", DB])
        .output()?;
    if !out.status.success() {
        bail!("etlhost init: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&spec)?
        + &format!("checkpoint: {{dir: {}}}\n", dir.join("cp").display());
    std::fs::write(&spec, text)?;
    Ok(spec)
}

fn members_in_graph() -> Result<u64> {
    let body = json!({"language": "cypher", "command": "MATCH (m:Member) RETURN count(m) AS n"});
    let (code, text) = http(
        "POST",
        &format!("/api/v1/command/{DB}"),
        Some(&body.to_string()),
    )?;
    if code != 200 {
        bail!("counting the graph failed: {text}");
    }
    let r: serde_json::Value = serde_json::from_str(&text)?;
    r["result"][0]["n"].as_u64().context("no count")
}

/// One turn: every parent deleted while the stream follows; `rows` is parents deleted.
fn sample(children: u64) -> Result<Sample> {
    let spec = seed(children)?;
    let port = free_port()?;
    let mut job = Command::new(release_bin("etlhost"))
        .arg("run")
        .arg(&spec)
        .args(["--fresh", "--quiet", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| {
        wait_acked(&mut job, port, &head()?)?;
        if members_in_graph()? != PARENTS * children {
            bail!("the snapshot did not copy every member");
        }
        let deletes: String = (1..=PARENTS)
            .map(|t| format!("DELETE FROM team WHERE id = {t};\n"))
            .collect();
        let start = Instant::now();
        sql(&format!("USE {DB};\n{deletes}"))?;
        wait_acked(&mut job, port, &head()?)?;
        let secs = start.elapsed().as_secs_f64();
        let left = members_in_graph()?;
        if left != 0 {
            bail!("{left} members are left in the graph after their teams were deleted");
        }
        Ok(Sample {
            rows: PARENTS,
            secs,
            peak_rss: 0,
            retries: 0,
            cpu: 0.0,
            wall: secs,
            graph_cpu: 0.0,
            mysql_cpu: 0.0,
        })
    })();
    let _ = job.kill();
    let _ = job.wait();
    result
}

/// `cargo xtask bench stream` calls it after its own figures: `target/bench/stream_cascade.json`.
pub fn run(opts: &Opts) -> Result<()> {
    let cases = CHILDREN
        .iter()
        .map(|&n| {
            Case::new(
                format!("parent delete, ON DELETE CASCADE of {n} children"),
                None,
                move || sample(n),
            )
        })
        .collect();
    let figures = alternate(opts.reps, cases)?;
    report(
        &format!(
            "stream cascades: {PARENTS} parents deleted one transaction each, children found in \
             the graph and deleted by the stream (rows = parent deletes)"
        ),
        "stream_cascade.json",
        &figures,
        &|f| {
            let ms = 1000.0 / f.median_rate();
            (
                Some(format!("{ms:.1} ms per parent delete")),
                json!({"ms_per_parent_delete_median": ms, "parents": PARENTS}),
            )
        },
    )
}
