//! Change data capture: rows that carry their kind (insert, update, delete), the row as it was, and
//! where in the source's change log they come from.
//!
//! Nothing in the C ABI changes for this (see the SDK README, "Streaming changes"):
//!
//! - a source that can stream answers [`crate::PlanRequest::StreamPosition`] (older sources refuse
//!   the unknown request, so the host refuses to stream from them) and reads a [`crate::Split`]
//!   whose `stream` is set by returning change batches from `next_batch`;
//! - a change batch crosses as an ordinary [`Batch`] in [`crate::codec`]'s format whose first
//!   columns are the reserved ones below ([`ChangeBatch::into_batch`], [`ChangeBatch::from_batch`]);
//! - a sink that can write changes says so with [`crate::Sink::CHANGES`]; the export macro adds two
//!   optional symbols ([`crate::abi::SINK_CHECK_CHANGES_SYMBOL`],
//!   [`crate::abi::SINK_WRITE_CHANGES_SYMBOL`]) that the host looks up by name, so sinks built
//!   before them load unchanged and are refused for streaming flows only.

use serde::{Deserialize, Serialize};

use crate::value::{Batch, Column, ColumnType, Row, Schema, Value};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
    /// No row: the stream got this far (a transaction of other tables, a heartbeat), so the host
    /// can advance its position and lag while a table is quiet.
    Mark,
    /// No row: every row of the table is gone at this point of the log (MySQL's `TRUNCATE`), so
    /// the host removes what the table's flows wrote, in order with the changes around it.
    Truncate,
}

impl ChangeKind {
    fn tag(self) -> i64 {
        match self {
            ChangeKind::Mark => 0,
            ChangeKind::Insert => 1,
            ChangeKind::Update => 2,
            ChangeKind::Delete => 3,
            ChangeKind::Truncate => 4,
        }
    }

    pub(crate) fn from_tag(tag: i64) -> Option<ChangeKind> {
        Some(match tag {
            0 => ChangeKind::Mark,
            1 => ChangeKind::Insert,
            2 => ChangeKind::Update,
            3 => ChangeKind::Delete,
            4 => ChangeKind::Truncate,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::Mark => "mark",
            ChangeKind::Truncate => "truncate",
        }
    }

    /// Whether the change carries a row of the table (marks and truncates do not).
    pub fn has_row(self) -> bool {
        !matches!(self, ChangeKind::Mark | ChangeKind::Truncate)
    }
}

/// A place in a source's change log: for MySQL a binlog file and offset, plus the GTID position
/// where the server gives one. Resuming at a position reads what comes after it.
///
/// `skip` places it inside a transaction too large to hand on whole: the transaction that starts
/// at `file:pos` has had its first `skip` changes (of the streamed tables, in log order) written,
/// so resuming reads that transaction again and drops those.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub file: String,
    pub pos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
}

impl Position {
    /// The order of the log: file, then offset, then how far into a large transaction. A source
    /// names its files so that they sort in log order (MySQL's `binlog.000001`, ...), or keeps one
    /// `file` and a growing `pos` (a PostgreSQL LSN); the GTID is not compared.
    pub fn log_cmp(&self, other: &Position) -> std::cmp::Ordering {
        (self.file.as_str(), self.pos, self.skip).cmp(&(other.file.as_str(), other.pos, other.skip))
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if self.skip > 0 {
            write!(f, " +{} changes", self.skip)?;
        }
        if let Some(g) = &self.gtid {
            write!(f, " (GTID {g})")?;
        }
        Ok(())
    }
}

/// What the host asks a streaming source to read: the changes after `from` of these tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRequest {
    pub from: Position,
    /// Table names as the source's options name them; empty: every table.
    #[serde(default)]
    pub tables: Vec<String>,
    /// A transaction with more changes than this is handed on in parts of at most this many, each
    /// ending in a change marked `last` whose `commit` is a [`Position`] with `skip`; 0: whole.
    #[serde(default)]
    pub max_transaction_changes: u64,
}

