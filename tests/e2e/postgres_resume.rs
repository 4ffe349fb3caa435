//! A postgres -> Bolt job killed mid-way (SIGKILL, while its checkpoint shows splits both done and
//! in flight) resumes from its checkpoint and ends exact: every row once in the graph, and the
//! resumed run reads less than the whole table. Integer and UUID keys, and `ctid` ranges.

use std::path::Path;
use std::process::{Command, Stdio};

use xtask::graph::graph_count;
use xtask::services::BOLT_PORT;

use crate::support::{
    etlhost_command, graph, pg_schema, pg_spec, pg_sql, pg_url, read_summary, scratch_dir, Proxy,
    SpecBuilder, Way,
};

const ROWS: u64 = 60_000;
/// Bytes the sink may send between two looks at the checkpoint: a small part of the job.
const STEP: u64 = 128 * 1024;

fn checkpoint(path: &Path) -> Option<serde_json::Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// `etlhost run` without `--fresh`, so a checkpoint is resumed.
fn run(spec: &Path, summary: &Path) -> Command {
    let mut cmd = etlhost_command();
    cmd.arg("run")
        .arg(spec)
        .arg("--summary-json")
        .arg(summary)
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs the job with its sink behind `proxy`, letting writes through a step at a time, and
/// SIGKILLs it once its checkpoint shows splits done and (if `watermarks`) others in flight with
/// a watermark; that checkpoint.
fn kill_mid_way(
    spec: &Path,
    summary: &Path,
    cp_file: &Path,
    proxy: &Proxy,
    watermarks: bool,
) -> serde_json::Value {
    let mut job = run(spec, summary)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = None;
    proxy.step_until(&mut job, Way::ToServer, STEP, || {
        for _ in 0..25 {
            if let Some(cp) = checkpoint(cp_file) {
                let done = cp["done"].as_array().map_or(0, |d| d.len());
                let in_flight = cp["watermarks"].as_object().map_or(0, |w| w.len());
                if done >= 1 && (in_flight >= 1 || !watermarks) {
                    seen = Some(cp);
                    return true;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    });
    proxy.kill(&mut job);
    proxy.resume();
    seen.expect("the checkpoint never showed splits both done and in flight")
}

/// Table `t` of schema `e2e_<name>`: `n` 1..=ROWS and `code` a UUID; split on `column`, 8 splits
/// read by 2 readers, MERGE on `n`.
fn killable_spec(name: &str, column: &str, proxy: &Proxy, cp_dir: &Path) -> String {
    pg_spec(
        &SpecBuilder::new(name)
            .top("parallelism: 2")
            .source_url(&pg_url("etl"))
            .table(&format!("e2e_{name}.t"))
            .partition(column, 8)
            .sink_bolt_at(proxy.port, &format!("e2e_{name}"))
            .batch(1000)
            .setup("CREATE INDEX code_n IF NOT EXISTS FOR (c:Code) ON (c.n)")
            .cypher("UNWIND $batch AS row MERGE (c:Code {n: row.n}) SET c.code = row.code")
            .checkpoint_dir(cp_dir, &["interval: 100ms", "store: local"]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_jobs_killed_mid_way_resume_exact() {
    let cases = [
        (
            "pg_resume_int",
            "n int PRIMARY KEY, code uuid NOT NULL",
            "n",
        ),
        (
            "pg_resume_uuid",
            "code uuid PRIMARY KEY, n int NOT NULL",
            "code",
        ),
        (
            "pg_resume_ctid",
            "n int NOT NULL, code uuid NOT NULL",
            "ctid",
        ),
    ];
    for (name, columns, column) in cases {
        let schema = format!("e2e_{name}");
        pg_schema(&schema);
        pg_sql(
            "etl",
            &format!(
                "CREATE TABLE {schema}.t ({columns});
                 INSERT INTO {schema}.t (n, code) SELECT g, gen_random_uuid() FROM generate_series(1, {ROWS}) g;
                 ANALYZE {schema}.t;"
            ),
        );
        let g = graph(&schema).await;
        let dir = scratch_dir(name);
        let cp_dir = dir.join("checkpoints");
        let proxy = Proxy::start(BOLT_PORT);
        let spec = dir.join(format!("{name}.yaml"));
        std::fs::write(&spec, killable_spec(name, column, &proxy, &cp_dir)).unwrap();
        let cp_file = cp_dir.join(format!("{name}.checkpoint.json"));
        let summary = dir.join("summary.json");

        // A ctid split in flight has no watermark: it is read again whole on resume (MERGE
        // makes that safe), so only splits done are waited for.
        let cp = kill_mid_way(&spec, &summary, &cp_file, &proxy, column != "ctid");
        let count = |q: &str| graph_count(&schema, q).unwrap();
        let before = count("MATCH (c:Code) RETURN count(c) AS n");
        assert!(
            before < ROWS,
            "{name}: the job finished before it was killed"
        );
        let out = run(&spec, &summary).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = read_summary(&summary);
        let reread = s["read"].as_u64().unwrap();
        assert!(
            reread < ROWS,
            "{name}: the resumed run read everything again: {s}"
        );
        assert!(
            checkpoint(&cp_file).is_none(),
            "{name}: checkpoint left behind"
        );
        eprintln!(
            "{name}: {before} nodes when killed ({} splits done, {} in flight); resumed run read {reread}",
            cp["done"].as_array().unwrap().len(),
            cp["watermarks"].as_object().map_or(0, |w| w.len())
        );
        assert_eq!(count("MATCH (c:Code) RETURN count(c) AS n"), ROWS, "{name}");
        assert_eq!(
            count("MATCH (c:Code) RETURN count(DISTINCT c.n) AS n"),
            ROWS
        );
        assert_eq!(
            count("MATCH (c:Code) RETURN count(DISTINCT c.code) AS n"),
            ROWS
        );
        assert_eq!(
            count("MATCH (c:Code) RETURN sum(c.n) AS n"),
            ROWS * (ROWS + 1) / 2
        );
        drop(g);
    }
}
