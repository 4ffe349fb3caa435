//! Running a job: a streaming one as [`crate::stream`] says, else its batch flows one after the
//! other in dependency order, each a [`crate::batch`] run. The top of the runtime: nothing below
//! imports it.
//!
//! A job of several flows keeps every completed flow's checkpoint until the whole job succeeds, so
//! a killed job resumes at the flow it was in and skips the ones before it.

use std::sync::Arc;
use std::time::SystemTime;

use crate::batch;
use crate::error::RunError;
use crate::job::Job;
use crate::pipeline::Control;
use crate::progress;
use crate::stats::{Status, Summary};

pub use crate::options::RunOptions;

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
        let summary = batch::run(job, spec.flow(0), control, opts)?;
        progress::forget(job, opts);
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
        match batch::run(job, flow, control.clone(), opts) {
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
    progress::forget(job, opts);
    Ok(*total(done, Status::Succeeded, None))
}

/// `--fresh` discards progress flow by flow (see `flow`), which a shard must not do.
fn start_over(opts: &RunOptions) -> Result<(), RunError> {
    if opts.fresh && opts.shard.is_sharded() {
        return Err(RunError::Start(format!(
            "--fresh cannot be used with shards: it would discard the other shards' progress; start a new run instead (--run or ETLHOST_RUN; this is {})",
            progress::run_label(&opts.run)
        )));
    }
    Ok(())
}
