//! One flow: resume its checkpoint or plan it (narrowed to its cursor), open its plugins, move
//! its rows through the pipeline, and store how far an incremental read got.

use std::sync::Arc;
use std::time::SystemTime;

use etlhost_plugin_sdk::{Failure, Split};

use super::RunOptions;
use crate::checkpoint::{self, Checkpoint};
use crate::cursor;
use crate::error::RunError;
use crate::job::Job;
use crate::pipeline::{
    execute, CheckpointSettings, Control, ProgressSettings, Settings, SinkSide, StopReason,
};
use crate::plan;
use crate::plugin::{SinkHandle, SourceHandle};
use crate::report;
use crate::spec::{FlowRef, WriteMode};
use crate::stats::{Counters, Status, Summary};
use crate::target::Target;
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
    let counters = Arc::new(Counters::new(f.parallelism.max(1)));
    let mut settings = settings(flow);
    let target = Target::of(job, flow, opts)?;
    // Progress in each batch's transaction, unless the flow's rows are grouped by their endpoints
    // (a grouped batch mixes splits): such a flow keeps a local checkpoint and records its splits
    // in the target when they are done.
    let in_batches = target.as_ref().filter(|_| settings.endpoints.is_none());
    let previous = match in_batches {
        Some(_) => None,
        None => checkpoint::previous(flow, opts.fresh)?,
    };
    if let Some(cp) = previous
        .as_ref()
        .filter(|cp| checkpoint::remaining(cp).is_empty())
    {
        if let Some(failure) = &cp.failed {
            return earlier_failure(flow, failure, &settings, &counters, &control, opts);
        }
        tracing::info!(
            flow = %f.name,
            "completed in an earlier run (checkpoint {}); skipped",
            checkpoint::flow_path(flow).display()
        );
        return Ok(skipped(&settings, &counters));
    }

    let transforms = transform::load(flow)?;
    // Opened before the target's records are read: a wrong password or query fails here, as the
    // sink's own error.
    let (source, sinks) = open_plugins(job, flow)?;
    let stored = match &target {
        Some(t) => {
            if opts.fresh {
                t.forget(flow)?;
                tracing::info!(
                    "--fresh: discarded the flow's progress in the target ({})",
                    crate::target::run_label(&t.run)
                );
            }
            t.wait_for_earlier_flows(flow, &control)?;
            t.stored(flow)?
        }
        None => None,
    };
    if let Some(s) = stored
        .as_ref()
        .filter(|s| previous.is_none() && s.splits.is_empty())
    {
        if let Some(failure) = &s.plan.failure {
            return earlier_failure(flow, failure, &settings, &counters, &control, opts);
        }
        tracing::info!(
            flow = %f.name,
            "every split of this shard is done in the target ({}); skipped",
            crate::target::run_label(&opts.run)
        );
        return Ok(skipped(&settings, &counters));
    }
    let earlier = going_on_from(flow, previous.as_ref(), stored.as_ref(), opts);
    let start = match (&target, stored) {
        (Some(t), Some(s)) => {
            let done = s.progress.iter().filter(|p| p.done).count();
            let going = s.progress.iter().filter(|p| !p.done && p.rows > 0).count();
            tracing::info!(
                job = %flow.label(),
                shard = %t.shard,
                "resuming {} from its records in the target: {done} of {} splits done, {going} in progress",
                crate::target::run_label(&t.run),
                s.plan.splits.len()
            );
            Some(s)
        }
        (Some(t), None) => Some(t.plan(flow, &control, || {
            let (cp, _, estimated) = plan_anew(flow, &source, opts.full)?;
            Ok((cp.splits, estimated))
        })?),
        (None, _) => None,
    };
    let (base, splits, estimated) = match (previous, &start) {
        (Some(cp), _) => resume(flow, cp),
        (None, Some(s)) => {
            // This shard's share of the plan; its local checkpoint (if any) covers only these.
            let cp = checkpoint::planned(flow, s.splits.clone());
            (cp, s.splits.clone(), s.estimated)
        }
        (None, None) => plan_anew(flow, &source, opts.full)?,
    };
    log_start(flow, &base, splits.len(), target.as_ref());
    // Read once the nodes are loaded (the flows this one runs `after` are done) and before any
    // row is grouped.
    if let Some(e) = settings.endpoints.as_mut() {
        e.placement = crate::placement::read(job, flow)?;
    }
    // Where an incremental read got to once every row is written: stored on success only.
    let reached = cursor::reached(&base.splits);
    match (in_batches, &start) {
        (Some(t), Some(s)) => {
            settings.progress = Some(ProgressSettings {
                job: t.job.clone(),
                flow: f.name.clone(),
                run: t.run.clone(),
                shard: t.shard.index,
                base: s
                    .progress
                    .iter()
                    .map(|p| (p.split, (p.rows, p.after.clone())))
                    .collect(),
            })
        }
        _ => {
            settings.checkpoint = Some(CheckpointSettings {
                path: checkpoint::flow_path(flow),
                interval: flow.spec.job.checkpoint.interval.0,
                base,
            })
        }
    }
    let mine: Vec<u32> = splits.iter().map(|s| s.id).collect();
    let (dead_letter, max_failed_rows) = (settings.dead_letter.clone(), settings.max_failed_rows);
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
    let where_kept = match (&target, in_batches) {
        (Some(t), Some(_)) => Kept::Target(t),
        _ => Kept::Local,
    };
    let failed = Failed {
        earlier: earlier.as_ref(),
        dead_letter: &dead_letter,
        max_failed_rows,
        kept: where_kept,
    };
    let summary = failed.settle(flow, summary, &control);
    if summary.status != Status::Succeeded {
        return Err(RunError::Failed(Box::new(summary)));
    }
    if let (Some(t), None) = (&target, in_batches) {
        record_done(job, flow, t, &mine)?;
    }
    if let Some(reached) = reached {
        cursor::store(flow, reached);
    }
    Ok(summary)
}

