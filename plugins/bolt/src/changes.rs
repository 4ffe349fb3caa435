//! Streaming flows: one table's changes written with a Cypher per row kind.
//!
//! `query` writes inserts (and updates, unless `update_query` is set) with `$batch` the rows as they
//! are now, `delete_query` writes deletes with `$batch` the rows as they were. A change batch is cut
//! into runs of one kind, in order, and every run's statement goes into one transaction, so a key's
//! changes reach the graph in the order the source made them, and a batch is all or nothing.

use etlhost_plugin_sdk::change::runs;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use etlhost_plugin_sdk::{
    Change, ChangeBatch, ChangeKind, ConfigError, Error, Row, Value, WriterMark,
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

/// Within a run of one kind only each key's last change counts: `UNWIND` does not promise to
/// finish one row's clauses before the next row's, so two changes of one key in one statement
/// could both take effect (two relationships where one moved). Their rows, in order, where they
/// are.
fn last_per_key<'a>(batch: &ChangeBatch, run: &'a [Change]) -> Vec<&'a Row> {
    let mut keep: Vec<&Change> = if batch.key.is_empty() {
        run.iter().collect()
    } else {
        // An integer key (the common case) is its own hash; any other is compared as JSON text.
        let mut ints: HashSet<i64, BuildHasherDefault<IntHasher>> = HashSet::default();
        ints.reserve(run.len());
        let mut texts = HashSet::new();
        run.iter()
            .rev()
            .filter(|c| {
                if let [k] = batch.key[..] {
                    if let Some(Value::Int(i)) = c.row.get(k) {
                        return ints.insert(*i);
                    }
                }
                texts.insert(
                    batch
                        .key_of(c)
                        .iter()
                        .map(|v| v.to_json().to_string())
                        .collect::<Vec<_>>()
                        .join("\u{1f}"),
                )
            })
            .collect()
    };
    if !batch.key.is_empty() {
        keep.reverse();
    }
    keep.into_iter().map(|c| &c.row).collect()
}

impl BoltSink {
    /// One attempt; with a writer's mark, only if its record stands where the mark says, the
    /// record moved in the same transaction (`Ok(Some(error))`: the transaction failed as a
    /// record not standing there fails it; nothing was written).
    pub(crate) fn try_changes(
        &mut self,
        batch: &ChangeBatch,
        mark: Option<&WriterMark>,
    ) -> Result<Option<Error>, (Error, Option<BoltError>)> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(|e| (e, None))?,
        };
        let o = &self.options;
        let enc = Encoding::new(o.temporal, o.decimal, conn.version());
        let mut parts = Vec::new();
        for (kind, run) in runs(&batch.changes) {
            if kind == ChangeKind::Mark {
                continue;
            }
            let Some(query) = query_for(o, kind) else {
                let e = Error::permanent(format!("no query for {} changes", kind.name()));
                self.conn = Some(conn);
                return Err((e, None));
            };
            parts.push((query, last_per_key(batch, run)));
        }
        if parts.is_empty() && mark.is_none() {
            self.conn = Some(conn);
            return Ok(None);
        }
        let encoders: Vec<Encoder<'_>> = parts
            .iter()
            .map(|(_, rows)| {
                let enc = &enc;
                let schema = &batch.schema;
                Box::new(move |m: &mut Vec<u8>| params::encode_rows_of(m, schema, rows, o, enc))
                    as Encoder<'_>
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

    pub(super) fn write_changes_retrying(
        &mut self,
        batch: &ChangeBatch,
        mark: Option<&WriterMark>,
    ) -> Result<Option<Error>, Error> {
        match self.try_changes(batch, mark) {
            Ok(refused) => Ok(refused),
            Err((e, Some(cause))) if needs_new_session(&cause) => {
                tracing::warn!("{e}; logging in again on a new connection and retrying once");
                // A retry of a marked write is safe: its record's check finds a commit whose
                // answer was lost.
                self.try_changes(batch, mark).map_err(|(e, _)| e)
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
