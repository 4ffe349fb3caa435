//! The stream's checkpoint: the position of the last source transaction whose every change the
//! sinks acknowledged (or, inside a transaction larger than `stream: max_transaction_changes`,
//! its start and how many of its changes are written: `skip`), and whether the snapshot is
//! behind us. One file per job, replaced
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint inside a large transaction keeps how far into it the graph is; one written
    /// before positions had `skip` reads as a transaction's commit.
    #[test]
    fn a_position_inside_a_transaction_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("etlhost-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("job.stream.json");
        let inside = StreamState {
            position: Position {
                file: "binlog.000003".into(),
                pos: 4_096,
                gtid: Some("0-1-42".into()),
                skip: 40_000,
            },
            snapshot_done: true,
        };
        save(&path, &inside).unwrap();
        assert_eq!(load(&path).unwrap(), Some(inside));
        std::fs::write(
            &path,
            r#"{"position": {"file": "binlog.000003", "pos": 4096}, "snapshot_done": true}"#,
        )
        .unwrap();
        let old = load(&path).unwrap().unwrap();
        assert_eq!(old.position.skip, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
