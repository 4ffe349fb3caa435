//! A reader: pulls the next split from the shared queue, reads it through the source, and pulls
//! another when done. Readers never own splits up front, so a large split cannot hold back the
//! others.

use crossbeam_channel::{Receiver, Sender};
use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Column, Split, Value};

use super::acks;
use super::seams::SourceSide;
use super::shared::Shared;
use crate::stats::Counters;
use crate::transform::{Chain, Origin};

/// Rows of one split, as read: row numbers `first..first + batch.len()` of the split, or, after
/// transforms, the origins in `origins` (one per row; repeated for an expanded row).
pub struct Chunk {
    pub split: u32,
    pub first: u64,
    /// The rows, or, on the pass-through path, their schema alone (the rows are in `encoded`).
    pub batch: Batch,
    /// On the pass-through path: the rows as the source encoded them (or as transforms of the
    /// encoded world made them).
    pub encoded: Option<Encoded>,
    pub origins: Option<Vec<Origin>>,
    /// With progress in the target: each row's key (its input row's, after transforms), so that
    /// batches end where the key changes.
    pub keys: Option<Vec<Value>>,
    /// With progress in the target: the split is read to its end (a chunk with no rows).
    pub end: bool,
}

impl Chunk {
    fn rows(split: u32, first: u64, batch: Batch, origins: Option<Vec<Origin>>) -> Self {
        Chunk {
            split,
            first,
            batch,
            encoded: None,
            origins,
            keys: None,
            end: false,
        }
    }

    fn encoded(split: u32, first: u64, rows: Encoded) -> Self {
        let schema_only = Batch::new(rows.schema().clone());
        Chunk {
            encoded: Some(rows),
            ..Chunk::rows(split, first, schema_only, None)
        }
    }

    pub fn len(&self) -> usize {
        match &self.encoded {
            Some(e) => e.rows(),
            None => self.batch.len(),
        }
    }
}

pub fn run(
    reader: usize,
    source: &dyn SourceSide,
    splits: Receiver<Split>,
    out: Sender<Chunk>,
    shared: &Shared,
) {
    // This reader's own instances of the flow's transforms: one store each, never shared.
    let mut chain = shared.transforms.clone().map(Chain::new);
    let mut last_split = 0;
    while !shared.control.stopping() {
        let Ok(split) = splits.try_recv() else { break };
        last_split = split.id;
        let range = describe(&split);
        tracing::info!(split = split.id, reader, range = %range, "split started");
        let mut rows = 0u64;
        let key = split.range.as_ref().map(|r| r.key_columns());
        let ordered = shared.settings.progress.is_some();
        let through = shared.pass_through();
        let result = (|| {
            let (retries, backoff) = (shared.settings.max_retries, shared.settings.retry_backoff);
            let mut r =
                super::resume::Resuming::open(source, &split, retries, backoff, &shared.control)?;
            // Counted as read before it is handed on: from here the writers account for it.
            let read = |end: u64, safe: Option<Value>, n: usize| {
                shared.acks.chunk_read(split.id, end, safe);
                Counters::add(&shared.counters.read, n);
                Counters::add(&shared.counters.per_reader[reader], n);
            };
            loop {
                let first = rows;
                let (n, chunk) = if through {
                    let Some(encoded) = r.next_encoded(shared.spare())? else {
                        break;
                    };
                    let n = encoded.rows();
                    if n == 0 {
                        continue;
                    }
                    let keys = r
                        .take_keys()
                        .or_else(|| key.and_then(|k| encoded_keys(&encoded, k)));
                    let safe = keys.as_ref().and_then(|k| acks::safe_key(k.iter()));
                    read(first + n as u64, safe, n);
                    let mut chunk = match chain.as_mut() {
                        None => Chunk::encoded(split.id, first, encoded),
                        Some(c) => {
                            let applied = c.apply_encoded(encoded, first);
                            if let Some(o) = &applied.origins {
                                shared.transformed(split.id, n as u64, o, &applied.outcomes);
                            }
                            let mut chunk = Chunk::encoded(split.id, first, applied.rows);
                            chunk.origins = applied.origins;
                            chunk
                        }
                    };
                    chunk.keys = keys.filter(|_| ordered).map(|k| match &chunk.origins {
                        None => k,
                        Some(o) => super::ordered::keys_of_outputs(&k, first, o),
                    });
                    (n, chunk)
                } else {
                    let Some(batch) = r.next_batch()? else { break };
                    let n = batch.len();
                    if n == 0 {
                        continue;
                    }
                    let safe = key.and_then(|k| safe_key(&batch, k));
                    let keys = key.filter(|_| ordered).and_then(|k| row_keys(&batch, k));
                    read(first + n as u64, safe, n);
                    let mut chunk = match chain.as_mut() {
                        None => Chunk::rows(split.id, first, batch, None),
                        Some(c) => {
                            let origins = (first..first + n as u64).map(Origin::Row).collect();
                            let applied = c.apply(batch, origins);
                            shared.transformed(
                                split.id,
                                n as u64,
                                &applied.origins,
                                &applied.outcomes,
                            );
                            Chunk::rows(split.id, first, applied.batch, Some(applied.origins))
                        }
                    };
                    chunk.keys = keys.map(|k| match &chunk.origins {
                        None => k,
                        Some(o) => super::ordered::keys_of_outputs(&k, first, o),
                    });
                    (n, chunk)
                };
                rows += n as u64;
                if chunk.len() > 0 {
                    out.send(chunk).expect("the batcher outlives the readers");
                }
                if shared.control.stopping() {
                    tracing::info!(split = split.id, reader, rows, "stopped reading split");
                    return Ok(false);
                }
            }
            Ok::<_, crate::plugin::PluginError>(true)
        })();
        match result {
            Ok(true) => {
                tracing::info!(split = split.id, reader, range = %range, rows, "split read");
                if ordered {
                    let mut end = Chunk::rows(split.id, rows, Batch::new(Vec::new().into()), None);
                    end.end = true;
                    out.send(end).expect("the batcher outlives the readers");
                }
                if shared.acks.split_read(split.id, rows) {
                    shared.split_complete(split.id);
                }
            }
            Ok(false) => break,
            Err(e) => {
                shared.fail(format!(
                    "reading split {} ({range}) failed after {rows} rows: {e}",
                    split.id
                ));
                break;
            }
        }
    }
    // What stateful transforms still hold; these rows belong to no split's progress.
    if let Some(c) = chain.as_mut() {
        for applied in c.finish() {
            shared.transformed(last_split, 0, &applied.origins, &applied.outcomes);
            if applied.batch.rows.is_empty() {
                continue;
            }
            let chunk = if shared.pass_through() {
                // The batcher does not mix encoded rows with decoded ones.
                let mut chunk = Chunk::encoded(last_split, 0, Encoded::of(&applied.batch));
                chunk.origins = Some(applied.origins);
                chunk
            } else {
                Chunk::rows(last_split, 0, applied.batch, Some(applied.origins))
            };
            out.send(chunk).expect("the batcher outlives the readers");
        }
    }
    // Returning drops `out`: once every reader has, the batcher flushes and finishes.
}

