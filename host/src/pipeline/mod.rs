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
mod checkpointer;
mod control;
mod deadletter;
mod grouping;
mod ordered;
mod reader;
mod resume;
mod seams;
mod settings;
mod shared;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use etlhost_plugin_sdk::Split;

use crate::stats::{Counters, Status, Summary};
use crate::transform::Transforms;
use shared::{Shared, Tick};

pub use control::{Control, StopReason};
pub use deadletter::DeadLetter;
pub use grouping::Endpoints;
pub use ordered::ProgressSettings;
pub use reader::describe as describe_split;
pub use seams::{SinkSide, SourceSide, SplitRead};
pub use settings::{CheckpointSettings, Settings};

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
    let dead_letter = DeadLetter::new(
        settings.dead_letter.clone(),
        &settings.job,
        settings.flow.as_deref(),
        start,
    );
    let checkpoint_tx = settings.checkpoint.as_ref().map(|_| tick_tx.clone());
    let shared = Arc::new(Shared::new(
        settings,
        control,
        counters,
        transforms,
        dead_letter,
        checkpoint_tx,
    ));

    let (split_tx, split_rx) = crossbeam_channel::unbounded();
    for s in splits {
        split_tx.send(s).expect("receiver alive");
    }
    drop(split_tx);
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded(readers * 2);
    // With progress in the target each writer has its own queue (a split's batches go to one
    // writer, in order); otherwise all writers take from one.
    let ordered = shared.settings.progress.is_some();
    let queues: Vec<_> = (0..if ordered { writers } else { 1 })
        .map(|_| crossbeam_channel::bounded::<batcher::Work>(writers * 2))
        .collect();
    let (batch_txs, batch_rxs): (Vec<_>, Vec<_>) = queues.into_iter().unzip();

    std::thread::scope(|scope| {
        let spawn = |name: String, f| spawn_stage(scope, name, f);
        if let Some(cfg) = &shared.settings.checkpoint {
            let shared = &*shared;
            let rx = tick_rx.clone();
            spawn(
                "checkpointer".into(),
                Box::new(move || checkpointer::run(cfg, rx, shared)),
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
        let batcher_shared = shared.clone();
        stages.push(spawn(
            "batcher".into(),
            Box::new(move || {
                let s = &batcher_shared;
                if ordered {
                    return ordered::run(chunk_rx, batch_txs, limits, s);
                }
                let tx = batch_txs.into_iter().next().expect("one queue");
                match &s.settings.endpoints {
                    Some(e) => grouping::run(chunk_rx, tx, limits, e, writers, s),
                    None => batcher::run(chunk_rx, tx, limits),
                }
            }),
        ));
        for (i, sink) in sinks.into_iter().enumerate() {
            let batches = batch_rxs[i % batch_rxs.len()].clone();
            let shared = shared.clone();
            stages.push(spawn(
                format!("writer-{i}"),
                Box::new(move || writer::run(sink, batches, &shared)),
            ));
        }
        drop(batch_rxs);
        for s in stages {
            if s.join().is_err() {
                shared.fail("a pipeline thread panicked".into());
            }
        }
        // Every row is written or failed: the checkpointer records the final state and stops.
        let _ = tick_tx.send(Tick::Stop);
    });

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
