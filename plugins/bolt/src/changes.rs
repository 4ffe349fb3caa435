//! Streaming flows: one table's changes written with a Cypher per row kind.
//!
//! `query` writes inserts (and updates, unless `update_query` is set) with `$batch` the rows as they
//! are now, `delete_query` writes deletes with `$batch` the rows as they were. A change batch is cut
//! into runs of one kind, in order, and every run's statement goes into one transaction, so a key's
//! changes reach the graph in the order the source made them, and a batch is all or nothing.
//!
//! The host hands a batch over as bytes in the SDK's format; they are read in place
//! ([`ChangeBatchView`]) and each value is written to PackStream from them, with no value built
//! between (decoding each change into values cost more than the rest of its way through this
//! sink). A batch given as values (`write_changes` called in-process) takes the same steps.

use etlhost_plugin_sdk::change::runs;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use etlhost_plugin_sdk::{
    Change, ChangeBatch, ChangeBatchView, ChangeKind, ChangeView, Column, ConfigError, Error, Row,
    RowRef, Value, ValueRef, WriterMark,
};

use etlhost_bolt_client::WriteParams;

type Encoder<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
use crate::encoding::Encoding;
use crate::options::BoltOptions;
use crate::params;
use crate::sink::{needs_new_session, BoltSink};
use etlhost_bolt_client::BoltError;

/// Every kind needs its query: a delete without `delete_query` would be dropped without a word.
pub fn check_options(o: &BoltOptions) -> Result<(), ConfigError> {
    if o.delete_query
        .as_deref()
        .is_none_or(|q| q.trim().is_empty())
    {
        return Err(ConfigError::new(
            "delete_query",
            "missing: a streaming flow also deletes rows; give the Cypher for them (`$batch` holds the deleted rows as they were, e.g. `UNWIND $batch AS row MATCH (n:Person {id: row.id}) DETACH DELETE n`)",
        ));
    }
    if o.row_parameters {
        return Err(ConfigError::new(
            "row_parameters",
            "a streaming flow writes batches of changes: row_parameters cannot be used",
        ));
    }
    Ok(())
}

fn query_for(o: &BoltOptions, kind: ChangeKind) -> Option<&str> {
    match kind {
        ChangeKind::Insert => Some(&o.query),
        ChangeKind::Update => Some(o.update_query.as_deref().unwrap_or(&o.query)),
        ChangeKind::Delete => o.delete_query.as_deref(),
        // The host turns a truncate into deletes of the rows the graph has.
        ChangeKind::Mark | ChangeKind::Truncate => None,
    }
}

/// Hashes an integer key with one multiplication: SipHash costs more than the rest of a change's
/// way through this sink. Keys come from the source's table, not from an adversary.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64)
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A change batch as the sink was given it.
#[derive(Clone, Copy)]
pub(crate) enum Changes<'a> {
    /// Decoded (`Sink::write_changes`, `SinkStream::write_marked`).
    Values(&'a ChangeBatch),
    /// Read in place from the host's bytes.
    Bytes(&'a ChangeBatchView<'a>),
}

impl Changes<'_> {
    fn schema(&self) -> &[Column] {
        match self {
            Changes::Values(b) => &b.schema,
            Changes::Bytes(v) => &v.schema,
        }
    }
}

/// One run's rows, each key's last, where they are.
enum Rows<'a> {
    Values(Vec<&'a Row>),
    Bytes(Vec<RowRef<'a>>),
}

impl Rows<'_> {
    fn encode(&self, m: &mut Vec<u8>, schema: &[Column], o: &BoltOptions, enc: &Encoding) {
        match self {
            Rows::Values(rows) => params::encode_rows_of(m, schema, rows, o, enc),
            Rows::Bytes(rows) => params::encode_row_refs(m, schema, rows, o, enc),
        }
    }
}

/// Within a run of one kind only each key's last change counts: `UNWIND` does not promise to
/// finish one row's clauses before the next row's, so two changes of one key in one statement
/// could both take effect (two relationships where one moved). Which of a run's `n` changes stay,
/// in order: `key(i)` is change `i`'s key, an integer (the common case, its own hash) or anything
/// else to compare; every change stays when the table has no key.
fn last_of_each_key<K: Hash + Eq>(
    n: usize,
    keyed: bool,
    key: impl Fn(usize) -> Result<i64, K>,
) -> Vec<usize> {
    if !keyed {
        return (0..n).collect();
    }
    let mut ints: HashSet<i64, BuildHasherDefault<IntHasher>> = HashSet::default();
    ints.reserve(n);
    let mut others = HashSet::new();
    let mut keep: Vec<usize> = (0..n)
        .rev()
        .filter(|&i| match key(i) {
            Ok(k) => ints.insert(k),
            Err(k) => others.insert(k),
        })
        .collect();
    keep.reverse();
    keep
}