/// The chunk's safe key (see [`acks::safe_key`]): of one column, or of a tuple of several.
fn safe_key(batch: &Batch, key: &[String]) -> Option<Value> {
    match positions(&batch.schema, key)?.as_slice() {
        [i] => acks::safe_key(batch.rows.iter().map(|r| &r[*i])),
        _ => acks::safe_key(row_keys(batch, key)?.iter()),
    }
}

fn positions(schema: &[Column], key: &[String]) -> Option<Vec<usize>> {
    key.iter()
        .map(|k| schema.iter().position(|c| &c.name == k))
        .collect()
}

/// As [`row_keys`], of rows still encoded: only the key columns are decoded.
fn encoded_keys(rows: &Encoded, key: &[String]) -> Option<Vec<Value>> {
    Some(match positions(rows.schema(), key)?.as_slice() {
        [i] => rows.column(*i),
        many => {
            let columns: Vec<Vec<Value>> = many.iter().map(|i| rows.column(*i)).collect();
            (0..rows.rows())
                .map(|r| Value::List(columns.iter().map(|c| c[r].clone()).collect()))
                .collect()
        }
    })
}

/// Each row's key: the column's value, or a list of the columns' values. `None` when a key
/// column is missing from the rows.
fn row_keys(batch: &Batch, key: &[String]) -> Option<Vec<Value>> {
    Some(match positions(&batch.schema, key)?.as_slice() {
        [i] => batch.rows.iter().map(|r| r[*i].clone()).collect(),
        many => batch
            .rows
            .iter()
            .map(|r| Value::List(many.iter().map(|i| r[*i].clone()).collect()))
            .collect(),
    })
}

/// `id in [1, 100)`, or `whole source`.
pub fn describe(split: &Split) -> String {
    let range = match &split.range {
        None => "whole source".into(),
        Some(r) => {
            let start = r.start.as_ref().map_or("-inf".into(), |v| v.to_string());
            let end = r.end.as_ref().map_or("+inf".into(), |v| v.to_string());
            let nulls = if r.nulls { " or NULL" } else { "" };
            let after = r
                .after
                .as_ref()
                .map_or(String::new(), |a| format!(" after {a}"));
            let key = match r.key_columns() {
                [one] => one.clone(),
                many => format!("({})", many.join(", ")),
            };
            format!("{key} in [{start}, {end}){nulls}{after}")
        }
    };
    match &split.cursor {
        None => range,
        Some(c) => {
            let from = c.from.as_ref().map_or("-inf".into(), |v| v.to_string());
            let to = c.to.as_ref().map_or("+inf".into(), |v| v.to_string());
            format!("{range}, {} in [{from}, {to}]", c.column)
        }
    }
}
