//! Running a job: readers -> batcher -> writers, each stage a set of threads joined by bounded
//! channels, so memory stays bounded and a slow sink slows the readers instead of filling memory.
//!
//! ```text
//! split queue -> reader x parallelism -> [chunks] -> batcher -> [batches] -> writer x sink.parallelism
//! ```
//!
//! The stages: `reader` (a split at a time, through `resume` when its connection is lost, and
//! the reader's transforms), the batcher stage (`batcher`, or the grouping or ordered batcher of
//! the flow's mode), `writer` (one sink instance each, retrying and bisecting through `write` and
//! `sinkcheck`, failed rows into `deadletter`), and `checkpointer`; `acks` tracks which rows are
//! behind us and `shared` holds what every stage sees. What flows between them is in `work`.
//!
//! How rows are delivered is one [`mode::Mode`], chosen once when the flow starts from its
//! settings: `plain`, `encoded` (pass-through), `grouped` (by relationship endpoints) or
//! `ordered` (progress in the target); each is a file of `delivery` with its batching and its
//! writing.
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
mod checkpointer;
mod control;
mod deadletter;
mod delivery;
mod mode;
mod reader;
mod resume;
mod seams;
mod settings;
mod shared;
mod sinkcheck;
mod work;
mod write;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use etlhost_plugin_sdk::Split;

use crate::stats::{Counters, Status, Summary};
use crate::transform::Transforms;
use delivery::{grouped, ordered};
use mode::Mode;
use shared::{Shared, Tick};
use work::{Chunk, Limits, Work};

pub use control::{Control, StopReason};
pub use deadletter::DeadLetter;
pub use reader::describe as describe_split;
pub use seams::{SinkSide, SourceSide, SplitRead};
pub use settings::{CheckpointSettings, Endpoints, ProgressSettings, Settings};

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
    let (tick_tx, tick_rx) = crossbeam_channel::bounded(64);
    let dead_letter = DeadLetter::new(
        settings.dead_letter.clone(),
        &settings.job,
        settings.flow.as_deref(),
        start,
    );
    let mode = Mode::of(&settings, transforms.as_deref(), sinks.len());
    let checkpoint_tx = settings.checkpoint.as_ref().map(|_| tick_tx.clone());
    let shared = Arc::new(Shared::new(
        settings,
        mode,
        control,
        counters,
        transforms,
        dead_letter,
        checkpoint_tx,
    ));
    std::thread::scope(|scope| {
        let mut stages = Vec::new();
        if let Some(cfg) = &shared.settings.checkpoint {
            let (shared, rx) = (&*shared, tick_rx.clone());
            let run = Box::new(move || checkpointer::run(cfg, rx, shared));
            // Not joined with the others: it stops on the tick sent once they are done.
            spawn_stage(scope, "checkpointer".into(), run);
        }
        let chunks = spawn_readers(scope, &source, splits, readers, &shared, &mut stages);
        spawn_batcher_and_writers(scope, chunks, sinks, &shared, &mut stages);
        for s in stages {
            if s.join().is_err() {
                shared.fail("a pipeline thread panicked".into());
            }
        }
        // Every row is written or failed: the checkpointer records the final state and stops.
        let _ = tick_tx.send(Tick::Stop);
    });
    summary(&shared, start)
}

type Stages<'scope> = Vec<ScopedJoinHandle<'scope, ()>>;

/// The readers, taking splits from one queue; returns what they hand on.
fn spawn_readers<'scope>(
    scope: &'scope Scope<'scope, '_>,
    source: &Arc<dyn SourceSide>,
    splits: Vec<Split>,
    readers: usize,
    shared: &Arc<Shared>,
    stages: &mut Stages<'scope>,
) -> Receiver<Chunk> {
    let (split_tx, split_rx) = crossbeam_channel::unbounded();
    for s in splits {
        split_tx.send(s).expect("receiver alive");
    }
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded(readers * 2);
    for i in 0..readers {
        let (source, splits, out, shared) = (
            source.clone(),
            split_rx.clone(),
            chunk_tx.clone(),
            shared.clone(),
        );
        stages.push(spawn_stage(
            scope,
            format!("reader-{i}"),
            Box::new(move || reader::run(i, &*source, splits, out, &shared)),
        ));
    }
    chunk_rx
}

/// The batcher of the flow's mode and one writer per sink instance.
fn spawn_batcher_and_writers<'scope>(
    scope: &'scope Scope<'scope, '_>,
    chunks: Receiver<Chunk>,
    sinks: Vec<Box<dyn SinkSide>>,
    shared: &Arc<Shared>,
    stages: &mut Stages<'scope>,
) {
    let writers = sinks.len();
    // In the ordered mode each writer has its own queue (a split's batches go to one writer, in
    // order); otherwise all writers take from one.
    let queues = if shared.mode.ordered() { writers } else { 1 };
    let (batch_txs, batch_rxs): (Vec<Sender<Work>>, Vec<Receiver<Work>>) = (0..queues)
        .map(|_| crossbeam_channel::bounded::<Work>(writers * 2))
        .unzip();
    let limits = Limits {
        rows: shared.settings.max_batch_rows.max(1),
        bytes: shared.settings.max_batch_bytes,
        timeout: shared.settings.batch_timeout,
    };
    let s = shared.clone();
    let batch = move || match (s.mode, &s.settings.endpoints) {
        (Mode::Ordered { .. }, _) => ordered::run(chunks, batch_txs, limits, &s),
        (Mode::Grouped, Some(e)) => {
            let tx = batch_txs.into_iter().next().expect("one queue");
            grouped::run(chunks, tx, limits, e, writers, &s)
        }
        _ => {
            let tx = batch_txs.into_iter().next().expect("one queue");
            batcher::run(chunks, tx, limits)
        }
    };
    stages.push(spawn_stage(scope, "batcher".into(), Box::new(batch)));
    for (i, sink) in sinks.into_iter().enumerate() {
        let batches = batch_rxs[i % batch_rxs.len()].clone();
        let shared = shared.clone();
        stages.push(spawn_stage(
            scope,
            format!("writer-{i}"),
            Box::new(move || writer::run(sink, batches, &shared)),
        ));
    }
}

/// How the run ended, once every stage has.
fn summary(shared: &Shared, start: SystemTime) -> Summary {
    if shared.given_back() > 0 {
        tracing::warn!(
            rows = shared.given_back(),
            "rows read but not written, since the sink is failing: not counted as read, and read \
             again by the next run"
        );
    }
    let c = &shared.counters;
    let mut error = shared.error();
    let status = match shared.control.reason() {
        StopReason::Interrupted => Status::Interrupted,
        _ if error.is_some() => Status::Failed,
        _ if shared.too_many_failed() => {
            error = Some(format!(
                "{} rows failed, more than max_failed_rows ({}); they are in {}",
                c.failed.load(std::sync::atomic::Ordering::SeqCst),
                shared.settings.max_failed_rows,
                shared.settings.dead_letter.display()
            ));
            Status::Failed
        }
        _ => Status::Succeeded,
    };
    if status == Status::Interrupted && error.is_none() {
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

fn spawn_stage<'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: String,
    f: Box<dyn FnOnce() + Send + 'scope>,
) -> ScopedJoinHandle<'scope, ()> {
    // Stage threads log inside the caller's span (a flow's name in a job of several).
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, move || span.in_scope(f))
        .expect("cannot spawn a pipeline thread")
}
