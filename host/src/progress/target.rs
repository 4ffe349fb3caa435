//! Progress in the target: a flow whose sink keeps the host's state (the SDK's
//! [`etlhost_plugin_sdk::progress`]) stores its plan and every split's progress there instead of in
//! a local checkpoint file. A run can then resume on any machine, and shards (see [`crate::shard`])
//! share one plan and see each other's progress, with no shared filesystem and no coordinator.
//!
//! - **The plan** is made once per run, by shard 0 (or the only process), and stored; the other
//!   shards wait for it and read it, so shards started minutes apart, while the table changes,
//!   read the same splits. It records the spec's hash and the shard count: a shard running another
//!   spec, or another count, is refused.
//! - **Progress** moves in each batch's own transaction (see `pipeline::delivery::ordered`).
//! - **Flow order across shards:** a flow with `after: [x]` starts only once every split of `x`
//!   is done, on every shard.
//! - **A finished run** is forgotten when it ran in one process, as local checkpoints are; the
//!   records of a sharded run stay (no shard knows it is the last), and a new run is a new run id.
//! - **A failed run** is recorded on its plan, so that a rerun with nothing left to read reports
//!   that failure instead of success (see `batch`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::{Plan, Progress, Split, State, StateRequest};

use crate::error::RunError;
use crate::job::Job;
use crate::options::RunOptions;
use crate::pipeline::Control;
use crate::plugin::{Plugin, SinkHandle};
use crate::shard::Shard;
use crate::spec::FlowRef;

/// How often a shard looks again while it waits for another one.
const POLL: Duration = Duration::from_millis(500);
/// How often a waiting shard says so in its log.
const SAY_AGAIN: Duration = Duration::from_secs(30);

/// How messages name a run: `run 'r1'`, or `the default run` for the one without an id (no
/// `--run`), rather than an empty `run ''`.
pub fn run_label(run: &str) -> String {
    if run.is_empty() {
        "the default run".into()
    } else {
        format!("run '{run}'")
    }
}

/// The target's state of one job run, through one flow's sink.
pub struct Target {
    plugin: Arc<Plugin>,
    options: serde_json::Map<String, serde_json::Value>,
    pub job: String,
    pub run: String,
    pub shard: Shard,
}

/// Where a flow starts from the target's records.
pub struct Start {
    pub plan: Plan,
    /// This shard's splits still to read, those in progress starting after their recorded key.
    pub splits: Vec<Split>,
    pub progress: Vec<Progress>,
    /// The plan's estimate of this shard's rows, when this process made the plan.
    pub estimated: Option<u64>,
}

impl Target {
    /// The target's state of `flow`'s job run, through its sink (which [`super::Store::choose`]
    /// found able to keep it).
    pub(super) fn new(job: &Job, flow: FlowRef<'_>, opts: &RunOptions) -> Target {
        Target {
            plugin: job.plugins[flow.index].sink.clone(),
            options: flow.flow.sink.options.clone(),
            job: flow.spec.job.name.clone(),
            run: opts.run.clone(),
            shard: opts.shard,
        }
    }

    fn ask(&self, request: &StateRequest) -> Result<State, RunError> {
        self.plugin.state(&self.options, request).map_err(|e| {
            RunError::Start(format!("cannot read or store progress in the target: {e}"))
        })
    }

    pub fn read(&self) -> Result<State, RunError> {
        self.ask(&StateRequest::Read {
            job: self.job.clone(),
            run: self.run.clone(),
        })
    }

    /// Removes the run's records of `flow` (a finished run in one process, or `--fresh`).
    pub fn forget(&self, flow: FlowRef<'_>) -> Result<(), RunError> {
        self.ask(&StateRequest::Forget {
            job: self.job.clone(),
            flow: flow.flow.name.clone(),
            run: self.run.clone(),
        })
        .map(drop)
    }

