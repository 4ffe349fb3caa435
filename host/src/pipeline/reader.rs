//! A reader: pulls the next split from the shared queue, reads it through the source plugin, and
//! pulls another when done. Readers never own splits up front, so a large split cannot hold back
//! the others.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use etlhost_plugin_sdk::{Batch, Split};

use super::Shared;
use crate::plugin::SourceHandle;
use crate::stats::Counters;

pub fn run(
    reader: usize,
    source: Arc<SourceHandle>,
    splits: Receiver<Split>,
    out: Sender<Batch>,
    shared: Arc<Shared>,
) {
    while let Ok(split) = splits.try_recv() {
        if shared.stopping() {
            return;
        }
        let range = describe(&split);
        tracing::info!(split = split.id, reader, range = %range, "split started");
        let mut rows = 0u64;
        let result = (|| {
            let mut r = source.open_split(&split)?;
            while let Some(batch) = r.next_batch()? {
                let n = batch.len();
                Counters::add(&shared.counters.read, n);
                Counters::add(&shared.counters.per_reader[reader], n);
                rows += n as u64;
                if out.send(batch).is_err() || shared.stopping() {
                    break;
                }
            }
            Ok::<_, crate::plugin::PluginError>(())
        })();
        match result {
            Ok(()) => {
                tracing::info!(split = split.id, reader, range = %range, rows, "split finished")
            }
            Err(e) => {
                shared.fail(format!("reading split {} ({range}) failed: {e}", split.id));
                return;
            }
        }
    }
    // Returning drops `out`: once every reader has, the batcher flushes and finishes.
}

/// `id in [1, 100)`, or `whole source`.
pub fn describe(split: &Split) -> String {
    match &split.range {
        None => "whole source".into(),
        Some(r) => {
            let start = r.start.as_ref().map_or("-inf".into(), |v| v.to_string());
            let end = r.end.as_ref().map_or("+inf".into(), |v| v.to_string());
            let nulls = if r.nulls { " or NULL" } else { "" };
            format!("{} in [{start}, {end}){nulls}", r.column)
        }
    }
}
