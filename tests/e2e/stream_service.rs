//! The stream as a service that runs for months: its position in the graph, in the same
//! transaction as its changes (exactly once through kills), fencing of a second process, a standby
//! that takes over when the active one stops or is paused, and the health endpoints an
//! orchestrator probes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::stream::{cypher, first_error, head, stream_spec, Running};
use crate::support::{exec, graph, mysql, scratch_dir, Proxy, Way};
use neo4rs::Graph;
use xtask::services::{BOLT_PORT, MYSQL_PORT};

/// Insert-only, so a change written twice is a second node.
const CREATE: &str = "UNWIND $batch AS row CREATE (e:Event {id: row.id, v: row.v})";
const DELETE: &str = "UNWIND $batch AS row MATCH (e:Event {id: row.id}) DETACH DELETE e";

/// A streaming job of table `event` into graph `name`, written with `CREATE`; `snapshot: false`,
/// so every row arrives through the change log.
fn event_spec(name: &str, dir: &Path, stream: &str) -> PathBuf {
    let url = format!("mysql://127.0.0.1:{MYSQL_PORT}/{name}");
    let text = stream_spec(name, &url, name, dir, &format!("snapshot: false\n{stream}"))
        .replace("table: person", "table: event")
        .replace(
            "UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p = row",
            CREATE,
        )
        .replace(
            "UNWIND $batch AS row MATCH (p:Person {id: row.id}) DETACH DELETE p",
            DELETE,
        );
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec, text).unwrap();
    spec
}

async fn event_table(name: &str) -> mysql_async::Pool {
    let pool = mysql(name).await;
    exec(
        &pool,
        "CREATE TABLE event (id INT PRIMARY KEY, v INT NOT NULL)",
    )
    .await;
    pool
}

/// Rows `from..=to` in transactions of 100.
async fn insert(pool: &mysql_async::Pool, from: u32, to: u32) {
    let mut a = from;
    while a <= to {
        let b = (a + 99).min(to);
        exec(
            pool,
            &format!("INSERT INTO event SELECT seq, 1 FROM seq_{a}_to_{b}"),
        )
        .await;
        a = b + 1;
    }
}

/// `(nodes, distinct ids)` of `:Event` in graph `db`.
fn events(db: &str) -> (u64, u64) {
    let rows = cypher(
        db,
        "MATCH (e:Event) RETURN count(e) AS n, count(DISTINCT e.id) AS ids",
    );
    (
        rows[0]["n"].as_u64().unwrap(),
        rows[0]["ids"].as_u64().unwrap(),
    )
}