/// [`last_of_each_key`] of decoded changes: any key but an integer compared as JSON text.
fn last_per_key<'a>(batch: &ChangeBatch, run: &'a [Change]) -> Vec<&'a Row> {
    let keep = last_of_each_key(run.len(), !batch.key.is_empty(), |i| {
        let c = &run[i];
        if let [k] = batch.key[..] {
            if let Some(Value::Int(i)) = c.row.get(k) {
                return Ok(*i);
            }
        }
        Err(batch
            .key_of(c)
            .iter()
            .map(|v| v.to_json().to_string())
            .collect::<Vec<_>>()
            .join("\u{1f}"))
    });
    keep.into_iter().map(|i| &run[i].row).collect()
}

/// [`last_of_each_key`] of changes read in place: any key but an integer compared by its bytes
/// (a table's key column has one type, so equal values have equal bytes).
fn last_per_key_in_place<'a>(
    view: &ChangeBatchView<'_>,
    run: &[ChangeView<'a>],
) -> Vec<RowRef<'a>> {
    let keep = last_of_each_key(run.len(), !view.key.is_empty(), |i| {
        let row = &run[i].row;
        if let [k] = view.key[..] {
            if let Some(ValueRef::Int(i)) = row.get(k) {
                return Ok(i);
            }
        }
        Err(view
            .key
            .iter()
            .map(|&k| row.cell(k).unwrap_or_default())
            .collect::<Vec<&[u8]>>())
    });
    keep.into_iter().map(|i| run[i].row).collect()
}

/// Each run's query and rows, in order (marks have none); an error for a kind without its query.
fn parts<'a>(o: &'a BoltOptions, changes: Changes<'a>) -> Result<Vec<(&'a str, Rows<'a>)>, Error> {
    let query = |kind: ChangeKind| {
        query_for(o, kind)
            .ok_or_else(|| Error::permanent(format!("no query for {} changes", kind.name())))
    };
    let mut parts = Vec::new();
    match changes {
        Changes::Values(batch) => {
            for (kind, run) in runs(&batch.changes).filter(|(k, _)| *k != ChangeKind::Mark) {
                parts.push((query(kind)?, Rows::Values(last_per_key(batch, run))));
            }
        }
        Changes::Bytes(view) => {
            for (kind, run) in view.runs().filter(|(k, _)| *k != ChangeKind::Mark) {
                parts.push((query(kind)?, Rows::Bytes(last_per_key_in_place(view, run))));
            }
        }
    }
    Ok(parts)
}

