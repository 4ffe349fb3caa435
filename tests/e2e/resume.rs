//! Checkpoints: a killed job resumes where it stopped with nothing lost or doubled, a changed spec
//! is not resumed silently, and a slow sink never makes a checkpoint fail the job.

use std::path::Path;
use std::process::{Command, Stdio};

use xtask::graph::graph_count;

use xtask::services::BOLT_PORT;

use crate::support::{
    etlhost_command, etlhost_with_spec, exec, graph, mysql, person_table, read_summary,
    scratch_dir, Proxy, SpecBuilder, Way, PERSON_ID_INDEX, PERSON_MERGE,
};

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

/// Bytes the sink may send between two looks at the checkpoint: a small part of any job here.
const STEP: u64 = 256 * 1024;

/// Runs the job, its sink writing through `proxy`, and SIGKILLs it once its checkpoint shows some
/// splits complete and some in flight; that checkpoint. The proxy lets the writes through a step
/// at a time and holds them while the checkpoint is read, so the job is always killed mid-way.
fn kill_mid_way(spec: &Path, summary: &Path, cp_file: &Path, proxy: &Proxy) -> serde_json::Value {
    let mut job = run(spec, summary)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = None;
    proxy.step_until(&mut job, Way::ToServer, STEP, || {
        // Held: the checkpoint catches up with what was written within a few intervals.
        for _ in 0..25 {
            if let Some(cp) = checkpoint(cp_file) {
                let done = cp["done"].as_array().map_or(0, |d| d.len());
                let in_flight = cp["watermarks"].as_object().map_or(0, |w| w.len());
                if done >= 1 && in_flight >= 1 {
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

/// A MySQL -> Bolt job of 8 splits of `table` in `e2e_<name>` read by 2 readers, MERGE on an
/// index, its sink through `proxy` and checkpoints in `cp_dir`.
fn killable_spec(name: &str, table: &str, column: &str, proxy: &Proxy, cp_dir: &Path) -> String {
    let (index, cypher) = if table == "person" {
        (PERSON_ID_INDEX, PERSON_MERGE)
    } else {
        (
            "CREATE INDEX code_n IF NOT EXISTS FOR (c:Code) ON (c.n)",
            "UNWIND $batch AS row MERGE (c:Code {n: row.n}) SET c.code = row.code",
        )
    };
    let db = format!("e2e_{name}");
    SpecBuilder::new(name)
        .top("parallelism: 2")
        .mysql_table(&db, table)
        .partition(column, 8)
        .sink_bolt_at(proxy.port, &db)
        .batch(1000)
        .setup(index)
        .cypher(cypher)
        // These tests are about local checkpoint files (sinks without progress in the target).
        .checkpoint_dir(cp_dir, &["interval: 100ms", "store: local"])
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_killed_mid_way_resumes_with_nothing_lost_or_doubled() {
    const ROWS: u64 = 200_000;
    person_table("e2e_resume", ROWS, "person-").await;
    let g = graph("e2e_resume").await;
    let dir = scratch_dir("resume");
    let cp_dir = dir.join("checkpoints");
    let proxy = Proxy::start(BOLT_PORT);
    let text = killable_spec("resume", "person", "id", &proxy, &cp_dir);
    let spec = dir.join("resume.yaml");
    std::fs::write(&spec, &text).unwrap();
    let cp_file = cp_dir.join("resume.checkpoint.json");
    let summary = dir.join("summary.json");

    let cp = kill_mid_way(&spec, &summary, &cp_file, &proxy);
    let before = graph_count("e2e_resume", "MATCH (p:Person) RETURN count(p) AS n").unwrap();
    assert!(before < ROWS, "the job finished before it could be killed");
    assert!(
        checkpoint(&cp_file).is_some(),
        "a killed job keeps its checkpoint"
    );

    // A changed spec is refused, not resumed.
    let changed = dir.join("changed").join("resume.yaml");
    std::fs::create_dir_all(changed.parent().unwrap()).unwrap();
    std::fs::write(
        &changed,
        text.replace("max_batch_size: 1000", "max_batch_size: 999"),
    )
    .unwrap();
    let out = run(&changed, &summary).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "error: {}: the spec changed since job 'resume' was checkpointed in {}; run with --fresh to start over",
            changed.display(),
            cp_file.display()
        )
    );

    // The same spec resumes and finishes.
    let out = run(&spec, &summary).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = read_summary(&summary);
    let reread = s["read"].as_u64().unwrap();
    assert!(reread < ROWS, "the resumed run read everything again: {s}");
    assert_eq!(s["written"], s["read"]);
    assert!(
        checkpoint(&cp_file).is_none(),
        "a completed job removes its checkpoint"
    );
    eprintln!(
        "resume test: {before} nodes when killed (checkpoint: {} splits done, {} in flight); resumed run read {reread} rows",
        cp["done"].as_array().unwrap().len(),
        cp["watermarks"].as_object().unwrap().len()
    );

    let count = |q: &str| graph_count("e2e_resume", q).unwrap();
    assert_eq!(count("MATCH (p:Person) RETURN count(p) AS n"), ROWS);
    assert_eq!(
        count("MATCH (p:Person) RETURN count(DISTINCT p.id) AS n"),
        ROWS
    );
    assert_eq!(
        count("MATCH (p:Person) RETURN sum(p.id) AS n"),
        ROWS * (ROWS + 1) / 2
    );
    assert_eq!(
        count("MATCH (p:Person) WHERE p.name = 'person-' + toString(p.id) RETURN count(p) AS n"),
        ROWS
    );
    drop(g);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_sink_makes_checkpoints_rarer_never_fatal() {
    let pool = mysql("e2e_slow").await;
    exec(&pool, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    exec(&pool, "INSERT INTO t SELECT seq FROM seq_1_to_60").await;
    let dir = scratch_dir("slow");
    let cp_file = dir.join("slow.checkpoint.json");
    // Each batch takes 20 times the checkpoint interval.
    let text = SpecBuilder::new("slow")
        .mysql_table("e2e_slow", "t")
        .partition("id", 1)
        .source_option("fetch_size: 10")
        .sink_plugin("faulty")
        .batch(10)
        .sink_option("delay_ms: 500")
        .checkpoint_dir(&dir, &["interval: 25ms"])
        .build();
    let (path, _) = etlhost_with_spec("validate", "slow.yaml", &text, &[]);
    let summary = dir.join("summary.json");
    let job = run(&path, &summary)
        .arg("--fresh")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While batches are in flight, progress is on disk: some rows acknowledged, the split not done.
    let mut mid = None;
    for _ in 0..2000 {
        if let Some(cp) = checkpoint(&cp_file) {
            if cp["watermarks"].as_object().is_some_and(|w| !w.is_empty()) {
                mid = Some(cp);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = job.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mid = mid.expect("no checkpoint was recorded while the sink was slow");
    assert_eq!(mid["done"], serde_json::json!([]));
    let mark = mid["watermarks"]["0"]["Int"].as_i64().unwrap();
    // The first batch holds ids 1..=10; rows with id 10 might continue in the next chunk, so 9.
    assert!((9..60).contains(&mark), "{mid}");
    assert_eq!(read_summary(&summary)["written"], 60);
    assert!(checkpoint(&cp_file).is_none());
}

/// A table keyed by a UUID, and one keyed by two columns, are split at sampled keys, read in key
/// order, killed and resumed from their text and tuple watermarks: every row arrives. (Batches
/// written after the last checkpoint are written again on resume, so the query is a MERGE, on the
/// integer `n`: ArcadeDB merges on a text property at a few hundred rows a second.)
#[tokio::test(flavor = "multi_thread")]
async fn text_and_composite_keyed_jobs_killed_mid_way_resume_with_nothing_lost() {
    const ROWS: u64 = 100_000;
    let keys = [
        (
            "resume_text",
            "CREATE TABLE t (code CHAR(36) PRIMARY KEY, n INT NOT NULL)",
            format!("INSERT INTO t SELECT UUID(), seq FROM seq_1_to_{ROWS}"),
            "code",
            "String",
        ),
        (
            "resume_pair",
            "CREATE TABLE t (region CHAR(4), n INT NOT NULL, code CHAR(36), PRIMARY KEY (region, n))",
            format!(
                "INSERT INTO t SELECT ELT(1 + seq % 3, 'eu', 'us', 'apac'), seq, UUID() \
                 FROM seq_1_to_{ROWS}"
            ),
            "[region, n]",
            "List",
        ),
    ];
    for (name, create, insert, column, watermark_type) in keys {
        let db = format!("e2e_{name}");
        let pool = mysql(&db).await;
        exec(&pool, create).await;
        exec(&pool, &insert).await;
        let g = graph(&db).await;
        let dir = scratch_dir(name);
        let cp_dir = dir.join("checkpoints");
        let proxy = Proxy::start(BOLT_PORT);
        let text = killable_spec(name, "t", column, &proxy, &cp_dir);
        let spec = dir.join(format!("{name}.yaml"));
        std::fs::write(&spec, &text).unwrap();
        let cp_file = cp_dir.join(format!("{name}.checkpoint.json"));
        let summary = dir.join("summary.json");

        let cp = kill_mid_way(&spec, &summary, &cp_file, &proxy);
        let watermark = cp["watermarks"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        assert!(watermark.get(watermark_type).is_some(), "{name}: {cp}");
        let out = run(&spec, &summary).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(read_summary(&summary)["read"].as_u64().unwrap() < ROWS);

        let count = |q: &str| graph_count(&db, q).unwrap();
        assert_eq!(count("MATCH (c:Code) RETURN count(c) AS n"), ROWS, "{name}");
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
