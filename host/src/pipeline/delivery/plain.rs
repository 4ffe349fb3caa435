//! The plain mode: decoded rows, one sink call per batch. A batch that fails permanently is cut in
//! halves, and each half written on its own, until the rows that fail are isolated: the good rows
//! are written, each bad row goes to the dead-letter file with the error and is counted as failed.
//! Rows whose batch still fails transiently after every retry are failed with that error; they
//! are not bisected, since halves would only fail the same way. A sink that fails whatever it is
//! given is not bisected down to every row: see [`SinkCheck`].

use etlhost_plugin_sdk::Batch;

use crate::pipeline::seams::SinkSide;
use crate::pipeline::shared::Shared;
use crate::pipeline::sinkcheck::SinkCheck;
use crate::pipeline::work::Work;
use crate::pipeline::write::{write_with_retries, written};
use crate::plugin::PluginError;

/// Writes a batch of decoded rows, bisecting it on permanent errors.
pub fn write(sink: &mut dyn SinkSide, work: &Work, shared: &Shared) {
    let all: Vec<usize> = (0..work.batch.len()).collect();
    let mut check = SinkCheck::default();
    deliver(sink, work, &work.batch, &all, &mut check, shared);
    check.settle(work, shared);
}

/// Writes `rows` (indices into `work.batch`; `batch` holds exactly those rows), bisecting on
/// permanent errors.
fn deliver(
    sink: &mut dyn SinkSide,
    work: &Work,
    batch: &Batch,
    rows: &[usize],
    check: &mut SinkCheck,
    shared: &Shared,
) {
    if shared.sink_failed() {
        return shared.give_back(rows.iter().map(|&i| work.origin[i]));
    }
    match write_with_retries(sink, batch, shared) {
        Ok(()) => {
            check.written(work, shared);
            written(work, rows, shared);
        }
        Err(e) => failed(sink, work, rows, e, check, shared),
    }
}

/// `rows` failed to be written together: halves are tried on their own until the rows that fail
/// are isolated, unless the error is transient (halves would fail the same way).
pub fn failed(
    sink: &mut dyn SinkSide,
    work: &Work,
    rows: &[usize],
    e: PluginError,
    check: &mut SinkCheck,
    shared: &Shared,
) {
    let n = rows.len();
    if n > 1 && !e.is_retryable() {
        tracing::warn!(
            rows = n,
            "a batch failed ({e}); writing it in halves to isolate the failing rows"
        );
        let (left, right) = rows.split_at(n / 2);
        for half in [left, right] {
            let sub = Batch {
                schema: work.batch.schema.clone(),
                rows: half.iter().map(|&i| work.batch.rows[i].clone()).collect(),
            };
            deliver(sink, work, &sub, half, check, shared);
        }
    } else {
        check.failed(work, rows, e, shared);
    }
}
