//! Where a batch flow keeps its progress, chosen once per flow ([`Store::choose`], after
//! [`crate::job::check_progress`], the one place that checks what the spec, the command line and
//! the sink allow; the job runs it when it loads too), and everything a flow does with it: resume
//! or plan, record how a run failed, record splits done, forget.
//!
//! - [`local`]: a checkpoint file beside the job (`checkpoint.store: local`, or `auto` with a
//!   sink that cannot keep progress).
//! - [`target`]: the target's own records, moved in each batch's transaction; a run resumes on
//!   any machine, and shards share one plan.
//!
//! The pipeline writes the progress while the flow runs (the local checkpointer, or each batch's
//! progress record); it is told which by [`Store::keep`].

pub mod local;
pub mod target;

use etlhost_plugin_sdk::{Failure, Split};

use crate::checkpoint::{self, Checkpoint};
use crate::error::RunError;
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::{CheckpointSettings, Control, ProgressSettings, Settings};
use crate::spec::{FlowRef, Mode, Store as Asked};

pub use target::{run_label, Start, Target};

/// A flow's progress store.
pub enum Store {
    /// A local checkpoint file.
    Local,
    /// The target, in each batch's transaction.
    Target(Target),
    /// A flow whose rows are grouped by their endpoints, with progress in the target: a grouped
    /// batch mixes splits, so it cannot carry one split's progress. The plan is the target's; the
    /// run keeps a local checkpoint and records its splits in the target once they are all done.
    Grouped(Target),
}

/// What a store says of a flow before it runs: every split was done by an earlier run (with how
/// that run failed, if it did), or what to go on with.
pub enum Found<T> {
    Done(Option<Failure>),
    Go(T),
}

/// Where a flow starts.
pub struct Work {
    /// The progress it adds to: the plan, and what of it is done.
    pub base: Checkpoint,
    /// The splits it still has to read.
    pub splits: Vec<Split>,
    /// The rows the plan estimates (none when resumed).
    pub estimated: Option<u64>,
    /// The target's records of the plan and this shard's progress, when it keeps them.
    pub records: Option<Start>,
}

impl Store {
    /// The store of `flow`, once [`crate::job::check_progress`] (every capability check, with
    /// what this run adds) has refused what cannot work.
    pub fn choose(job: &Job, flow: FlowRef<'_>, opts: &RunOptions) -> Result<Store, RunError> {
        let sink = &job.plugins[flow.index].sink;
        crate::job::check_progress(flow, sink, opts.shard.is_sharded())
            .map_err(RunError::Config)?;
        let local = match flow.spec.job.checkpoint.store {
            Asked::Local => true,
            Asked::Auto => !sink.records_progress(),
            Asked::Target => false,
        };
        // A streaming flow's snapshot keeps its progress where its stream keeps its position.
        let local = match flow.flow.mode {
            Mode::Stream => !crate::job::streams_in_target(job),
            _ => local,
        };
        if local {
            return Ok(Store::Local);
        }
        let target = Target::new(job, flow, opts);
        Ok(match flow.flow.sink.endpoints {
            Some(_) => Store::Grouped(target),
            None => Store::Target(target),
        })
    }

    pub fn target(&self) -> Option<&Target> {
        match self {
            Store::Local => None,
            Store::Target(t) | Store::Grouped(t) => Some(t),
        }
    }

    /// Before the plugins open: the local checkpoint, when the store keeps one (a flow it says is
    /// done needs no plugins). `--fresh` discards it.
    pub fn previous(
        &self,
        flow: FlowRef<'_>,
        fresh: bool,
    ) -> Result<Found<Option<Checkpoint>>, RunError> {
        if let Store::Target(_) = self {
            return Ok(Found::Go(None));
        }
        let previous = local::previous(flow, fresh)?;
        match previous {
            Some(cp) if checkpoint::remaining(&cp).is_empty() => {
                if cp.failed.is_none() {
                    tracing::info!(
                        flow = %flow.flow.name,
                        "completed in an earlier run (checkpoint {}); skipped",
                        checkpoint::flow_path(flow).display()
                    );
                }
                Ok(Found::Done(cp.failed))
            }
            previous => Ok(Found::Go(previous)),
        }
    }

