//! Following the change log: one reader thread ([`super::read`]), the dispatch loop that writes
//! each chunk with every flow of its table ([`super::write`]), a checkpointer that stores the
//! acknowledged position on every interval without waiting for a write, and a monitor that asks
//! the server where its log is (for lag).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Position, WriterRecord, WriterSlot};

use super::cascade::Cascades;
use super::metrics::Progress;
use super::replay::{key_text, Ids, Replay};
use super::state::{self, StreamState};
use super::store::Store;
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::Control;
use crate::plugin::{SinkHandle, SourceHandle};
use crate::spec::FlowRef;
use crate::stats::{Counters, Status};

use super::dead_letter::Failures;
use super::read::{read, Read};
use super::write::{write, Chunk, Record, Target};

/// Where the stream starts: its state, and the writers' records the target holds (none with a
/// local file).
pub struct Started {
    pub state: StreamState,
    pub writers: Vec<WriterRecord>,
}

/// Runs until stopped (Ctrl-C, SIGTERM) or a permanent error; the status, error and the stream's
/// statistics for the summary.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    job: &Job,
    flows: &[FlowRef<'_>],
    source: Arc<SourceHandle>,
    mut cascades: Cascades,
    start: Started,
    store: &Store,
    progress: Arc<Mutex<Progress>>,
    control: Arc<Control>,
    counters: &Arc<Counters>,
    opts: &RunOptions,
) -> (Status, Option<String>, serde_json::Value) {
    let Started {
        state: start,
        writers,
    } = start;
    let resumes_at = match store {
        Store::Local(_) => Some(&start.position),
        Store::Target(_) => None,
    };
    let failures = Failures::open(job, resumes_at, opts.fresh).map(Arc::new);
    let mut targets = Vec::new();
    for flow in flows {
        match failures
            .clone()
            .and_then(|f| open_target(job, *flow, &f, store, &writers))
        {
            Ok(t) => targets.push(t),
            Err(e) => {
                let json = progress.lock().expect("progress").json();
                return (Status::Failed, Some(e), json);
            }
        }
    }
    let tables: Vec<String> = targets.iter().map(|t| t.table.clone()).collect();
    progress.lock().expect("progress").following = true;
    let (tx, rx) = crossbeam_channel::bounded::<Result<Read, String>>(4);
    let (spent_tx, spent) = crossbeam_channel::bounded::<Read>(4);
    let interval = flows[0].spec.job.checkpoint.interval.0;
    let report_every = flows[0].spec.job.progress_interval.0;
    let outcome = std::thread::scope(|scope| {
        let reader_control = control.clone();
        let from = start.position.clone();
        let src = source.clone();
        let chunk = flows[0].spec.job.stream().max_transaction_changes;
        scope.spawn(move || read(src, tables, from, chunk, tx, spent, reader_control));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Store::Local(path) = store {
            let (progress, done) = (progress.clone(), done.clone());
            scope.spawn(move || checkpointer(path, interval, progress, done));
        }
        {
            let (progress, done, src) = (progress.clone(), done.clone(), source.clone());
            scope.spawn(move || monitor(src, progress, done));
        }
        let mut applier = Applier {
            targets: &mut targets,
            cascades: &mut cascades,
            progress: &progress,
            counters,
            control: &control,
            ids: Ids::default(),
            spent: spent_tx,
        };
        // Chunks waiting together are written together, up to a sink batch: a stream that keeps
        // up gets one chunk per source transaction, and a transaction per write costs the graph
        // more than its rows.
        let up_to = flows.iter().map(|f| f.flow.sink.max_batch_size).max();
        let outcome = applier.dispatch(&rx, report_every, up_to.unwrap_or(1));
        if outcome.is_err() {
            control.stop(crate::pipeline::StopReason::Error);
        }
        let drained = applier.drain(&rx, outcome.is_ok());
        done.store(true, Ordering::SeqCst);
        drained.and(outcome)
    });
    let p = progress.lock().expect("progress");
    let st = StreamState {
        position: p.acked.clone(),
        snapshot_done: true,
    };
    // In the target, every write recorded its own position; the lease's release stores it too.
    let saved = match store {
        Store::Local(path) => state::save(path, &st),
        Store::Target(_) => Ok(()),
    };
    tracing::info!(position = %st.position, cascaded = cascades.cascaded, "stream stopped; position recorded");
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

/// The reader stops at the next batch; what it already sent is written (or dropped after a
/// failure, `write` false: it is after the recorded position and read again next time).
impl Applier<'_> {
    fn drain(
        &mut self,
        rx: &crossbeam_channel::Receiver<Result<Read, String>>,
        write: bool,
    ) -> Result<(), String> {
        while let Ok(msg) = rx.recv() {
            if let (true, Ok(r)) = (write, msg) {
                self.apply(&r)?;
            }
        }
        Ok(())
    }
}

