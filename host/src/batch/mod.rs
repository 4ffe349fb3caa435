//! One batch flow, in named steps: resume or plan it (narrowed to its cursor) from its progress
//! store, open its plugins, execute (move its rows through the pipeline), settle how it ended
//! against the runs it went on from ([`failure`]), and record that where its progress is kept,
//! with how far an incremental read got.
//!
//! Below the run (which runs a job's flows in order) and the stream (whose snapshot is batch
//! flows); it imports neither.

mod failure;

use std::sync::Arc;

use etlhost_plugin_sdk::{Failure, Split};

use crate::checkpoint::Checkpoint;
use crate::cursor;
use crate::error::RunError;
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::{execute, Control, Settings, SinkSide};
use crate::plan;
use crate::plugin::{SinkHandle, SourceHandle};
use crate::progress::{Found, Store, Target, Work};
use crate::report;
use crate::spec::{FlowRef, WriteMode};
use crate::stats::{Counters, Status, Summary};
use crate::transform;

/// Runs one batch flow: resume or plan it, or end it at once when an earlier run read every
/// split (reporting that run's failure again, unless accepted); execute; settle; record.
pub fn run(
    job: &Job,
    flow: FlowRef<'_>,
    control: Arc<Control>,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    let _span = flow
        .spec
        .multi_flow
        .then(|| tracing::info_span!("flow", name = %flow.flow.name).entered());
    let counters = Arc::new(Counters::new(flow.flow.parallelism.max(1)));
    let mut settings = settings(flow);
    let store = Store::choose(job, flow, opts)?;
    let done_earlier = |failure: Option<Failure>| {
        failure::done_earlier(flow, failure, &settings, &counters, &control, opts)
    };

    // Resume or plan (or end here: done earlier).
    let previous = match store.previous(flow, opts.fresh)? {
        Found::Done(failure) => return done_earlier(failure),
        Found::Go(previous) => previous,
    };
    let transforms = transform::load(flow)?;
    let (source, sinks) = open_plugins(job, flow)?;
    let stored = match store.stored(flow, &control, opts.fresh, previous.is_some())? {
        Found::Done(failure) => return done_earlier(failure),
        Found::Go(stored) => stored,
    };
    let earlier = failure::going_on_from(flow, previous.as_ref(), stored.as_ref(), opts);
    let plan = || plan_anew(flow, &source, opts.full);
    let Work {
        base,
        splits,
        estimated,
        records,
    } = store.start(flow, previous, stored, &control, &plan)?;
    log_start(flow, &base, splits.len(), store.target());
    // Read once the nodes are loaded (the flows this one runs `after` are done) and before any
    // row is grouped.
    if let Some(e) = settings.endpoints.as_mut() {
        e.placement = crate::placement::read(job, flow)?;
    }
    // Where an incremental read got to once every row is written: stored on success only.
    let reached = cursor::reached(&base.splits);
    store.keep(flow, base, records.as_ref(), &mut settings);

    // Execute.
    let mine: Vec<u32> = splits.iter().map(|s| s.id).collect();
    let settle = failure::Settle {
        earlier: earlier.as_ref(),
        dead_letter: settings.dead_letter.clone(),
        max_failed_rows: settings.max_failed_rows,
        store: &store,
    };
    let reporter = report::Reporter::start(opts.report, &flow.label(), counters.clone(), estimated);
    let summary = execute(
        Arc::new(source),
        sinks,
        splits,
        settings,
        control.clone(),
        counters,
        transforms,
    );
    reporter.finish();
    if !summary.balances() {
        return Err(RunError::Internal(Box::new(summary)));
    }

    // Settle and record.
    let summary = settle.settle(flow, summary, &control);
    if summary.status != Status::Succeeded {
        return Err(RunError::Failed(Box::new(summary)));
    }
    store.record_done(job, flow, &mine)?;
    if let Some(reached) = reached {
        cursor::store(flow, reached);
    }
    Ok(summary)
}

fn log_start(flow: FlowRef<'_>, base: &Checkpoint, splits: usize, target: Option<&Target>) {
    let f = flow.flow;
    if let Some(t) = target {
        if base.splits.iter().any(|s| s.range.is_none()) {
            tracing::warn!(
                "flow `{}` has no partition_column: its progress is recorded in the target only when its one split is done, so a killed run reads it again (use MERGE, or set source.partition_column for exactly-once)",
                f.name
            );
        }
        if t.shard.is_sharded() {
            tracing::info!(
                shard = %t.shard,
                run = %t.run,
                "shard {} runs {splits} of the plan's {} splits",
                t.shard,
                base.splits.len()
            );
        }
    }
    if base.splits.len() == 1 && f.parallelism > 1 {
        tracing::warn!(
            "parallelism is {} but there is one split: set source.partition_column to read in parallel",
            f.parallelism
        );
    }
    tracing::info!(
        job = %flow.label(),
        splits,
        readers = f.parallelism,
        writers = f.sink.parallelism,
        batch = f.sink.max_batch_size,
        "job started"
    );
}

/// The pipeline's settings from the flow's spec.
fn settings(flow: FlowRef<'_>) -> Settings {
    let f = flow.flow;
    let s = &f.sink;
    Settings {
        job: flow.spec.job.name.clone(),
        flow: flow.spec.multi_flow.then(|| f.name.clone()),
        readers: f.parallelism,
        max_batch_rows: match s.write_mode {
            WriteMode::Batch => s.max_batch_size,
            WriteMode::OneByOne => 1,
        },
        max_batch_bytes: s.max_batch_bytes,
        batch_timeout: s.batch_timeout.map(|t| t.0),
        max_retries: s.max_retries,
        retry_backoff: s.retry_backoff.0,
        max_failed_rows: f.max_failed_rows,
        endpoints: s.endpoints.as_ref().map(|e| crate::pipeline::Endpoints {
            start: e.start.clone(),
            end: e.end.clone(),
            // Read from the target when the flow starts (`placement::read`).
            placement: None,
        }),
        dead_letter: flow.spec.dead_letter_path(),
        checkpoint: None,
        progress: None,
    }
}

/// A flow's open plugins: the source, and one sink instance per writer.
type Plugins = (Arc<SourceHandle>, Vec<Box<dyn SinkSide>>);

fn open_plugins(job: &Job, flow: FlowRef<'_>) -> Result<Plugins, RunError> {
    let (f, plugins) = (flow.flow, &job.plugins[flow.index]);
    let source = SourceHandle::open(plugins.source.clone(), &f.source.options)
        .map_err(|e| RunError::Start(format!("cannot start source: {e}")))?;
    let sinks = (0..f.sink.parallelism)
        .map(|_| {
            SinkHandle::open(plugins.sink.clone(), &f.sink.options)
                .map(|s| Box::new(s) as Box<dyn SinkSide>)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::check::sink_open_error(flow, e))?;
    Ok((source, sinks))
}

/// A plan of the flow made now, narrowed to its cursor, and the rows it estimates.
fn plan_anew(
    flow: FlowRef<'_>,
    source: &SourceHandle,
    full: bool,
) -> Result<(Vec<Split>, Option<u64>), RunError> {
    let cursor = cursor::range(flow, source, full)?;
    let planned = plan::plan(flow, source, cursor.as_ref()).map_err(RunError::Config)?;
    let estimated: u64 = planned.iter().map(|p| p.estimated_rows).sum();
    let splits: Vec<Split> = planned.into_iter().map(|p| p.split).collect();
    Ok((splits, Some(estimated).filter(|n| *n > 0)))
}