    /// Records on the plan of `flow` how this run failed. A sink that cannot keep it costs the
    /// next run only this guard, so it is a warning, not an error.
    pub fn fail(&self, flow: FlowRef<'_>, failure: etlhost_plugin_sdk::Failure) {
        let request = StateRequest::Fail {
            job: self.job.clone(),
            flow: flow.flow.name.clone(),
            run: self.run.clone(),
            failure,
        };
        if let Err(e) = self.ask(&request) {
            tracing::warn!("cannot record the run's failure in the target: {e}");
        }
    }

    /// Records `splits` of `flow` as done, with no rows: the splits of a flow whose batches do not
    /// carry their progress, once they are all written, so that shards waiting for it can go on.
    pub fn record_done(
        &self,
        job: &Job,
        flow: FlowRef<'_>,
        splits: &[u32],
    ) -> Result<(), RunError> {
        let plugins = &job.plugins[flow.index];
        let mut sink = SinkHandle::open(plugins.sink.clone(), &flow.flow.sink.options)
            .map_err(|e| crate::check::sink_open_error(flow, e))?;
        let empty = etlhost_plugin_sdk::Batch::new(Vec::new().into());
        splits
            .iter()
            .try_for_each(|&split| {
                let done = Progress {
                    job: self.job.clone(),
                    flow: flow.flow.name.clone(),
                    run: self.run.clone(),
                    split,
                    after: None,
                    rows: 0,
                    from: 0,
                    check: false,
                    done: true,
                    shard: self.shard.index,
                };
                sink.write_with_progress(&empty, &done).map(drop)
            })
            .map_err(|e| {
                RunError::Start(format!(
                    "cannot record flow `{}` as done in the target: {e}",
                    flow.flow.name
                ))
            })
    }

    fn run_name(&self) -> String {
        format!("{} of job '{}'", run_label(&self.run), self.job)
    }