impl BoltSink {
    /// One attempt; with a writer's mark, only if its record stands where the mark says, the
    /// record moved in the same transaction (`Ok(Some(error))`: the transaction failed as a
    /// record not standing there fails it; nothing was written).
    pub(crate) fn try_changes(
        &mut self,
        changes: Changes<'_>,
        mark: Option<&WriterMark>,
    ) -> Result<Option<Error>, (Error, Option<BoltError>)> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(|e| (e, None))?,
        };
        let o = &self.options;
        let enc = Encoding::new(o.temporal, o.decimal, conn.version());
        let parts = match parts(o, changes) {
            Ok(p) => p,
            Err(e) => {
                self.conn = Some(conn);
                return Err((e, None));
            }
        };
        if parts.is_empty() && mark.is_none() {
            self.conn = Some(conn);
            return Ok(None);
        }
        let schema = changes.schema();
        let encoders: Vec<Encoder<'_>> = parts
            .iter()
            .map(|(_, rows)| {
                let enc = &enc;
                Box::new(move |m: &mut Vec<u8>| rows.encode(m, schema, o, enc)) as Encoder<'_>
            })
            .collect();
        let statements: Vec<(&str, WriteParams<'_>)> = parts
            .iter()
            .zip(&encoders)
            .map(|((q, _), e)| (*q, e.as_ref()))
            .collect();
        let db = o.database.as_deref();
        let move_writer = |m: &mut Vec<u8>| {
            if let Some(mark) = mark {
                crate::stream_state::mark_params(m, mark)
            }
        };
        let mut statements = statements;
        if mark.is_some() {
            statements.push((crate::stream_state::MOVE_WRITER, &move_writer));
        }
        let result = conn.run_all_in_transaction(db, &statements);
        // The encoders borrow the options; `settle` needs the sink back.
        drop(statements);
        drop(encoders);
        match result {
            // The writer's record was not where the mark says: nothing was committed. The
            // connection goes (a failed transaction can leave ArcadeDB's session unusable, see
            // `needs_new_session`); the next call connects again.
            Err(e) if mark.is_some() && crate::stream_state::writer_refused(&e) => {
                drop(conn);
                Ok(Some(self.error("write failed", e)))
            }
            result => self.settle(conn, result).map(|()| None),
        }
    }

    /// [`BoltSink::write_changes_retrying`] of a batch given as values.
    pub(crate) fn write_values(
        &mut self,
        batch: &ChangeBatch,
        mark: Option<&WriterMark>,
    ) -> Result<Option<Error>, Error> {
        self.write_changes_retrying(Changes::Values(batch), mark)
    }

    /// [`BoltSink::write_changes_retrying`] of the host's bytes, read in place.
    pub(crate) fn write_bytes(
        &mut self,
        bytes: &[u8],
        mark: Option<&WriterMark>,
    ) -> Result<Option<Error>, Error> {
        let view = ChangeBatchView::read(bytes)
            .map_err(|e| Error::permanent(format!("malformed change batch from host: {e}")))?;
        self.write_changes_retrying(Changes::Bytes(&view), mark)
    }

    pub(super) fn write_changes_retrying(
        &mut self,
        changes: Changes<'_>,
        mark: Option<&WriterMark>,
    ) -> Result<Option<Error>, Error> {
        match self.try_changes(changes, mark) {
            Ok(refused) => Ok(refused),
            Err((e, Some(cause))) if needs_new_session(&cause) => {
                tracing::warn!("{e}; logging in again on a new connection and retrying once");
                // A retry of a marked write is safe: its record's check finds a commit whose
                // answer was lost.
                self.try_changes(changes, mark).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::{Column, ColumnType, Position};

    fn batch(keys: Vec<Value>) -> ChangeBatch {
        let changes = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| Change {
                kind: ChangeKind::Update,
                row: vec![k, Value::Int(i as i64)],
                old: None,
                commit: Position::default(),
                last: false,
                timestamp: 0,
                no_fk_actions: false,
            })
            .collect();
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
        };
        ChangeBatch {
            table: "t".into(),
            schema: vec![col("id", ColumnType::Any), col("n", ColumnType::Int)].into(),
            key: vec![0],
            changes,
        }
    }

    /// A value of every kind the SDK's codec has, NULL and nested ones included.
    fn every_kind() -> Vec<Value> {
        use etlhost_plugin_sdk::Point;
        vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::UInt(u64::MAX),
            Value::UInt(42),
            Value::Float(1.25),
            Value::Decimal("12.50".into()),
            Value::Decimal("not a number".into()),
            Value::String("ascii".into()),
            Value::String("naïve ✓ 𝄞".into()),
            Value::String(String::new()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Date(-1),
            Value::DateTime(1_700_000_000_123_456),
            Value::Time(3_723_000_456),
            Value::Time(-3_600_000_000 * 800),
            Value::Timestamp(-1_500_000),
            Value::Point(Point {
                srid: 4326,
                x: 1.5,
                y: -2.0,
                z: None,
            }),
            Value::Point(Point {
                srid: 3857,
                x: 1.5,
                y: -2.0,
                z: Some(3.0),
            }),
            Value::Duration {
                months: 14,
                days: -3,
                micros: -1_500_000,
            },
            Value::ZonedTime {
                micros: 3_723_000_456,
                offset_seconds: -18_000,
            },
            Value::List(vec![Value::Int(1), Value::Null, Value::String("x".into())]),
            Value::Map(vec![
                ("tags".into(), Value::List(vec![Value::String("a".into())])),
                ("none".into(), Value::Null),
            ]),
        ]
    }

    /// A batch of every value kind as a column each, in runs of every kind with keys repeated
    /// (integer, text or two columns), as the host hands it over: values and bytes.
    fn mixed(key_of: impl Fn(usize) -> Vec<Value>, key_len: usize) -> ChangeBatch {
        let kinds = every_kind();
        let mut schema: Vec<Column> = (0..key_len)
            .map(|i| Column {
                name: format!("k{i}"),
                ty: ColumnType::Any,
            })
            .collect();
        schema.extend((0..kinds.len()).map(|i| Column {
            name: format!("c{i}"),
            ty: ColumnType::Any,
        }));
        let order = [
            ChangeKind::Insert,
            ChangeKind::Insert,
            ChangeKind::Mark,
            ChangeKind::Update,
            ChangeKind::Update,
            ChangeKind::Delete,
            ChangeKind::Insert,
        ];
        let changes = (0..40)
            .map(|i| {
                let kind = order[i % order.len()];
                let mut row = key_of(i % 5);
                // Each change its own mix: a value of every kind, rotated, NULLs in other places.
                row.extend((0..kinds.len()).map(|j| kinds[(i + j) % kinds.len()].clone()));
                let old = (kind == ChangeKind::Update).then(|| row.clone());
                Change {
                    kind,
                    row: if kind == ChangeKind::Mark {
                        Vec::new()
                    } else {
                        row
                    },
                    old,
                    commit: Position {
                        file: "binlog.000001".into(),
                        pos: i as u64,
                        gtid: None,
                        skip: 0,
                    },
                    last: i % 3 == 0,
                    timestamp: 0,
                    no_fk_actions: false,
                }
            })
            .collect();
        ChangeBatch {
            table: "t".into(),
            schema: schema.into(),
            key: (0..key_len).collect(),
            changes,
        }
    }

    fn statements(
        o: &BoltOptions,
        changes: Changes<'_>,
        version: (u8, u8),
    ) -> Vec<(String, Vec<u8>)> {
        let enc = Encoding::new(o.temporal, o.decimal, version);
        parts(o, changes)
            .unwrap()
            .iter()
            .map(|(q, rows)| {
                let mut m = Vec::new();
                rows.encode(&mut m, changes.schema(), o, &enc);
                (q.to_string(), m)
            })
            .collect()
    }

    /// The host's bytes read in place give the very PackStream the decoded values give, for
    /// every value kind, every option that changes how one is written, and every kind of key.
    #[test]
    fn in_place_writes_what_values_write() {
        type KeyOf = Box<dyn Fn(usize) -> Vec<Value>>;
        let keys: [(KeyOf, usize); 3] = [
            (Box::new(|i| vec![Value::Int(i as i64)]), 1),
            (Box::new(|i| vec![Value::String(format!("k{i}"))]), 1),
            (
                Box::new(|i| {
                    vec![
                        Value::Int(i as i64 % 2),
                        Value::String(format!("{}", i / 2)),
                    ]
                }),
                2,
            ),
        ];
        for (key_of, key_len) in &keys {
            let b = mixed(key_of, *key_len);
            let bytes = b.encode();
            let view = ChangeBatchView::read(&bytes).unwrap();
            for extra in [
                serde_json::json!({}),
                serde_json::json!({"temporal": "string", "decimal": "float"}),
                serde_json::json!({"params_by_position": {"ID": 0, "V": 3}}),
            ] {
                let mut o = serde_json::json!({"uri": "bolt://h", "user": "u",
                    "query": "UNWIND $batch AS row MERGE (n {id: row.k0})",
                    "update_query": "UNWIND $batch AS row MATCH (n {id: row.k0}) SET n.u = 1",
                    "delete_query": "UNWIND $batch AS row MATCH (n {id: row.k0}) DELETE n"});
                o.as_object_mut()
                    .unwrap()
                    .extend(extra.as_object().unwrap().clone());
                let o: BoltOptions = serde_json::from_value(o).unwrap();
                for version in [(4, 4), (5, 4)] {
                    let values = statements(&o, Changes::Values(&b), version);
                    let in_place = statements(&o, Changes::Bytes(&view), version);
                    assert!(values.len() > 5, "one statement per run, marks left out");
                    assert_eq!(values, in_place, "{extra} {version:?}");
                }
            }
        }
    }

    /// Each key's last change of a run stays, in the run's order, whatever the key's type.
    #[test]
    fn only_each_key_s_last_change_is_written() {
        for keys in [
            vec![Value::Int(1), Value::Int(2), Value::Int(1)],
            vec![
                Value::String("a".into()),
                Value::String("b".into()),
                Value::String("a".into()),
            ],
        ] {
            let b = batch(keys);
            let rows = last_per_key(&b, &b.changes);
            let order: Vec<&Value> = rows.iter().map(|r| &r[1]).collect();
            assert_eq!(order, [&Value::Int(1), &Value::Int(2)]);
        }
    }
}
