//! Running a job: readers -> batcher -> writers, each stage a set of threads joined by bounded
//! channels, so memory stays bounded and a slow sink slows the readers instead of filling memory.
//!
//! ```text
//! split queue -> reader x parallelism -> [chunks] -> batcher -> [batches] -> writer x sink.parallelism
//! ```
//!
//! # No row is left behind
//!
//! Stopping (an error in a split, too many failed rows, Ctrl-C) only ever stops *reading*: readers
//! stop taking splits and return. Nothing downstream is told to stop. The batcher's loop ends only
//! when every reader has returned and so dropped its sender; the code after that loop flushes the
//! partial batch; the writers' loops end only when the batcher has dropped its sender and the
//! channel is empty; and [`execute`] returns only after joining every thread. Each row a reader
//! counted as read is therefore handed to a writer, which either writes it or, after retries and
//! bisection, records it in the dead-letter file and counts it as failed. The final statistics check
//! `read + added = written + failed + filtered` (added: extra rows from transforms); a mismatch is
//! an internal error, never success.
//!
//! Plugin calls are blocking (the ABI is synchronous), so the stages are plain threads, and tests
//! drive this same code with in-process sources and sinks through [`SourceSide`] and [`SinkSide`].

mod acks;
mod batcher;
mod deadletter;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use etlhost_plugin_sdk::{Batch, Split};

use crate::checkpoint::{self, Checkpoint};
use crate::plugin::{PluginError, ReaderHandle, SinkHandle, SourceHandle};
use crate::spec::{FlowRef, WriteMode};
use crate::stats::{Counters, Summary};
use crate::transform::worker::{Applied, FINISH};
use crate::transform::{Outcome, Transforms};

pub use deadletter::DeadLetter;
pub use reader::describe as describe_split;

/// What the readers read from: a source plugin, or an in-process fake in tests.
pub trait SourceSide: Send + Sync {
    fn open_split(&self, split: &Split) -> Result<Box<dyn SplitRead>, PluginError>;
}

pub trait SplitRead: Send {
    fn next_batch(&mut self) -> Result<Option<Batch>, PluginError>;
}

/// What a writer writes to: one sink plugin instance, or an in-process fake in tests.
pub trait SinkSide: Send {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError>;
    fn finish(&mut self) -> Result<(), PluginError>;
}

impl SourceSide for Arc<SourceHandle> {
    fn open_split(&self, split: &Split) -> Result<Box<dyn SplitRead>, PluginError> {
        Ok(Box::new(SourceHandle::open_split(self, split)?))
    }
}

impl SplitRead for ReaderHandle {
    fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
        ReaderHandle::next_batch(self)
    }
}

impl SinkSide for SinkHandle {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError> {
        SinkHandle::write_batch(self, batch)
    }
    fn finish(&mut self) -> Result<(), PluginError> {
        SinkHandle::finish(self)
    }
}

/// The host-owned knobs of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job: String,
    /// The flow's name in a job of several flows.
    pub flow: Option<String>,
    pub readers: usize,
    pub max_batch_rows: usize,
    pub max_batch_bytes: Option<usize>,
    pub batch_timeout: Option<Duration>,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub max_failed_rows: u64,
    pub dead_letter: PathBuf,
    /// Where and how often progress is recorded; `None` records nothing.
    pub checkpoint: Option<CheckpointSettings>,
}

#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub path: PathBuf,
    pub interval: Duration,
    /// What earlier runs of this job completed; this run's progress is added to it.
    pub base: Checkpoint,
}

impl Settings {
    pub fn from_spec(flow: FlowRef<'_>, dead_letter: PathBuf) -> Self {
        let spec = flow.flow;
        let s = &spec.sink;
        Settings {
            job: flow.spec.job.name.clone(),
            flow: flow.spec.multi_flow.then(|| spec.name.clone()),
            readers: spec.parallelism,
            max_batch_rows: match s.write_mode {
                WriteMode::Batch => s.max_batch_size,
                WriteMode::OneByOne => 1,
            },
            max_batch_bytes: s.max_batch_bytes,
            batch_timeout: s.batch_timeout.map(|t| t.0),
            max_retries: s.max_retries,
            retry_backoff: s.retry_backoff.0,
            max_failed_rows: spec.max_failed_rows,
            dead_letter,
            checkpoint: None,
        }
    }
}