/// The failure of an earlier run this one goes on from (it still has splits to read): its failed
/// rows still count against `max_failed_rows`. None once accepted (`--accept-failures`).
fn going_on_from(
    flow: FlowRef<'_>,
    previous: Option<&Checkpoint>,
    stored: Option<&crate::target::Start>,
    opts: &RunOptions,
) -> Option<Failure> {
    let earlier = previous
        .and_then(|cp| cp.failed.clone())
        .or_else(|| stored.and_then(|s| s.plan.failure.clone()))
        .filter(|_| !opts.accept_failures)?;
    let rows = match earlier.failed_rows {
        0 => String::new(),
        n => format!(
            ", its {n} failed rows in {} still count",
            earlier.dead_letter
        ),
    };
    tracing::warn!(
        flow = %flow.flow.name,
        "the earlier run failed at {} ({}); going on from it{rows}",
        earlier.at,
        earlier.error,
    );
    Some(earlier)
}

/// Where a flow keeps its progress, and so how a failed run is recorded.
enum Kept<'a> {
    Local,
    Target(&'a Target),
}

/// What decides whether a run that ended failed, with the earlier runs it went on from, and
/// records the failure where the flow keeps its progress.
struct Failed<'a> {
    earlier: Option<&'a Failure>,
    dead_letter: &'a std::path::Path,
    max_failed_rows: u64,
    kept: Kept<'a>,
}

impl Failed<'_> {
    fn settle(&self, flow: FlowRef<'_>, mut summary: Summary, control: &Control) -> Summary {
        let (earlier, max) = (
            self.earlier.map_or(0, |f| f.failed_rows),
            self.max_failed_rows,
        );
        let dead_letter = self.dead_letter.display();
        if summary.status == Status::Succeeded && earlier + summary.failed > max {
            summary.status = Status::Failed;
            summary.error = Some(format!(
                "{} rows failed in this run and {earlier} in the earlier runs it went on from, more than max_failed_rows ({max}); they are in {dead_letter}",
                summary.failed,
            ));
            control.stop(StopReason::TooManyFailedRows);
        }
        if summary.status != Status::Failed {
            return summary;
        }
        let failure = Failure {
            at: summary.end.clone(),
            error: summary.error.clone().unwrap_or_default(),
            failed_rows: earlier + summary.failed,
            dead_letter: dead_letter.to_string(),
            too_many_failed_rows: control.reason() == StopReason::TooManyFailedRows,
        };
        match self.kept {
            Kept::Target(t) => t.fail(flow, failure),
            Kept::Local => {
                if let Err(e) = checkpoint::record_failure(flow, failure) {
                    tracing::warn!("cannot record the run's failure: {e}");
                }
            }
        }
        summary
    }
}

/// The earlier run failed after reading every split: a rerun would read nothing and report
/// success over that failure, so it reports the failure again, unless told to accept it.
fn earlier_failure(
    flow: FlowRef<'_>,
    f: &Failure,
    settings: &Settings,
    counters: &Counters,
    control: &Control,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    if opts.accept_failures {
        tracing::warn!(
            flow = %flow.flow.name,
            "--accept-failures: accepted the failure of the earlier run at {} ({}); its {} failed rows stay in {}",
            f.at,
            f.error,
            f.failed_rows,
            f.dead_letter
        );
        return Ok(skipped(settings, counters));
    }
    control.stop(if f.too_many_failed_rows {
        StopReason::TooManyFailedRows
    } else {
        StopReason::Error
    });
    let error = format!(
        "the earlier run of job '{}' failed at {}: {}; it read every split, so nothing is left to read: run with --fresh to run the job again, or with --accept-failures to accept that failure (its {} failed rows stay in {})",
        flow.label(),
        f.at,
        f.error,
        f.failed_rows,
        f.dead_letter
    );
    let now = SystemTime::now();
    let (job, name) = (&settings.job, settings.flow.as_deref());
    let summary = Summary::new(job, name, Status::Failed, counters, now, now, Some(error));
    Err(RunError::Failed(Box::new(summary)))
}

/// A flow whose checkpoint (or records in the target) say it completed in an earlier run.
fn skipped(settings: &Settings, counters: &Counters) -> Summary {
    let now = SystemTime::now();
    let (job, name) = (&settings.job, settings.flow.as_deref());
    Summary::new(job, name, Status::Succeeded, counters, now, now, None)
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

/// A flow whose batches do not carry their progress records its splits as done at the end, so
/// that shards waiting for it can go on.
fn record_done(job: &Job, flow: FlowRef<'_>, t: &Target, splits: &[u32]) -> Result<(), RunError> {
    let plugins = &job.plugins[flow.index];
    let mut sink = SinkHandle::open(plugins.sink.clone(), &flow.flow.sink.options)
        .map_err(|e| crate::check::sink_open_error(flow, e))?;
    let done: Vec<etlhost_plugin_sdk::Progress> = splits
        .iter()
        .map(|&split| etlhost_plugin_sdk::Progress {
            job: t.job.clone(),
            flow: flow.flow.name.clone(),
            run: t.run.clone(),
            split,
            after: None,
            rows: 0,
            from: 0,
            check: false,
            done: true,
            shard: t.shard.index,
        })
        .collect();
    t.record(&mut sink, &done).map_err(|e| {
        RunError::Start(format!(
            "cannot record flow `{}` as done in the target: {e}",
            flow.flow.name
        ))
    })
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
