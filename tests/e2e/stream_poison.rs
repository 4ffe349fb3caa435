//! Poison changes (issue 31, point 4): with `stream: {on_failed_change: dead_letter}` a change the
//! graph refuses for good goes to the dead-letter file with its table, key, kind, position and
//! error, and the stream goes on; `max_failed_changes` stops it with a clear error.
//!
//! The refusal is real: a uniqueness constraint on `:Person(email)` in the graph, which MySQL does
//! not have, so exactly the rows given another row's email fail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use xtask::services::free_port;

use crate::stream::{head, stream_spec, Running};
use crate::support::{etlhost_command, exec, graph, mysql, scratch_dir};

/// Rows inserted (in transactions of 1,000), then rows updated: 5,000 changes.
const ROWS: u32 = 4_000;
const UPDATED: u32 = 1_000;
/// The rows given the email of row 1, 2 and 3, which the graph's constraint refuses.
const POISONED: [u32; 3] = [1_000, 2_000, 3_000];

/// A streaming job of `person` into graph `name` with a unique email in the graph, no snapshot,
/// failed changes to `<dir>/dead.jsonl`; the spec's path.
fn poison_spec(name: &str, dir: &Path, parallelism: u32, stream: &str) -> PathBuf {
    let url = format!("mysql://127.0.0.1:3306/{name}");
    let extra = format!(
        "snapshot: false
dead_letter: {dl}
stream: {stream}
verify:
  key: [id]
  query: |
    MATCH (p:Person)
    WHERE ($lo IS NULL OR p.id >= $lo) AND ($hi IS NULL OR p.id < $hi)
    WITH p ORDER BY p.id
    RETURN p.id AS id, p.name AS name, p.email AS email
",
        dl = dir.join("dead.jsonl").display()
    );
    let text = stream_spec(name, &url, name, dir, &extra)
        .replace("parallelism: 2", &format!("parallelism: {parallelism}"))
        .replace(
            "setup: [",
            "setup: [\"CREATE CONSTRAINT person_email IF NOT EXISTS FOR (p:Person) REQUIRE p.email IS UNIQUE\", ",
        );
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec, text).unwrap();
    spec
}

async fn person_table(pool: &mysql_async::Pool) {
    exec(
        pool,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(50))",
    )
    .await;
}

/// Inserts rows `from..=to`, each its own email except the poisoned ones, in one transaction.
async fn insert(pool: &mysql_async::Pool, from: u32, to: u32) {
    let [a, b, c] = POISONED;
    exec(
        pool,
        &format!(
            "INSERT INTO person SELECT seq, CONCAT('p', seq), CASE seq WHEN {a} THEN 'e1@x' \
             WHEN {b} THEN 'e2@x' WHEN {c} THEN 'e3@x' ELSE CONCAT('e', seq, '@x') END \
             FROM seq_{from}_to_{to}"
        ),
    )
    .await;
}

