//! Huge source transactions (issue 31, point 3): a transaction larger than
//! `stream: max_transaction_changes` is applied in parts as it is read, each recorded as a
//! position inside it, and a kill in the middle resumes inside it and ends exactly right.
//!
//! The kill lands at a known place: the graph's traffic goes through a proxy that lets it through
//! a step at a time, and the job is killed once its checkpoint is inside the transaction.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use xtask::services::{free_port, BOLT_PORT};

use mysql_async::prelude::Queryable;

use crate::stream::{cypher, head, stream_spec};
use crate::support::{etlhost_command, exec, mysql, scratch_dir, Proxy, Way};

/// Rows updated by the one large transaction, and the changes in a part.
const ROWS: u64 = 50_000;
const PART: u64 = 2_000;

/// An `etlhost run` of its own (rather than `stream::Running`): the proxy kills it by its
/// process, and its log is kept at `info` so the restart's "resuming" line can be read.
struct Job {
    child: Child,
    metrics: u16,
    stderr: PathBuf,
}

impl Job {
    fn start(spec: &Path, dir: &Path, fresh: bool) -> Job {
        let metrics = free_port().unwrap();
        let stderr = dir.join(format!("stderr-{metrics}.log"));
        let mut cmd = etlhost_command();
        cmd.arg("run").arg(spec);
        if fresh {
            cmd.arg("--fresh");
        }
        let child = cmd
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics}"))
            .env("RUST_LOG", "info")
            .env("ETLHOST_HOLDER", "e2e")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Job {
            child,
            metrics,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The acknowledged `(file, pos)` from the metrics; `None` before they are served.
    fn acked(&self) -> Option<(String, u64)> {
        xtask::metrics::acked(&xtask::metrics::scrape(self.metrics)?)
    }

    /// Waits until the job has acknowledged everything up to the binlog's `target`.
    fn wait_until_acked(&mut self, target: &(String, u64)) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(180) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etlhost exited ({status}):\n{}", self.stderr());
            }
            if let Some((file, pos)) = self.acked() {
                if file > target.0 || (file == target.0 && pos >= target.1) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the stream never acknowledged {target:?} (at {:?}):\n{}",
            self.acked(),
            self.stderr()
        );
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The graph's `:Person` nodes: how many, how many distinct ids, how many with `v = 1`, the
/// least and greatest id (counted by the server: its HTTP API returns at most 20,000 rows).
fn graph_summary(db: &str) -> (u64, u64, u64, i64, i64) {
    let q = "MATCH (p:Person) RETURN count(p) AS n, count(DISTINCT p.id) AS ids, \
             sum(CASE WHEN p.v = 1 THEN 1 ELSE 0 END) AS updated, min(p.id) AS lo, max(p.id) AS hi";
    let rows = cypher(db, q);
    let r = &rows[0];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    let i = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{k} in {r}"));
    (n("n"), n("ids"), n("updated"), i("lo"), i("hi"))
}

/// Nodes whose `v` is `v`.
fn nodes_with_v(db: &str, v: i64) -> u64 {
    let q = format!("MATCH (p:Person) WHERE p.v = {v} RETURN count(p) AS n");
    let rows = cypher(db, &q);
    rows[0]["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("{q}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn stc_a_huge_transaction_goes_in_parts_and_a_kill_inside_it_resumes_exactly() {
    let name = "stc_huge";
    let pool = mysql(name).await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, v INT NOT NULL)",
    )
    .await;
    exec(
        &pool,
        &format!("INSERT INTO person SELECT seq, 0 FROM seq_1_to_{ROWS}"),
    )
    .await;
    xtask::graph::fresh_graph(name).unwrap();
    let proxy = Proxy::start(BOLT_PORT);
    let dir = scratch_dir(name);
    let spec = dir.join(format!("{name}.yaml"));
    let url = format!("mysql://127.0.0.1:{}/{name}", xtask::services::MYSQL_PORT);
    let extra = format!("stream: {{max_transaction_changes: {PART}}}\n");
    // One writer: two creating the snapshot's nodes at once hit ArcadeDB's page conflicts
    // ("DeadlockDetected") often enough at this size to use up the retries.
    let text = stream_spec(name, &url, name, &dir, &extra)
        .replace(
            &format!("bolt://127.0.0.1:{BOLT_PORT}"),
            &format!("bolt://127.0.0.1:{}", proxy.port),
        )
        .replace("parallelism: 2", "parallelism: 1");
    std::fs::write(&spec, text).unwrap();

    // The snapshot, then one transaction of ROWS updates.
    let mut job = Job::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    exec(&pool, "UPDATE person SET v = v + 1").await;

    // Stopped a step at a time until the checkpoint is inside the transaction, then killed.
    let mut inside = None;
    proxy.step_until(&mut job.child, Way::ToServer, 32 * 1024, || {
        // Held: the checkpoint catches up with what was written within a few intervals.
        for _ in 0..25 {
            let recorded = crate::stream::recorded_position(name, name);
            if let Some(p) = recorded.filter(|p| p["skip"].as_u64() > Some(0)) {
                inside = Some(p);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    proxy.kill(&mut job.child);
    proxy.resume();
    let inside = inside.expect("the checkpoint never went inside the transaction");
    let skip = inside["skip"].as_u64().unwrap();
    assert_eq!(skip % PART, 0, "a part ends every {PART} changes: {inside}");
    let updated = nodes_with_v(name, 1);
    assert!(
        updated >= skip && updated < ROWS,
        "killed part-way: {updated} of {ROWS} rows updated in the graph, {skip} recorded"
    );

    // Parts of another size would number the transaction's changes otherwise: refused.
    let other = dir.join("other-parts.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&spec).unwrap().replace(
            &format!("max_transaction_changes: {PART}"),
            &format!("max_transaction_changes: {}", PART * 2),
        ),
    )
    .unwrap();
    let (code, stderr) = crate::stream::run_to_end(&other, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        crate::stream::first_error(&stderr).starts_with(&format!(
            "error: stream.max_transaction_changes is {}, but the stream resumes inside a transaction applied in parts of {PART} (at ",
            PART * 2
        )),
        "{stderr}"
    );

    // Restarted without --fresh: it says where inside the transaction it resumes, and ends
    // with the graph equal to MySQL, every row's v included.
    let mut job = Job::start(&spec, &dir, false);
    job.wait_until_acked(&head(&pool).await);
    let at = format!(
        "{}:{} +{skip} changes",
        inside["file"].as_str().unwrap(),
        inside["pos"]
    );
    let log = job.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("resuming the stream") && l.contains(&at)),
        "the restart does not say it resumes at {at}:\n{log}"
    );
    // MySQL holds ids 1..=ROWS, each with v = 1; so must the graph, node for node.
    let mut c = pool.get_conn().await.unwrap();
    let mysql: Option<(u64, u64, i64, i64)> = c
        .query_first("SELECT COUNT(*), SUM(v = 1), MIN(id), MAX(id) FROM person")
        .await
        .unwrap();
    assert_eq!(mysql, Some((ROWS, ROWS, 1, ROWS as i64)));
    assert_eq!(graph_summary(name), (ROWS, ROWS, ROWS, 1, ROWS as i64));
}
