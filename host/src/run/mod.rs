//! Running a job: its flows one after the other in dependency order, each in [`flow`].
//!
//! A job of several flows keeps every completed flow's checkpoint until the whole job succeeds, so
//! a killed job resumes at the flow it was in and skips the ones before it.

pub(crate) mod flow;

use std::sync::Arc;
use std::time::SystemTime;

use crate::checkpoint;
use crate::error::RunError;
use crate::job::Job;
use crate::pipeline::Control;
use crate::report;
use crate::stats::{Status, Summary};
use crate::target::Target;

/// How a run was asked for on the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Discard checkpoints instead of resuming from them.
    pub fresh: bool,
    /// Accept an earlier run's failure instead of refusing to go on from it (`--accept-failures`).
    pub accept_failures: bool,
    /// Ignore stored cursors: read every row, then store the cursor anew.
    pub full: bool,
    pub report: report::Mode,
    /// `mode: stream`: where to serve Prometheus metrics.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// This process's share of the job's splits.
    pub shard: crate::shard::Shard,
    /// The run all shards share (`--run`, `ETLHOST_RUN`); empty by default.
    pub run: String,
}

/// Runs every flow of the job; the summary is the job's, with each flow's inside for a job of
/// several flows. A flow that fails stops the job: the flows after it may depend on it.
pub fn run(job: &Job, control: Arc<Control>, opts: &RunOptions) -> Result<Summary, RunError> {
    let spec = &job.spec;
    let start = SystemTime::now();
    if crate::stream::is_streaming(spec) {
        return crate::stream::run(job, control, opts);
    }
    start_over(opts)?;
    if !spec.multi_flow {
        let summary = flow::run(job, spec.flow(0), control, opts)?;
        finished(job, opts);
        return Ok(summary);
    }
    let mut done: Vec<Summary> = Vec::new();
    let total = |flows, status, error| {
        Box::new(Summary::total(&spec.job.name, flows, status, start, error))
    };
    for flow in spec.flows_in_order() {
        if control.stopping() {
            let error = format!("interrupted before flow `{}`", flow.flow.name);
            return Err(RunError::Failed(total(
                done,
                Status::Interrupted,
                Some(error),
            )));
        }
        match flow::run(job, flow, control.clone(), opts) {
            Ok(s) => done.push(s),
            Err(RunError::Failed(s)) => {
                let (status, error) = (s.status, s.error.clone());
                let error = format!("flow `{}`: {}", flow.flow.name, error.unwrap_or_default());
                done.push(*s);
                return Err(RunError::Failed(total(done, status, Some(error))));
            }
            Err(RunError::Internal(s)) => {
                done.push(*s);
                return Err(RunError::Internal(total(done, Status::Failed, None)));
            }
            Err(e) if done.is_empty() => return Err(e),
            Err(e) => {
                let error = format!("flow `{}`: {e}", flow.flow.name);
                return Err(RunError::Failed(total(done, Status::Failed, Some(error))));
            }
        }
    }
    finished(job, opts);
    Ok(*total(done, Status::Succeeded, None))
}

/// `--fresh` discards progress flow by flow (see `flow`), which a shard must not do.
fn start_over(opts: &RunOptions) -> Result<(), RunError> {
    if opts.fresh && opts.shard.is_sharded() {
        return Err(RunError::Start(format!(
            "--fresh cannot be used with shards: it would discard the other shards' progress; start a new run instead (--run or ETLHOST_RUN, now '{}')",
            opts.run
        )));
    }
    Ok(())
}

/// The whole job succeeded: its checkpoints go, and, when it ran in one process, its records in
/// the target, so the next run starts fresh. A shard keeps them: the others may still need them.
fn finished(job: &Job, opts: &RunOptions) {
    checkpoint::forget(&job.spec);
    if opts.shard.is_sharded() {
        return;
    }
    for i in 0..job.spec.job.flows.len() {
        let flow = job.spec.flow(i);
        if let Ok(Some(t)) = Target::of(job, flow, opts) {
            if let Err(e) = t.forget(flow) {
                tracing::warn!("cannot remove the run's progress from the target: {e}");
            }
        }
    }
}
