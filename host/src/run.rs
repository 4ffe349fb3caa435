//! Running a job: its flows one after the other in dependency order, each planned (or resumed from
//! its checkpoint, or narrowed to the rows past its cursor) and then moved by the [`pipeline`].
//!
//! A job of several flows keeps every completed flow's checkpoint until the whole job succeeds, so
//! a killed job resumes at the flow it was in and skips the ones before it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use etlhost_plugin_sdk::{CursorRange, Value};

use crate::checkpoint::{self, Checkpoint};
use crate::cursor::{self, Cursor};
use crate::job::Job;
use crate::pipeline::{execute, CheckpointSettings, Control, RunError, Settings, SinkSide};
use crate::plan;
use crate::plugin::{SinkHandle, SourceHandle};
use crate::report;
use crate::spec::FlowRef;
use crate::stats::{Counters, Summary};
use crate::transform::engine::{Grants, Request};
use crate::transform::Transforms;

/// How a run was asked for on the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Discard checkpoints instead of resuming from them.
    pub fresh: bool,
    /// Ignore stored cursors: read every row, then store the cursor anew.
    pub full: bool,
    pub report: report::Mode,
}

/// Runs every flow of the job; the summary is the job's, with each flow's inside for a job of
/// several flows. A flow that fails stops the job: the flows after it may depend on it.
pub fn run(job: &Job, control: Arc<Control>, opts: &RunOptions) -> Result<Summary, RunError> {
    let spec = &job.spec;
    let start = SystemTime::now();
    if !spec.multi_flow {
        let summary = run_flow(job, spec.flow(0), control, opts)?;
        forget_checkpoints(job);
        return Ok(summary);
    }
    let mut done: Vec<Summary> = Vec::new();
    let total = |flows, status, error| {
        Box::new(Summary::total(&spec.job.name, flows, status, start, error))
    };
    for flow in spec.flows_in_order() {
        if control.stopping() {
            let error = format!("interrupted before flow `{}`", flow.flow.name);
            return Err(RunError::Failed(total(done, "interrupted", Some(error))));
        }
        match run_flow(job, flow, control.clone(), opts) {
            Ok(s) => done.push(s),
            Err(RunError::Failed(s)) => {
                let (status, error) = (s.status, s.error.clone());
                let error = format!("flow `{}`: {}", flow.flow.name, error.unwrap_or_default());
                done.push(*s);
                return Err(RunError::Failed(total(done, status, Some(error))));
            }
            Err(RunError::Internal(s)) => {
                done.push(*s);
                return Err(RunError::Internal(total(done, "failed", None)));
            }
            Err(e) if done.is_empty() => return Err(e),
            Err(e) => {
                let error = format!("flow `{}`: {e}", flow.flow.name);
                return Err(RunError::Failed(total(done, "failed", Some(error))));
            }
        }
    }
    forget_checkpoints(job);
    Ok(*total(done, "succeeded", None))
}

/// The job succeeded: the next run starts fresh.
fn forget_checkpoints(job: &Job) {
    for i in 0..job.spec.job.flows.len() {
        let path = checkpoint_path(job.spec.flow(i));
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove checkpoint {}: {e}", path.display());
            }
        }
    }
}

fn checkpoint_path(flow: FlowRef<'_>) -> PathBuf {
    checkpoint::path(&flow.spec.job.checkpoint.dir, &flow.state_name())
}

fn cursor_path(flow: FlowRef<'_>) -> PathBuf {
    cursor::path(&flow.spec.job.checkpoint.dir, &flow.state_name())
}