/// The answer to [`crate::PlanRequest::StreamPosition`] and [`crate::PlanRequest::StreamStart`]:
/// where the change log is now, after the source has checked that it can stream at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamHead {
    pub position: Position,
    /// A snapshot of the source exactly at `position` that the snapshot's readers use
    /// (PostgreSQL's exported snapshot of a new replication slot), so that the copy and the
    /// change stream meet without replaying anything. `None`: the copy is taken after `position`
    /// and the changes in between are applied again (idempotent writes make that harmless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The source's change log has the rows its foreign keys' `ON DELETE`/`ON UPDATE` actions
    /// change (PostgreSQL logs them as ordinary row changes; MySQL does not), so the host must
    /// not derive those changes itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs_cascades: bool,
}

/// One changed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Insert and update: the row as it is now. Delete: the row as it was. Mark: empty.
    pub row: Row,
    /// Update: the row as it was before. A source emits an update that changes the primary key as
    /// a delete of the old row and an insert of the new one, so an update keeps its key; that
    /// insert carries the old row here too, so that the host can tell a key change (which
    /// `ON UPDATE` foreign keys follow) from a delete and an insert.
    pub old: Option<Row>,
    /// Where the change's transaction ends: resuming there reads what comes after it.
    pub commit: Position,
    /// The last change of its transaction: once it and every change before it are written, the
    /// host may record `commit`.
    pub last: bool,
    /// When the source wrote it (seconds since 1970, UTC), for lag.
    pub timestamp: u32,
    /// The source changed the row with its foreign-key actions off (MySQL's
    /// `foreign_key_checks = 0`): no `ON DELETE`/`ON UPDATE` rule followed from it, so the host
    /// must not apply one either.
    pub no_fk_actions: bool,
}

/// Changes of one table, in log order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub table: String,
    /// The table's columns; every row (and old row) has one value per column.
    pub schema: Schema,
    /// Indices into `schema` of the primary key, used to keep one key's changes in order.
    pub key: Vec<usize>,
    pub changes: Vec<Change>,
}

const KIND: &str = "_etl_kind";
const TABLE: &str = "_etl_table";
const KEY: &str = "_etl_key";
const FILE: &str = "_etl_file";
const POS: &str = "_etl_pos";
const GTID: &str = "_etl_gtid";
const LAST: &str = "_etl_last";
const TS: &str = "_etl_ts";
/// Added after the first eight: batches from sources built before them have neither (no `skip`,
/// foreign-key actions on).
const SKIP: &str = "_etl_skip";
const NO_FK: &str = "_etl_no_fk";
pub(crate) const RESERVED: usize = 10;
/// The reserved columns every version has.
const FIRST_EIGHT: [&str; 8] = [KIND, TABLE, KEY, FILE, POS, GTID, LAST, TS];
const OLD: &str = "_etl_old.";

