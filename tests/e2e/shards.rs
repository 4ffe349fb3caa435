//! Progress in the target and shards: a `CREATE` job is exactly-once through SIGKILLs, whether it
//! runs in one process or as four shards (as a Kubernetes Indexed Job starts them), and a shard
//! running another spec is refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use xtask::graph::graph_count;
use xtask::services::BOLT_PORT;

use crate::support::{
    etlhost_command, exec, graph, mysql, person_table, read_summary, scratch_dir, Proxy,
    SpecBuilder, Way,
};

/// `etlhost run SPEC [--shard I/N] --run RUN`, resuming whatever the target records.
fn shard_run(spec: &Path, shard: Option<&str>, run: &str, summary: &Path) -> Command {
    let mut cmd = etlhost_command();
    cmd.arg("run")
        .arg(spec)
        .args(["--run", run, "--quiet", "--summary-json"])
        .arg(summary)
        .env("RUST_LOG", "warn");
    if let Some(s) = shard {
        cmd.args(["--shard", s]);
    }
    cmd
}

/// Runs one shard to its end, which must succeed.
fn run_to_the_end(spec: &Path, shard: &str, run: &str, summary: &Path) {
    let out = shard_run(spec, Some(shard), run, summary).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "shard {shard}: {stderr}");
}

/// Rows the target records as written for the splits at `positions` of the plan (`split % n = i`).
fn recorded(db: &str, filter: &str) -> u64 {
    graph_count(
        db,
        &format!("MATCH (p:EtlhostProgress) WHERE {filter} RETURN sum(p.rows) AS n"),
    )
    .unwrap_or(0)
}

/// A pseudo-random number in `lo..hi`, different in every run of the suite.
fn random_in(lo: u64, hi: u64, salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut x = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    lo + x % (hi - lo)
}

/// Lets the job's writes through `proxy` a step at a time until the target records at least
/// `rows` rows under `filter`, then SIGKILLs `child` while they are held (it cannot have finished)
/// and lets the others on; returns the rows recorded when it was killed.
fn kill_after(proxy: &Proxy, child: &mut Child, db: &str, filter: &str, rows: u64) -> u64 {
    let mut n = 0;
    proxy.step_until(child, Way::ToServer, 512 * 1024, || {
        n = recorded(db, filter);
        n >= rows
    });
    proxy.kill(child);
    proxy.resume();
    n
}

fn assert_exactly_once(db: &str, rows: u64) {
    let count = |q: &str| graph_count(db, q).unwrap();
    assert_eq!(count("MATCH (p:Person) RETURN count(p) AS n"), rows);
    assert_eq!(
        count("MATCH (p:Person) RETURN count(DISTINCT p.id) AS n"),
        rows
    );
    assert_eq!(
        count("MATCH (p:Person) RETURN sum(p.id) AS n"),
        rows * (rows + 1) / 2
    );
    assert_eq!(
        count("MATCH (p:Person) WHERE p.name = 'person-' + toString(p.id) RETURN count(p) AS n"),
        rows
    );
}

