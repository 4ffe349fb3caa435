//! What the host hands a source: splits to read, and planning questions to answer.

use serde::{Deserialize, Serialize};

use crate::value::{ColumnType, Value};

/// One unit of reading work. The host decides how a table is split; the source only reads the rows
/// of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Unique within a job run, dense from 0.
    pub id: u32,
    /// `None` reads every row of the source.
    pub range: Option<KeyRange>,
}

/// Rows whose `column` lies in `[start, end)`; a missing bound is unbounded on that side. Rows where
/// `column` is NULL belong to the split with `nulls: true` (exactly one per plan).
///
/// A source reads a split's rows in ascending order of `column` (NULLs first), so that the host can
/// record how far a split got. When `after` is set (a resumed split), only rows with `column >
/// after` are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRange {
    pub column: String,
    pub start: Option<Value>,
    pub end: Option<Value>,
    #[serde(default)]
    pub nulls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// Questions the host asks a source while planning, through the ABI's `call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum PlanRequest {
    /// The smallest and largest value of a column, its declared type and the row count.
    KeyBounds { column: String },
}

/// The answer to [`PlanRequest::KeyBounds`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyBounds {
    pub column: String,
    /// The source's own name for the column's type, e.g. `bigint unsigned`, for error messages.
    pub declared_type: String,
    /// The type its values have; `Any` when the source cannot tell.
    #[serde(default = "any")]
    pub column_type: ColumnType,
    pub min: Value,
    pub max: Value,
    pub rows: u64,
}

fn any() -> ColumnType {
    ColumnType::Any
}
