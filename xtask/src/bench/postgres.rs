//! The postgres source (issue 33, point 7), in three tables:
//!
//! - `postgres.json`: 1,000,000 rows of `bench_pg.person_1m` (id, name, email, created_at; with
//!   `--10m` 10,000,000 of `person_10m`) into the console sink (count only), 1 and 2 readers,
//!   against the raw limit: the `limits pg-source`
//!   loop, one tokio-postgres binary `COPY` of the same table decoding every value, which is what
//!   the source does with no host, codec or plugin boundary around it; ratio of medians (goal: at
//!   least 0.8 for one reader);
//! - `postgres_rss.json`: etlhost's peak RSS reading 1,000,000 rows and, with `--10m`, 10,000,000
//!   (goal: flat);
//! - `postgres_stream.json`: `mode: stream` (a logical replication slot, pgoutput) against batch,
//!   the same `MERGE` of the same 200,000 rows (as the MySQL stream's `stream_vs_batch`): batch
//!   is `etlhost run` of `stream_base` into a fresh graph; a stream turn follows `stream_src`
//!   from a new slot into a fresh graph while `stream_base`'s rows are inserted into it in
//!   transactions of 1,000, as a *backlog* (the job SIGSTOPped while PostgreSQL takes them,
//!   timed from its SIGCONT: the stream's own rate) and *live* (timed from the first insert);
//!   a turn ends when the stream acknowledges the last transaction (confirmed only after the
//!   graph committed) and the graph must then hold every row. CPU seconds of etlhost and of the
//!   graph database in the table (goal: at least 0.8 of batch).
//!
//! Everything lives in the schema `bench_pg` of the shared server's `etl` database; the stream's
//! slot and publication are dropped before and after.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::{fresh_graph, graph_count};
use xtask::services::{
    free_port, BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, PG_DATABASE, PG_PASSWORD, PG_PORT, PG_USER,
};
use xtask::{cargo, root};

use super::{
    alternate, bench_dir, etlhost_sample, external, median, plain, release_bin, report, Case, Opts,
    Sample,
};

const SCHEMA: &str = "bench_pg";
const ROWS: u64 = 1_000_000;
/// Rows of stream against batch, as the MySQL stream's (`stream_service`).
const STREAM_ROWS: u64 = 200_000;
/// How often the waits read the stream's position.
const POLL: Duration = Duration::from_millis(10);
const SLOT: &str = "bench_pg_slot";
const PUBLICATION: &str = "bench_pg_pub";
/// The batch runs' graph and the stream's.
const BATCH_GRAPH: &str = "bench_pg_batch";
const STREAM_GRAPH: &str = "bench_pg_stream";

