//! The soak's end: the graph checked against MySQL, the figures printed and written to
//! `target/bench/soak.json`, and a failure naming every check that did not hold.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xtask::graph::{graph_count_at, http_at};

use super::chaos::Chaos;
use super::load::Made;
use super::setup::{sql, DB};
use super::Opts;

pub struct Finish<'a> {
    pub opts: &'a Opts,
    pub chaos: &'a mut Chaos,
    pub dir: &'a Path,
    pub etlhost: &'a Path,
    pub spec: &'a Path,
    pub made: &'a Made,
    /// When the load stopped (ms since 1970): lag samples after it are left out.
    pub load_end: u64,
    pub caught_up_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// The spread of all samples, and of the calm ones: those whose span (from, to: ms since 1970)
/// meets none of the chaos's windows (an event inserted just before a kill waits for the takeover).
fn all_and_calm(samples: &[(u64, u64, f64)], windows: &[(u64, u64)]) -> Value {
    let calm = samples
        .iter()
        .filter(|(from, to, _)| !windows.iter().any(|(a, b)| from <= b && to >= a))
        .map(|s| s.2)
        .collect();
    json!({"all": spread(samples.iter().map(|s| s.2).collect()), "calm": spread(calm)})
}

fn spread(mut xs: Vec<f64>) -> Value {
    xs.sort_by(f64::total_cmp);
    json!({"p50": percentile(&xs, 0.5), "p99": percentile(&xs, 0.99),
           "max": xs.last(), "samples": xs.len()})
}

/// `etlhost verify SPEC`: passes on exit 0; its output in `verify.log`.
fn verify(f: &mut Finish) -> Result<Value> {
    let log = f.dir.join("verify.log");
    let out = Command::new(f.etlhost)
        .arg("verify")
        .arg(f.spec)
        .arg("--summary-json")
        .arg(f.dir.join("verify.json"))
        .env("RUST_LOG", "warn")
        .output()
        .context("cannot run etlhost verify")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&log, &text)?;
    println!("{}", text.trim_end());
    if !out.status.success() {
        f.chaos.failures.push(format!(
            "etlhost verify failed ({}); output in {}",
            out.status,
            log.display()
        ));
    }
    Ok(json!({"passed": out.status.success(), "log": log}))
}

/// Exactly-once of the insert-only `CREATE` flow: as many `:Event` nodes as rows, no id twice.
fn events(f: &mut Finish) -> Result<Value> {
    let http = f.chaos.servers.graph.http;
    let rows: u64 = sql(
        f.chaos.servers.mysql_port(),
        &format!("SELECT COUNT(*) FROM {DB}.event"),
    )?
    .trim()
    .parse()?;
    let nodes = graph_count_at(http, DB, "MATCH (n:Event) RETURN count(n) AS n")?;
    let ids = graph_count_at(http, DB, "MATCH (n:Event) RETURN count(DISTINCT n.id) AS n")?;
    if nodes != rows || ids != rows {
        f.chaos.failures.push(format!(
            "exactly-once broken on the CREATE flow `event`: {rows} rows in MySQL, {nodes} nodes with {ids} distinct ids in the graph"
        ));
    }
    Ok(json!({"mysql_rows": rows, "graph_nodes": nodes, "graph_distinct_ids": ids}))
}