/// Polls `done` until it holds; panics with `what` and the processes' logs after a deadline far
/// beyond what it takes.
fn until(what: &str, jobs: &[&Running], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(120) {
            let logs: Vec<String> = jobs.iter().map(|j| j.stderr()).collect();
            panic!("never happened: {what}\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on a process's metrics port: status code and body.
fn get(job: &Running, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", job.metrics_port())) else {
        return (0, String::new());
    };
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

fn role(job: &Running) -> Option<String> {
    let text = job.scrape()?;
    text.lines()
        .find(|l| l.starts_with("etlhost_stream_role{") && l.ends_with(" 1"))
        .and_then(|l| l.split('"').nth(1))
        .map(str::to_string)
}

/// Two processes of one job in graph and database `name`: `replica-a` active and following the
/// log, `replica-b` its standby.
struct Pair {
    pool: mysql_async::Pool,
    _graph: Graph,
    a: Running,
    b: Running,
}

async fn active_and_standby(name: &str, lease: &str) -> Pair {
    let pool = event_table(name).await;
    let graph = graph(name).await;
    let dir = scratch_dir(name);
    let spec = event_spec(name, &dir, &format!("stream: {{lease: {lease}}}\n"));
    let mut a = Running::start_as(&spec, &dir, true, "replica-a");
    a.wait_until_acked(&head(&pool).await);
    let b = Running::start_as(&spec, &dir, false, "replica-b");
    until("b waits as the standby", &[&a, &b], || {
        role(&b).as_deref() == Some("standby")
    });
    Pair {
        pool,
        _graph: graph,
        a,
        b,
    }
}

/// An insert-only table streamed with `CREATE`, 20,000 rows, the process SIGKILLed five times
/// while it writes and started again: exactly 20,000 nodes, none twice. Each write of changes
/// commits with its writer's position record, and a restart skips what the records say is
/// written.
#[tokio::test(flavor = "multi_thread")]
async fn sv_an_insert_only_stream_is_exactly_once_through_five_kills() {
    let name = "sv_once";
    let pool = event_table(name).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let spec = event_spec(name, &dir, "");
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    for k in 0..5u32 {
        insert(&pool, k * 4000 + 1, k * 4000 + 3000).await;
        // Killed once the stream has begun writing this round's rows, so mid-way through them.
        let before = k as u64 * 4000;
        until("the stream writes this round's rows", &[&job], || {
            events(name).0 > before
        });
        job.sigkill();
        // Rows made while it is down come after the restart.
        insert(&pool, k * 4000 + 3001, k * 4000 + 4000).await;
        job = Running::start(&spec, &dir, false);
    }
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(events(name), (20_000, 20_000), "{}", job.stderr());
    assert_eq!(job.terminate(), 130);
}

/// Two processes of one job: the second waits as the standby (ready, role standby); the active
/// one paused past its lease is taken over, and when it wakes it writes nothing, says why and
/// exits 75. The graph stays exact throughout.
#[tokio::test(flavor = "multi_thread")]
async fn sv_a_paused_active_process_is_taken_over_and_fenced_when_it_wakes() {
    let name = "sv_fence";
    let Pair {
        pool,
        _graph,
        mut a,
        b,
    } = active_and_standby(name, "2s").await;
    assert!(
        b.stderr()
            .contains("standby: job `sv_fence` is active in replica-a"),
        "{}",
        b.stderr()
    );
    assert_eq!(get(&a, "/readyz"), (200, "active".into()));
    assert_eq!(get(&b, "/readyz"), (200, "standby".into()));
    assert_eq!(get(&b, "/healthz"), (200, "ok".into()));
    insert(&pool, 1, 1000).await;
    a.wait_until_acked(&head(&pool).await);

    a.signal("STOP");
    insert(&pool, 1001, 2000).await;
    until("b takes over", &[&a, &b], || {
        b.stderr()
            .contains("taking over job `sv_fence` from replica-a")
    });
    let mut b = b;
    b.wait_until_acked(&head(&pool).await);
    assert_eq!(events(name), (2000, 2000));
    assert_eq!(role(&b).as_deref(), Some("active"));

    a.signal("CONT");
    let mut code = None;
    until("a, woken, exits", &[&b], || {
        code = a.exited();
        code.is_some()
    });
    let log = a.stderr();
    assert_eq!(code, Some(75), "{log}");
    let error = first_error(&log);
    assert!(
        error.starts_with("error: job failed: fenced: ") && error.contains("`replica-b` (epoch 2)"),
        "{log}"
    );
    insert(&pool, 2001, 2500).await;
    b.wait_until_acked(&head(&pool).await);
    assert_eq!(events(name), (2500, 2500));
    assert_eq!(b.terminate(), 130);
}

/// SIGKILL of the active process mid-stream: its lease expires unreleased and the standby takes
/// over from the recorded position; the graph ends with every row once.
#[tokio::test(flavor = "multi_thread")]
async fn sv_the_standby_takes_over_a_killed_active_process() {
    let name = "sv_killed";
    let Pair { pool, _graph, a, b } = active_and_standby(name, "2s").await;
    insert(&pool, 1, 3000).await;
    until("a writes", &[&a], || events(name).0 > 0);
    a.sigkill();
    insert(&pool, 3001, 4000).await;
    until("b takes over", &[&b], || {
        role(&b).as_deref() == Some("active")
    });
    assert!(
        b.stderr()
            .contains("taking over job `sv_killed` from replica-a, whose lease expired"),
        "{}",
        b.stderr()
    );
    let mut b = b;
    b.wait_until_acked(&head(&pool).await);
    assert_eq!(events(name), (4000, 4000));
    assert_eq!(b.terminate(), 130);
}

/// A second process started with `--fresh` takes the job at once (it forgets the lease): the
/// first one's next write of changes is refused inside its transaction, nothing of it lands, and
/// it exits 75 naming who holds the job.
#[tokio::test(flavor = "multi_thread")]
async fn sv_a_write_under_a_lost_lease_is_refused_and_fences_its_process() {
    let name = "sv_refused";
    let pool = event_table(name).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    // A long lease: no renewal comes between, so it is a write that finds out.
    let spec = event_spec(name, &dir, "stream: {lease: 120s}\n");
    let mut a = Running::start_as(&spec, &dir, true, "replica-a");
    a.wait_until_acked(&head(&pool).await);
    insert(&pool, 1, 100).await;
    a.wait_until_acked(&head(&pool).await);
    let mut b = Running::start_as(&spec, &dir, true, "replica-b");
    b.wait_until_acked(&head(&pool).await);
    insert(&pool, 101, 300).await;
    let mut code = None;
    until("a exits", &[&b], || {
        code = a.exited();
        code.is_some()
    });
    let log = a.stderr();
    assert_eq!(code, Some(75), "{log}");
    // Which of its two writers finds out first depends on the keys' hashes.
    let error = first_error(&log);
    assert!(
        error.starts_with(
            "error: job failed: fenced: flow `sv_refused`: the job is held by `replica-b` (epoch 2); writer "
        ) && error.contains("this process wrote it at epoch 1, sequence "),
        "{log}"
    );
    b.wait_until_acked(&head(&pool).await);
    // b started at the head after row 100 (snapshot: false): rows 101..=300 once each, a's 100
    // before it.
    assert_eq!(events(name), (300, 300));
    assert_eq!(b.terminate(), 130);
}

/// A write of changes whose commit landed but whose answer was lost (the connection cut while the
/// answer was on its way) is retried with the same mark; the writer's record shows it committed,
/// so it is not written again: exactly once without a kill.
#[tokio::test(flavor = "multi_thread")]
async fn sv_a_write_whose_answer_was_lost_is_not_written_twice() {
    let name = "sv_lost";
    let pool = event_table(name).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let proxy = Proxy::start(BOLT_PORT);
    let spec = event_spec(name, &dir, "stream: {lease: 120s}\n");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace(
            &format!("bolt://127.0.0.1:{BOLT_PORT}"),
            &format!("bolt://127.0.0.1:{}", proxy.port),
        )
        .replace("parallelism: 2", "parallelism: 1");
    std::fs::write(&spec, text).unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    insert(&pool, 1, 100).await;
    // The answers go back a few bytes at a time until the rows are committed (seen over HTTP,
    // not through the proxy): the rest of the answer is still held when the connection is cut.
    proxy.step_until(job.child(), Way::ToClient, 8, || events(name).0 == 100);
    proxy.cut();
    proxy.resume();
    job.wait_until_acked(&head(&pool).await);
    assert!(
        job.stderr().contains("writing changes failed"),
        "the write was not retried:\n{}",
        job.stderr()
    );
    insert(&pool, 101, 200).await;
    job.wait_until_acked(&head(&pool).await);
    assert_eq!(events(name), (200, 200));
    assert_eq!(job.terminate(), 130);
}

/// A change the user's query fails with a division by zero (as the writer's record check fails a
/// write under a lost lease) is the query's error, stopping the stream as any refused change does
/// (exit 3), not a takeover.
#[tokio::test(flavor = "multi_thread")]
async fn sv_a_division_by_zero_in_the_query_is_the_query_s_error_not_a_fence() {
    let name = "sv_zero";
    let pool = event_table(name).await;
    let _g = graph(name).await;
    let dir = scratch_dir(name);
    let spec = event_spec(name, &dir, "");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("v: row.v})", "v: row.v, r: 10 / row.v})");
    std::fs::write(&spec, text).unwrap();
    let mut job = Running::start(&spec, &dir, true);
    job.wait_until_acked(&head(&pool).await);
    exec(&pool, "INSERT INTO event VALUES (1, 5), (2, 0)").await;
    let mut code = None;
    until("the job stops", &[], || {
        code = job.exited();
        code.is_some()
    });
    let log = job.stderr();
    assert_eq!(code, Some(3), "{log}");
    let error = first_error(&log);
    assert!(
        error.starts_with("error: job failed: flow `sv_zero`: writing changes failed: plugin bolt: write failed: ")
            && error.contains("/ by zero"),
        "{log}"
    );
    // Row 1 may have gone through its own writer; row 2 never did.
    let two = cypher(name, "MATCH (e:Event {id: 2}) RETURN count(e) AS n");
    assert_eq!(two[0]["n"], 0);
}

/// SIGTERM of the active process releases its lease, so the standby takes over at once rather
/// than when the lease (a minute here) would expire, and goes on from the recorded position.
#[tokio::test(flavor = "multi_thread")]
async fn sv_sigterm_hands_the_job_to_the_standby_at_once() {
    let name = "sv_handover";
    let Pair {
        pool,
        _graph,
        mut a,
        b,
    } = active_and_standby(name, "60s").await;
    insert(&pool, 1, 500).await;
    a.wait_until_acked(&head(&pool).await);
    assert_eq!(a.terminate(), 130);
    insert(&pool, 501, 1000).await;
    until("b takes over", &[&b], || {
        role(&b).as_deref() == Some("active")
    });
    // Before the minute of lease a had left was up: its release is what let b in.
    assert!(
        b.stderr()
            .contains("taking over job `sv_handover` from replica-a, which released its lease"),
        "{}",
        b.stderr()
    );
    let mut b = b;
    b.wait_until_acked(&head(&pool).await);
    assert_eq!(events(name), (1000, 1000));
    assert_eq!(b.terminate(), 130);
}
