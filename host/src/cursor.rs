//! Incremental sync: how far a flow's last successful run read, kept between runs.
//!
//! A flow with `source.cursor_column` reads only rows whose cursor is at or past the stored value
//! and at most the column's maximum when the run was planned; when the flow succeeds, that maximum
//! becomes the stored value. The lower bound is inclusive, so rows sharing the boundary value are
//! read again rather than missed (a `MERGE` makes that harmless); rows written during a run with a
//! higher cursor are left for the next run. The file is `<checkpoint.dir>/<job>[.<flow>].cursor.json`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use etlhost_plugin_sdk::{CursorRange, Split, Value};
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::plugin::SourceHandle;
use crate::spec::FlowRef;
use crate::state_file::{file_stem, load_json, save_json};

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

fn flow_path(flow: FlowRef<'_>) -> PathBuf {
    path(&flow.spec.job.checkpoint.dir, &flow.state_name())
}

pub fn load(path: &Path) -> Result<Option<Cursor>, String> {
    load_json(
        path,
        "cursor file",
        "run with --full to read every row again",
    )
}

pub fn save(path: &Path, cursor: &Cursor) -> std::io::Result<()> {
    save_json(path, cursor)
}

/// The rows an incremental flow reads this time: from the stored cursor (inclusive, none with
/// `full`) to the column's current maximum. `Ok(None)` when the flow is not incremental.
pub fn range(
    flow: FlowRef<'_>,
    source: &SourceHandle,
    full: bool,
) -> Result<Option<CursorRange>, RunError> {
    let Some(column) = &flow.flow.source.cursor_column else {
        return Ok(None);
    };
    let path = flow_path(flow);
    let stored = if full {
        None
    } else {
        load(&path).map_err(RunError::Start)?
    };
    if let Some(c) = stored.as_ref().filter(|c| &c.column != column) {
        return Err(RunError::Config(flow.error(
            "source.cursor_column",
            format!(
                "the cursor stored in {} is for column `{}`, not `{column}`; run with --full to read every row and start a new cursor",
                path.display(),
                c.column
            ),
        )));
    }
    let from = stored.map(|c| c.value);
    let bounds = source.cursor_bounds(column, from.as_ref()).map_err(|e| {
        RunError::Config(flow.error(
            "source.cursor_column",
            format!("cannot read incrementally on `{column}`: {e}"),
        ))
    })?;
    // No row at or past the cursor: read nothing, keep the cursor.
    let to = if bounds.max.is_null() {
        from.clone()
    } else {
        Some(bounds.max)
    };
    let range = CursorRange {
        column: column.clone(),
        from,
        to,
    };
    tracing::info!(
        job = %flow.label(),
        "incremental read: `{}` from {} (inclusive) to {}",
        range.column,
        describe(&range.from),
        describe(&range.to)
    );
    Ok(Some(range))
}

fn describe(v: &Option<Value>) -> String {
    v.as_ref()
        .map_or_else(|| "the first row".to_string(), Value::to_string)
}

/// Where the planned splits' incremental read ends: the column and value to store once every row
/// is written.
pub fn reached(splits: &[Split]) -> Option<(String, Value)> {
    splits
        .iter()
        .find_map(|s| s.cursor.clone())
        .and_then(|c| Some((c.column, c.to?)))
}

/// Stores where a flow that succeeded read up to. Failing to store it costs re-reading next
/// time, never rows, so it is a warning.
pub fn store(flow: FlowRef<'_>, (column, value): (String, Value)) {
    let path = flow_path(flow);
    let c = Cursor {
        job: flow.spec.job.name.clone(),
        flow: flow.flow.name.clone(),
        column,
        text: value.to_string(),
        value,
        updated: crate::stats::iso(SystemTime::now()),
    };
    match save(&path, &c) {
        Ok(()) => {
            tracing::info!(job = %flow.label(), "cursor stored: `{}` = {}", c.column, c.value)
        }
        Err(e) => tracing::warn!("cannot write cursor file {}: {e}", path.display()),
    }
}