/// The rows an incremental flow reads this time: from the stored cursor (inclusive) to the
/// column's current maximum. `Ok(None)` when the flow is not incremental.
pub fn cursor_range(
    flow: FlowRef<'_>,
    source: &SourceHandle,
    full: bool,
) -> Result<Option<CursorRange>, RunError> {
    let Some(column) = &flow.flow.source.cursor_column else {
        return Ok(None);
    };
    let path = cursor_path(flow);
    let stored = if full {
        None
    } else {
        cursor::load(&path).map_err(RunError::Start)?
    };
    if let Some(c) = stored.as_ref().filter(|c| &c.column != column) {
        return Err(RunError::Config(flow.error(
            "source.cursor_column",
            format!(
                "the cursor stored in {} is for column `{}`, not `{column}`; run with --full to read every row and start a new cursor",
                path.display(),
                c.column
            ),
        )));
    }
    let from = stored.map(|c| c.value);
    let bounds = source.cursor_bounds(column, from.as_ref()).map_err(|e| {
        RunError::Config(flow.error(
            "source.cursor_column",
            format!("cannot read incrementally on `{column}`: {e}"),
        ))
    })?;
    // No row at or past the cursor: read nothing, keep the cursor.
    let to = if bounds.max.is_null() {
        from.clone()
    } else {
        Some(bounds.max)
    };
    Ok(Some(CursorRange {
        column: column.clone(),
        from,
        to,
    }))
}

/// Compiles (or loads from the cache) the flow's transforms and checks that each accepts its config.
fn load_transforms(flow: FlowRef<'_>) -> Result<Option<Arc<Transforms>>, RunError> {
    let f = flow.flow;
    if f.transforms.is_empty() {
        return Ok(None);
    }
    let requests = f
        .transforms
        .iter()
        .map(|t| Request {
            name: t.name.clone(),
            component: flow.spec.dir().join(&t.component),
            config: serde_json::Value::Object(t.config.clone()).to_string(),
            deadline: t.deadline.0,
            memory: t.memory_mib << 20,
            grants: Grants {
                env: t.allow.env.clone(),
                read_dirs: t
                    .allow
                    .read_dirs
                    .iter()
                    .map(|d| (d.clone(), d.display().to_string()))
                    .collect(),
                network: t.allow.network,
            },
        })
        .collect();
    let cache = flow
        .spec
        .job
        .checkpoint
        .dir
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("cache");
    let t = Transforms::load(requests, &cache).map_err(|e| {
        RunError::Config(flow.error(&format!("transforms[{}].{}", e.index, e.key), e.message))
    })?;
    crate::transform::worker::check(&t).map_err(|(i, m)| {
        RunError::Config(flow.error(
            &format!("transforms[{i}].config"),
            format!("transform `{}` {m}", f.transforms[i].name),
        ))
    })?;
    Ok(Some(Arc::new(t)))
}

fn describe_cursor(v: &Option<Value>) -> String {
    v.as_ref()
        .map_or_else(|| "the first row".to_string(), Value::to_string)
}