impl ChangeBatch {
    /// [`ChangeBatch::into_batch`] encoded in the codec's format, read from the changes in place:
    /// no value is copied into an intermediate batch, which is most of what crossing the boundary
    /// costs a change.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.schema.len();
        let cols = self.columns();
        let key = self.key_text();
        let mut out =
            crate::codec::Builder::new(&cols, 16 * self.changes.len() * (RESERVED + 2 * n));
        for c in &self.changes {
            out.push_int(c.kind.tag());
            out.push_string(&self.table);
            out.push_string(&key);
            out.push_string(&c.commit.file);
            out.push_uint(c.commit.pos);
            match &c.commit.gtid {
                Some(g) => out.push_string(g),
                None => out.push_null(),
            }
            out.push_value(&Value::Bool(c.last));
            out.push_int(c.timestamp as i64);
            out.push_uint(c.commit.skip);
            out.push_value(&Value::Bool(c.no_fk_actions));
            for i in 0..n {
                match c.row.get(i) {
                    Some(v) => out.push_value(v),
                    None => out.push_null(),
                }
            }
            for i in 0..n {
                match c.old.as_ref().and_then(|o| o.get(i)) {
                    Some(v) => out.push_value(v),
                    None => out.push_null(),
                }
            }
            out.end_row();
        }
        out.finish()
    }

    /// The columns of [`ChangeBatch::into_batch`]: the reserved ones, the table's, the old row's.
    fn columns(&self) -> Vec<Column> {
        let mut cols: Vec<Column> = [
            (KIND, ColumnType::Int),
            (TABLE, ColumnType::String),
            (KEY, ColumnType::String),
            (FILE, ColumnType::String),
            (POS, ColumnType::UInt),
            (GTID, ColumnType::Any),
            (LAST, ColumnType::Bool),
            (TS, ColumnType::Int),
            (SKIP, ColumnType::UInt),
            (NO_FK, ColumnType::Bool),
        ]
        .into_iter()
        .map(|(name, ty)| Column {
            name: name.into(),
            ty,
        })
        .collect();
        cols.extend(self.schema.iter().cloned());
        cols.extend(self.schema.iter().map(|c| Column {
            name: format!("{OLD}{}", c.name),
            ty: c.ty,
        }));
        cols
    }

    fn key_text(&self) -> String {
        self.key
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The batch that crosses the plugin boundary: the reserved columns, the table's columns, then
    /// each column again as `_etl_old.<name>` (NULL except for updates).
    pub fn into_batch(self) -> Batch {
        let n = self.schema.len();
        let cols = self.columns();
        let key = self.key_text();
        let rows = self
            .changes
            .into_iter()
            .map(|c| {
                let mut r = Vec::with_capacity(RESERVED + 2 * n);
                r.push(Value::Int(c.kind.tag()));
                r.push(Value::String(self.table.clone()));
                r.push(Value::String(key.clone()));
                r.push(Value::String(c.commit.file));
                r.push(Value::UInt(c.commit.pos));
                r.push(c.commit.gtid.map_or(Value::Null, Value::String));
                r.push(Value::Bool(c.last));
                r.push(Value::Int(c.timestamp as i64));
                r.push(Value::UInt(c.commit.skip));
                r.push(Value::Bool(c.no_fk_actions));
                let mut row = c.row;
                row.resize(n, Value::Null);
                r.extend(row);
                match c.old {
                    Some(mut old) => {
                        old.resize(n, Value::Null);
                        r.extend(old);
                    }
                    None => r.extend(std::iter::repeat_n(Value::Null, n)),
                }
                r
            })
            .collect();
        Batch {
            schema: cols.into(),
            rows,
        }
    }

    /// Whether a batch is a change batch (it starts with the reserved columns).
    pub fn is_change_batch(batch: &Batch) -> bool {
        batch.schema.first().is_some_and(|c| c.name == KIND)
    }

    /// Takes a change batch apart again; an error says what is malformed.
    pub fn from_batch(batch: Batch) -> Result<ChangeBatch, String> {
        let (reserved, n) = layout(&batch.schema)?;
        let schema: Schema = batch.schema[reserved..reserved + n].to_vec().into();
        let mut table = String::new();
        let mut key = Vec::new();
        let mut changes = Vec::with_capacity(batch.rows.len());
        for (i, mut r) in batch.rows.into_iter().enumerate() {
            if r.len() != reserved + 2 * n {
                return Err(format!("change {i} has {} values", r.len()));
            }
            let old: Row = r.split_off(reserved + n);
            let row: Row = r.split_off(reserved);
            let text = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
            let kind = match &r[0] {
                Value::Int(t) => ChangeKind::from_tag(*t),
                _ => None,
            }
            .ok_or_else(|| format!("change {i} has no valid kind"))?;
            if i == 0 {
                table = text(&r[1]).unwrap_or_default();
                key = parse_key(&r[2])?;
            }
            let commit = Position {
                file: text(&r[3]).unwrap_or_default(),
                pos: match r[4] {
                    Value::UInt(p) => p,
                    Value::Int(p) => p as u64,
                    _ => 0,
                },
                gtid: text(&r[5]),
                skip: match r.get(8) {
                    Some(Value::UInt(s)) => *s,
                    _ => 0,
                },
            };
            changes.push(Change {
                kind,
                old: match kind {
                    ChangeKind::Update => Some(old),
                    // A key change's insert: a row's old image is never all NULL (it has a key).
                    ChangeKind::Insert if old.iter().any(|v| *v != Value::Null) => Some(old),
                    _ => None,
                },
                row: if kind.has_row() { row } else { Vec::new() },
                commit,
                last: matches!(r[6], Value::Bool(true)),
                timestamp: match r[7] {
                    Value::Int(t) => t as u32,
                    _ => 0,
                },
                no_fk_actions: reserved > 9 && matches!(r[9], Value::Bool(true)),
            });
        }
        Ok(ChangeBatch {
            table,
            schema,
            key,
            changes,
        })
    }

    /// [`ChangeBatch::from_batch`] of the batch in `bytes` (the codec's format), read from the
    /// bytes in place: each value goes straight into its change, with no row of every column in
    /// between, and what a change does not keep (the old row of a delete, or of an insert that is
    /// no key change; a mark's row) is checked as the codec checks it but never built.
    pub fn decode(bytes: &[u8]) -> Result<ChangeBatch, String> {
        let mut r = crate::codec::Reader::new(bytes);
        let (cols, nrows) = crate::codec::header(&mut r).map_err(|e| e.to_string())?;
        let (reserved, n) = layout(&cols)?;
        let schema: Schema = cols[reserved..reserved + n].to_vec().into();
        let (mut table, mut key) = (String::new(), Vec::new());
        let mut changes = Vec::with_capacity(nrows.min(1 << 20));
        let mut head: Vec<Value> = Vec::with_capacity(RESERVED);
        for i in 0..nrows {
            head.clear();
            for j in 0..reserved {
                // The table and key are the same on every change: only the first one's are read.
                if i > 0 && (j == 1 || j == 2) {
                    r.skip(0).map_err(|e| e.to_string())?;
                    head.push(Value::Null);
                } else {
                    head.push(r.value(0).map_err(|e| e.to_string())?);
                }
            }
            let kind = match head[0] {
                Value::Int(t) => ChangeKind::from_tag(t),
                _ => None,
            }
            .ok_or_else(|| format!("change {i} has no valid kind"))?;
            if i == 0 {
                table = match std::mem::replace(&mut head[1], Value::Null) {
                    Value::String(s) => s,
                    _ => String::new(),
                };
                key = parse_key(&head[2])?;
            }
            let row = read_values(&mut r, n, kind.has_row(), false)?.unwrap_or_default();
            let old = match kind {
                ChangeKind::Update => read_values(&mut r, n, true, false)?,
                ChangeKind::Insert => read_values(&mut r, n, true, true)?,
                _ => read_values(&mut r, n, false, false)?,
            };
            changes.push(change_of(kind, row, old, &mut head, reserved));
        }
        r.end().map_err(|e| e.to_string())?;
        Ok(ChangeBatch {
            table,
            schema,
            key,
            changes,
        })
    }

    /// The rows of these changes as a plain batch of the table's columns (the new row for inserts
    /// and updates, the old row for deletes), e.g. for a sink's `$batch`.
    pub fn rows(&self, changes: &[Change]) -> Batch {
        Batch {
            schema: self.schema.clone(),
            rows: changes.iter().map(|c| c.row.clone()).collect(),
        }
    }

    /// The primary key values of a change's row.
    pub fn key_of<'a>(&self, change: &'a Change) -> Vec<&'a Value> {
        self.key.iter().filter_map(|i| change.row.get(*i)).collect()
    }
}

