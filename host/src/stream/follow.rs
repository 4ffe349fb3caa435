//! Following the change log: one reader thread (reconnecting with backoff from the last
//! transaction it handed on), the dispatch loop that writes each chunk with every flow of its
//! table, a checkpointer that stores the acknowledged position on every interval without waiting
//! for a write, and a monitor that asks the server where its log is (for lag).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Position, Split, StreamRequest, Value};

use super::metrics::Progress;
use super::state::{self, StreamState};
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::Control;
use crate::plugin::{PluginError, SinkHandle, SourceHandle};
use crate::retry::{Backoff, Policy};
use crate::spec::FlowRef;
use crate::stats::{Counters, Status};

/// The first wait before reading the change log again; it grows as [`crate::retry`] says.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// One streaming flow: the table it follows and one sink instance per writer.
struct Target {
    name: String,
    table: String,
    sinks: Vec<SinkHandle>,
    retry_backoff: Duration,
}

/// Runs until stopped (Ctrl-C, SIGTERM) or a permanent error; the status, error and the stream's
/// statistics for the summary.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    job: &Job,
    flows: &[FlowRef<'_>],
    source: Arc<SourceHandle>,
    start: StreamState,
    path: &Path,
    control: Arc<Control>,
    counters: &Arc<Counters>,
    opts: &RunOptions,
) -> (Status, Option<String>, serde_json::Value) {
    let progress = Arc::new(Mutex::new(Progress::new(start.position.clone())));
    let mut targets = Vec::new();
    for flow in flows {
        match open_target(job, *flow) {
            Ok(t) => targets.push(t),
            Err(e) => {
                let json = progress.lock().expect("progress").json();
                return (Status::Failed, Some(e), json);
            }
        }
    }
    let tables: Vec<String> = targets.iter().map(|t| t.table.clone()).collect();
    if let Some(addr) = opts.metrics_addr {
        if let Err(e) = super::serve_metrics(addr, progress.clone()) {
            let json = progress.lock().expect("progress").json();
            return (
                Status::Failed,
                Some(format!("cannot serve metrics on {addr}: {e}")),
                json,
            );
        }
    }
    let (tx, rx) = crossbeam_channel::bounded::<Result<ChangeBatch, String>>(4);
    let interval = flows[0].spec.job.checkpoint.interval.0;
    let report_every = flows[0].spec.job.progress_interval.0;
    let outcome = std::thread::scope(|scope| {
        let reader_control = control.clone();
        let from = start.position.clone();
        let src = source.clone();
        scope.spawn(move || read(src, tables, from, tx, reader_control));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (progress, done) = (progress.clone(), done.clone());
            scope.spawn(move || checkpointer(path, interval, progress, done));
        }
        {
            let (progress, done, src) = (progress.clone(), done.clone(), source.clone());
            scope.spawn(move || monitor(src, progress, done));
        }
        let outcome = dispatch(
            &rx,
            &mut targets,
            &progress,
            counters,
            &control,
            report_every,
        );
        if outcome.is_err() {
            control.stop(crate::pipeline::StopReason::Error);
        }
        // Drain: the reader stops at the next batch; what it already sent is written (or dropped
        // after a failure: it is after the recorded position and read again next time).
        while let Ok(msg) = rx.recv() {
            if outcome.is_ok() {
                if let Ok(b) = msg {
                    if let Err(e) = apply(&b, &mut targets, &progress, counters, &control) {
                        done.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        outcome
    });
    let p = progress.lock().expect("progress");
    let st = StreamState {
        position: p.acked.clone(),
        snapshot_done: true,
    };
    let saved = state::save(path, &st);
    tracing::info!(position = %st.position, "stream stopped; position recorded");
    let json = p.json();
    match (outcome, saved) {
        (Err(e), _) => (Status::Failed, Some(e), json),
        (Ok(()), Err(e)) => (Status::Failed, Some(e), json),
        (Ok(()), Ok(())) => (
            Status::Interrupted,
            Some("interrupted: the stream stopped at the recorded position".into()),
            json,
        ),
    }
}

fn open_target(job: &Job, flow: FlowRef<'_>) -> Result<Target, String> {
    let f = flow.flow;
    let plugin = job.plugins[flow.index].sink.clone();
    let sinks = (0..f.sink.parallelism.max(1))
        .map(|_| SinkHandle::open(plugin.clone(), &f.sink.options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("flow `{}`: cannot start sink: {e}", f.name))?;
    let table = match f.source.options.get("table") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => String::new(),
    };
    Ok(Target {
        name: f.name.clone(),
        table,
        sinks,
        retry_backoff: f.sink.retry_backoff.0,
    })
}

/// Reads change batches; on a lost connection it waits (doubling with jitter, at most 30 s:
/// [`crate::retry`]) and reads again from the commit of the last complete transaction it handed
/// on.
fn read(
    source: Arc<SourceHandle>,
    tables: Vec<String>,
    from: Position,
    tx: crossbeam_channel::Sender<Result<ChangeBatch, String>>,
    control: Arc<Control>,
) {
    let mut at = from;
    let mut backoff = Policy::forever(RECONNECT_BACKOFF).start();
    let wait = |what: &str, e: &dyn std::fmt::Display, at: &Position, backoff: &mut Backoff| {
        let wait = backoff.next_wait().expect("retries without limit");
        tracing::warn!("{what}: {e}; reading again from {at} in {wait:?}");
        std::thread::sleep(wait);
    };
    'connect: while !control.stopping() {
        let split = Split {
            id: 0,
            range: None,
            cursor: None,
            stream: Some(StreamRequest {
                from: at.clone(),
                tables: tables.clone(),
            }),
        };
        let mut reader = match source.open_split(&split) {
            Ok(r) => r,
            Err(e) if e.is_retryable() => {
                wait("cannot start reading the change log", &e, &at, &mut backoff);
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        while !control.stopping() {
            match reader.next_batch() {
                Ok(Some(b)) => {
                    let b = match ChangeBatch::from_batch(b) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(format!("malformed change batch: {e}")));
                            return;
                        }
                    };
                    if let Some(c) = b.changes.iter().rev().find(|c| c.last) {
                        at = c.commit.clone();
                    }
                    backoff.reset();
                    if tx.send(Ok(b)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    wait(
                        "the change log ended",
                        &"connection closed",
                        &at,
                        &mut backoff,
                    );
                    continue 'connect;
                }
                Err(e) if e.is_retryable() => {
                    wait("reading the change log failed", &e, &at, &mut backoff);
                    continue 'connect;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    }
}

fn dispatch(
    rx: &crossbeam_channel::Receiver<Result<ChangeBatch, String>>,
    targets: &mut [Target],
    progress: &Mutex<Progress>,
    counters: &Counters,
    control: &Control,
    report_every: Duration,
) -> Result<(), String> {
    let mut last_report = Instant::now();
    loop {
        {
            // A turn of this loop, changes or none, is what `/healthz` calls alive: an idle
            // stream is healthy, one stuck in a write is not.
            let mut p = progress.lock().expect("progress");
            p.beat();
            if last_report.elapsed() >= report_every {
                last_report = Instant::now();
                tracing::info!("{}", p.line());
            }
        }
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let b = msg?;
        apply(&b, targets, progress, counters, control)?;
    }
}

/// Writes one chunk with every flow of its table, then moves the acknowledged position.
fn apply(
    b: &ChangeBatch,
    targets: &mut [Target],
    progress: &Mutex<Progress>,
    counters: &Counters,
    control: &Control,
) -> Result<(), String> {
    let rows = b
        .changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Mark)
        .count();
    Counters::add(&counters.read, rows);
    if rows > 0 {
        for t in targets.iter_mut().filter(|t| t.table == b.table) {
            write(t, b, counters, control)?;
        }
        Counters::add(&counters.written, rows);
        Counters::add(&counters.batches, 1);
    }
    let mut p = progress.lock().expect("progress");
    p.count(b);
    Ok(())
}

/// Writes a chunk with one flow: all of it on one writer, or each writer the changes of the keys
/// that hash to it, in order, at the same time.
fn write(
    t: &mut Target,
    b: &ChangeBatch,
    counters: &Counters,
    control: &Control,
) -> Result<(), String> {
    let n = t.sinks.len();
    let name = t.name.clone();
    let backoff = t.retry_backoff;
    if n == 1 {
        return write_retrying(&mut t.sinks[0], b, &name, backoff, counters, control);
    }
    let mut parts: Vec<ChangeBatch> = (0..n)
        .map(|_| ChangeBatch {
            table: b.table.clone(),
            schema: b.schema.clone(),
            key: b.key.clone(),
            changes: Vec::new(),
        })
        .collect();
    for c in &b.changes {
        if c.kind == ChangeKind::Mark {
            continue;
        }
        parts[writer_of(&b.key_of(c), n)].changes.push(c.clone());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = t
            .sinks
            .iter_mut()
            .zip(&parts)
            .filter(|(_, p)| !p.changes.is_empty())
            .map(|(sink, part)| {
                let name = &name;
                scope.spawn(move || write_retrying(sink, part, name, backoff, counters, control))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a writer panicked".into())))
            .collect::<Result<Vec<()>, String>>()
            .map(drop)
    })
}

/// A fixed writer per key, so one key's changes are written in order by one connection.
fn writer_of(key: &[&Value], writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in key {
        // The JSON form is stable and hashable for every value type.
        v.to_json().to_string().hash(&mut h);
    }
    (h.finish() % writers as u64) as usize
}

/// Retries transient failures (a Bolt server restart) until they pass, waiting longer each
/// time; a permanent failure stops the stream at the last recorded position.
fn write_retrying(
    sink: &mut SinkHandle,
    b: &ChangeBatch,
    flow: &str,
    first_backoff: Duration,
    counters: &Counters,
    control: &Control,
) -> Result<(), String> {
    let mut backoff = Policy::forever(first_backoff).start();
    loop {
        match sink.write_changes(b) {
            Ok(()) => return Ok(()),
            Err(
                e @ PluginError::Failed {
                    retryable: true, ..
                },
            ) => {
                if control.reason() == crate::pipeline::StopReason::Error {
                    return Err(format!("flow `{flow}`: {e}"));
                }
                let wait = backoff.next_wait().expect("retries without limit");
                Counters::add(&counters.retries, 1);
                tracing::warn!(flow, "writing changes failed: {e}; retrying in {wait:?}");
                std::thread::sleep(wait);
            }
            Err(e) => return Err(format!("flow `{flow}`: writing changes failed: {e}")),
        }
    }
}

/// Stores the acknowledged position on every interval (and changes nothing when it has not
/// moved); it only reads the shared progress, so a slow sink never delays it.
fn checkpointer(
    path: &Path,
    interval: Duration,
    progress: Arc<Mutex<Progress>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut stored: Option<Position> = None;
    let mut last = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        let at = progress.lock().expect("progress").acked.clone();
        if stored.as_ref() == Some(&at) {
            continue;
        }
        let st = StreamState {
            position: at.clone(),
            snapshot_done: true,
        };
        match state::save(path, &st) {
            Ok(()) => stored = Some(at),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Asks the server where its log is, once a second, for lag.
fn monitor(
    source: Arc<SourceHandle>,
    progress: Arc<Mutex<Progress>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut last: Option<Instant> = None;
    while !done.load(Ordering::SeqCst) {
        if last.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        last = Some(Instant::now());
        if let Ok(h) = source.stream_head() {
            progress.lock().expect("progress").head = Some(h.position);
        }
    }
}