/// The dead-letter file's records.
fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("dead.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the job serves its metrics: it is following the log from its start position.
fn wait_for_metrics(job: &Running) {
    let start = Instant::now();
    while job.scrape().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no metrics:\n{}",
            job.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stp_refused_changes_go_to_the_dead_letter_file_and_the_stream_goes_on() {
    let name = "stp_dead";
    let pool = mysql(name).await;
    person_table(&pool).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let spec = poison_spec(name, &dir, 2, "{on_failed_change: dead_letter}");
    let mut job = Running::start(&spec, &dir, true);
    wait_for_metrics(&job);
    // The rows whose emails the poisoned ones copy are in the graph first: with two writers, two
    // rows of one email written at once would race for it.
    insert(&pool, 1, 999).await;
    job.wait_until_acked(&head(&pool).await);
    for from in (1_000..=ROWS).step_by(1_000) {
        insert(&pool, from, (from + 999).min(ROWS)).await;
    }
    exec(
        &pool,
        &format!(
            "UPDATE person SET name = CONCAT(name, '+') WHERE id > {}",
            ROWS - UPDATED
        ),
    )
    .await;
    job.wait_until_acked(&head(&pool).await);
    let metrics = job.scrape().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "etlhost_stream_failed_changes_total 3"),
        "{metrics}"
    );

    let records = dead_letters(&dir);
    let keys: Vec<u64> = records
        .iter()
        .map(|r| r["key"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(keys, POISONED.map(u64::from), "{records:#?}");
    for (r, email) in records.iter().zip(["e1@x", "e2@x", "e3@x"]) {
        assert_eq!(r["job"], name);
        assert_eq!(r["flow"], name);
        assert_eq!(r["table"], "person");
        assert_eq!(r["kind"], "insert");
        assert_eq!(r["stage"], "stream");
        assert_eq!(r["row"]["email"], email);
        assert!(r["position"]["file"]
            .as_str()
            .unwrap()
            .starts_with("binlog."));
        assert!(r["position"]["pos"].as_u64().unwrap() > 4);
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("ConstraintValidationFailed"), "{error}");
    }
    let count = crate::stream::cypher(name, "MATCH (p:Person) RETURN count(p) AS n");
    assert_eq!(count[0]["n"], ROWS - 3);

    // `verify` names exactly the three keys, as missing from the graph.
    let out = etlhost_command().arg("verify").arg(&spec).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.trim() == "missing            3  id=1000, id=2000, id=3000"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.trim() == "different          0"),
        "{stdout}"
    );

    assert_eq!(job.terminate(), 130);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stream"]["failed_changes"], 3);
    assert_eq!(summary["failed"], 3);
    assert_eq!(summary["read"], u64::from(ROWS + UPDATED));
    assert_eq!(summary["written"], u64::from(ROWS + UPDATED - 3));
    assert_eq!(summary["stream"]["changes"], u64::from(ROWS + UPDATED - 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn stp_more_failed_changes_than_max_failed_changes_stop_the_stream() {
    let name = "stp_max";
    let pool = mysql(name).await;
    person_table(&pool).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let spec = poison_spec(
        name,
        &dir,
        1,
        "{on_failed_change: dead_letter, max_failed_changes: 2}",
    );
    let mut job = Job::start(&spec, &dir, true);
    insert(&pool, 1, ROWS).await;
    let (code, stderr) = job.exit();
    assert_eq!(code, 3, "{stderr}");
    let error = crate::stream::first_error(&stderr);
    let expected = format!(
        "error: job failed: flow `{name}`: 3 changes failed for good, more than \
         stream.max_failed_changes (2) allows: the insert of person {{\"id\":3000}} in the \
         transaction ending at binlog."
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(
        error.ends_with(&format!(
            "; the earlier ones are in {}. Fix the cause and run again (the stream resumes \
             before this change), or raise stream.max_failed_changes",
            dir.join("dead.jsonl").display()
        )),
        "{error}"
    );
    let keys: Vec<u64> = dead_letters(&dir)
        .iter()
        .map(|r| r["key"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(keys, [1_000, 2_000]);
}

/// A job run here, to watch it stop on its own (`stream::Running` is for jobs that are stopped).
struct Job {
    child: std::process::Child,
    metrics: u16,
    stderr: PathBuf,
}

impl Job {
    /// Starts the job and waits until it serves its metrics: it follows the log.
    fn start(spec: &Path, dir: &Path, fresh: bool) -> Job {
        let metrics = free_port().unwrap();
        let stderr = dir.join("stderr.log");
        let child = etlhost_command()
            .arg("run")
            .arg(spec)
            .args(fresh.then_some("--fresh"))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics}"))
            .env("RUST_LOG", "warn")
            .env("ETLHOST_HOLDER", "e2e")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut job = Job {
            child,
            metrics,
            stderr,
        };
        // A job that stops at once may be gone before its metrics were asked for.
        let start = Instant::now();
        while job.acked().is_none() && job.child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(60), "no metrics");
            std::thread::sleep(Duration::from_millis(50));
        }
        job
    }

    /// The acknowledged `(file, pos)`, from the metrics.
    fn acked(&self) -> Option<(String, u64)> {
        xtask::metrics::acked(&xtask::metrics::scrape(self.metrics)?)
    }

    fn wait_until_acked(&mut self, target: &(String, u64)) {
        let start = Instant::now();
        while self.acked().is_none_or(|a| a < *target) {
            assert!(start.elapsed() < Duration::from_secs(120), "never acked");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the job to end by itself: its exit code and stderr.
    fn exit(&mut self) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The held keys file's keys, as `[values]`.
fn held_keys(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    let path = dir.join(format!("cp/{name}.stream.held-keys.json"));
    let held: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    held["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["values"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stp_later_changes_of_a_refused_key_are_held_until_a_delete_across_a_restart() {
    let name = "stp_held";
    let pool = mysql(name).await;
    person_table(&pool).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let spec = poison_spec(name, &dir, 2, "{on_failed_change: dead_letter}");
    let mut job = Running::start(&spec, &dir, true);
    wait_for_metrics(&job);
    insert(&pool, 1, 3).await;
    job.wait_until_acked(&head(&pool).await);
    // Row 10 copies row 1's email: refused, and its update after it is held back.
    exec(
        &pool,
        "INSERT INTO person VALUES (10, 'ten', 'e1@x'), (11, 'eleven', 'e11@x')",
    )
    .await;
    exec(&pool, "UPDATE person SET name = 'ten+' WHERE id = 10").await;
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(held_keys(&dir, name), [serde_json::json!([10])]);
    assert_eq!(job.terminate(), 130);

    // After a restart past the refused insert, the key is still held.
    let mut job = Running::start(&spec, &dir, false);
    wait_for_metrics(&job);
    exec(&pool, "UPDATE person SET name = 'ten++' WHERE id = 10").await;
    exec(&pool, "UPDATE person SET name = 'eleven+' WHERE id = 11").await;
    job.wait_until_acked(&head(&pool).await);
    // A delete that the graph accepts releases it: the row comes back and is written.
    exec(&pool, "DELETE FROM person WHERE id = 10").await;
    exec(
        &pool,
        "INSERT INTO person VALUES (10, 'ten again', 'e10@x')",
    )
    .await;
    job.wait_until_acked(&head(&pool).await);
    crate::stream::assert_graph_equals(&crate::stream::mysql_rows(&pool).await, name);
    assert_eq!(held_keys(&dir, name), Vec::<serde_json::Value>::new());

    let records = dead_letters(&dir);
    let seen: Vec<(u64, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["key"]["id"].as_u64().unwrap(),
                r["kind"].as_str().unwrap(),
                r["row"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (10, "insert", "ten"),
            (10, "update", "ten+"),
            (10, "update", "ten++")
        ]
    );
    assert!(records[0]["error"]
        .as_str()
        .unwrap()
        .contains("ConstraintValidationFailed"));
    let first = &records[0]["position"];
    for r in &records[1..] {
        assert_eq!(r["old"]["id"], 10);
        assert_eq!(
            r["error"],
            format!(
                "not written, to keep the changes of this key in order: an earlier change of it \
                 (insert at {}:{} (GTID {})) was refused and is in this file; a delete of the key \
                 that the sink accepts, or a run with --fresh, releases it",
                first["file"].as_str().unwrap(),
                first["pos"],
                first["gtid"].as_str().unwrap()
            )
        );
    }
    assert_eq!(job.terminate(), 130);
}

#[tokio::test(flavor = "multi_thread")]
async fn stp_by_default_a_refused_change_stops_the_stream_before_it() {
    let name = "stp_stop";
    let pool = mysql(name).await;
    person_table(&pool).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let spec = poison_spec(name, &dir, 2, "{}");
    let mut job = Job::start(&spec, &dir, true);
    insert(&pool, 1, 3).await;
    let before = head(&pool).await;
    job.wait_until_acked(&before);
    exec(&pool, "INSERT INTO person VALUES (10, 'ten', 'e1@x')").await;
    let (code, stderr) = job.exit();
    assert_eq!(code, 3, "{stderr}");
    let expected = format!(
        "error: job failed: flow `{name}`: writing changes failed: plugin bolt: write failed: \
         Neo.ClientError.Schema.ConstraintValidationFailed: Duplicated key [e1@x] found on index \
         'Person[email]'"
    );
    assert!(
        crate::stream::first_error(&stderr).starts_with(&expected),
        "{stderr}"
    );
    // The recorded position is before the refused change (other tests' transactions may move it
    // on a little): a rerun stops at it again.
    let recorded = crate::stream::recorded_position(name, name).unwrap();
    let at = (
        recorded["file"].as_str().unwrap().to_string(),
        recorded["pos"].as_u64().unwrap(),
    );
    assert!(at >= before, "{at:?} before {before:?}");
    let mut job = Job::start(&spec, &dir, false);
    let (code, again) = job.exit();
    assert_eq!(code, 3, "{again}");
    assert!(
        crate::stream::first_error(&again).starts_with(&expected),
        "{again}"
    );
    assert!(!dir.join("dead.jsonl").exists());
}
