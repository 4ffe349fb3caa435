//! A reader: pulls the next split from the shared queue, reads it through the source, and pulls
//! another when done. Readers never own splits up front, so a large split cannot hold back the
//! others.

use crossbeam_channel::{Receiver, Sender};
use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Column, Split, Value};

use super::acks;
use super::resume::Resuming;
use super::seams::SourceSide;
use super::shared::Shared;
use super::work::Chunk;
use crate::plugin::PluginError;
use crate::stats::Counters;
use crate::transform::{Chain, Origin};

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
        let mut reading = Reading {
            reader,
            split: &split,
            key: split.range.as_ref().map(|r| r.key_columns()),
            shared,
            chain: chain.as_mut(),
            rows: 0,
        };
        let result = reading.read(source, &out);
        let rows = reading.rows;
        match result {
            Ok(true) => {
                tracing::info!(split = split.id, reader, range = %range, rows, "split read");
                if shared.mode.ordered() {
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
    if let Some(c) = chain.as_mut() {
        finish(c, last_split, &out, shared);
    }
    // Returning drops `out`: once every reader has, the batcher flushes and finishes.
}

/// One split as a reader reads it.
struct Reading<'a> {
    reader: usize,
    split: &'a Split,
    /// The split's key columns, when it has a key range.
    key: Option<&'a [String]>,
    shared: &'a Shared,
    chain: Option<&'a mut Chain>,
    /// Rows read so far.
    rows: u64,
}

impl Reading<'_> {
    /// Reads the split to its end (`true`) or until reading stops (`false`).
    fn read(&mut self, source: &dyn SourceSide, out: &Sender<Chunk>) -> Result<bool, PluginError> {
        let (shared, retry) = (self.shared, self.shared.settings.retry_policy());
        let mut r = Resuming::open(source, self.split, retry, &shared.control)?;
        loop {
            let next = if self.shared.mode.encoded() {
                self.next_encoded(&mut r)?
            } else {
                self.next_decoded(&mut r)?
            };
            let Some((n, chunk)) = next else {
                return Ok(true);
            };
            if n == 0 {
                continue;
            }
            self.rows += n as u64;
            if chunk.len() > 0 {
                out.send(chunk).expect("the batcher outlives the readers");
            }
            if self.shared.control.stopping() {
                let (split, reader, rows) = (self.split.id, self.reader, self.rows);
                tracing::info!(split, reader, rows, "stopped reading split");
                return Ok(false);
            }
        }
    }

    /// Counted as read before it is handed on: from here the writers account for it.
    fn counted(&self, n: usize, safe: Option<Value>) {
        let shared = self.shared;
        shared
            .acks
            .chunk_read(self.split.id, self.rows + n as u64, safe);
        Counters::add(&shared.counters.read, n);
        Counters::add(&shared.counters.per_reader[self.reader], n);
    }

    /// The next rows still encoded (the pass-through path), transformed, with how many were read;
    /// `None` at the split's end.
    fn next_encoded(&mut self, r: &mut Resuming) -> Result<Option<(usize, Chunk)>, PluginError> {
        let (id, first) = (self.split.id, self.rows);
        let Some(encoded) = r.next_encoded(self.shared.spare())? else {
            return Ok(None);
        };
        let n = encoded.rows();
        if n == 0 {
            return Ok(Some((0, Chunk::encoded(id, first, encoded))));
        }
        let keys = r
            .take_keys()
            .or_else(|| self.key.and_then(|k| encoded_keys(&encoded, k)));
        let safe = keys.as_ref().and_then(|k| acks::safe_key(k.iter()));
        self.counted(n, safe);
        let mut chunk = match self.chain.as_deref_mut() {
            None => Chunk::encoded(id, first, encoded),
            Some(c) => {
                let applied = c.apply_encoded(encoded, first);
                if let Some(o) = &applied.origins {
                    self.shared.transformed(id, n as u64, o, &applied.outcomes);
                }
                let mut chunk = Chunk::encoded(id, first, applied.rows);
                chunk.origins = applied.origins;
                chunk
            }
        };
        let ordered = self.shared.mode.ordered();
        chunk.keys = keys.filter(|_| ordered).map(|k| match &chunk.origins {
            None => k,
            Some(o) => keys_of_outputs(&k, first, o),
        });
        Ok(Some((n, chunk)))
    }

    /// The next rows decoded, transformed, with how many were read; `None` at the split's end.
    fn next_decoded(&mut self, r: &mut Resuming) -> Result<Option<(usize, Chunk)>, PluginError> {
        let (id, first) = (self.split.id, self.rows);
        let Some(batch) = r.next_batch()? else {
            return Ok(None);
        };
        let n = batch.len();
        if n == 0 {
            return Ok(Some((0, Chunk::rows(id, first, batch, None))));
        }
        let safe = self.key.and_then(|k| safe_key(&batch, k));
        let ordered = self.shared.mode.ordered();
        let keys = self
            .key
            .filter(|_| ordered)
            .and_then(|k| row_keys(&batch, k));
        self.counted(n, safe);
        let mut chunk = match self.chain.as_deref_mut() {
            None => Chunk::rows(id, first, batch, None),
            Some(c) => {
                let origins = (first..first + n as u64).map(Origin::Row).collect();
                let applied = c.apply(batch, origins);
                self.shared
                    .transformed(id, n as u64, &applied.origins, &applied.outcomes);
                Chunk::rows(id, first, applied.batch, Some(applied.origins))
            }
        };
        chunk.keys = keys.map(|k| match &chunk.origins {
            None => k,
            Some(o) => keys_of_outputs(&k, first, o),
        });
        Ok(Some((n, chunk)))
    }
}

/// What stateful transforms still hold once the reader has no split left; these rows belong to
/// no split's progress.
fn finish(chain: &mut Chain, last_split: u32, out: &Sender<Chunk>, shared: &Shared) {
    for applied in chain.finish() {
        shared.transformed(last_split, 0, &applied.origins, &applied.outcomes);
        if applied.batch.rows.is_empty() {
            continue;
        }
        let chunk = if shared.mode.encoded() {
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

/// The key of each output row of a transformed chunk: its input row's (`first` is the chunk's
/// first input row); rows from no input row get NULL, where a batch never ends.
pub fn keys_of_outputs(input: &[Value], first: u64, origins: &[Origin]) -> Vec<Value> {
    origins
        .iter()
        .map(|o| match o {
            Origin::Row(seq) => input
                .get((seq - first) as usize)
                .cloned()
                .unwrap_or(Value::Null),
            Origin::Finish => Value::Null,
        })
        .collect()
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
