//! State every stage of a running flow sees: counters, settings, the stop switch, the
//! dead-letter file and the acknowledgement tracker, and the one place rows are failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::Batch;

use super::acks::Acks;
use super::control::{Control, StopReason};
use super::deadletter::DeadLetter;
use super::mode::Mode;
use super::settings::Settings;
use super::work::Work;
use crate::stats::Counters;
use crate::transform::{Origin, Outcome, Transforms};

pub struct Shared {
    pub counters: Arc<Counters>,
    pub settings: Settings,
    /// The flow's delivery mode, chosen when it started.
    pub mode: Mode,
    pub control: Arc<Control>,
    pub dead_letter: DeadLetter,
    pub acks: Acks,
    /// The flow's transforms; each reader runs its own chain of instances.
    pub transforms: Option<Arc<Transforms>>,
    /// Input rows a transform turned into several rows (or rows and failures), by (split, row):
    /// how many are still to be acknowledged before the input row is.
    copies: Mutex<HashMap<(u32, Origin), usize>>,
    has_copies: AtomicBool,
    /// Wakes the checkpointer when a split completes.
    checkpoint_tx: Option<crossbeam_channel::Sender<Tick>>,
    error: Mutex<Option<String>>,
    /// Set once a writer concluded that the sink fails whatever it is given (see
    /// `sinkcheck::SinkCheck`): writers then give their rows back instead of writing them.
    sink_failed: AtomicBool,
    given_back: AtomicU64,
    /// Pass-through buffers the writers are done with, for the readers to fill again: without
    /// them, buffers made on a reader's thread and freed on a writer's left the allocator holding
    /// more memory the longer a job ran (peak RSS 1.2x for 10x the rows).
    spares: (
        crossbeam_channel::Sender<Encoded>,
        crossbeam_channel::Receiver<Encoded>,
    ),
}

/// At most this many spare buffers wait: more than the pipeline's queues hold at once.
const SPARES: usize = 64;

pub enum Tick {
    SplitComplete,
    Stop,
}

impl Shared {
    pub fn new(
        settings: Settings,
        mode: Mode,
        control: Arc<Control>,
        counters: Arc<Counters>,
        transforms: Option<Arc<Transforms>>,
        dead_letter: DeadLetter,
        checkpoint_tx: Option<crossbeam_channel::Sender<Tick>>,
    ) -> Self {
        Shared {
            counters,
            settings,
            mode,
            control,
            dead_letter,
            acks: Acks::default(),
            transforms,
            copies: Mutex::new(HashMap::new()),
            has_copies: AtomicBool::new(false),
            checkpoint_tx,
            error: Mutex::new(None),
            sink_failed: AtomicBool::new(false),
            given_back: AtomicU64::new(0),
            spares: crossbeam_channel::bounded(SPARES),
        }
    }

    /// A buffer to read the next pass-through batch into, if a writer gave one back.
    pub fn spare(&self) -> Option<Encoded> {
        self.spares.1.try_recv().ok()
    }

    /// A written (or failed) batch's buffer, for [`Shared::spare`].
    pub fn recycle(&self, work: Work) {
        if let Some(e) = work.encoded {
            // Full: more buffers than the queues hold came back; this one is freed.
            let _ = self.spares.0.try_send(e);
        }
    }

    /// One output (or outcome) of an input row of `split` is behind us. Returns the input row's
    /// number when that was its last, so that the row can be acknowledged.
    pub fn release(&self, split: u32, origin: Origin) -> Option<u64> {
        let Origin::Row(seq) = origin else {
            return None;
        };
        if !self.has_copies.load(Ordering::Acquire) {
            return Some(seq);
        }
        let mut copies = self.copies.lock().expect("copies poisoned");
        match copies.get_mut(&(split, origin)) {
            Some(n) if *n > 1 => {
                *n -= 1;
                None
            }
            Some(_) => {
                copies.remove(&(split, origin));
                Some(seq)
            }
            None => Some(seq),
        }
    }

    /// Acknowledges rows `[start, end)` of `split` to the progress tracker.
    pub fn ack(&self, split: u32, start: u64, end: u64) {
        if self.acks.ack(split, start, end) {
            self.split_complete(split);
        }
    }

