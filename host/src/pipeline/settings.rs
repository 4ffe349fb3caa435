//! The host-owned knobs of a run, as the pipeline needs them (the run module fills them in from
//! the spec, so the engine never sees the file's model).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use etlhost_plugin_sdk::Value;

use crate::checkpoint::Checkpoint;
use crate::placement::Placement;

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
    /// never touch the same node (see `delivery::grouped`).
    pub endpoints: Option<Endpoints>,
    pub dead_letter: PathBuf,
    /// Where and how often progress is recorded; `None` records nothing.
    pub checkpoint: Option<CheckpointSettings>,
    /// Progress in the target, in each batch's transaction (see `delivery::ordered`).
    pub progress: Option<ProgressSettings>,
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

/// The columns that find a relationship's start and end nodes (several for a composite key).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub start: Vec<String>,
    pub end: Vec<String>,
    /// Where the target stores the nodes, when the spec asks for it; `None` groups by hash.
    pub placement: Option<Placement>,
}

/// What a flow records in the target, and where its splits stood before this run.
#[derive(Debug, Clone)]
pub struct ProgressSettings {
    pub job: String,
    pub flow: String,
    pub run: String,
    pub shard: u32,
    /// Split id -> rows behind it from earlier runs (and the key they reached).
    pub base: HashMap<u32, (u64, Option<Value>)>,
}