    /// With the plugins open (a wrong password or query fails first, as the sink's own error):
    /// the target's records of the flow, once the flows it comes after are done on every shard.
    /// `--fresh` discards them. A flow with a local checkpoint goes on from that.
    pub fn stored(
        &self,
        flow: FlowRef<'_>,
        control: &Control,
        fresh: bool,
        previous: bool,
    ) -> Result<Found<Option<Start>>, RunError> {
        let Some(t) = self.target() else {
            return Ok(Found::Go(None));
        };
        if fresh {
            t.forget(flow)?;
            tracing::info!(
                "--fresh: discarded the flow's progress in the target ({})",
                run_label(&t.run)
            );
        }
        t.wait_for_earlier_flows(flow, control)?;
        match t.stored(flow)? {
            Some(s) if !previous && s.splits.is_empty() => {
                if s.plan.failure.is_none() {
                    tracing::info!(
                        flow = %flow.flow.name,
                        "every split of this shard is done in the target ({}); skipped",
                        run_label(&t.run)
                    );
                }
                Ok(Found::Done(s.plan.failure))
            }
            stored => Ok(Found::Go(stored)),
        }
    }

    /// Resumes from the local checkpoint or the target's records, or plans the flow: in the
    /// target (shard 0 plans, the others wait for its plan) or, kept locally, here.
    pub fn start(
        &self,
        flow: FlowRef<'_>,
        previous: Option<Checkpoint>,
        stored: Option<Start>,
        control: &Control,
        plan: &dyn Fn() -> Result<(Vec<Split>, Option<u64>), RunError>,
    ) -> Result<Work, RunError> {
        let records = match (self.target(), stored) {
            (Some(t), Some(s)) => {
                let done = s.progress.iter().filter(|p| p.done).count();
                let going = s.progress.iter().filter(|p| !p.done && p.rows > 0).count();
                tracing::info!(
                    job = %flow.label(),
                    shard = %t.shard,
                    "resuming {} from its records in the target: {done} of {} splits done, {going} in progress",
                    run_label(&t.run),
                    s.plan.splits.len()
                );
                Some(s)
            }
            (Some(t), None) => Some(t.plan(flow, control, plan)?),
            (None, _) => None,
        };
        let (base, splits, estimated) = match (previous, &records) {
            (Some(cp), _) => {
                let (cp, remaining) = local::resume(flow, cp);
                (cp, remaining, None)
            }
            // This shard's share of the plan; its local checkpoint (if any) covers only these.
            (None, Some(s)) => (
                checkpoint::planned(flow, s.splits.clone()),
                s.splits.clone(),
                s.estimated,
            ),
            (None, None) => {
                let (splits, estimated) = plan()?;
                (checkpoint::planned(flow, splits.clone()), splits, estimated)
            }
        };
        Ok(Work {
            base,
            splits,
            estimated,
            records,
        })
    }

    /// Tells the pipeline where to write the flow's progress as it runs: each batch's progress
    /// record (from the target's records), or the local checkpointer (from `base`).
    pub fn keep(
        &self,
        flow: FlowRef<'_>,
        base: Checkpoint,
        records: Option<&Start>,
        settings: &mut Settings,
    ) {
        match (self, records) {
            (Store::Target(t), Some(s)) => {
                settings.progress = Some(ProgressSettings {
                    job: t.job.clone(),
                    flow: flow.flow.name.clone(),
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
    }

    /// Records how the flow's run failed where its progress is, so that a rerun with nothing
    /// left to read reports it. A store that cannot costs the next run only that guard: a warning.
    pub fn record_failure(&self, flow: FlowRef<'_>, failure: Failure) {
        match self {
            Store::Target(t) => t.fail(flow, failure),
            Store::Local | Store::Grouped(_) => {
                if let Err(e) = local::record_failure(flow, failure) {
                    tracing::warn!("cannot record the run's failure: {e}");
                }
            }
        }
    }

    /// The flow succeeded: a grouped flow records its splits as done in the target, so that
    /// shards waiting for it can go on (the other stores have recorded them batch by batch).
    pub fn record_done(
        &self,
        job: &Job,
        flow: FlowRef<'_>,
        splits: &[u32],
    ) -> Result<(), RunError> {
        match self {
            Store::Grouped(t) => t.record_done(job, flow, splits),
            Store::Local | Store::Target(_) => Ok(()),
        }
    }
}

/// The whole job succeeded: its checkpoints go, and, when it ran in one process, its records in
/// the target, so the next run starts fresh. A shard keeps them: the others may still need them.
pub fn forget(job: &Job, opts: &RunOptions) {
    local::forget(&job.spec);
    if opts.shard.is_sharded() {
        return;
    }
    for i in 0..job.spec.job.flows.len() {
        let flow = job.spec.flow(i);
        let Ok(store) = Store::choose(job, flow, opts) else {
            continue;
        };
        if let Some(Err(e)) = store.target().map(|t| t.forget(flow)) {
            tracing::warn!("cannot remove the run's progress from the target: {e}");
        }
    }
}
