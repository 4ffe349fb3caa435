//! Durable job progress: which splits are complete, and for a split in progress the key up to which
//! every row is acknowledged by the sink. A rerun of the same job resumes from it.
//!
//! This module is the file and what it says; keeping it up to date during a run is the pipeline's
//! checkpointer, and resuming from it, recording a failure and forgetting it are the local
//! progress store's (`progress::local`).
//!
//! The file is `<dir>/<job>[.<flow>].checkpoint.json`, replaced atomically (write a temporary file,
//! fsync, rename, fsync the directory), so a crash leaves either the old or the new checkpoint,
//! never half of one. It records a hash of the expanded spec ([`crate::spec::Spec::hash`]): a
//! changed spec, or the same file with other `${VAR}` values, is not resumed silently. A run that failed records how
//! ([`Checkpoint::failed`]), so that a rerun with nothing left to read does not report success.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use etlhost_plugin_sdk::{Failure, Split, Value};
use serde::{Deserialize, Serialize};

use crate::spec::FlowRef;
use crate::state_file::{file_stem, load_json, save_json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub job: String,
    /// The expanded spec's hash ([`crate::spec::Spec::hash`]).
    pub spec_hash: String,
    /// The plan of the first run: a resumed run reads these, not a new plan of changed data.
    pub splits: Vec<Split>,
    pub done: BTreeSet<u32>,
    /// Split id -> every row with a key up to and including this one is acknowledged.
    pub watermarks: BTreeMap<u32, Value>,
    pub updated: String,
    /// How the last run failed, if it did; kept until the job succeeds or starts over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failure>,
}

/// Where a flow's checkpoint lives: `<checkpoint.dir>/<job>[.<flow>].checkpoint.json`.
pub fn flow_path(flow: FlowRef<'_>) -> PathBuf {
    path(&flow.spec.job.checkpoint.dir, &flow.state_name())
}

pub fn path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{}.checkpoint.json", file_stem(job)))
}

pub fn load(path: &Path) -> Result<Option<Checkpoint>, String> {
    load_json(path, "checkpoint", "run with --fresh to start over")
}

pub fn save(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    save_json(path, cp)
}

/// The checkpoint of a flow planned anew: nothing done yet.
pub fn planned(flow: FlowRef<'_>, splits: Vec<Split>) -> Checkpoint {
    Checkpoint {
        job: flow.label(),
        spec_hash: flow.spec.hash.clone(),
        splits,
        done: Default::default(),
        watermarks: Default::default(),
        updated: String::new(),
        failed: None,
    }
}

/// The splits still to read, with completed ones left out and in-progress ones starting after
/// their watermark.
pub fn remaining(cp: &Checkpoint) -> Vec<Split> {
    cp.splits
        .iter()
        .filter(|s| !cp.done.contains(&s.id))
        .map(|s| {
            let mut s = s.clone();
            if let (Some(r), Some(w)) = (s.range.as_mut(), cp.watermarks.get(&s.id)) {
                r.after = Some(w.clone());
                // NULL keys are read first, so a non-NULL watermark means they are all behind us.
                r.nulls = false;
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let dir = std::env::temp_dir().join(format!("etlhost-cp-{}", std::process::id()));
        let p = path(&dir, "my job");
        assert!(p.ends_with("my_job.checkpoint.json"));
        let cp = Checkpoint {
            job: "my job".into(),
            spec_hash: "x".into(),
            splits: vec![Split {
                id: 0,
                range: None,
                cursor: None,
                stream: None,
            }],
            done: [0].into(),
            watermarks: BTreeMap::new(),
            updated: "now".into(),
            failed: None,
        };
        save(&p, &cp).unwrap();
        assert_eq!(load(&p).unwrap(), Some(cp));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