/// Appends to `r` the chunks of its table already waiting (their changes, and their bytes after
/// its bytes), in order, while it holds fewer than `up_to` changes; the first other message is
/// handed back, for the next turn.
fn coalesce(
    r: &mut Read,
    rx: &crossbeam_channel::Receiver<Result<Read, String>>,
    up_to: usize,
) -> Option<Result<Read, String>> {
    let b = &mut r.batch;
    while b.changes.len() < up_to {
        match rx.try_recv() {
            Ok(Ok(next))
                if next.batch.table == b.table
                    && next.batch.schema == b.schema
                    && next.batch.key == b.key
                    && next.encoded.schema() == r.encoded.schema() =>
            {
                r.encoded.extend(&next.encoded, 0..next.encoded.rows());
                b.changes.extend(next.batch.changes)
            }
            Ok(other) => return Some(other),
            Err(_) => return None,
        }
    }
    None
}

/// What writes the chunks: every flow's writers, the cascades, the shared progress, and the ids
/// of the changes read (numbered across chunks, so one counter for the dispatch and the drain).
struct Applier<'a> {
    targets: &'a mut [Target],
    cascades: &'a mut Cascades,
    progress: &'a Mutex<Progress>,
    counters: &'a Counters,
    control: &'a Control,
    ids: Ids,
    /// Chunks written, back to the reader, which frees them.
    spent: crossbeam_channel::Sender<Read>,
}

