//! A reader: pulls the next split from the shared queue, reads it through the source, and pulls
//! another when done. Readers never own splits up front, so a large split cannot hold back the
//! others.

use crossbeam_channel::{Receiver, Sender};
use etlhost_plugin_sdk::{Batch, Split, Value};

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
    pub batch: Batch,
    pub origins: Option<Vec<Origin>>,
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
        let result = (|| {
            let (retries, backoff) = (shared.settings.max_retries, shared.settings.retry_backoff);
            let mut r =
                super::resume::Resuming::open(source, &split, retries, backoff, &shared.control)?;
            while let Some(batch) = r.next_batch()? {
                let n = batch.len();
                if n == 0 {
                    continue;
                }
                let first = rows;
                let safe = key.and_then(|k| safe_key(&batch, k));
                shared.acks.chunk_read(split.id, first + n as u64, safe);
                // Counted as read before it is handed on: from here the writers account for it.
                Counters::add(&shared.counters.read, n);
                Counters::add(&shared.counters.per_reader[reader], n);
                rows += n as u64;
                let chunk = match chain.as_mut() {
                    None => Chunk {
                        split: split.id,
                        first,
                        batch,
                        origins: None,
                    },
                    Some(c) => {
                        let applied =
                            c.apply(batch, (first..first + n as u64).map(Origin::Row).collect());
                        shared.transformed(split.id, n as u64, &applied);
                        Chunk {
                            split: split.id,
                            first,
                            batch: applied.batch,
                            origins: Some(applied.origins),
                        }
                    }
                };
                if !chunk.batch.rows.is_empty() {
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
            shared.transformed(last_split, 0, &applied);
            if !applied.batch.rows.is_empty() {
                let chunk = Chunk {
                    split: last_split,
                    first: 0,
                    batch: applied.batch,
                    origins: Some(applied.origins),
                };
                out.send(chunk).expect("the batcher outlives the readers");
            }
        }
    }
    // Returning drops `out`: once every reader has, the batcher flushes and finishes.
}

/// The chunk's safe key (see [`acks::safe_key`]): of one column, or of a tuple of several.
fn safe_key(batch: &Batch, key: &[String]) -> Option<Value> {
    let at: Option<Vec<usize>> = key
        .iter()
        .map(|k| batch.schema.iter().position(|c| &c.name == k))
        .collect();
    match at?.as_slice() {
        [i] => acks::safe_key(batch.rows.iter().map(|r| &r[*i])),
        many => {
            let keys: Vec<Value> = batch
                .rows
                .iter()
                .map(|r| Value::List(many.iter().map(|i| r[*i].clone()).collect()))
                .collect();
            acks::safe_key(keys.iter())
        }
    }
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
