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
    /// Set for an incremental read: only rows in this cursor range, in addition to `range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<CursorRange>,
    /// Set for a change stream (`mode: stream`): the reader returns change batches
    /// ([`crate::change`]) from this position on, until the host closes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::change::StreamRequest>,
}

/// The slice of an incremental read: rows whose `column` is `>= from` (when set) and `<= to` (when
/// set); rows where `column` is NULL are not in it.
///
/// `from` is inclusive on purpose: rows that share the last run's highest cursor value but were
/// committed after it read are not missed. A source that sees a `cursor` it cannot honour must fail
/// (see [`crate::Source::INCREMENTAL`]); ignoring it would silently read everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorRange {
    pub column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// Rows whose `column` lies in `[start, end)`; a missing bound is unbounded on that side. Rows where
/// `column` is NULL belong to the split with `nulls: true` (exactly one per plan).
///
/// With `columns` (a composite key, two or more columns), the key is the tuple of those columns,
/// compared column by column, and `start`, `end` and `after` are [`Value::List`]s of one value per
/// column; `column` is then the first of them. Such a key has no NULLs (the host checks).
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

impl KeyRange {
    /// The key's columns: `columns`, or `column` alone.
    pub fn key_columns(&self) -> &[String] {
        if self.columns.is_empty() {
            std::slice::from_ref(&self.column)
        } else {
            &self.columns
        }
    }
}

/// Questions the host asks a source while planning, through the ABI's `call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum PlanRequest {
    /// The smallest and largest value of a column, its declared type and the row count, over the
    /// rows in `cursor` when set.
    KeyBounds {
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<CursorRange>,
    },
    /// The same answer for an incremental read's cursor column over the rows from `from` on. A
    /// separate request so that a source built before incremental reads refuses it instead of
    /// ignoring the cursor.
    CursorBounds {
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Value>,
    },
    /// The source's tables, columns, keys and foreign keys, for `etlhost init` ([`Catalog`]).
    Describe,
    /// About `count` keys spread evenly over the rows (in `cursor` when set) that have no NULL in
    /// `columns`, in the source's own ascending order ([`KeySample`]); a key of several columns is
    /// a [`Value::List`]. The host cuts splits of equal row counts from it where keys are unevenly
    /// spread or are not numbers. A source built before this request refuses it, and the host
    /// falls back to equal key ranges.
    KeySample {
        columns: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<CursorRange>,
        count: u64,
    },
    /// For `mode: stream`: check that the server can stream changes (refusing with the setting
    /// to fix) and answer where its change log is now ([`crate::change::StreamHead`]). Sources
    /// built before streaming refuse the unknown request, so the host never streams from them.
    StreamPosition,
    /// For `mode: stream`, once, before the snapshot: check as [`PlanRequest::StreamPosition`]
    /// does, make what the source needs to follow these tables (PostgreSQL: its publication and
    /// replication slot, when absent) and answer the position to start from, with a snapshot at
    /// it when the source has one ([`crate::change::StreamHead::snapshot`]). Sources built before
    /// it refuse it; the host then asks [`PlanRequest::StreamPosition`].
    StreamStart {
        /// Table names as the flows' source options name them.
        #[serde(default)]
        tables: Vec<String>,
    },
    /// For `mode: stream`: every change up to `position` is durable in the target (the host
    /// recorded it), so the source may let its server forget it (PostgreSQL: the replication
    /// slot's confirmed position). Never sent for a position the host has not recorded. Sources
    /// built before it refuse it, and the host ignores that refusal.
    StreamAck { position: crate::change::Position },
}

/// What `etlhost init` needs to know about a relational source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub tables: Vec<TableInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// In key order; empty when the table has no primary key.
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
    /// The source's estimate, 0 when unknown.
    #[serde(default)]
    pub estimated_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// The source's own name for the type, e.g. `bigint unsigned`.
    pub declared_type: String,
    #[serde(default = "any")]
    pub column_type: ColumnType,
    pub nullable: bool,
}

/// `columns` of the table refer to `references` (in the same order) of `table`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub table: String,
    pub references: Vec<String>,
    /// What the source does to this table's rows when the referenced row goes. A source built
    /// before the rules were read sends none, read as `no_action`.
    #[serde(default)]
    pub on_delete: FkRule,
    /// What the source does to this table's rows when the referenced columns change.
    #[serde(default)]
    pub on_update: FkRule,
}

/// A foreign key's referential action (`ON DELETE` / `ON UPDATE`), as the catalog names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FkRule {
    /// The referencing rows go too (delete), or take the new values (update).
    Cascade,
    /// The referencing columns become NULL.
    SetNull,
    /// The statement is refused while rows refer to the row.
    Restrict,
    /// The same as `restrict` in InnoDB (checked at the end of the statement elsewhere).
    #[default]
    NoAction,
    /// Parsed by MariaDB but refused by InnoDB.
    SetDefault,
    /// A rule this SDK does not know.
    #[serde(other)]
    Unknown,
}

impl FkRule {
    /// Reads `information_schema.REFERENTIAL_CONSTRAINTS`' `DELETE_RULE` / `UPDATE_RULE`.
    pub fn from_sql(rule: &str) -> FkRule {
        match rule.to_ascii_uppercase().as_str() {
            "CASCADE" => FkRule::Cascade,
            "SET NULL" => FkRule::SetNull,
            "RESTRICT" => FkRule::Restrict,
            "NO ACTION" => FkRule::NoAction,
            "SET DEFAULT" => FkRule::SetDefault,
            _ => FkRule::Unknown,
        }
    }

    /// Whether the source changes other rows through it without writing them to its change log.
    pub fn changes_rows(self) -> bool {
        matches!(self, FkRule::Cascade | FkRule::SetNull)
    }
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

/// The answer to [`PlanRequest::KeySample`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySample {
    /// Sampled non-NULL keys in ascending order as the source compares them (its collation for
    /// text), duplicates kept, so that a key's position tells the share of rows below it.
    pub keys: Vec<Value>,
    /// The rows with a non-NULL key, which the sample was drawn from.
    pub rows: u64,
}

fn any() -> ColumnType {
    ColumnType::Any
}
