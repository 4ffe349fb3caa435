//! Where a stream keeps its position, chosen once when it starts:
//!
//! - [`Store::Target`]: in the target, beside the data (sinks with the stream capability, the
//!   default for them). Each write of changes moves its writer's record in its own transaction
//!   ([`super::replay`]), and the job's record holds a lease: one process writes, the others wait
//!   as standbys and take over from the recorded position once it expires ([`Lease::take_over`],
//!   [`keep`]). A process whose lease was taken cannot write again: every write checks the epoch
//!   (fencing).
//! - [`Store::Local`]: the job's stream file, written on an interval ([`super::state`]); one
//!   process per job, which nothing enforces.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::{Position, StreamRecord, StreamStateRequest, WriterSlot};

use super::metrics::{Progress, Role};
use crate::error::RunError;
use crate::job::Job;
use crate::pipeline::{Control, StopReason};
use crate::plugin::Plugin;
use crate::spec::FlowRef;

pub(super) enum Store {
    Local(PathBuf),
    Target(Arc<Lease>),
}

impl Store {
    /// The job's store: the target when [`crate::job::streams_in_target`] says so, which needs
    /// every streaming flow to write to one target (the lease is one record).
    pub(super) fn choose(job: &Job, streams: &[FlowRef<'_>]) -> Result<Store, RunError> {
        if !crate::job::streams_in_target(job) {
            return Ok(Store::Local(super::state::path(&job.spec)));
        }
        let first = streams[0];
        let target = |f: &FlowRef<'_>| crate::job::stream_target(job, *f);
        if let Some(other) = streams.iter().find(|f| target(f) != target(&first)) {
            return Err(RunError::Config(other.error(
                "sink.options",
                "a stream that keeps its position in the target writes every streaming flow to one target (the same sink plugin, address and database as the first streaming flow): make them one, or set `checkpoint: {store: local}`",
            )));
        }
        let spec = &job.spec;
        Ok(Store::Target(Arc::new(Lease {
            plugin: job.plugins[first.index].sink.clone(),
            options: first.flow.sink.options.clone(),
            job: spec.job.name.clone(),
            holder: holder(),
            lease: spec.job.stream().lease.0,
            parts: spec.job.stream().max_transaction_changes,
            epoch: AtomicU64::new(0),
            fenced: Mutex::new(None),
            progress: std::sync::OnceLock::new(),
        })))
    }
}

/// Who this process is in the job's lease: `ETLHOST_HOLDER` (on Kubernetes, the pod's name), else
/// the host's name and the process id.
fn holder() -> String {
    if let Some(h) = std::env::var("ETLHOST_HOLDER")
        .ok()
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "etlhost".into());
    format!("{host}:{}", std::process::id())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The job's lease in the target, as this process holds (or waits for) it.
pub(super) struct Lease {
    plugin: Arc<Plugin>,
    options: serde_json::Map<String, serde_json::Value>,
    pub(super) job: String,
    pub(super) holder: String,
    pub(super) lease: Duration,
    /// `stream.max_transaction_changes`, kept with the lease (see `StreamRecord::parts`).
    pub(super) parts: u64,
    epoch: AtomicU64,
    /// Why this process may no longer write, once another took the job over.
    fenced: Mutex<Option<String>>,
    /// What `/readyz` and the metrics report, told when this process is fenced.
    progress: std::sync::OnceLock<Arc<Mutex<Progress>>>,
}

impl Lease {
    fn ask(&self, request: &StreamStateRequest) -> Result<StreamRecord, String> {
        self.plugin
            .stream_state(&self.options, request)
            .map_err(|e| e.to_string())
    }

    /// The job's records, asked again every second while the target cannot be reached (`None`:
    /// stopped meanwhile).
    pub(super) fn read_waiting(
        &self,
        control: &Control,
        progress: &Mutex<Progress>,
    ) -> Result<Option<StreamRecord>, RunError> {
        let mut warned: Option<Instant> = None;
        loop {
            let read = self.plugin.stream_state(
                &self.options,
                &StreamStateRequest::Read {
                    job: self.job.clone(),
                },
            );
            progress.lock().expect("progress").beat();
            match read {
                Ok(r) => return Ok(Some(r)),
                // A wrong password or option is not waited out.
                Err(e) if !e.is_retryable() => {
                    return Err(RunError::Start(format!(
                        "cannot read the stream's records in the target: {e}"
                    )))
                }
                Err(e) if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) => {
                    tracing::warn!(
                        "cannot read the stream's records of job `{}` in the target: {e}; trying again",
                        self.job
                    );
                    warned = Some(Instant::now());
                }
                Err(_) => {}
            }
            pause(control, Duration::from_secs(1));
            if control.stopping() {
                return Ok(None);
            }
        }
    }