/// Why reading stopped early; the first reason wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    None = 0,
    /// A split could not be read, or the sink could not finish.
    Error = 1,
    /// More rows failed than `max_failed_rows` allows.
    TooManyFailedRows = 2,
    /// Ctrl-C or SIGTERM.
    Interrupted = 3,
}

/// Lets a signal handler ask a running job to stop reading; what was read is still written.
#[derive(Debug, Default)]
pub struct Control {
    reason: AtomicU8,
}

impl Control {
    pub fn stop(&self, why: StopReason) {
        let _ = self
            .reason
            .compare_exchange(0, why as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::SeqCst) {
            0 => StopReason::None,
            1 => StopReason::Error,
            2 => StopReason::TooManyFailedRows,
            _ => StopReason::Interrupted,
        }
    }

    pub fn stopping(&self) -> bool {
        self.reason() != StopReason::None
    }
}

/// State every stage sees.
pub struct Shared {
    pub counters: Arc<Counters>,
    pub settings: Settings,
    pub control: Arc<Control>,
    pub dead_letter: DeadLetter,
    acks: acks::Acks,
    /// The flow's transforms; each reader runs its own chain of instances.
    transforms: Option<Arc<Transforms>>,
    /// Input rows a transform turned into several rows (or rows and failures), by (split, row):
    /// how many are still to be acknowledged before the input row is.
    copies: Mutex<HashMap<(u32, u64), usize>>,
    has_copies: AtomicBool,
    /// Wakes the checkpointer when a split completes.
    checkpoint_tx: Option<crossbeam_channel::Sender<Tick>>,
    error: Mutex<Option<String>>,
}

enum Tick {
    SplitComplete,
    Stop,
}

impl Shared {
    /// One output (or outcome) of input row `seq` of `split` is behind us. Returns whether that
    /// was the last, so that the input row can be acknowledged.
    fn release(&self, split: u32, seq: u64) -> bool {
        if seq == FINISH {
            return false;
        }
        if !self.has_copies.load(Ordering::Acquire) {
            return true;
        }
        let mut copies = self.copies.lock().expect("copies poisoned");
        match copies.get_mut(&(split, seq)) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                copies.remove(&(split, seq));
                true
            }
            None => true,
        }
    }

    /// Books what a reader's transforms did to `inputs` rows of `split` (0: what `finish` emitted):
    /// rows added, dropped and failed.
    fn transformed(&self, split: u32, inputs: u64, applied: &Applied) {
        let outputs = applied.origins.len() + applied.outcomes.len();
        // Rows emitted at `finish` come from no input row (readers never pass an empty chunk).
        if inputs == 0 {
            Counters::add(&self.counters.added, outputs);
        } else if outputs as u64 != inputs || applied.origins.windows(2).any(|w| w[0] >= w[1]) {
            let mut per: HashMap<u64, usize> = HashMap::new();
            let from_outcomes = applied.outcomes.iter().map(|o| match o {
                Outcome::Dropped { origin } | Outcome::Failed { origin, .. } => *origin,
            });
            for o in applied.origins.iter().copied().chain(from_outcomes) {
                *per.entry(o).or_default() += 1;
            }
            let mut copies = self.copies.lock().expect("copies poisoned");
            for (o, n) in per.into_iter().filter(|(_, n)| *n > 1) {
                Counters::add(&self.counters.added, n - 1);
                copies.insert((split, o), n);
                self.has_copies.store(true, Ordering::Release);
            }
        }
        for outcome in &applied.outcomes {
            let origin = match outcome {
                Outcome::Dropped { origin } => {
                    Counters::add(&self.counters.filtered, 1);
                    *origin
                }
                Outcome::Failed {
                    origin,
                    transform,
                    row,
                    reason,
                } => {
                    Counters::add(&self.counters.failed, 1);
                    let text = format!("transform {transform}: {reason}");
                    tracing::warn!(
                        split,
                        "a row failed in a transform and was dead-lettered: {text}"
                    );
                    if let Err(io) = self.dead_letter.record(
                        row,
                        &[0],
                        &[(split, *origin)],
                        &format!("transform {transform}"),
                        &text,
                    ) {
                        self.fail(format!(
                            "cannot write failed rows to the dead-letter file {}: {io}",
                            self.dead_letter.path().display()
                        ));
                    }
                    *origin
                }
            };
            if self.release(split, origin) && self.acks.ack(split, origin, origin + 1) {
                self.split_complete(split);
            }
        }
        if self.counters.failed.load(Ordering::SeqCst) > self.settings.max_failed_rows {
            self.control.stop(StopReason::TooManyFailedRows);
        }
    }

    /// A split is read and every row of it acknowledged.
    fn split_complete(&self, split: u32) {
        tracing::info!(split, "split complete");
        if let Some(tx) = &self.checkpoint_tx {
            let _ = tx.try_send(Tick::SplitComplete);
        }
    }

    /// Records the first error and stops reading.
    fn fail(&self, message: String) {
        tracing::error!("{message}");
        self.error
            .lock()
            .expect("error slot poisoned")
            .get_or_insert(message);
        self.control.stop(StopReason::Error);
    }
}

