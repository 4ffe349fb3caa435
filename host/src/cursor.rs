//! Incremental sync: how far a flow's last successful run read, kept between runs.
//!
//! A flow with `source.cursor_column` reads only rows whose cursor is at or past the stored value
//! and at most the column's maximum when the run was planned; when the flow succeeds, that maximum
//! becomes the stored value. The lower bound is inclusive, so rows sharing the boundary value are
//! read again rather than missed (a `MERGE` makes that harmless); rows written during a run with a
//! higher cursor are left for the next run. The file is `<checkpoint.dir>/<job>[.<flow>].cursor.json`.

use std::path::{Path, PathBuf};

use etlhost_plugin_sdk::Value;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{file_stem, load_json, write_atomic};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub job: String,
    pub flow: String,
    pub column: String,
    /// The next run reads rows with `column >= value`.
    pub value: Value,
    /// `value` for people reading the file.
    #[serde(default)]
    pub text: String,
    pub updated: String,
}

pub fn path(dir: &Path, state_name: &str) -> PathBuf {
    dir.join(format!("{}.cursor.json", file_stem(state_name)))
}

pub fn load(path: &Path) -> Result<Option<Cursor>, String> {
    load_json(
        path,
        "cursor file",
        "run with --full to read every row again",
    )
}

pub fn save(path: &Path, cursor: &Cursor) -> std::io::Result<()> {
    write_atomic(
        path,
        &serde_json::to_vec_pretty(cursor).expect("cursors serialise"),
    )
}