/// How many reserved columns a change batch of `cols` has (sources built before `_etl_skip` and
/// `_etl_no_fk` send fewer), and how many columns its table has.
pub(crate) fn layout(cols: &[Column]) -> Result<(usize, usize), String> {
    let names: Vec<&str> = cols
        .iter()
        .take(RESERVED)
        .map(|c| c.name.as_str())
        .collect();
    if names.len() < FIRST_EIGHT.len() || names[..FIRST_EIGHT.len()] != FIRST_EIGHT {
        return Err("not a change batch: the reserved columns are missing".into());
    }
    let reserved = match (names.get(8), names.get(9)) {
        (Some(&SKIP), Some(&NO_FK)) => 10,
        (Some(&SKIP), _) => 9,
        _ => 8,
    };
    let rest = cols.len() - reserved;
    if rest % 2 != 0 {
        return Err("a change batch has as many old columns as columns".into());
    }
    Ok((reserved, rest / 2))
}

/// The key's column indices, from `_etl_key`'s text.
pub(crate) fn parse_key(v: &Value) -> Result<Vec<usize>, String> {
    let Value::String(text) = v else {
        return Ok(Vec::new());
    };
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .collect()
}

/// The next `n` values: built when `keep` (and, when `unless_null`, only if one is not NULL),
/// otherwise checked and passed over.
fn read_values(
    r: &mut crate::codec::Reader<'_>,
    n: usize,
    keep: bool,
    unless_null: bool,
) -> Result<Option<Row>, String> {
    let e = |e: crate::codec::DecodeError| e.to_string();
    if !keep {
        for _ in 0..n {
            r.skip(0).map_err(e)?;
        }
        return Ok(None);
    }
    let mut row: Option<Row> = None;
    for j in 0..n {
        let v = r.value(0).map_err(e)?;
        match &mut row {
            Some(row) => row.push(v),
            None if unless_null && v == Value::Null => {}
            None => {
                let mut first = Vec::with_capacity(n);
                first.resize(j, Value::Null);
                first.push(v);
                row = Some(first);
            }
        }
    }
    Ok(row.or_else(|| (!unless_null).then(Vec::new)))
}

