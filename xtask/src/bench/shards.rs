//! Shards and progress in the target: 1,000,000 rows MySQL -> Bolt (`CREATE`) by 1, 2 and 4
//! `etlhost run --shard I/N` processes at once (each one reader and one writer), timed from the
//! first start to the last exit; and one process with each batch's progress in its transaction
//! against the same job keeping local checkpoint files instead (`checkpoint.store: local`).

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::compare::{bolt_spec, into_graph};
use super::{
    alternate, bench_dir, cores, etlhost_sample, release_bin, report, seed, Case, Opts, Sample,
};

const ROWS: u64 = 1_000_000;
const TABLE: &str = "person_1m";
const SPLITS: usize = 8;

fn spec(store: &str) -> String {
    bolt_spec(TABLE, "batch", 5000)
        .replacen(
            "source:\n  plugin: mysql\n",
            &format!(
                "source:\n  plugin: mysql\n  partition_column: id\n  partition_num: {SPLITS}\n"
            ),
            1,
        )
        .replace(
            "name: bench-bolt\n",
            &format!(
                "name: bench-shards\ncheckpoint:\n  store: {store}\n  dir: {}\n",
                bench_dir().join("checkpoints").display()
            ),
        )
}

/// `shards` processes of one run, started together; the rows they wrote and the wall time.
fn sharded(shards: u32) -> Result<Sample> {
    let dir = bench_dir();
    let path = dir.join("shards.yaml");
    std::fs::write(&path, spec("target"))?;
    let start = Instant::now();
    let children: Vec<(Child, std::path::PathBuf)> = (0..shards)
        .map(|i| {
            let summary = dir.join(format!("shard-{i}.summary.json"));
            let child = Command::new(release_bin("etlhost"))
                .arg("run")
                .arg(&path)
                .args([
                    "--shard",
                    &format!("{i}/{shards}"),
                    "--run",
                    "bench",
                    "--summary-json",
                ])
                .arg(&summary)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot start etlhost")?;
            Ok((child, summary))
        })
        .collect::<Result<_>>()?;
    let mut s = Sample::default();
    for (child, summary) in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("a shard failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
        s.rows += v["written"].as_u64().unwrap_or(0);
        s.retries += v["retries"].as_u64().unwrap_or(0);
        s.peak_rss = s.peak_rss.max(v["peak_rss_bytes"].as_u64().unwrap_or(0));
    }
    s.secs = start.elapsed().as_secs_f64();
    if s.rows != ROWS {
        bail!("{shards} shards wrote {} rows, expected {ROWS}", s.rows);
    }
    Ok(s)
}

pub fn run(opts: &Opts) -> Result<()> {
    seed(TABLE, ROWS)?;
    let mut cases = vec![
        Case::new(
            "1 process, local checkpoints (no progress in the target)",
            None,
            into_graph(ROWS, "local", || {
                etlhost_sample("local", "shards-local", &spec("local"), ROWS)
            }),
        ),
        Case::new(
            "1 process, progress in each batch's transaction",
            Some(0),
            into_graph(ROWS, "target", || {
                etlhost_sample("target", "shards-target", &spec("target"), ROWS)
            }),
        ),
    ];
    for n in [1u32, 2, 4] {
        let name = format!("{n} shard(s) at once, one reader and one writer each");
        cases.push(Case::new(
            name.clone(),
            (n > 1).then_some(2),
            into_graph(ROWS, &name, move || sharded(n)),
        ));
    }
    let figures = alternate(opts.reps, cases)?;
    report(
        &format!(
            "Shards and progress in the target: 1,000,000 rows MySQL -> Bolt (CREATE, batches of 5,000), {} cores shared by MariaDB, ArcadeDB and every shard; ratios of medians to the row's baseline",
            cores()
        ),
        "shards.json",
        &figures,
        &|f| {
            let r = f.retries();
            (Some(format!("retries {r:?}")), json!({ "retries": r }))
        },
    )
}