/// Opens the flow's plugins, plans its splits (or resumes its checkpoint's) and runs it.
pub fn run_flow(
    job: &Job,
    flow: FlowRef<'_>,
    control: Arc<Control>,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    let spec = &flow.spec.job;
    let f = flow.flow;
    let plugins = &job.plugins[flow.index];
    let _span = flow
        .spec
        .multi_flow
        .then(|| tracing::info_span!("flow", name = %f.name).entered());
    let cp_path = checkpoint_path(flow);
    let previous = if opts.fresh {
        if cp_path.exists() {
            std::fs::remove_file(&cp_path).map_err(|e| {
                RunError::Start(format!(
                    "cannot remove checkpoint {}: {e}",
                    cp_path.display()
                ))
            })?;
            tracing::info!("--fresh: discarded checkpoint {}", cp_path.display());
        }
        None
    } else {
        checkpoint::load(&cp_path).map_err(RunError::Start)?
    };
    if let Some(cp) = &previous {
        if cp.spec_hash != flow.spec.hash {
            return Err(RunError::Config(flow.spec.error(
                "",
                format!(
                    "the spec changed since job '{}' was checkpointed in {}; run with --fresh to start over",
                    spec.name,
                    cp_path.display()
                ),
            )));
        }
    }
    let label = flow.label();
    let counters = Arc::new(Counters::new(f.parallelism.max(1)));
    let mut settings = Settings::from_spec(flow, flow.spec.dead_letter_path());
    if previous
        .as_ref()
        .is_some_and(|cp| checkpoint::remaining(cp).is_empty())
    {
        tracing::info!(flow = %f.name, "completed in an earlier run (checkpoint {}); skipped", cp_path.display());
        let now = SystemTime::now();
        return Ok(Summary::new(
            &settings.job,
            settings.flow.as_deref(),
            "succeeded",
            &counters,
            now,
            now,
            None,
        ));
    }

    let transforms = load_transforms(flow)?;
    let source = SourceHandle::open(plugins.source.clone(), &f.source.options)
        .map_err(|e| RunError::Start(format!("cannot start source: {e}")))?;
    let sinks = (0..f.sink.parallelism)
        .map(|_| {
            SinkHandle::open(plugins.sink.clone(), &f.sink.options)
                .map(|s| Box::new(s) as Box<dyn SinkSide>)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::check::sink_open_error(flow, e))?;

    let (base, splits, estimated) = match previous {
        Some(cp) => {
            let remaining = checkpoint::remaining(&cp);
            tracing::info!(
                job = %label,
                done = cp.done.len(),
                splits = cp.splits.len(),
                in_progress = cp.watermarks.len(),
                "resuming from checkpoint {}",
                cp_path.display()
            );
            (cp, remaining, None)
        }
        None => {
            let cursor = cursor_range(flow, &source, opts.full)?;
            let planned = plan::plan(flow, &source, cursor.as_ref()).map_err(RunError::Config)?;
            if let Some(c) = &cursor {
                tracing::info!(
                    job = %label,
                    "incremental read: `{}` from {} (inclusive) to {}",
                    c.column,
                    describe_cursor(&c.from),
                    describe_cursor(&c.to)
                );
            }
            let estimated: u64 = planned.iter().map(|p| p.estimated_rows).sum();
            let splits: Vec<_> = planned.into_iter().map(|p| p.split).collect();
            let cp = Checkpoint {
                job: label.clone(),
                spec_hash: flow.spec.hash.clone(),
                splits: splits.clone(),
                done: Default::default(),
                watermarks: Default::default(),
                updated: String::new(),
            };
            (cp, splits, Some(estimated).filter(|n| *n > 0))
        }
    };
    if base.splits.len() == 1 && f.parallelism > 1 {
        tracing::warn!(
            "parallelism is {} but there is one split: set source.partition_column to read in parallel",
            f.parallelism
        );
    }
    // Where an incremental read got to once every row is written: stored on success only.
    let reached = base
        .splits
        .iter()
        .find_map(|s| s.cursor.clone())
        .and_then(|c| Some((c.column, c.to?)));
    tracing::info!(
        job = %label,
        splits = splits.len(),
        readers = f.parallelism,
        writers = f.sink.parallelism,
        batch = f.sink.max_batch_size,
        "job started"
    );
    settings.checkpoint = Some(CheckpointSettings {
        path: cp_path.clone(),
        interval: spec.checkpoint.interval.0,
        base,
    });
    let reporter = report::Reporter::start(opts.report, &label, counters.clone(), estimated);
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
    if summary.status != "succeeded" {
        return Err(RunError::Failed(Box::new(summary)));
    }
    if let Some((column, value)) = reached {
        let path = cursor_path(flow);
        let c = Cursor {
            job: spec.name.clone(),
            flow: f.name.clone(),
            column,
            text: value.to_string(),
            value,
            updated: crate::stats::iso(SystemTime::now()),
        };
        // Failing to store the cursor costs re-reading next time, never rows.
        match cursor::save(&path, &c) {
            Ok(()) => tracing::info!(job = %label, "cursor stored: `{}` = {}", c.column, c.value),
            Err(e) => tracing::warn!("cannot write cursor file {}: {e}", path.display()),
        }
    }
    Ok(summary)
}