    /// `--fresh`: the job's record and its writers' go; a process still writing under them is
    /// fenced at its next write.
    pub(super) fn forget(&self) -> Result<(), String> {
        self.ask(&StreamStateRequest::Forget {
            job: self.job.clone(),
        })
        .map(drop)
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Waits as the standby until this process holds the lease (or is stopped: `None`). A new
    /// job's record starts at `start`; `slots` are the writers this process will write with.
    pub(super) fn take_over(
        &self,
        start: &Position,
        slots: Vec<WriterSlot>,
        control: &Control,
        progress: &Mutex<Progress>,
    ) -> Result<Option<StreamRecord>, RunError> {
        // The holder this process waits for, and when its lease ends as last read.
        let mut waiting_for: Option<(String, u64)> = None;
        let mut last_error: Option<Instant> = None;
        loop {
            if control.stopping() {
                return Ok(None);
            }
            let asked = self.ask(&StreamStateRequest::Claim {
                job: self.job.clone(),
                holder: self.holder.clone(),
                lease_ms: self.lease.as_millis() as u64,
                now_ms: now_ms(),
                start: start.clone(),
                slots: slots.clone(),
                parts: self.parts,
            });
            let mut p = progress.lock().expect("progress");
            p.beat();
            match asked {
                Ok(r) if r.held => {
                    let lease = r.lease.clone().expect("a held lease is recorded");
                    self.epoch.store(lease.epoch, Ordering::SeqCst);
                    p.role = Role::Active;
                    p.takeovers += 1;
                    p.lease = Some((lease.holder, lease.epoch, lease.expires_ms));
                    match &waiting_for {
                        // Claimed before the lease it last read was due to end: it was released.
                        Some((from, ends)) if now_ms() < *ends => tracing::info!(
                            epoch = self.epoch(),
                            "taking over job `{}` from {from}, which released its lease",
                            self.job
                        ),
                        Some((from, _)) => tracing::info!(
                            epoch = self.epoch(),
                            "taking over job `{}` from {from}, whose lease expired",
                            self.job
                        ),
                        None => tracing::info!(
                            epoch = self.epoch(),
                            holder = %self.holder,
                            "holding the lease of job `{}`",
                            self.job
                        ),
                    }
                    return Ok(Some(r));
                }
                Ok(r) => {
                    p.role = Role::Standby;
                    let l = r.lease.unwrap_or_else(|| etlhost_plugin_sdk::Lease {
                        holder: "nobody".into(),
                        epoch: 0,
                        expires_ms: 0,
                    });
                    if waiting_for.as_ref().map(|w| w.0.as_str()) != Some(l.holder.as_str()) {
                        let left = l.expires_ms.saturating_sub(now_ms()) as f64 / 1000.0;
                        tracing::info!(
                            "standby: job `{}` is active in {} (lease for {left:.1} s more, epoch {}); waiting to take over",
                            self.job, l.holder, l.epoch
                        );
                    }
                    waiting_for = Some((l.holder.clone(), l.expires_ms));
                    p.lease = Some((l.holder, l.epoch, l.expires_ms));
                    if let Some(at) = r.resume {
                        p.acked = at;
                    }
                }
                Err(e) => {
                    // Not ready: a standby that cannot read the lease could not take over.
                    p.role = Role::Starting;
                    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                        tracing::warn!(
                            "cannot read the lease of job `{}`: {e}; trying again",
                            self.job
                        );
                        last_error = Some(Instant::now());
                    }
                }
            }
            drop(p);
            pause(control, Duration::from_secs(1));
        }
    }

    /// Stores where the stream resumes and extends the lease; the answer's `held` is false when
    /// another process holds it now.
    fn renew(&self, resume: &Position, snapshot_done: bool) -> Result<StreamRecord, String> {
        self.ask(&StreamStateRequest::Renew {
            job: self.job.clone(),
            holder: self.holder.clone(),
            epoch: self.epoch(),
            lease_ms: self.lease.as_millis() as u64,
            now_ms: now_ms(),
            resume: resume.clone(),
            snapshot_done,
        })
    }

