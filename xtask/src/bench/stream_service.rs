//! Streaming as a service (issue 32): what exactly-once costs, in throughput and in latency.
//! `cargo xtask bench stream_service`; two tables in `target/bench/`:
//!
//! - `stream_position.json`, in alternating turns: a streaming job (`MERGE`, a snapshot of
//!   `ITEMS` rows first) applies `UPDATES` updates made in transactions of `TXN_ROWS` rows after
//!   it follows, its position kept in the graph transaction of each chunk (`checkpoint.store:
//!   target`) or in today's local file (`store: local`, written every 10 s); goal: target at
//!   least 0.95 of local. Each store twice: *live* (changes/s from the first UPDATE to the stream
//!   acknowledging the server's head, which is MySQL's rate whenever the stream keeps up) and as
//!   a *backlog* (the job SIGSTOPped while MySQL takes the updates, changes/s from its SIGCONT:
//!   the stream's own rate). After each turn the graph is checked equal to MySQL, and the
//!   position's place (`:EtlhostStream` records in the graph, or the local file, not both), so a
//!   run that silently kept it elsewhere fails. `BENCH_POSITION_STORE=local` runs the measured
//!   case with the local file too: the A/A run that shows the harness is fair (a ratio near 1);
//! - `stream_vs_batch.json`, in alternating turns: `ROWS` rows loaded by a batch job (`MERGE`),
//!   and the same rows inserted (transactions of 1,000) into a table a streaming job with the
//!   same query and sink settings follows, as a backlog and live; each into a fresh graph, with
//!   the default store; ratio of medians stream/batch, goal at least 0.9;
//! - in that table too (its title and the stream figures), once: commit-to-graph latency under a
//!   steady load of `LOAD_RATE` rows/s for `LOAD_SECS` s (a transaction of `LOAD_RATE / 250` rows
//!   every 4 ms) into a table the stream follows; each row carries the time MySQL ran its INSERT
//!   (`at`, ms) and the graph stamps its own clock when the stream writes it (`timestamp()`, same
//!   machine, same clock); p50 / p99 / max of the difference over every row, goal p99 under 1 s.
//!
//! The waits poll the stream's Prometheus position every 10 ms: at most 1% of the shortest timed
//! run.

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xtask::graph::{fresh_graph, graph_count, http};
use xtask::services::{free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PORT};

use super::{
    alternate, bench_dir, etlhost_sample, median, release_bin, report, Case, Figure, Opts, Sample,
};

/// The MySQL database; each part's graph is a database of its own, made anew every turn.
const DB: &str = "bench_svc";
const POSITION_GRAPH: &str = "bench_svc_position";
const BATCH_GRAPH: &str = "bench_svc_batch";
const STREAM_GRAPH: &str = "bench_svc_stream";
const LATENCY_GRAPH: &str = "bench_svc_latency";
/// Rows of `item`, copied by the snapshot, then updated `UPDATES / ITEMS` times each.
const ITEMS: u64 = 20_000;
const UPDATES: u64 = 400_000;
const TXN_ROWS: u64 = 100;
/// Rows of stream against batch.
const ROWS: u64 = 200_000;
/// The latency's steady load: rows per second, for how long.
const LOAD_RATE: u64 = 5_000;
const LOAD_SECS: u64 = 30;
/// How often the waits read the stream's position.
const POLL: Duration = Duration::from_millis(10);