/// Runs SQL on the shared server as the test user, through psql's stdin (a long script is more
/// than one argument holds); its output.
fn sql(text: &str) -> Result<String> {
    let mut child = xtask::postgres::psql(PG_PORT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run psql")?;
    child
        .stdin
        .take()
        .context("psql's stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "psql failed on `{}`: {}",
            text.chars().take(200).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `bench_pg.<table>` with `rows` people unless it already holds exactly that many.
fn seed(table: &str, rows: u64) -> Result<()> {
    let count = sql(&format!(
        "SELECT count(*) FROM {SCHEMA}.{table} WHERE to_regclass('{SCHEMA}.{table}') IS NOT NULL"
    ));
    if count.is_ok_and(|c| c == rows.to_string()) {
        return Ok(());
    }
    eprintln!("xtask: seeding {SCHEMA}.{table} with {rows} rows");
    sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         DROP TABLE IF EXISTS {SCHEMA}.{table};
         CREATE TABLE {SCHEMA}.{table} (id int PRIMARY KEY, name text, email varchar(200),
                                        created_at timestamp);
         INSERT INTO {SCHEMA}.{table}
           SELECT g, 'person-' || g, 'person' || g || '@example.com',
                  timestamp '2020-01-01' + g * interval '1 second'
           FROM generate_series(1, {rows}) g;
         VACUUM ANALYZE {SCHEMA}.{table};"
    ))?;
    Ok(())
}

/// The source options for a table of the bench schema, as a YAML flow map. No TLS, as the raw
/// loop.
fn options(table: &str, extra: &str) -> String {
    format!(
        "{{url: \"postgres://127.0.0.1:{PG_PORT}/{PG_DATABASE}\", user: {PG_USER}, \
         password: {PG_PASSWORD}, table: {SCHEMA}.{table}, tls: disable{extra}}}"
    )
}

fn console_spec(table: &str, readers: usize) -> String {
    let partition = if readers > 1 {
        format!("  partition_column: id\n  partition_num: {}\n", readers * 2)
    } else {
        String::new()
    };
    format!(
        "name: bench-pg-console
parallelism: {readers}
source:
  plugin: postgres
{partition}  options: {}
sink:
  plugin: console
  options:
    mode: count
",
        options(table, "")
    )
}

/// The plugin the specs load, in release mode beside the binary (`bench` builds the others).
fn build_plugin() -> Result<()> {
    xtask::run(
        Command::new(cargo())
            .args(["build", "--release", "-p", "etlhost-postgres"])
            .current_dir(root()),
    )
}

/// (a): etlhost against the raw COPY loop: 1,000,000 rows, or 10,000,000 with `--10m` (longer
/// runs, so the start of a job and the noise of a shared machine weigh less).
fn throughput(opts: &Opts) -> Result<()> {
    let (table, rows) = if opts.ten_million {
        ("person_10m", 10 * ROWS)
    } else {
        ("person_1m", ROWS)
    };
    seed(table, rows)?;
    let conninfo = format!(
        "host=127.0.0.1 port={PG_PORT} user={PG_USER} password={PG_PASSWORD} dbname={PG_DATABASE}"
    );
    let limits = release_bin("limits");
    let relation = format!("{SCHEMA}.{table}");
    let mut cases = vec![Case::new(
        "raw tokio-postgres binary COPY loop",
        None,
        move || external(Command::new(&limits).args(["pg-source", &conninfo, &relation])),
    )];
    for readers in [1, 2] {
        let spec = console_spec(table, readers);
        let name = format!("etlhost postgres -> console, {readers} reader(s)");
        let file = format!("postgres-readers-{readers}");
        cases.push(Case::new(name.clone(), Some(0), move || {
            etlhost_sample(&name, &file, &spec, rows)
        }));
    }
    report(
        &format!(
            "PostgreSQL source: {rows} rows -> console (count only) against a raw tokio-postgres \
             binary COPY loop decoding every value; ratio of medians to the loop (goal: at least \
             0.8)"
        ),
        "postgres.json",
        &alternate(opts.reps, cases)?,
        &plain,
    )
}

/// (b): peak RSS at 1,000,000 and (with `--10m`) 10,000,000 rows, one reader.
fn rss(opts: &Opts) -> Result<()> {
    let mut tables = vec![("person_1m", ROWS)];
    if opts.ten_million {
        seed("person_10m", 10 * ROWS)?;
        tables.push(("person_10m", 10 * ROWS));
    } else {
        println!("\n(peak RSS on 10,000,000 PostgreSQL rows: `cargo xtask bench postgres --10m`)");
    }
    let cases = tables
        .into_iter()
        .enumerate()
        .map(|(i, (table, rows))| {
            let spec = console_spec(table, 1);
            let name = format!("etlhost postgres -> console, {rows} rows");
            Case::new(name.clone(), (i > 0).then_some(0), move || {
                etlhost_sample(&name, &format!("postgres-rss-{table}"), &spec, rows)
            })
        })
        .collect();
    let figures = alternate(opts.reps.min(3), cases)?;
    let base = figures[0].peak_rss() as f64;
    report(
        "Peak RSS against table size, PostgreSQL -> console (count only), 1 reader",
        "postgres_rss.json",
        &figures,
        &|f| {
            let r = f.peak_rss() as f64 / base;
            (
                Some(format!("RSS {r:.2}x of 1,000,000 rows")),
                json!({"peak_rss_to_1m": r}),
            )
        },
    )
}

/// A bolt spec for `table` MERGEing people into `graph`; `stream` adds the stream's settings.
fn graph_spec(name: &str, table: &str, graph: &str, stream: bool) -> String {
    let (mode, extra) = if stream {
        (
            format!(
                "mode: stream\nsnapshot: false\ncheckpoint: {{dir: {}}}\n",
                bench_dir().join("postgres-stream-cp").display()
            ),
            format!(", slot: {SLOT}, publication: {PUBLICATION}"),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "name: {name}
{mode}source:
  plugin: postgres
  options: {}
sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {graph}
    setup: [\"CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)\"]
    query: \"UNWIND $batch AS row MERGE (p:Person {{id: row.id}}) SET p.name = row.name, p.email = row.email\"
    delete_query: \"UNWIND $batch AS row MATCH (p:Person {{id: row.id}}) DETACH DELETE p\"
",
        options(table, &extra)
    )
}

/// The slot and publication of an earlier run, gone (a slot left behind holds WAL back).
fn drop_replication() -> Result<()> {
    sql(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
           WHERE slot_name = '{SLOT}' AND NOT active;
         DROP PUBLICATION IF EXISTS {PUBLICATION};"
    ))?;
    Ok(())
}

/// Polls `check` every 10 ms until it holds, for at most `secs`.
fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    bail!("{what}: not within {secs} s")
}

/// CPU seconds the shared graph database has used so far (the server `cargo xtask services`
/// runs, not one a soak or a test started).
fn graph_cpu() -> f64 {
    let home = xtask::services::services_dir().join("arcadedb");
    super::server_cpu(&format!("rootPath={}", home.display()))
}

/// The inserts of a stream turn: `stream_base`'s rows into `stream_src` in transactions of
/// 1,000; the last one also answers an LSN inside it, before its commit: once the stream has
/// acknowledged a position at or past it, it has applied every transaction of the turn.
fn insert_script() -> String {
    let mut text = String::new();
    for from in (1..=STREAM_ROWS).step_by(1000) {
        let to = (from + 999).min(STREAM_ROWS);
        let insert = format!(
            "INSERT INTO {SCHEMA}.stream_src SELECT * FROM {SCHEMA}.stream_base \
             WHERE id BETWEEN {from} AND {to};\n"
        );
        if to == STREAM_ROWS {
            text.push_str(&format!(
                "BEGIN;\n{insert}SELECT pg_current_wal_insert_lsn()::text;\nCOMMIT;\n"
            ));
        } else {
            text.push_str(&insert);
        }
    }
    text
}

/// `X/Y` (an LSN as PostgreSQL prints it) as a number.
fn parse_lsn(text: &str) -> Result<u64> {
    let (hi, lo) = text
        .trim()
        .split_once('/')
        .with_context(|| format!("not an LSN: `{text}`"))?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

/// A streaming job of the bench, killed when dropped.
struct StreamJob {
    child: Child,
    port: u16,
    spec: PathBuf,
}

impl StreamJob {
    fn start() -> Result<StreamJob> {
        let spec = bench_dir().join("postgres-stream.yaml");
        std::fs::write(
            &spec,
            graph_spec("bench-pg-stream", "stream_src", STREAM_GRAPH, true),
        )?;
        let port = free_port()?;
        let log = std::fs::File::create(bench_dir().join("postgres-stream.log"))?;
        let child = Command::new(release_bin("etlhost"))
            .arg("run")
            .arg(&spec)
            .args(["--fresh", "--quiet", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(StreamJob { child, port, spec })
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        // SAFETY: kill has no memory effects; the pid is this job's child, not yet waited for.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            bail!(
                "cannot signal the streaming job: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Polls the job's metrics until `check` holds of them, failing with the job's end.
    fn wait(&mut self, what: &str, check: impl Fn(&str) -> bool) -> Result<()> {
        let port = self.port;
        let child = &mut self.child;
        wait_for(what, 300, || {
            if let Some(status) = child.try_wait()? {
                bail!("the streaming job ended ({status})");
            }
            Ok(xtask::metrics::scrape(port).is_some_and(|t| check(&t)))
        })
    }

    fn cpu(&self) -> f64 {
        // Its command line names its spec, which no other process's does.
        super::server_cpu(&self.spec.to_string_lossy())
    }
}

impl Drop for StreamJob {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One stream turn: `stream_src` emptied, a job following it from a new slot into a fresh
/// graph, then `stream_base`'s rows inserted into it. Live, the time runs from the first insert
/// (PostgreSQL's rate whenever the stream keeps up); as a backlog, the job is stopped (SIGSTOP)
/// while PostgreSQL takes the inserts and the time runs from its SIGCONT: the stream's own rate.
/// Either way it ends when the stream has acknowledged the last transaction (its position is
/// confirmed only after the graph committed), and the graph must then hold every row.
fn stream_sample(backlog: bool) -> Result<Sample> {
    sql(&format!("TRUNCATE {SCHEMA}.stream_src"))?;
    fresh_graph(STREAM_GRAPH)?;
    drop_replication()?;
    let _ = std::fs::remove_dir_all(bench_dir().join("postgres-stream-cp"));
    let mut job = StreamJob::start()?;
    let result = (|| -> Result<Sample> {
        job.wait("the stream caught up", xtask::metrics::caught_up)?;
        if backlog {
            job.signal(libc::SIGSTOP)?;
        }
        let (cpu0, graph0) = (job.cpu(), graph_cpu());
        let written = Instant::now();
        let taken = sql(&insert_script());
        if backlog {
            job.signal(libc::SIGCONT)?;
        }
        let inside = parse_lsn(taken?.lines().last().unwrap_or_default())?;
        let start = if backlog { Instant::now() } else { written };
        job.wait("the stream's last transaction acknowledged", |t| {
            xtask::metrics::acked(t).is_some_and(|(_, pos)| pos >= inside)
        })?;
        let secs = start.elapsed().as_secs_f64();
        let sample = Sample {
            rows: STREAM_ROWS,
            secs,
            cpu: job.cpu() - cpu0,
            graph_cpu: graph_cpu() - graph0,
            peak_rss: super::stream::peak_rss(job.child.id()).unwrap_or(0),
            ..Sample::default()
        };
        nodes_must_be(STREAM_GRAPH)?;
        Ok(sample)
    })();
    drop(job);
    result.with_context(|| {
        format!(
            "the stream's log: {}",
            bench_dir().join("postgres-stream.log").display()
        )
    })
}

fn nodes_must_be(graph: &str) -> Result<()> {
    let n = graph_count(graph, "MATCH (p:Person) RETURN count(p) AS n")?;
    if n != STREAM_ROWS {
        bail!("{n} nodes in {graph}, expected {STREAM_ROWS}");
    }
    Ok(())
}

/// (c): the stream against batch, the same MERGE of the same rows.
fn stream(opts: &Opts) -> Result<()> {
    std::fs::create_dir_all(bench_dir())?;
    sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         DROP TABLE IF EXISTS {SCHEMA}.stream_base, {SCHEMA}.stream_src;
         CREATE TABLE {SCHEMA}.stream_base (id int PRIMARY KEY, name text, email varchar(200));
         INSERT INTO {SCHEMA}.stream_base
           SELECT g, 'person-' || g, 'p' || g || '@example.com'
           FROM generate_series(1, {STREAM_ROWS}) g;
         VACUUM ANALYZE {SCHEMA}.stream_base;
         CREATE TABLE {SCHEMA}.stream_src (LIKE {SCHEMA}.stream_base INCLUDING ALL);"
    ))?;
    let batch = graph_spec("bench-pg-batch", "stream_base", BATCH_GRAPH, false);
    let figures = alternate(
        opts.reps,
        vec![
            Case::new("batch: etlhost run, MERGE", None, || {
                fresh_graph(BATCH_GRAPH)?;
                let graph0 = graph_cpu();
                let mut s = etlhost_sample("batch", "postgres-stream-batch", &batch, STREAM_ROWS)?;
                s.graph_cpu = graph_cpu() - graph0;
                nodes_must_be(BATCH_GRAPH)?;
                Ok(s)
            }),
            Case::new("stream: backlog of the inserts, MERGE", Some(0), || {
                stream_sample(true)
            }),
            Case::new("stream: inserts followed live, MERGE", Some(0), || {
                stream_sample(false)
            }),
        ],
    );
    drop_replication()?;
    report(
        &format!(
            "PostgreSQL stream against batch, MERGE, {STREAM_ROWS} rows (stream: inserted in \
             transactions of 1,000, followed live or as a backlog), one writer (goal: stream at \
             least 0.8 of batch)"
        ),
        "postgres_stream.json",
        &figures?,
        &|f| {
            let (cpu, graph) = (
                f.median_cpu(),
                median(f.samples.iter().map(|s| s.graph_cpu).collect()),
            );
            (
                Some(format!("(CPU {cpu:.2} s, graph CPU {graph:.1} s)")),
                json!({ "graph_cpu_seconds_median": graph }),
            )
        },
    )
}

pub fn run(opts: &Opts) -> Result<()> {
    build_plugin()?;
    if std::env::var_os("BENCH_PG_ONLY_STREAM").is_some() {
        println!("\n(PostgreSQL source throughput and RSS left out: BENCH_PG_ONLY_STREAM is set)");
        return stream(opts);
    }
    throughput(opts)?;
    rss(opts)?;
    if std::env::var_os("BENCH_PG_NO_STREAM").is_some() {
        println!("\n(PostgreSQL stream against batch left out: BENCH_PG_NO_STREAM is set)");
        return Ok(());
    }
    stream(opts)
}
