//! The stream's checkpoint: the position of the last source transaction whose every change the
//! sinks acknowledged, and whether the snapshot is behind us. One file per job, replaced
//! atomically, kept after the job ends (a stream never "completes").

use std::path::{Path, PathBuf};

use etlhost_plugin_sdk::Position;
use serde::{Deserialize, Serialize};

use crate::spec::Spec;
use crate::state_file;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub position: Position,
    /// `false` while the snapshot runs: a rerun takes the snapshot again (resuming its splits)
    /// and then streams from `position`, captured before it began.
    pub snapshot_done: bool,
}

pub fn path(spec: &Spec) -> PathBuf {
    // Beside the flows' checkpoints, which are relative to the working directory too.
    let dir = &spec.job.checkpoint.dir;
    dir.join(format!(
        "{}.stream.json",
        state_file::file_stem(&spec.job.name)
    ))
}

pub fn load(path: &Path) -> Result<Option<StreamState>, String> {
    state_file::load_json(
        path,
        "stream checkpoint",
        "remove it or run with --fresh to start over with a new snapshot",
    )
}

pub fn save(path: &Path, st: &StreamState) -> Result<(), String> {
    state_file::save_json(path, st)
        .map_err(|e| format!("cannot write stream checkpoint {}: {e}", path.display()))
}
