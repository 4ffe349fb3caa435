//! Running a job: readers -> batcher -> writers, each stage a set of threads joined by bounded
//! channels, so memory stays bounded and a slow sink slows the readers instead of filling memory.
//!
//! ```text
//! split queue -> reader x parallelism -> [rows] -> batcher -> [batches] -> writer x sink.parallelism
//! ```
//!
//! Plugin calls are blocking (the ABI is synchronous), so the stages are plain threads.

mod batcher;
mod reader;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::job::Job;
use crate::plan;
use crate::plugin::{SinkHandle, SourceHandle};
use crate::stats::{Counters, Summary};

pub use reader::describe as describe_split;

/// State every stage sees.
pub struct Shared {
    pub counters: Counters,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Records the first error and stops reading and writing.
    fn fail(&self, message: String) {
        tracing::error!("{message}");
        let mut e = self.error.lock().expect("error slot poisoned");
        e.get_or_insert(message);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Why a job did not run to the end.
#[derive(Debug)]
pub enum RunError {
    /// The spec asks for something the source cannot do (found while planning).
    Config(crate::spec::SpecError),
    /// A plugin could not start (connection refused, bad credentials...).
    Start(String),
    /// The job started and failed; the summary says how far it got.
    Failed(Box<Summary>),
    /// The books do not balance: a bug in etlhost, never to be reported as success.
    Internal(Box<Summary>),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Start(m) => f.write_str(m),
            RunError::Failed(s) => write!(f, "job {} failed: {}", s.job, s.error.as_deref().unwrap_or("unknown")),
            RunError::Internal(s) => write!(
                f,
                "internal error: rows read ({}) != written ({}) + failed ({}) + filtered ({}) + not written ({})",
                s.read, s.written, s.failed, s.filtered, s.abandoned
            ),
        }
    }
}

impl std::error::Error for RunError {}

pub fn run(job: &Job) -> Result<Summary, RunError> {
    let spec = &job.spec.job;
    let start = SystemTime::now();
    let source = SourceHandle::open(job.source.clone(), &spec.source.options)
        .map_err(|e| RunError::Start(format!("cannot start source: {e}")))?;
    let sinks = (0..spec.sink.parallelism)
        .map(|_| SinkHandle::open(job.sink.clone(), &spec.sink.options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RunError::Start(format!("cannot start sink: {e}")))?;

    let splits: Vec<_> = plan::plan(&job.spec, &source)
        .map_err(RunError::Config)?
        .into_iter()
        .map(|p| p.split)
        .collect();
    if splits.len() == 1 && spec.parallelism > 1 {
        tracing::warn!(
            "parallelism is {} but there is one split: set source.partition_column to read in parallel",
            spec.parallelism
        );
    }
    tracing::info!(
        job = %spec.name,
        splits = splits.len(),
        readers = spec.parallelism,
        writers = spec.sink.parallelism,
        batch = spec.sink.max_batch_size,
        "job started"
    );
    let shared = Arc::new(Shared {
        counters: Counters::new(spec.parallelism),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
    });

    let (split_tx, split_rx) = crossbeam_channel::unbounded();
    for s in splits {
        split_tx.send(s).expect("receiver alive");
    }
    drop(split_tx);
    let (rows_tx, rows_rx) = crossbeam_channel::bounded(spec.parallelism * 2);
    let (batch_tx, batch_rx) = crossbeam_channel::bounded(spec.sink.parallelism * 2);

    std::thread::scope(|scope| {
        for i in 0..spec.parallelism {
            let (source, splits, out, shared) = (
                source.clone(),
                split_rx.clone(),
                rows_tx.clone(),
                shared.clone(),
            );
            std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn_scoped(scope, move || reader::run(i, source, splits, out, shared))
                .expect("cannot spawn a reader thread");
        }
        drop(rows_tx);
        let max = spec.sink.max_batch_size;
        std::thread::Builder::new()
            .name("batcher".into())
            .spawn_scoped(scope, move || batcher::run(rows_rx, batch_tx, max))
            .expect("cannot spawn the batcher thread");
        for (i, sink) in sinks.into_iter().enumerate() {
            let (batches, shared) = (batch_rx.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("writer-{i}"))
                .spawn_scoped(scope, move || writer::run(sink, batches, shared))
                .expect("cannot spawn a writer thread");
        }
        drop(batch_rx);
    });
    drop(source);

    let error = shared.error.lock().expect("error slot poisoned").clone();
    let summary = Summary::new(
        &spec.name,
        &shared.counters,
        start,
        SystemTime::now(),
        error,
    );
    if !summary.balances() {
        return Err(RunError::Internal(Box::new(summary)));
    }
    if summary.error.is_some() {
        return Err(RunError::Failed(Box::new(summary)));
    }
    Ok(summary)
}