    /// Repeats `look` until it gives an answer, saying `waiting` in the log now and then; gives up
    /// when the job is stopped.
    fn wait<T>(
        &self,
        control: &Control,
        mut look: impl FnMut() -> Result<Result<T, String>, RunError>,
    ) -> Result<T, RunError> {
        let mut said: Option<Instant> = None;
        loop {
            match look()? {
                Ok(t) => return Ok(t),
                Err(waiting) => {
                    if said.is_none_or(|t| t.elapsed() >= SAY_AGAIN) {
                        tracing::info!(shard = %self.shard, "{waiting}");
                        said = Some(Instant::now());
                    }
                }
            }
            if control.stopping() {
                return Err(RunError::Start(format!(
                    "shard {}: stopped while waiting",
                    self.shard
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every flow `flow` comes after is done on every shard.
    pub fn wait_for_earlier_flows(
        &self,
        flow: FlowRef<'_>,
        control: &Control,
    ) -> Result<(), RunError> {
        if !self.shard.is_sharded() {
            // One process runs its flows in order: the ones before are done.
            return Ok(());
        }
        for dep in &flow.flow.after {
            self.wait(control, || {
                let state = self.read()?;
                let Some(plan) = state.plans.iter().find(|p| &p.flow == dep) else {
                    return Ok(Err(format!(
                        "flow `{}` waits for flow `{dep}`, which no shard has planned yet",
                        flow.flow.name
                    )));
                };
                let done = plan
                    .splits
                    .iter()
                    .filter(|s| {
                        state
                            .progress
                            .iter()
                            .any(|p| &p.flow == dep && p.split == s.id && p.done)
                    })
                    .count();
                if done == plan.splits.len() {
                    tracing::info!(shard = %self.shard, "flow `{dep}` is done on every shard; flow `{}` starts", flow.flow.name);
                    return Ok(Ok(()));
                }
                Ok(Err(format!(
                    "flow `{}` waits for flow `{dep}` to finish on every shard: {done} of {} splits done",
                    flow.flow.name,
                    plan.splits.len()
                )))
            })?;
        }
        Ok(())
    }

    /// The stored plan of `flow` and this shard's part of it, if there is one; refuses a plan
    /// made with another spec or shard count.
    pub fn stored(&self, flow: FlowRef<'_>) -> Result<Option<Start>, RunError> {
        let state = self.read()?;
        let Some(plan) = state.plans.into_iter().find(|p| p.flow == flow.flow.name) else {
            return Ok(None);
        };
        self.check(flow, &plan)?;
        let progress: Vec<Progress> = state
            .progress
            .into_iter()
            .filter(|p| p.flow == flow.flow.name)
            .collect();
        Ok(Some(self.start(plan, progress)))
    }

    fn check(&self, flow: FlowRef<'_>, plan: &Plan) -> Result<(), RunError> {
        let spec = flow.spec;
        let refuse = |m: String| Err(RunError::Config(spec.error("", m)));
        if plan.spec_hash != spec.hash {
            if !self.shard.is_sharded() && plan.shards == 1 {
                return refuse(format!(
                    "the spec changed since job '{}' recorded its plan in the target ({}); run with --fresh to start over",
                    self.job, run_label(&self.run)
                ));
            }
            return refuse(format!(
                "shard {}: the spec differs from the one {} was planned with (spec hash {}, planned with {}): every shard of a run must run the same spec",
                self.shard,
                self.run_name(),
                spec.hash,
                plan.spec_hash
            ));
        }
        if plan.shards != self.shard.count {
            let fix = if self.shard.is_sharded() {
                "give every shard the same count, or start a new run with another run id (--run or ETLHOST_RUN)"
            } else {
                "run it with --shard I/N as planned, or with --fresh to start over"
            };
            return refuse(format!(
                "{} was planned for {} shard(s), and this process runs {}: {fix}",
                self.run_name(),
                plan.shards,
                if self.shard.is_sharded() {
                    format!("shard {}", self.shard)
                } else {
                    "all of it".into()
                }
            ));
        }
        Ok(())
    }

    /// Plans `flow` (shard 0) and stores the plan, or waits for shard 0 to have stored it.
    pub fn plan(
        &self,
        flow: FlowRef<'_>,
        control: &Control,
        plan_now: impl FnOnce() -> Result<(Vec<Split>, Option<u64>), RunError>,
    ) -> Result<Start, RunError> {
        if self.shard.index == 0 {
            let (splits, estimated) = plan_now()?;
            let plan = Plan {
                job: self.job.clone(),
                flow: flow.flow.name.clone(),
                run: self.run.clone(),
                spec_hash: flow.spec.hash.clone(),
                shards: self.shard.count,
                splits,
                planned_at: crate::stats::iso(std::time::SystemTime::now()),
                failure: None,
            };
            let stored = self.ask(&StateRequest::Plan { plan: plan.clone() })?;
            let plan = stored.plans.into_iter().next().unwrap_or(plan);
            self.check(flow, &plan)?;
            let mine = self.start(plan, Vec::new());
            // The estimate is the plan's, narrowed to this shard's share.
            let share = estimated
                .map(|e| e * mine.splits.len() as u64 / mine.plan.splits.len().max(1) as u64);
            return Ok(Start {
                estimated: share,
                ..mine
            });
        }
        self.wait(control, || {
            Ok(match self.stored(flow)? {
                Some(start) => Ok(start),
                None => Err(format!(
                    "waiting for shard 0 to plan flow `{}` ({})",
                    flow.flow.name,
                    self.run_name()
                )),
            })
        })
    }

    /// This shard's splits of `plan` that are not done, each in progress starting after its key.
    fn start(&self, plan: Plan, progress: Vec<Progress>) -> Start {
        let splits = plan
            .splits
            .iter()
            .enumerate()
            .filter(|(pos, _)| self.shard.owns(*pos))
            .filter_map(|(_, s)| {
                let p = progress.iter().find(|p| p.split == s.id);
                if p.is_some_and(|p| p.done) {
                    return None;
                }
                let mut s = s.clone();
                if let (Some(r), Some(after)) = (s.range.as_mut(), p.and_then(|p| p.after.clone()))
                {
                    r.after = Some(after);
                    // NULL keys are read first: a key recorded means they are all behind us.
                    r.nulls = false;
                }
                Some(s)
            })
            .collect();
        Start {
            plan,
            splits,
            progress,
            estimated: None,
        }
    }
}