    /// The snapshot is done: recorded at once, so that a restart after this (however soon) follows
    /// the log rather than copy again.
    pub(super) fn snapshot_done(&self, resume: &Position, control: &Control) -> Result<(), String> {
        let r = self.renew(resume, true)?;
        if !r.held {
            let why = format!(
                "job `{}` was taken over by another process during its snapshot",
                self.job
            );
            self.fence(why.clone(), control);
            return Err(format!("fenced: {why}"));
        }
        Ok(())
    }

    /// The stream stopped: its position is stored and the lease ends at once, so a standby takes
    /// over without waiting for it to expire. Not after a takeover (the record is another's).
    pub(super) fn release(&self, resume: &Position, error: Option<String>) {
        if self.fenced().is_some() {
            return;
        }
        let asked = self.ask(&StreamStateRequest::Release {
            job: self.job.clone(),
            holder: self.holder.clone(),
            epoch: self.epoch(),
            resume: resume.clone(),
            error,
        });
        match asked {
            Ok(r) if r.held => {
                tracing::info!(position = %resume, "released the lease of job `{}`", self.job)
            }
            Ok(_) => tracing::warn!(
                "the lease of job `{}` was no longer this process's",
                self.job
            ),
            Err(e) => tracing::warn!(
                "cannot release the lease of job `{}`: {e}; a standby takes over once it expires",
                self.job
            ),
        }
    }

    /// Reports this process's role to `progress` from now on.
    pub(super) fn report_to(&self, progress: Arc<Mutex<Progress>>) {
        let _ = self.progress.set(progress);
    }

    /// Another process holds the job: this one stops writing.
    pub(super) fn fence(&self, why: String, control: &Control) {
        if let Some(p) = self.progress.get() {
            p.lock().expect("progress").role = Role::Fenced;
        }
        let mut f = self.fenced.lock().expect("fenced");
        if f.is_none() {
            tracing::error!("fenced: {why}");
            *f = Some(why);
        }
        control.stop(StopReason::Fenced);
    }

    pub(super) fn fenced(&self) -> Option<String> {
        self.fenced.lock().expect("fenced").clone()
    }
}

/// Sleeps `d`, waking early when the job stops.
fn pause(control: &Control, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !control.stopping() {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// While the stream runs (`done` unset): renews the lease every third of its time, storing where
/// the stream resumes (the acknowledged position) and whether its snapshot is done. A renewal
/// that finds another holder fences this process.
pub(super) fn keep(
    lease: &Lease,
    progress: &Mutex<Progress>,
    snapshot_done: &AtomicBool,
    control: &Control,
    done: &AtomicBool,
) {
    let every = lease.lease / 3;
    let mut renewed = Instant::now();
    let mut last_ok = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if renewed.elapsed() < every || lease.fenced().is_some() {
            continue;
        }
        let resume = progress.lock().expect("progress").acked.clone();
        match lease.renew(&resume, snapshot_done.load(Ordering::SeqCst)) {
            Ok(r) if r.held => {
                renewed = Instant::now();
                last_ok = renewed;
                let l = r.lease.expect("a held lease is recorded");
                let mut p = progress.lock().expect("progress");
                p.lease = Some((l.holder, l.epoch, l.expires_ms));
                // What a restart resumes from at the least: only this may the source's server
                // forget (a mark moves `acked` without a write that records it).
                p.stored = Some(resume);
                // The follow loop beats once it follows; during the snapshot, a renewal is what
                // shows the process alive.
                if !snapshot_done.load(Ordering::SeqCst) {
                    p.beat();
                }
            }
            Ok(r) => {
                let by = r.lease.map_or("nobody".into(), |l| {
                    format!("`{}` (epoch {})", l.holder, l.epoch)
                });
                let why = format!(
                    "job `{}` is held by {by}: this process ({}, epoch {}) lost its lease and stops writing",
                    lease.job,
                    lease.holder,
                    lease.epoch()
                );
                lease.fence(why, control);
            }
            Err(e) => {
                let late = last_ok.elapsed();
                tracing::warn!(
                    "cannot renew the lease of job `{}` ({:.0} s since the last renewal, lease {:?}): {e}",
                    lease.job,
                    late.as_secs_f64(),
                    lease.lease
                );
                // Not again at once: every third of a second would flood the log.
                renewed = Instant::now()
                    .checked_sub(every.saturating_sub(Duration::from_secs(1)))
                    .unwrap_or_else(Instant::now);
            }
        }
    }
}