/// Why a job did not run to the end.
#[derive(Debug)]
pub enum RunError {
    /// The spec asks for something the source cannot do (found while planning).
    Config(crate::spec::SpecError),
    /// A plugin could not start (connection refused, bad credentials...).
    Start(String),
    /// The job ran and stopped early or with failed rows; the summary says how far it got.
    Failed(Box<Summary>),
    /// The books do not balance: a bug in etlhost, never to be reported as success.
    Internal(Box<Summary>),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Start(m) => f.write_str(m),
            RunError::Failed(s) => write!(
                f,
                "job {} {}: {}",
                s.job,
                s.status,
                s.error.as_deref().unwrap_or("")
            ),
            RunError::Internal(s) => write!(
                f,
                "internal error: rows read ({}) + added ({}) != written ({}) + failed ({}) + filtered ({})",
                s.read, s.added, s.written, s.failed, s.filtered
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs the stages over `splits` until every row read is written or failed.
pub fn execute(
    source: Arc<dyn SourceSide>,
    sinks: Vec<Box<dyn SinkSide>>,
    splits: Vec<Split>,
    settings: Settings,
    control: Arc<Control>,
    counters: Arc<Counters>,
    transforms: Option<Arc<Transforms>>,
) -> Summary {
    let start = SystemTime::now();
    let readers = settings.readers.max(1);
    assert_eq!(
        counters.per_reader.len(),
        readers,
        "one per-reader counter for each reader"
    );
    let writers = sinks.len();
    let (tick_tx, tick_rx) = crossbeam_channel::bounded(64);
    let shared = Arc::new(Shared {
        counters,
        dead_letter: DeadLetter::new(
            settings.dead_letter.clone(),
            &settings.job,
            settings.flow.as_deref(),
            start,
        ),
        acks: acks::Acks::default(),
        transforms,
        copies: Mutex::new(HashMap::new()),
        has_copies: AtomicBool::new(false),
        checkpoint_tx: settings.checkpoint.as_ref().map(|_| tick_tx.clone()),
        settings,
        control,
        error: Mutex::new(None),
    });

    let (split_tx, split_rx) = crossbeam_channel::unbounded();
    for s in splits {
        split_tx.send(s).expect("receiver alive");
    }
    drop(split_tx);
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded(readers * 2);
    let (batch_tx, batch_rx) = crossbeam_channel::bounded(writers * 2);

    std::thread::scope(|scope| {
        let spawn = |name: String, f| spawn_stage(scope, name, f);
        if let Some(cfg) = &shared.settings.checkpoint {
            let shared = &*shared;
            let rx = tick_rx.clone();
            spawn(
                "checkpointer".into(),
                Box::new(move || checkpointer(cfg, rx, shared)),
            );
        }
        let mut stages = Vec::new();
        for i in 0..readers {
            let (source, splits, out, shared) = (
                source.clone(),
                split_rx.clone(),
                chunk_tx.clone(),
                shared.clone(),
            );
            stages.push(spawn(
                format!("reader-{i}"),
                Box::new(move || reader::run(i, &*source, splits, out, &shared)),
            ));
        }
        drop(chunk_tx);
        let limits = batcher::Limits {
            rows: shared.settings.max_batch_rows.max(1),
            bytes: shared.settings.max_batch_bytes,
            timeout: shared.settings.batch_timeout,
        };
        stages.push(spawn(
            "batcher".into(),
            Box::new(move || batcher::run(chunk_rx, batch_tx, limits)),
        ));
        for (i, sink) in sinks.into_iter().enumerate() {
            let (batches, shared) = (batch_rx.clone(), shared.clone());
            stages.push(spawn(
                format!("writer-{i}"),
                Box::new(move || writer::run(sink, batches, &shared)),
            ));
        }
        drop(batch_rx);
        for s in stages {
            if s.join().is_err() {
                shared.fail("a pipeline thread panicked".into());
            }
        }
        // Every row is written or failed: the checkpointer records the final state and stops.
        let _ = tick_tx.send(Tick::Stop);
    });

    let c = &shared.counters;
    let failed = c.failed.load(Ordering::SeqCst);
    let mut error = shared.error.lock().expect("error slot poisoned").clone();
    let status = match shared.control.reason() {
        StopReason::Interrupted => "interrupted",
        _ if error.is_some() => "failed",
        _ if failed > shared.settings.max_failed_rows => {
            error = Some(format!(
                "{failed} rows failed, more than max_failed_rows ({}); they are in {}",
                shared.settings.max_failed_rows,
                shared.settings.dead_letter.display()
            ));
            "failed"
        }
        _ => "succeeded",
    };
    if status == "interrupted" && error.is_none() {
        error = Some("interrupted: stopped reading, wrote every row already read".into());
    }
    Summary::new(
        &shared.settings.job,
        shared.settings.flow.as_deref(),
        status,
        c,
        start,
        SystemTime::now(),
        error,
    )
}

fn spawn_stage<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: String,
    f: Box<dyn FnOnce() + Send + 'scope>,
) -> std::thread::ScopedJoinHandle<'scope, ()> {
    // Stage threads log inside the caller's span (a flow's name in a job of several).
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, move || span.in_scope(f))
        .expect("cannot spawn a pipeline thread")
}

/// Records progress on an interval and whenever a split completes, until told to stop. It only
/// reads the tracker's state, so a slow sink makes checkpoints less frequent, never late or fatal.
fn checkpointer(
    cfg: &CheckpointSettings,
    ticks: crossbeam_channel::Receiver<Tick>,
    shared: &Shared,
) {
    loop {
        let stop = matches!(
            ticks.recv_timeout(cfg.interval),
            Ok(Tick::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        let snap = shared.acks.snapshot();
        let mut cp = cfg.base.clone();
        cp.done.extend(snap.done);
        cp.watermarks.extend(snap.watermarks);
        let done = cp.done.clone();
        cp.watermarks.retain(|id, _| !done.contains(id));
        cp.updated = crate::stats::iso(SystemTime::now());
        if let Err(e) = checkpoint::save(&cfg.path, &cp) {
            // Losing a checkpoint costs re-reading on resume, never rows: the job goes on.
            tracing::warn!("cannot write checkpoint {}: {e}", cfg.path.display());
        }
        if stop {
            return;
        }
    }
}