    /// Books what a reader's transforms did to `inputs` rows of `split` (0: what `finish` emitted):
    /// rows added, dropped and failed.
    pub fn transformed(&self, split: u32, inputs: u64, origins: &[Origin], outcomes: &[Outcome]) {
        let outputs = origins.len() + outcomes.len();
        // Rows emitted at `finish` come from no input row (readers never pass an empty chunk).
        if inputs == 0 {
            Counters::add(&self.counters.added, outputs);
        } else if outputs as u64 != inputs || origins.windows(2).any(|w| w[0] >= w[1]) {
            let mut per: HashMap<Origin, usize> = HashMap::new();
            let from_outcomes = outcomes.iter().map(|o| match o {
                Outcome::Dropped { origin } | Outcome::Failed { origin, .. } => *origin,
            });
            for o in origins.iter().copied().chain(from_outcomes) {
                *per.entry(o).or_default() += 1;
            }
            let mut copies = self.copies.lock().expect("copies poisoned");
            for (o, n) in per.into_iter().filter(|(_, n)| *n > 1) {
                Counters::add(&self.counters.added, n - 1);
                copies.insert((split, o), n);
                self.has_copies.store(true, Ordering::Release);
            }
        }
        for outcome in outcomes {
            let (origin, kept) = match outcome {
                Outcome::Dropped { origin } => {
                    Counters::add(&self.counters.filtered, 1);
                    (*origin, true)
                }
                Outcome::Failed {
                    origin,
                    transform,
                    row,
                    reason,
                } => {
                    let stage = format!("transform {transform}");
                    let text = format!("{stage}: {reason}");
                    (
                        *origin,
                        self.fail_rows(row, &[0], &[(split, *origin)], &stage, &text),
                    )
                }
            };
            if let Some(seq) = self.release(split, origin).filter(|_| kept) {
                self.ack(split, seq, seq + 1);
            }
        }
    }

    /// Rows `rows` of `batch` (from `origins`, per row) failed in `stage` with `error`: they are
    /// counted as failed and kept in the dead-letter file, and past `max_failed_rows` reading
    /// stops. Returns whether they were kept; if the file cannot be written the job fails, since
    /// the rows must not pass as kept (the caller then does not acknowledge them).
    pub fn fail_rows(
        &self,
        batch: &Batch,
        rows: &[usize],
        origins: &[(u32, Origin)],
        stage: &str,
        error: &str,
    ) -> bool {
        let n = rows.len();
        Counters::add(&self.counters.failed, n);
        let kept = match self.dead_letter.record(batch, rows, origins, stage, error) {
            Ok(()) => {
                tracing::warn!(
                    rows = n,
                    stage,
                    "rows failed and were dead-lettered: {error}"
                );
                true
            }
            Err(io) => {
                self.fail(format!(
                    "cannot write {n} failed rows to the dead-letter file {}: {io}",
                    self.dead_letter.path().display()
                ));
                false
            }
        };
        if self.too_many_failed() {
            self.control.stop(StopReason::TooManyFailedRows);
        }
        kept
    }

    /// More rows failed than the flow's `max_failed_rows` allows.
    pub fn too_many_failed(&self) -> bool {
        self.counters.failed.load(Ordering::SeqCst) > self.settings.max_failed_rows
    }

    /// A split is read and every row of it acknowledged.
    pub fn split_complete(&self, split: u32) {
        tracing::info!(split, "split complete");
        if let Some(tx) = &self.checkpoint_tx {
            let _ = tx.try_send(Tick::SplitComplete);
        }
    }

    /// Records the first error and stops reading.
    pub fn fail(&self, message: String) {
        tracing::error!("{message}");
        self.error
            .lock()
            .expect("error slot poisoned")
            .get_or_insert(message);
        self.control.stop(StopReason::Error);
    }

    /// The sink failed rows one by one with the same `error` and none of their batch could be
    /// written: the job fails as a sink error, and what is not written yet is given back.
    pub fn sink_failing(&self, rows: usize, error: &str) {
        self.sink_failed.store(true, Ordering::SeqCst);
        self.fail(format!(
            "the sink is failing, not the rows: {rows} rows written one by one all failed with \
             the same error, and no part of their batch could be written: {error}"
        ));
    }

    /// Whether a writer concluded that the sink is failing (see [`Shared::sink_failing`]).
    pub fn sink_failed(&self) -> bool {
        self.sink_failed.load(Ordering::SeqCst)
    }

    /// Rows (from `origins`) that are neither written nor failed, because the sink is failing:
    /// they are taken off the counts they were added to (`read`, or `added` for a transform's
    /// extra rows), so that the statistics still balance, and never acknowledged, so that a
    /// resumed run reads them again. Unlike failed rows they are not kept in the dead-letter
    /// file: nothing is wrong with them, and the sink is what a rerun needs fixed.
    pub fn give_back(&self, origins: impl IntoIterator<Item = (u32, Origin)>) {
        let (mut read, mut added) = (0u64, 0u64);
        for (split, origin) in origins {
            // An input row is given back with the last of its outputs; the others were `added`.
            match self.release(split, origin) {
                Some(_) => read += 1,
                None => added += 1,
            }
        }
        self.counters.read.fetch_sub(read, Ordering::Relaxed);
        self.counters.added.fetch_sub(added, Ordering::Relaxed);
        // Told once, at the end (see `given_back`): a line per batch would be the flood of
        // warnings a failing sink is stopped early to avoid.
        self.given_back.fetch_add(read + added, Ordering::Relaxed);
    }

    /// How many rows [`Shared::give_back`] took back.
    pub fn given_back(&self) -> u64 {
        self.given_back.load(Ordering::Relaxed)
    }

    /// The first error recorded, if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("error slot poisoned").clone()
    }
}