/// `person` of `db` -> graph `db` on the Bolt server (or proxy) on `bolt`, every row a CREATE, in
/// `splits` splits on `key`: two readers and two writers.
fn create_spec(name: &str, db: &str, bolt: u16, key: &str, splits: u32) -> String {
    SpecBuilder::new(name)
        .top("parallelism: 2")
        .mysql_table(db, "person")
        .partition(key, splits)
        .sink_bolt_at(bolt, db)
        .cypher("UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})")
        .batch(2000)
        .sink_line("parallelism: 2")
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_shards_create_a_million_nodes_exactly_once_though_two_are_killed() {
    const ROWS: u64 = 1_000_000;
    const SHARDS: u64 = 4;
    let db = "e2e_shards";
    person_table(db, ROWS, "person-").await;
    let g = graph(db).await;
    let dir = scratch_dir("shards");
    let spec = dir.join("shards.yaml");
    let proxy = Proxy::start(BOLT_PORT);
    std::fs::write(&spec, create_spec("shards", db, proxy.port, "id", 16)).unwrap();
    let summary = |i: u64| dir.join(format!("shard-{i}.json"));
    let start = |i: u64| {
        shard_run(&spec, Some(&format!("{i}/{SHARDS}")), "r1", &summary(i))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut shards: Vec<Child> = (0..SHARDS).map(start).collect();
    // Shards 1 and 3 are killed once they have committed a random part of their share.
    let share = ROWS / SHARDS;
    for (n, i) in [1u64, 3].into_iter().enumerate() {
        let filter = format!("p.split % {SHARDS} = {i}");
        let at = random_in(share / 10, share * 8 / 10, n as u64);
        let killed = kill_after(&proxy, &mut shards[i as usize], db, &filter, at);
        eprintln!("shard {i}/{SHARDS} killed with at least {killed} of its {share} rows recorded");
        assert!(killed < share, "shard {i} finished before it was killed");
        shards[i as usize] = start(i);
    }
    for (i, child) in shards.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "shard {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = read_summary(&summary(i as u64));
        assert_eq!(s["shard"], format!("{i}/{SHARDS}"));
        assert_eq!(s["written"], s["read"], "shard {i}: {s}");
        let read = s["read"].as_u64().unwrap();
        if i % 2 == 1 {
            // The record read before the kill can lag behind (the graph answers late under load),
            // but the restarted shard still had rows to move: the kill stopped it mid-way.
            assert!(read > 0 && read < share, "shard {i} after its restart: {s}");
            eprintln!("shard {i}/{SHARDS} restarted: read the {read} rows left");
        } else {
            assert_eq!(read, share, "shard {i}");
        }
    }
    assert_exactly_once(db, ROWS);
    // The progress records stay for the run: one per split, every one done.
    let count = |q: &str| graph_count(db, q).unwrap();
    assert_eq!(
        count("MATCH (p:EtlhostProgress {job: 'shards', run: 'r1'}) WHERE p.done RETURN count(p) AS n"),
        16
    );
    assert_eq!(count("MATCH (p:EtlhostPlan) RETURN count(p) AS n"), 1);
    drop(g);
}

/// One process, keyed by an integer, a UUID and a two-column key in turn: killed once it has
/// committed part of the rows, then resumed; every row is created exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_job_killed_and_resumed_in_one_process_is_exactly_once() {
    const ROWS: u64 = 200_000;
    let tables = [
        (
            "once_int",
            "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100))",
            format!("INSERT INTO person SELECT seq, CONCAT('person-', seq) FROM seq_1_to_{ROWS}"),
            "id",
        ),
        (
            "once_uuid",
            "CREATE TABLE person (code CHAR(36) PRIMARY KEY, id INT NOT NULL, name VARCHAR(100))",
            format!(
                "INSERT INTO person SELECT UUID(), seq, CONCAT('person-', seq) FROM seq_1_to_{ROWS}"
            ),
            "code",
        ),
        (
            "once_pair",
            "CREATE TABLE person (region CHAR(4), id INT, name VARCHAR(100), PRIMARY KEY (region, id))",
            format!(
                "INSERT INTO person SELECT ELT(1 + seq % 3, 'eu', 'us', 'apac'), seq, \
                 CONCAT('person-', seq) FROM seq_1_to_{ROWS}"
            ),
            "[region, id]",
        ),
    ];
    for (name, create, insert, key) in tables {
        let db = format!("e2e_{name}");
        let pool = mysql(&db).await;
        exec(&pool, create).await;
        exec(&pool, &insert).await;
        let g = graph(&db).await;
        let dir = scratch_dir(name);
        let spec = dir.join(format!("{name}.yaml"));
        let proxy = Proxy::start(BOLT_PORT);
        let text = create_spec(name, &db, proxy.port, key, 8);
        std::fs::write(&spec, text).unwrap();
        let summary = dir.join("summary.json");
        let mut job = shard_run(&spec, None, "", &summary)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = random_in(ROWS / 10, ROWS * 7 / 10, 7);
        let killed = kill_after(&proxy, &mut job, &db, "true", at);
        assert!(
            killed < ROWS,
            "{name}: the job finished before it was killed"
        );
        let before = graph_count(&db, "MATCH (p:Person) RETURN count(p) AS n").unwrap();
        // Nothing is in the graph that the progress does not account for.
        assert!(
            before >= killed,
            "{name}: {before} nodes, {killed} rows recorded"
        );

        let out = shard_run(&spec, None, "", &summary).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = read_summary(&summary);
        assert!(s["read"].as_u64().unwrap() <= ROWS - killed, "{name}: {s}");
        assert_exactly_once(&db, ROWS);
        // A run that finished in one process leaves no progress behind.
        assert_eq!(
            graph_count(&db, "MATCH (p:EtlhostProgress) RETURN count(p) AS n").unwrap(),
            0,
            "{name}"
        );
        eprintln!(
            "{name}: killed with {killed} rows recorded ({before} nodes); resumed run read {}",
            s["read"]
        );
        drop(g);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_started_apart_share_one_plan_and_refuse_another_spec() {
    let db = "e2e_shard_spec";
    let pool = person_table(db, 1000, "person-").await;
    let g = graph(db).await;
    let dir = scratch_dir("shard_spec");
    let spec = dir.join("job.yaml");
    let text = create_spec("shard_spec", db, BOLT_PORT, "id", 4);
    std::fs::write(&spec, &text).unwrap();
    let summary = dir.join("summary.json");
    run_to_the_end(&spec, "0/2", "r1", &summary);

    let other = dir.join("other").join("job.yaml");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(
        &other,
        text.replace("max_batch_size: 2000", "max_batch_size: 500"),
    )
    .unwrap();
    let out = shard_run(&other, Some("1/2"), "r1", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The hash of what the spec reads and writes (after `${VAR}` expansion), as etlhost takes it.
    let hash = |p: &Path| etlhost::spec::Spec::load(p).unwrap().hash;
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: shard 1/2: the spec differs from the one run 'r1' of job 'shard_spec' was planned with (spec hash {}, planned with {}): every shard of a run must run the same spec",
            other.display(),
            hash(&other),
            hash(&spec)
        )
    );
    // Another shard count is refused too.
    let out = shard_run(&spec, Some("1/3"), "r1", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "error: {}: run 'r1' of job 'shard_spec' was planned for 2 shard(s), and this process runs shard 1/3: give every shard the same count, or start a new run with another run id (--run or ETLHOST_RUN)",
            spec.display()
        )
    );
    // The table grows before shard 1 starts: it still reads the plan shard 0 made, so its splits
    // are the other half of the same ranges (a plan of the grown table would cut 1..2000 and
    // overlap what shard 0 wrote).
    exec(
        &pool,
        "INSERT INTO person SELECT seq, CONCAT('person-', seq) FROM seq_1001_to_2000",
    )
    .await;
    run_to_the_end(&spec, "1/2", "r1", &summary);
    let count = |q: &str| graph_count(db, q).unwrap();
    let nodes = count("MATCH (p:Person) RETURN count(p) AS n");
    assert_eq!(
        count("MATCH (p:Person) RETURN count(DISTINCT p.id) AS n"),
        nodes
    );
    assert_eq!(
        count("MATCH (p:Person) WHERE p.id <= 1000 RETURN count(p) AS n"),
        1000
    );
    drop(g);
}

