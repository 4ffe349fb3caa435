//! Durable job progress: which splits are complete, and for a split in progress the key up to which
//! every row is acknowledged by the sink. A rerun of the same job resumes from it.
//!
//! The file is `<dir>/<job>.checkpoint.json`, replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory), so a crash leaves either the old or the new checkpoint, never half
//! of one. It records a hash of the spec file: a changed spec is not resumed silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use etlhost_plugin_sdk::{Split, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub job: String,
    /// FNV-1a of the spec file's bytes, in hex.
    pub spec_hash: String,
    /// The plan of the first run: a resumed run reads these, not a new plan of changed data.
    pub splits: Vec<Split>,
    pub done: BTreeSet<u32>,
    /// Split id -> every row with a key up to and including this one is acknowledged.
    pub watermarks: BTreeMap<u32, Value>,
    pub updated: String,
}

/// A stable hash of the spec file, to notice a changed spec.
pub fn spec_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub fn path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{}.checkpoint.json", file_stem(job)))
}

/// A name made safe to be part of a file name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn load(path: &Path) -> Result<Option<Checkpoint>, String> {
    load_json(path, "checkpoint", "run with --fresh to start over")
}

/// A JSON state file, `None` when there is none; `what` and `remedy` go into the errors.
pub fn load_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    remedy: &str,
) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{what} {} is unreadable ({e}); {remedy}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {what} {}: {e}", path.display())),
    }
}

pub fn save(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    write_atomic(
        path,
        &serde_json::to_vec_pretty(cp).expect("checkpoints serialise"),
    )
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
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
    fn hash_is_stable_and_sensitive() {
        assert_eq!(spec_hash(b""), "cbf29ce484222325");
        assert_ne!(spec_hash(b"name: a"), spec_hash(b"name: b"));
    }

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
            }],
            done: [0].into(),
            watermarks: BTreeMap::new(),
            updated: "now".into(),
        };
        save(&p, &cp).unwrap();
        assert_eq!(load(&p).unwrap(), Some(cp));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
