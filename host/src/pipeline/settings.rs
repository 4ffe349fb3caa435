//! The host-owned knobs of a run, as the pipeline needs them (the run module fills them in from
//! the spec, so the engine never sees the file's model).

use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::Checkpoint;

#[derive(Debug, Clone)]
pub struct Settings {
    pub job: String,
    /// The flow's name in a job of several flows.
    pub flow: Option<String>,
    pub readers: usize,
    pub max_batch_rows: usize,
    pub max_batch_bytes: Option<usize>,
    pub batch_timeout: Option<Duration>,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub max_failed_rows: u64,
    /// A relationship flow's endpoint columns: its rows are grouped so that concurrent batches
    /// never touch the same node (see `grouping`).
    pub endpoints: Option<super::Endpoints>,
    pub dead_letter: PathBuf,
    /// Where and how often progress is recorded; `None` records nothing.
    pub checkpoint: Option<CheckpointSettings>,
    /// Progress in the target, in each batch's transaction (see `ordered`).
    pub progress: Option<super::ProgressSettings>,
}

impl Settings {
    /// How a transient failure is retried: the sink's `retry_backoff`, `max_retries` times.
    pub fn retry_policy(&self) -> crate::retry::Policy {
        crate::retry::Policy::new(self.retry_backoff, self.max_retries)
    }
}

#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub path: PathBuf,
    pub interval: Duration,
    /// What earlier runs of this job completed; this run's progress is added to it.
    pub base: Checkpoint,
}