/// A change from its kind, rows and reserved values (`head`, whose strings it takes), as
/// [`ChangeBatch::from_batch`] reads them.
fn change_of(
    kind: ChangeKind,
    row: Row,
    old: Option<Row>,
    head: &mut [Value],
    reserved: usize,
) -> Change {
    let mut text = |i: usize| match std::mem::replace(&mut head[i], Value::Null) {
        Value::String(s) => Some(s),
        _ => None,
    };
    let (file, gtid) = (text(3).unwrap_or_default(), text(5));
    Change {
        kind,
        row,
        old,
        commit: Position {
            file,
            pos: match head[4] {
                Value::UInt(p) => p,
                Value::Int(p) => p as u64,
                _ => 0,
            },
            gtid,
            skip: match head.get(8) {
                Some(Value::UInt(s)) => *s,
                _ => 0,
            },
        },
        last: matches!(head[6], Value::Bool(true)),
        timestamp: match head[7] {
            Value::Int(t) => t as u32,
            _ => 0,
        },
        no_fk_actions: reserved > 9 && matches!(head[9], Value::Bool(true)),
    }
}

/// Runs of consecutive changes of the same kind, in order: a sink writes each run with the kind's
/// query, all in one transaction, so a key's changes keep their order.
pub fn runs(changes: &[Change]) -> impl Iterator<Item = (ChangeKind, &[Change])> {
    let mut rest = changes;
    std::iter::from_fn(move || {
        let first = rest.first()?.kind;
        let n = rest.iter().take_while(|c| c.kind == first).count();
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some((first, run))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let schema: Schema = vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Int,
            },
            Column {
                name: "name".into(),
                ty: ColumnType::String,
            },
        ]
        .into();
        let at = |pos| Position {
            file: "binlog.000001".into(),
            pos,
            gtid: Some("0-1-7".into()),
            skip: 0,
        };
        let b = ChangeBatch {
            table: "person".into(),
            schema,
            key: vec![0],
            changes: vec![
                Change {
                    kind: ChangeKind::Insert,
                    row: vec![Value::Int(1), Value::String("a".into())],
                    old: None,
                    commit: at(10),
                    last: false,
                    timestamp: 5,
                    no_fk_actions: false,
                },
                Change {
                    kind: ChangeKind::Update,
                    row: vec![Value::Int(1), Value::String("b".into())],
                    old: Some(vec![Value::Int(1), Value::String("a".into())]),
                    commit: at(10),
                    last: true,
                    timestamp: 5,
                    no_fk_actions: false,
                },
                // A key change's insert keeps the old row; a truncate has none.
                Change {
                    kind: ChangeKind::Insert,
                    row: vec![Value::Int(2), Value::String("b".into())],
                    old: Some(vec![Value::Int(1), Value::String("b".into())]),
                    commit: Position { skip: 3, ..at(20) },
                    last: true,
                    timestamp: 6,
                    no_fk_actions: true,
                },
                Change {
                    kind: ChangeKind::Truncate,
                    row: Vec::new(),
                    old: None,
                    commit: at(30),
                    last: true,
                    timestamp: 7,
                    no_fk_actions: false,
                },
            ],
        };
        let wire = crate::codec::encode(&b.clone().into_batch());
        // Encoded in place, it is byte for byte the batch `into_batch` makes.
        assert_eq!(b.encode(), wire);
        let back = ChangeBatch::from_batch(crate::codec::decode(&wire).unwrap()).unwrap();
        assert_eq!(back, b);
        // Read in place, it is the same batch.
        assert_eq!(ChangeBatch::decode(&wire).unwrap(), b);
        let kinds: Vec<_> = runs(&back.changes).map(|(k, r)| (k, r.len())).collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Insert, 1),
                (ChangeKind::Update, 1),
                (ChangeKind::Insert, 1),
                (ChangeKind::Truncate, 1)
            ]
        );
        assert_eq!(
            back.changes[2].commit.to_string(),
            "binlog.000001:20 +3 changes (GTID 0-1-7)"
        );
    }

    /// A source built before `_etl_skip` sends eight reserved columns: its batches still read.
    #[test]
    fn batches_without_skip_still_read() {
        let schema: Schema = vec![Column {
            name: "id".into(),
            ty: ColumnType::Int,
        }]
        .into();
        let b = ChangeBatch {
            table: "t".into(),
            schema,
            key: vec![0],
            changes: vec![Change {
                kind: ChangeKind::Delete,
                row: vec![Value::Int(1)],
                old: None,
                commit: Position {
                    file: "binlog.000002".into(),
                    pos: 99,
                    gtid: None,
                    skip: 0,
                },
                last: true,
                timestamp: 1,
                no_fk_actions: false,
            }],
        };
        let mut old = b.clone().into_batch();
        let mut cols: Vec<Column> = old.schema.iter().cloned().collect();
        cols.drain(8..RESERVED);
        old.schema = cols.into();
        for r in &mut old.rows {
            r.drain(8..RESERVED);
        }
        let wire = crate::codec::encode(&old);
        assert_eq!(ChangeBatch::from_batch(old).unwrap(), b);
        assert_eq!(ChangeBatch::decode(&wire).unwrap(), b);
    }

    /// Read in place, a batch is refused where the codec or [`ChangeBatch::from_batch`] refuses
    /// it.
    #[test]
    fn decode_refuses_what_from_batch_refuses() {
        let schema: Schema = vec![Column {
            name: "id".into(),
            ty: ColumnType::Int,
        }]
        .into();
        let change = |kind| Change {
            kind,
            row: vec![Value::Int(1)],
            old: None,
            commit: Position::default(),
            last: true,
            timestamp: 1,
            no_fk_actions: false,
        };
        let b = ChangeBatch {
            table: "t".into(),
            schema: schema.clone(),
            key: vec![0],
            changes: vec![change(ChangeKind::Insert), change(ChangeKind::Delete)],
        };
        let wire = b.encode();
        for cut in [wire.len() - 1, wire.len() - 9] {
            assert!(ChangeBatch::decode(&wire[..cut]).is_err());
        }
        let mut longer = wire.clone();
        longer.push(0);
        assert!(ChangeBatch::decode(&longer).is_err());
        let mut bad = b.clone().into_batch();
        bad.rows[1][0] = Value::Int(9);
        let bad = crate::codec::encode(&bad);
        assert_eq!(
            ChangeBatch::decode(&bad).unwrap_err(),
            "change 1 has no valid kind"
        );
        let plain = crate::codec::encode(&Batch {
            schema,
            rows: vec![vec![Value::Int(1)]],
        });
        assert!(ChangeBatch::decode(&plain).is_err());
    }
}