/// Commit-to-graph latency of the steady events (MySQL's time of the INSERT against the graph's
/// time of the write, one clock): at most about 15,000 of them, evenly spread (ArcadeDB's HTTP API
/// answers at most 20,000 rows).
fn latency(f: &Finish, events: u64) -> Result<Value> {
    let stride = events.div_ceil(15_000).max(1);
    let body = json!({"language": "cypher", "command": format!(
        "MATCH (n:Event) WHERE n.kind <> 'bulk' AND n.id % {stride} = 0 \
         RETURN n.at AS at, n.written - n.at AS ms")});
    let (code, text) = http_at(
        f.chaos.servers.graph.http,
        "POST",
        &format!("/api/v1/command/{DB}"),
        Some(&body.to_string()),
    )?;
    if code >= 300 {
        bail!("reading the events' latency failed: {code} {text}");
    }
    let v: Value = serde_json::from_str(&text)?;
    let ms: Vec<(u64, u64, f64)> = v["result"]
        .as_array()
        .context("no result")?
        .iter()
        .filter_map(|r| {
            let (at, ms) = (r["at"].as_u64()?, r["ms"].as_f64()?);
            Some((at, at + ms.max(0.0) as u64, ms))
        })
        .collect();
    Ok(all_and_calm(&ms, &f.chaos.windows))
}

pub fn finish(mut f: Finish) -> Result<()> {
    let verify = verify(&mut f)?;
    let events = events(&mut f)?;
    let latency = latency(&f, events["mysql_rows"].as_u64().unwrap_or(0))?;
    f.chaos.handover()?;
    let fleet = f.chaos.fleet.lock().unwrap();
    let replicas: serde_json::Map<String, Value> = fleet
        .replicas
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                json!({"peak_rss_bytes": r.peak_rss, "processes": r.lives}),
            )
        })
        .collect();
    let lag: Vec<(u64, u64, f64)> = fleet
        .lag
        .iter()
        .filter(|s| s.0 <= f.load_end)
        .map(|&(t, lag)| (t, t, lag))
        .collect();
    let lag = all_and_calm(&lag, &f.chaos.windows);
    drop(fleet);
    let takeovers: Vec<&Value> = f
        .chaos
        .events
        .iter()
        .filter(|e| e["takeover_s"].is_number())
        .collect();
    let m = f.made;
    let report = json!({
        "command": format!("cargo xtask soak --minutes {} --seed {}", f.opts.minutes, f.opts.seed),
        "seed": f.opts.seed,
        "lease_s": super::setup::LEASE_SECS,
        "duration_s": m.secs,
        "changes_made": m.changes,
        "changes_per_s": m.changes as f64 / m.secs,
        "transactions": m.transactions,
        "large_transactions": m.big_transactions,
        "refused_statements": m.refused_statements,
        "catch_up_after_load_s": f.caught_up_s,
        "replicas": replicas,
        "lag_seconds": lag,
        "commit_to_graph_ms": latency,
        "takeovers": takeovers,
        "events": f.chaos.events,
        "verify": verify,
        "event_flow": events,
        "failures": f.chaos.failures,
        "passed": f.chaos.failures.is_empty(),
        "logs": f.dir,
    });
    let path = xtask::root().join("target/bench/soak.json");
    std::fs::create_dir_all(path.parent().context("no parent")?)?;
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    print_summary(&report);
    println!("written to {}", path.display());
    if !f.chaos.failures.is_empty() {
        bail!("soak failed:\n- {}", f.chaos.failures.join("\n- "));
    }
    Ok(())
}

fn print_summary(r: &Value) {
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
    println!(
        "\nsoak: {:.0} s, {} changes ({:.0}/s), {} large transactions",
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["changes_made"],
        r["changes_per_s"].as_f64().unwrap_or(0.0),
        r["large_transactions"]
    );
    for (name, v) in r["replicas"].as_object().into_iter().flatten() {
        println!(
            "  {name}: peak RSS {:.1} MiB over {} processes",
            mib(&v["peak_rss_bytes"]),
            v["processes"]
        );
    }
    println!(
        "  lag (s, active, sampled each second): {}",
        r["lag_seconds"]
    );
    println!(
        "  commit-to-graph latency (ms): {}",
        r["commit_to_graph_ms"]
    );
    for e in r["events"].as_array().into_iter().flatten() {
        println!("  event: {e}");
    }
    println!("  event flow: {}", r["event_flow"]);
    println!("  passed: {}", r["passed"]);
}