/// Runs SQL with the mariadb client; its output, tab-separated. The statements go through its
/// stdin: thousands of them are more than one argument may hold.
pub(super) fn sql(text: &str) -> Result<String> {
    let mut client = xtask::mariadb()
        .args(["-N", "-B"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = client.stdin.take().context("client stdin")?;
    // Written from a thread: the client's output could fill its pipe before it reads the end.
    let statements = text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(statements.as_bytes()));
    let out = client.wait_with_output()?;
    let written = writer.join();
    if !out.status.success() {
        let head: String = text.chars().take(200).collect();
        bail!("{head}: {}", String::from_utf8_lossy(&out.stderr));
    }
    written.map_err(|_| anyhow::anyhow!("the client's stdin writer panicked"))??;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`sql`] in the bench's database.
fn query(text: &str) -> Result<String> {
    sql(&format!("USE {DB};\n{text}"))
}

/// The server's binlog head: (file, offset).
pub(super) fn binlog_head() -> Result<(String, u64)> {
    let out = sql("SHOW MASTER STATUS")?;
    let mut f = out.split_whitespace();
    Ok((
        f.next()
            .context("no binlog file: is the binary log on?")?
            .to_string(),
        f.next().context("no binlog position")?.parse()?,
    ))
}

/// A job's spec: `job` holds the job-level keys (mode, checkpoint), the sink writes `:Item` nodes
/// into `graph` with `query`.
fn spec(name: &str, job: &str, table: &str, graph: &str, query: &str) -> String {
    format!(
        "name: {name}
{job}source:
  plugin: mysql
  options: {{url: \"mysql://127.0.0.1:{MYSQL_PORT}/{DB}\", user: etl, password: etl, table: {table}}}
sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {graph}
    setup: [\"CREATE INDEX item_id IF NOT EXISTS FOR (i:Item) ON (i.id)\"]
    query: \"{query}\"
    delete_query: \"UNWIND $batch AS row MATCH (i:Item {{id: row.id}}) DETACH DELETE i\"
"
    )
}

/// Where the streaming jobs keep local positions.
fn checkpoint_dir() -> PathBuf {
    bench_dir().join("svc-cp")
}

/// The job-level keys of a streaming job; `store` is `checkpoint.store` (none: the default).
fn stream_keys(snapshot: bool, store: Option<&str>) -> String {
    let store = store.map_or(String::new(), |s| format!(", store: {s}"));
    format!(
        "mode: stream\nsnapshot: {snapshot}\ncheckpoint: {{dir: {}{store}}}\n",
        checkpoint_dir().display()
    )
}

/// A running `etlhost run --fresh` of a streaming spec, with its metrics port; killed when
/// dropped.
pub(super) struct StreamJob {
    child: Child,
    port: u16,
    log: PathBuf,
    spec: PathBuf,
}

impl StreamJob {
    /// Writes `spec` as `target/bench/<name>.yaml` and starts it.
    pub(super) fn start(name: &str, spec: &str) -> Result<StreamJob> {
        let path = bench_dir().join(format!("{name}.yaml"));
        std::fs::write(&path, spec)?;
        let port = free_port()?;
        // Every turn's log in one file (emptied by `run`), so a slow turn's warnings stay.
        let log = bench_dir().join(format!("{name}.stderr"));
        let child = Command::new(release_bin("etlhost"))
            .arg("run")
            .arg(&path)
            .args(["--fresh", "--quiet", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            )
            .spawn()?;
        Ok(StreamJob {
            child,
            port,
            log,
            spec: path,
        })
    }

    /// Waits until the stream acknowledges `target`, failing with its log if it ends first (its
    /// metrics port might then answer for another process).
    pub(super) fn wait_acked(&mut self, target: &(String, u64)) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(600) {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("the streaming job ended ({status}):\n{log}");
            }
            let acked = xtask::metrics::scrape(self.port).and_then(|t| xtask::metrics::acked(&t));
            if let Some((file, pos)) = acked {
                if file > target.0 || (file == target.0 && pos >= target.1) {
                    return Ok(());
                }
            }
            std::thread::sleep(POLL);
        }
        bail!("the stream never reached {target:?}")
    }

    /// CPU seconds the process has used so far.
    fn cpu(&self) -> f64 {
        // Its command line names its spec, which no other process's does.
        super::server_cpu(&self.spec.to_string_lossy())
    }

    /// Runs `sql` (changes to the followed tables) and waits until the stream has applied them.
    /// Live, the time runs from the first statement, so a stream faster than MySQL takes the
    /// changes is measured at MySQL's rate; as a backlog, the process is stopped (SIGSTOP) while
    /// MySQL takes them and the time runs from its SIGCONT: the stream's own rate.
    fn apply(&mut self, sql: &str, backlog: bool) -> Result<Applied> {
        let pid = self.child.id() as libc::pid_t;
        let signal = |sig| {
            // SAFETY: kill has no memory effects; pid is this job's child, not yet waited for.
            if unsafe { libc::kill(pid, sig) } != 0 {
                bail!(
                    "cannot signal the streaming job: {}",
                    std::io::Error::last_os_error()
                );
            }
            Ok(())
        };
        if backlog {
            signal(libc::SIGSTOP)?;
        }
        let (cpu0, graph0) = (self.cpu(), graph_cpu());
        let written = Instant::now();
        let taken = query(sql);
        let mysql_secs = written.elapsed().as_secs_f64();
        if backlog {
            signal(libc::SIGCONT)?;
        }
        taken?;
        let head = binlog_head()?;
        let start = if backlog { Instant::now() } else { written };
        self.wait_acked(&head)?;
        Ok(Applied {
            secs: start.elapsed().as_secs_f64(),
            mysql_secs,
            cpu: self.cpu() - cpu0,
            graph_cpu: graph_cpu() - graph0,
            peak_rss: peak_rss(self.child.id()),
        })
    }
}

/// CPU seconds the bench's graph database has used: the server `cargo xtask services` runs, not
/// others on the machine (a soak starts its own).
fn graph_cpu() -> f64 {
    let home = xtask::services::services_dir().join("arcadedb");
    super::server_cpu(&format!("rootPath={}", home.display()))
}

/// The median CPU seconds the graph database used in a figure's runs.
fn graph_cpu_median(f: &Figure) -> f64 {
    median(f.samples.iter().map(|s| s.graph_cpu).collect())
}

/// How long a stream took to apply changes (see [`StreamJob::apply`]), MySQL to take them, the
/// CPU seconds the job and the graph database used meanwhile (from the first change), and the
/// job's peak RSS so far.
struct Applied {
    secs: f64,
    mysql_secs: f64,
    cpu: f64,
    graph_cpu: f64,
    peak_rss: u64,
}

/// A live process's peak resident set (`VmHWM`) in bytes; 0 when `/proc` does not say.
fn peak_rss(pid: u32) -> u64 {
    super::stream::peak_rss(pid).unwrap_or(0)
}

impl Drop for StreamJob {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Cypher query on `graph` over HTTP: its result rows.
fn cypher(graph: &str, q: &str) -> Result<Vec<Value>> {
    // No limit: ArcadeDB returns 20,000 rows unless told otherwise.
    let body = json!({"language": "cypher", "command": q, "limit": -1});
    let (code, text) = http(
        "POST",
        &format!("/api/v1/command/{graph}"),
        Some(&body.to_string()),
    )?;
    if code != 200 {
        bail!("{q} on {graph}: {code} {text}");
    }
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["result"].as_array().cloned().unwrap_or_default())
}

/// The measured case's store (`target`, or `local` for an A/A run of the harness).
fn candidate_store() -> Result<String> {
    match std::env::var("BENCH_POSITION_STORE") {
        Ok(s) if s == "target" || s == "local" => Ok(s),
        Ok(s) => bail!("BENCH_POSITION_STORE={s}: `target` or `local`"),
        Err(_) => Ok("target".into()),
    }
}

/// The updates of one turn: every row of `item` `UPDATES / ITEMS` times, `TXN_ROWS` rows a
/// statement (its own transaction).
fn update_statements() -> String {
    let mut text = String::new();
    for _ in 0..UPDATES / ITEMS {
        for from in (1..=ITEMS).step_by(TXN_ROWS as usize) {
            let to = from + TXN_ROWS - 1;
            text.push_str(&format!(
                "UPDATE item SET v = v + 1 WHERE id BETWEEN {from} AND {to};\n"
            ));
        }
    }
    text
}

/// Fails unless the graph holds `item` as MySQL does: every id once, the same sum of `v`.
fn items_must_match() -> Result<()> {
    let mysql: u64 = query("SELECT SUM(v) FROM item")?.trim().parse()?;
    let r = cypher(
        POSITION_GRAPH,
        "MATCH (i:Item) RETURN count(i) AS n, count(DISTINCT i.id) AS ids, sum(i.v) AS v",
    )?;
    let got = r
        .first()
        .map(|r| [&r["n"], &r["ids"], &r["v"]].map(|x| x.as_u64()));
    let want = Some([ITEMS, ITEMS, mysql].map(Some));
    if got != want {
        bail!("the graph is not MySQL's: (nodes, ids, sum of v) {got:?}, expected {want:?}");
    }
    Ok(())
}

/// Fails unless the job kept its position where `store` says, and only there.
fn position_must_be_in(store: &str, job: &str) -> Result<()> {
    let file = checkpoint_dir().join(format!("{job}.stream.json")).exists();
    let records = graph_count(
        POSITION_GRAPH,
        &format!("MATCH (s:EtlhostStream {{job: '{job}'}}) RETURN count(s) AS n"),
    )
    .unwrap_or(0);
    let (want_file, want_records) = (store == "local", store == "target");
    if file != want_file || (records > 0) != want_records {
        bail!(
            "store: {store}, but the local file {} and {records} position records in the graph",
            if file { "exists" } else { "does not exist" }
        );
    }
    Ok(())
}

/// One turn of the position's cost with `store`, the updates live or as a backlog; the seconds
/// MySQL took to take them are pushed on `mysql`.
fn position_sample(store: &str, backlog: bool, mysql: &RefCell<Vec<f64>>) -> Result<Sample> {
    fresh_graph(POSITION_GRAPH)?;
    let name = format!("svc_position_{store}");
    let _ = std::fs::remove_file(checkpoint_dir().join(format!("{name}.stream.json")));
    let merge = "UNWIND $batch AS row MERGE (i:Item {id: row.id}) SET i.v = row.v";
    let spec = spec(
        &name,
        &stream_keys(true, Some(store)),
        "item",
        POSITION_GRAPH,
        merge,
    );
    let mut job = StreamJob::start(&name, &spec)?;
    job.wait_acked(&binlog_head()?)?;
    let a = job.apply(&update_statements(), backlog)?;
    drop(job);
    mysql.borrow_mut().push(a.mysql_secs);
    items_must_match()?;
    position_must_be_in(store, &name)?;
    Ok(Sample {
        rows: UPDATES,
        secs: a.secs,
        cpu: a.cpu,
        graph_cpu: a.graph_cpu,
        peak_rss: a.peak_rss,
        ..Sample::default()
    })
}

/// Part 1: the position in the graph transaction against the local file, the updates made live
/// and as a backlog.
fn position(opts: &Opts) -> Result<()> {
    query(&format!(
        "DROP TABLE IF EXISTS item; CREATE TABLE item (id INT PRIMARY KEY, v BIGINT NOT NULL);
         INSERT INTO item SELECT seq, 0 FROM seq_1_to_{ITEMS};"
    ))?;
    let candidate = candidate_store()?;
    let mysql: [RefCell<Vec<f64>>; 4] = Default::default();
    let mut cases = Vec::new();
    for (i, backlog) in [false, true].into_iter().enumerate() {
        let how = if backlog {
            "backlog (job paused while MySQL took them)"
        } else {
            "live (from the first UPDATE)"
        };
        let (local, cand, candidate) = (&mysql[2 * i], &mysql[2 * i + 1], &candidate);
        cases.push(Case::new(format!("{how}: local file"), None, move || {
            position_sample("local", backlog, local)
        }));
        cases.push(Case::new(
            format!("{how}: graph transaction ({candidate})"),
            Some(2 * i),
            move || position_sample(candidate, backlog, cand),
        ));
    }
    let figures = alternate(opts.reps, cases)?;
    report(
        &format!(
            "stream position: {UPDATES} updates in transactions of {TXN_ROWS} rows, MERGE, one \
             writer; position in the graph transaction against the local file (goal: at least \
             0.95)"
        ),
        "stream_position.json",
        &figures,
        &|f| {
            let i = figures.iter().position(|g| std::ptr::eq(g, f)).unwrap_or(0);
            let s = median(mysql[i].borrow().clone());
            let store = if f.baseline.is_some() {
                candidate.as_str()
            } else {
                "local"
            };
            let graph_cpu = graph_cpu_median(f);
            (
                Some(format!("(MySQL {s:.1} s, graph CPU {graph_cpu:.1} s)")),
                json!({"store": store, "mysql_seconds_median": s, "transaction_rows": TXN_ROWS,
                       "graph_cpu_seconds_median": graph_cpu}),
            )
        },
    )
}

/// One turn of the stream: `person` emptied, a stream started on a fresh graph, then `base`'s
/// rows inserted into `person` in transactions of 1,000, live or as a backlog.
fn stream_sample(merge: &str, backlog: bool) -> Result<Sample> {
    query("TRUNCATE TABLE person")?;
    fresh_graph(STREAM_GRAPH)?;
    let spec = spec(
        "svc_stream",
        &stream_keys(false, None),
        "person",
        STREAM_GRAPH,
        merge,
    );
    let mut job = StreamJob::start("svc_stream", &spec)?;
    job.wait_acked(&binlog_head()?)?;
    let inserts: String = (1..=ROWS)
        .step_by(1000)
        .map(|from| {
            let to = (from + 999).min(ROWS);
            format!("INSERT INTO person SELECT * FROM base WHERE id BETWEEN {from} AND {to};\n")
        })
        .collect();
    let a = job.apply(&inserts, backlog)?;
    drop(job);
    nodes_must_be(STREAM_GRAPH, ROWS)?;
    Ok(Sample {
        rows: ROWS,
        secs: a.secs,
        cpu: a.cpu,
        graph_cpu: a.graph_cpu,
        peak_rss: a.peak_rss,
        ..Sample::default()
    })
}

fn nodes_must_be(graph: &str, rows: u64) -> Result<()> {
    let n = graph_count(graph, "MATCH (i:Item) RETURN count(i) AS n")?;
    if n != rows {
        bail!("{n} nodes in {graph}, expected {rows}");
    }
    Ok(())
}

/// Part 2: stream throughput against batch MERGE of the same rows.
fn against_batch(opts: &Opts) -> Result<Vec<Figure>> {
    query(&format!(
        "DROP TABLE IF EXISTS base; DROP TABLE IF EXISTS person;
         CREATE TABLE base (id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200));
         INSERT INTO base SELECT seq, CONCAT('person-', seq), CONCAT('p', seq, '@example.com')
           FROM seq_1_to_{ROWS};
         CREATE TABLE person LIKE base;"
    ))?;
    let merge =
        "UNWIND $batch AS row MERGE (i:Item {id: row.id}) SET i.name = row.name, i.email = row.email";
    let batch = spec("svc_batch", "", "base", BATCH_GRAPH, merge);
    alternate(
        opts.reps,
        vec![
            Case::new("batch: etlhost run, MERGE", None, || {
                fresh_graph(BATCH_GRAPH)?;
                let graph0 = graph_cpu();
                let mut s = etlhost_sample("batch", "svc_batch", &batch, ROWS)?;
                s.graph_cpu = graph_cpu() - graph0;
                nodes_must_be(BATCH_GRAPH, ROWS)?;
                Ok(s)
            }),
            Case::new("stream: backlog of the inserts, MERGE", Some(0), || {
                stream_sample(merge, true)
            }),
            Case::new("stream: inserts followed live, MERGE", Some(0), || {
                stream_sample(merge, false)
            }),
        ],
    )
}

/// The steady load: a transaction of `LOAD_RATE / 250` rows every 4 ms for `LOAD_SECS` s, ids
/// from 1; the rate achieved.
fn steady_load() -> Result<f64> {
    let mut client = xtask::mariadb()
        .args(["-N", "-B", DB])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = client.stdin.take().context("client stdin")?;
    let per_tick = LOAD_RATE / 250;
    let t0 = Instant::now();
    for tick in 0..LOAD_SECS * 250 {
        let due = Duration::from_millis(tick * 4);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        let from = tick * per_tick + 1;
        let to = from + per_tick - 1;
        writeln!(
            stdin,
            "INSERT INTO tick SELECT seq, ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000) FROM seq_{from}_to_{to};"
        )?;
        stdin.flush()?;
    }
    drop(stdin);
    let status = client.wait()?;
    if !status.success() {
        bail!("the load's client failed: {status}");
    }
    Ok((LOAD_SECS * LOAD_RATE) as f64 / t0.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The latency's figures.
struct Latency {
    offered: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Part 3: commit-to-graph latency under a steady load, with the default store.
fn latency() -> Result<Latency> {
    let rows = LOAD_SECS * LOAD_RATE;
    query(
        "DROP TABLE IF EXISTS tick; CREATE TABLE tick (id INT PRIMARY KEY, at BIGINT NOT NULL);",
    )?;
    fresh_graph(LATENCY_GRAPH)?;
    let merge =
        "UNWIND $batch AS row MERGE (i:Item {id: row.id}) SET i.at = row.at, i.written = timestamp()";
    let spec = spec(
        "svc_latency",
        &stream_keys(false, None),
        "tick",
        LATENCY_GRAPH,
        merge,
    );
    let mut job = StreamJob::start("svc_latency", &spec)?;
    job.wait_acked(&binlog_head()?)?;
    let offered = steady_load()?;
    job.wait_acked(&binlog_head()?)?;
    drop(job);
    let result = cypher(
        LATENCY_GRAPH,
        "MATCH (i:Item) RETURN i.written - i.at AS ms",
    )?;
    let mut ms: Vec<f64> = result.iter().filter_map(|r| r["ms"].as_f64()).collect();
    if ms.len() as u64 != rows {
        bail!("{} rows in the graph, expected {rows}", ms.len());
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let l = Latency {
        offered,
        p50: percentile(&ms, 0.5),
        p99: percentile(&ms, 0.99),
        max: ms[ms.len() - 1],
    };
    println!(
        "\ncommit-to-graph latency at {:.0} changes/s offered for {LOAD_SECS} s: p50 {:.0} ms, \
         p99 {:.0} ms, max {:.0} ms ({rows} changes; goal: p99 under 1,000 ms)",
        l.offered, l.p50, l.p99, l.max
    );
    Ok(l)
}

pub fn run(opts: &Opts) -> Result<()> {
    std::fs::create_dir_all(checkpoint_dir())?;
    for e in std::fs::read_dir(bench_dir())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("svc_") && name.ends_with(".stderr") {
            std::fs::remove_file(e.path())?;
        }
    }
    sql(&format!("CREATE DATABASE IF NOT EXISTS {DB}"))?;
    position(opts)?;
    let figures = against_batch(opts)?;
    let l = latency()?;
    // On the page, which shows only the figures' table, the latency goes in the title.
    report(
        &format!(
            "stream against batch, MERGE, {ROWS} rows (stream: inserted in transactions of \
             1,000 while it follows), one writer, default store (goal: at least 0.9); \
             commit-to-graph latency at {:.0} changes/s for {LOAD_SECS} s: p50 {:.0} ms, p99 \
             {:.0} ms, max {:.0} ms (goal: p99 under 1,000 ms)",
            l.offered, l.p50, l.p99, l.max
        ),
        "stream_vs_batch.json",
        &figures,
        &|f| {
            let latency = f.baseline.map(|_| {
                json!({"offered_changes_per_sec": l.offered, "seconds": LOAD_SECS,
                       "changes": LOAD_SECS * LOAD_RATE, "transaction_rows": LOAD_RATE / 250,
                       "p50_ms": l.p50, "p99_ms": l.p99, "max_ms": l.max})
            });
            let graph = graph_cpu_median(f);
            (
                Some(format!("(graph CPU {graph:.1} s)")),
                json!({ "latency": latency, "graph_cpu_seconds_median": graph }),
            )
        },
    )
}
