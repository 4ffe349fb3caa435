//! One flow: resume its checkpoint or plan it (narrowed to its cursor), open its plugins, move
//! its rows through the pipeline, and store how far an incremental read got.

use std::sync::Arc;
use std::time::SystemTime;

use etlhost_plugin_sdk::Split;

use super::RunOptions;
use crate::checkpoint::{self, Checkpoint};
use crate::cursor;
use crate::error::RunError;
use crate::job::Job;
use crate::pipeline::{execute, CheckpointSettings, Control, Settings, SinkSide};
use crate::plan;
use crate::plugin::{SinkHandle, SourceHandle};
use crate::report;
use crate::spec::{FlowRef, WriteMode};
use crate::stats::{Counters, Status, Summary};
use crate::transform;

pub fn run(
    job: &Job,
    flow: FlowRef<'_>,
    control: Arc<Control>,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    let f = flow.flow;
    let _span = flow
        .spec
        .multi_flow
        .then(|| tracing::info_span!("flow", name = %f.name).entered());
    let previous = checkpoint::previous(flow, opts.fresh)?;
    let counters = Arc::new(Counters::new(f.parallelism.max(1)));
    let mut settings = settings(flow);
    if previous
        .as_ref()
        .is_some_and(|cp| checkpoint::remaining(cp).is_empty())
    {
        return Ok(skipped(flow, &settings, &counters));
    }

    let transforms = transform::load(flow)?;
    let (source, sinks) = open_plugins(job, flow)?;
    let (base, splits, estimated) = match previous {
        Some(cp) => resume(flow, cp),
        None => plan_anew(flow, &source, opts.full)?,
    };
    log_start(flow, &base, splits.len());
    // Where an incremental read got to once every row is written: stored on success only.
    let reached = cursor::reached(&base.splits);
    settings.checkpoint = Some(CheckpointSettings {
        path: checkpoint::flow_path(flow),
        interval: flow.spec.job.checkpoint.interval.0,
        base,
    });
    let reporter = report::Reporter::start(opts.report, &flow.label(), counters.clone(), estimated);
    let summary = execute(
        Arc::new(source),
        sinks,
        splits,
        settings,
        control,
        counters,
        transforms,
    );
    reporter.finish();
    if !summary.balances() {
        return Err(RunError::Internal(Box::new(summary)));
    }
    if summary.status != Status::Succeeded {
        return Err(RunError::Failed(Box::new(summary)));
    }
    if let Some(reached) = reached {
        cursor::store(flow, reached);
    }
    Ok(summary)
}

/// A flow whose checkpoint says it completed in an earlier run of the job.
fn skipped(flow: FlowRef<'_>, settings: &Settings, counters: &Counters) -> Summary {
    tracing::info!(
        flow = %flow.flow.name,
        "completed in an earlier run (checkpoint {}); skipped",
        checkpoint::flow_path(flow).display()
    );
    let now = SystemTime::now();
    let (job, name) = (&settings.job, settings.flow.as_deref());
    Summary::new(job, name, Status::Succeeded, counters, now, now, None)
}

fn log_start(flow: FlowRef<'_>, base: &Checkpoint, splits: usize) {
    let f = flow.flow;
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
        }),
        dead_letter: flow.spec.dead_letter_path(),
        checkpoint: None,
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

/// Where a flow starts: the progress it adds to, the splits it still has to read, and the rows
/// the plan estimates (none when resumed).
type Work = (Checkpoint, Vec<Split>, Option<u64>);

fn resume(flow: FlowRef<'_>, cp: Checkpoint) -> Work {
    let remaining = checkpoint::remaining(&cp);
    tracing::info!(
        job = %flow.label(),
        done = cp.done.len(),
        splits = cp.splits.len(),
        in_progress = cp.watermarks.len(),
        "resuming from checkpoint {}",
        checkpoint::flow_path(flow).display()
    );
    (cp, remaining, None)
}

fn plan_anew(flow: FlowRef<'_>, source: &SourceHandle, full: bool) -> Result<Work, RunError> {
    let cursor = cursor::range(flow, source, full)?;
    let planned = plan::plan(flow, source, cursor.as_ref()).map_err(RunError::Config)?;
    let estimated: u64 = planned.iter().map(|p| p.estimated_rows).sum();
    let splits: Vec<Split> = planned.into_iter().map(|p| p.split).collect();
    let cp = checkpoint::planned(flow, splits.clone());
    Ok((cp, splits, Some(estimated).filter(|n| *n > 0)))
}