/// `knows` after `people`, listed first: people in 3 splits, who knows whom in 2.
const SOCIAL_FLOWS: &str = "  - name: knows
    after: [people]
    source:
      partition_num: 2
      options:
        table: knows
    sink:
      options:
        query: \"UNWIND $batch AS row MATCH (a:Person {id: row.a}) MATCH (b:Person {id: row.b}) CREATE (a)-[:KNOWS]->(b)\"
  - name: people
    source:
      partition_num: 3
      options:
        table: person
    sink:
      options:
        setup: [\"CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)\"]
        query: \"UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})\"
";

/// Two shards of a job whose `knows` flow comes after `people`: shard 1 starts first and waits
/// for shard 0's plan, and neither writes a relationship before every person is in, so each
/// `MATCH` finds both ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_starts_on_a_shard_only_once_every_shard_finished_the_flows_before_it() {
    use std::io::BufRead;
    const PEOPLE: u64 = 200_000;
    let db = "e2e_shard_after";
    let pool = person_table(db, PEOPLE, "person-").await;
    exec(
        &pool,
        "CREATE TABLE knows (id INT PRIMARY KEY, a INT, b INT)",
    )
    .await;
    exec(
        &pool,
        &format!("INSERT INTO knows SELECT seq, seq, seq % {PEOPLE} + 1 FROM seq_1_to_{PEOPLE}"),
    )
    .await;
    let g = graph(db).await;
    let dir = scratch_dir("shard_after");
    let spec = dir.join("social.yaml");
    // Shard 0 gets two of the three `people` splits: it finishes that flow last.
    let text = SpecBuilder::new("social")
        .top("shards: 2")
        .source_mysql(db)
        .partition("id", 0)
        .sink_bolt_db(db)
        .batch(1000)
        .flows(SOCIAL_FLOWS)
        .build();
    std::fs::write(&spec, text).unwrap();
    let start = |i: u32| {
        let mut cmd = shard_run(&spec, None, "a1", &dir.join(format!("{i}.json")));
        cmd.env("JOB_COMPLETION_INDEX", i.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut second = start(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = second.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    // Shard 0 starts only once shard 1 says it waits for its plan.
    rx.iter()
        .find(|l| {
            l.contains("waiting for shard 0 to plan flow `people` (run 'a1' of job 'social')")
        })
        .expect("shard 1 never said it waits for shard 0's plan");
    let first = start(0);
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shard 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(second.wait().unwrap().success());
    let log = log.join().unwrap();
    let waited = log
        .iter()
        .find(|l| l.contains("waits for flow `people` to finish on every shard"));
    eprintln!("shard 1 waited for shard 0 to finish `people`: {waited:?}");
    for i in 0..2 {
        let s = read_summary(&dir.join(format!("{i}.json")));
        assert_eq!(s["shard"], format!("{i}/2"), "{s}");
        assert_eq!(s["written"], s["read"], "{s}");
    }
    let count = |q: &str| graph_count(db, q).unwrap();
    assert_eq!(count("MATCH (p:Person) RETURN count(p) AS n"), PEOPLE);
    assert_eq!(
        count("MATCH (a:Person)-[:KNOWS]->(b:Person) WHERE b.id = a.id % 200000 + 1 RETURN count(*) AS n"),
        PEOPLE,
        "shard 1's log:\n{}",
        log.join("\n")
    );
    drop(g);
}

/// A TCP proxy in front of the Bolt server that, once, lets a transaction through and loses its
/// answer: once a connection has sent `after` bytes, the server's answers from then on, up to the
/// answer of a COMMIT sent since (the batch's RUN and PULL, the progress's, COMMIT: the
/// transaction committed), are swallowed and both sockets closed. Every request is counted
/// before it is forwarded and every answer as it arrives, so the proxy knows when the COMMIT's
/// answer is in whatever the machine's load does to the timing.
struct LosingProxy {
    port: u16,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LosingProxy {
    fn start(server: u16, after: usize) -> LosingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let lost = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(true));
        let (lost2, armed2) = (lost.clone(), armed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", server)).unwrap();
                let (c_read, s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let trigger = Arc::new(AtomicBool::new(false));
                let requests = Arc::new(AtomicUsize::new(0));
                let committing = Arc::new(AtomicBool::new(false));
                let (t1, armed) = (trigger.clone(), armed2.clone());
                let (r1, c1) = (requests.clone(), committing.clone());
                // Client -> server: counts bytes and arms this connection's loss once past
                // `after`; from then on counts the requests (and whether a COMMIT is among them)
                // before forwarding them.
                std::thread::spawn(move || {
                    let (mut from, mut to, mut sent) = (c_read, s_write, 0usize);
                    let mut buf = vec![0u8; 65536];
                    let (mut pending, mut at, mut handshake, mut in_message) =
                        (Vec::new(), 0usize, 20usize, false);
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sent += n;
                        if sent >= after && armed.swap(false, Ordering::SeqCst) {
                            t1.store(true, Ordering::SeqCst);
                        }
                        pending.extend_from_slice(&buf[..n]);
                        let h = handshake.min(pending.len() - at);
                        (at, handshake) = (at + h, handshake - h);
                        while handshake == 0 && pending.len() >= at + 2 {
                            let len = u16::from_be_bytes([pending[at], pending[at + 1]]) as usize;
                            if pending.len() < at + 2 + len {
                                break;
                            }
                            if len == 0 {
                                in_message = false;
                            } else if !in_message {
                                in_message = true;
                                r1.fetch_add(1, Ordering::SeqCst);
                                if pending[at + 3] == 0x12 && t1.load(Ordering::SeqCst) {
                                    c1.store(true, Ordering::SeqCst);
                                }
                            }
                            at += 2 + len;
                        }
                        pending.drain(..at);
                        at = 0;
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                let lost = lost2.clone();
                // Server -> client: follows Bolt's chunked messages to count answers (one
                // summary per request: SUCCESS, IGNORED or FAILURE); once armed, forwards nothing
                // more, and closes when every request up to the COMMIT has its answer held.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let mut buf = vec![0u8; 65536];
                    let (mut pending, mut at, mut forward) = (Vec::new(), 0usize, 0usize);
                    let (mut handshake, mut in_message, mut answers) = (4usize, false, 0usize);
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        let h = handshake.min(pending.len() - at);
                        (at, handshake) = (at + h, handshake - h);
                        forward = forward.max(at);
                        while handshake == 0 && pending.len() >= at + 2 {
                            let len = u16::from_be_bytes([pending[at], pending[at + 1]]) as usize;
                            if pending.len() < at + 2 + len {
                                break;
                            }
                            if len == 0 {
                                in_message = false;
                            } else if !in_message {
                                in_message = true;
                                if matches!(pending[at + 3], 0x70 | 0x7E | 0x7F) {
                                    answers += 1;
                                }
                            }
                            at += 2 + len;
                            if !trigger.load(Ordering::SeqCst) {
                                forward = at;
                            }
                            if !in_message
                                && committing.load(Ordering::SeqCst)
                                && answers == requests.load(Ordering::SeqCst)
                            {
                                lost.store(true, Ordering::SeqCst);
                                let _ = to.write_all(&pending[..forward]);
                                let _ = to.shutdown(Shutdown::Both);
                                let _ = from.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        if to.write_all(&pending[..forward]).is_err() {
                            break;
                        }
                        pending.drain(..forward);
                        (at, forward) = (at - forward, 0);
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        LosingProxy { port, lost }
    }
}

/// A batch committed whose answer is lost is retried, and the retry, finding the split's record
/// already past where the batch began, writes nothing: every node once.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_whose_answer_was_lost_is_not_written_again() {
    const ROWS: u64 = 20_000;
    let db = "e2e_lost_answer";
    person_table(db, ROWS, "person-").await;
    let g = graph(db).await;
    let proxy = LosingProxy::start(BOLT_PORT, 100_000);
    let dir = scratch_dir("lost_answer");
    let spec = dir.join("lost.yaml");
    let text = SpecBuilder::new("lost")
        .mysql_table(db, "person")
        .partition("id", 2)
        .sink_bolt_at(proxy.port, db)
        .batch(1000)
        .sink_line("retry_backoff: 10ms")
        .cypher("UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})")
        .build();
    std::fs::write(&spec, text).unwrap();
    let summary = dir.join("summary.json");
    let out = shard_run(&spec, None, "", &summary).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        proxy.lost.load(std::sync::atomic::Ordering::SeqCst),
        "no answer was lost"
    );
    assert!(
        stderr.contains(
            "the failed attempt had committed (the split's progress says so): not written again"
        ),
        "{stderr}"
    );
    let s = read_summary(&summary);
    assert!(s["retries"].as_u64().unwrap() >= 1, "{s}");
    assert_exactly_once(db, ROWS);
    drop(g);
}