fn open_target(
    job: &Job,
    flow: FlowRef<'_>,
    failures: &Arc<Failures>,
    store: &Store,
    writers: &[WriterRecord],
) -> Result<Target, String> {
    let f = flow.flow;
    let plugin = job.plugins[flow.index].sink.clone();
    let n = f.sink.parallelism.max(1);
    let sinks = (0..n)
        .map(|_| SinkHandle::open(plugin.clone(), &f.sink.options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("flow `{}`: cannot start sink: {e}", f.name))?;
    let table = super::cascade::table_of(&flow);
    let marks = match store {
        Store::Local(_) => None,
        Store::Target(lease) => {
            // Each writer goes on from its record, as the takeover left it.
            let record = |slot: usize| {
                writers
                    .iter()
                    .find(|w| w.slot == slot_of(&f.name, n, slot))
                    .map_or_else(Record::default, |w| Record {
                        seq: w.seq,
                        last: w.last.clone(),
                    })
            };
            Some((lease.clone(), (0..n).map(record).collect()))
        }
    };
    Ok(Target {
        name: f.name.clone(),
        table,
        sinks,
        retry_backoff: f.sink.retry_backoff.0,
        failures: failures.clone(),
        marks,
        replay: Replay::new(&f.name, writers),
    })
}

/// Writer `slot` of a flow of `writers` writers, as its record names it.
pub(super) fn slot_of(flow: &str, writers: usize, slot: usize) -> WriterSlot {
    WriterSlot {
        flow: flow.to_string(),
        writers: writers as u32,
        slot: slot as u32,
    }
}
impl Applier<'_> {
    fn dispatch(
        &mut self,
        rx: &crossbeam_channel::Receiver<Result<Read, String>>,
        report_every: Duration,
        up_to: usize,
    ) -> Result<(), String> {
        let mut last_report = Instant::now();
        let mut pending = None;
        loop {
            {
                // A turn of this loop, changes or none, is what `/healthz` calls alive: an idle
                // stream is healthy, one stuck in a write is not.
                let mut p = self.progress.lock().expect("progress");
                p.beat();
                if last_report.elapsed() >= report_every {
                    last_report = Instant::now();
                    tracing::info!("{}", p.line());
                }
            }
            let msg = match pending.take() {
                Some(m) => m,
                None => match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
            };
            let mut r = msg?;
            pending = coalesce(&mut r, rx, up_to);
            self.apply(&r)?;
            // A reader that is waiting to hand on a chunk takes none back: freed here then.
            let _ = self.spent.try_send(r);
        }
    }

    /// Writes one chunk with every flow of its table, then moves the acknowledged position.
    fn apply(&mut self, r: &Read) -> Result<(), String> {
        let (b, encoded) = (&r.batch, &r.encoded);
        let (targets, cascades) = (&mut *self.targets, &mut *self.cascades);
        let (progress, counters, control) = (self.progress, self.counters, self.control);
        let rows = b
            .changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Mark)
            .count();
        // Dead-lettered changes (by any flow of the table), so that read = written + failed.
        let mut failed = Vec::new();
        // A batch without rows still settles a cascade that waited for it (see `derive`).
        let of_chunk = self.ids.of(b);
        let resume = progress.lock().expect("progress").acked.clone();
        if rows > 0 || cascades.deferred.is_some() {
            // Keys of this chunk's table that a TRUNCATE or a cascade changed (derived again
            // from the graph as it is now, when the chunk is read again after a restart): their
            // later changes in the chunk are written again rather than skipped, or the derived
            // change would undo what they wrote.
            let mut rederived: HashSet<String> = HashSet::new();
            let mut write_all = |part: &ChangeBatch, at: Option<usize>| -> Result<(), String> {
                let (derived, sliced);
                if at.is_none() && part.table == b.table {
                    rederived.extend(part.changes.iter().map(|c| key_text(part, c)));
                }
                let chunk = Chunk {
                    ids: match at {
                        Some(i) => &of_chunk[i..i + part.changes.len()],
                        None => {
                            derived = vec![None; part.changes.len()];
                            &derived
                        }
                    },
                    resume: &resume,
                    rederived: &rederived,
                    // A part read from the log is changes `at..` of the chunk, as they came.
                    encoded: match at {
                        Some(0) if part.changes.len() == encoded.rows() => Some(encoded),
                        Some(i) => {
                            sliced = encoded.slice(i..i + part.changes.len());
                            Some(&sliced)
                        }
                        None => None,
                    },
                };
                for t in targets.iter_mut().filter(|t| t.table == part.table) {
                    let refused = write(t, part, &chunk, counters, control)?;
                    if let Some(at) = at {
                        failed.extend(refused.into_iter().map(|i| at + i));
                    }
                }
                Ok(())
            };
            super::derive::apply(b, cascades, &mut write_all)?;
            failed.sort_unstable();
            failed.dedup();
            // Counted once settled: a chunk whose write stops the stream is read again after it, so
            // the statistics balance (read = written + failed) at any stop.
            Counters::add(&counters.read, rows);
            Counters::add(&counters.written, rows - failed.len());
            Counters::add(&counters.failed, failed.len());
            Counters::add(&counters.batches, usize::from(rows > 0));
        }
        let mut p = progress.lock().expect("progress");
        p.cascaded = cascades.cascaded;
        if cascades.deferred.is_some() {
            // A delete whose cascade waits for the next part of its transaction: the position stays
            // before it, so a restart reads it again rather than lose the cascade.
            let mut held = b.clone();
            if let Some(c) = held.changes.last_mut() {
                c.last = false;
            }
            p.count(&held, &failed);
        } else {
            p.count(b, &failed);
        }
        Ok(())
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
            Ok(()) => {
                progress.lock().expect("progress").stored = Some(at.clone());
                stored = Some(at)
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Asks the server where its log is, once a second, for lag; and tells the source what is
/// stored, so that it lets its server forget only that (a PostgreSQL slot's confirmed position).
fn monitor(
    source: Arc<SourceHandle>,
    progress: Arc<Mutex<Progress>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut last: Option<Instant> = None;
    let mut confirmed: Option<Position> = None;
    while !done.load(Ordering::SeqCst) {
        if last.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        last = Some(Instant::now());
        if let Ok(h) = source.stream_head() {
            progress.lock().expect("progress").head = Some(h.position);
        }
        let stored = progress.lock().expect("progress").stored.clone();
        if let Some(at) = stored.filter(|at| confirmed.as_ref() != Some(at)) {
            // A source built before the request refuses it: it has nothing to confirm.
            if source.stream_ack(&at).is_ok() {
                confirmed = Some(at);
            }
        }
    }
}
