//! A writer: owns one sink instance and writes the batches it receives, one call per batch.
//!
//! A batch that fails with a transient error (connection lost, deadlock, server busy) is tried
//! again after an exponential backoff, up to `max_retries` times. A batch that fails permanently is
//! cut in halves, and each half written on its own, until the rows that fail are isolated: the good
//! rows are written, each bad row goes to the dead-letter file with the error and is counted as
//! failed. Rows whose batch still fails transiently after every retry are failed with that error;
//! they are not bisected, since halves would only fail the same way.

use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use etlhost_plugin_sdk::Batch;

use super::batcher::Work;
use super::control::StopReason;
use super::seams::SinkSide;
use super::shared::Shared;
use crate::plugin::PluginError;
use crate::stats::Counters;

pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub fn run(mut sink: Box<dyn SinkSide>, batches: Receiver<Work>, shared: &Shared) {
    // The loop ends only when the batcher has sent its last (partial) batch and hung up.
    for mut work in batches {
        if work.progress.is_some() {
            super::ordered::deliver(&mut *sink, &mut work, shared);
        } else if work.encoded.is_some() {
            // Pass-through batches are never grouped.
            deliver_encoded(&mut *sink, &mut work, shared);
        } else {
            // A grouped flow's batch waits until no other writer holds its groups (see `grouping`).
            let _bucket = work.lane.as_ref().map(|l| l.hold());
            let all: Vec<usize> = (0..work.batch.len()).collect();
            deliver(&mut *sink, &work, &work.batch, &all, shared);
        }
        shared.recycle(work);
    }
    if shared.control.reason() != StopReason::Error {
        if let Err(e) = sink.finish() {
            shared.fail(format!("finishing the sink failed: {e}"));
        }
    }
}

/// The pass-through path: the batch as the source encoded it. Its rows are decoded only if it
/// fails: to bisect it, or to keep them in the dead-letter file.
fn deliver_encoded(sink: &mut dyn SinkSide, work: &mut Work, shared: &Shared) {
    let rows = work.encoded.as_ref().expect("checked by the caller");
    let result = with_retries(shared, || sink.write_encoded(rows));
    let all: Vec<usize> = (0..rows.rows()).collect();
    match result {
        Ok(()) => written(work, &all, shared),
        Err(e) => {
            work.decoded();
            failed(sink, work, &all, e, shared);
        }
    }
}

/// Writes `rows` (indices into `work.batch`; `batch` holds exactly those rows), bisecting on
/// permanent errors.
fn deliver(sink: &mut dyn SinkSide, work: &Work, batch: &Batch, rows: &[usize], shared: &Shared) {
    match write_with_retries(sink, batch, shared) {
        Ok(()) => written(work, rows, shared),
        Err(e) => failed(sink, work, rows, e, shared),
    }
}

fn written(work: &Work, rows: &[usize], shared: &Shared) {
    Counters::add(&shared.counters.written, rows.len());
    Counters::add(&shared.counters.batches, 1);
    acknowledge(work, rows, shared);
}

/// `rows` failed to be written together: halves are tried on their own until the rows that fail
/// are isolated, unless the error is transient (halves would fail the same way).
fn failed(sink: &mut dyn SinkSide, work: &Work, rows: &[usize], e: PluginError, shared: &Shared) {
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
            deliver(sink, work, &sub, half, shared);
        }
    } else {
        fail_rows(work, rows, &e, shared);
    }
}

/// Tells the progress tracker that `rows` are behind us, as runs of consecutive row numbers.
pub(super) fn acknowledge(work: &Work, rows: &[usize], shared: &Shared) {
    let mut run: Option<(u32, u64, u64)> = None;
    let flush = |(split, start, end)| shared.ack(split, start, end);
    for &i in rows {
        let (split, origin) = work.origin[i];
        // A row a transform made several of is behind us once all of them are.
        let Some(seq) = shared.release(split, origin) else {
            continue;
        };
        run = match run {
            Some((s, a, b)) if s == split && b == seq => Some((s, a, b + 1)),
            Some(r) => {
                flush(r);
                Some((split, seq, seq + 1))
            }
            None => Some((split, seq, seq + 1)),
        };
    }
    if let Some(r) = run {
        flush(r);
    }
}

pub(super) fn write_with_retries(
    sink: &mut dyn SinkSide,
    batch: &Batch,
    shared: &Shared,
) -> Result<(), PluginError> {
    with_retries(shared, || sink.write_batch(batch))
}

/// Runs `write` until it succeeds, fails permanently, or has been retried `max_retries` times.
fn with_retries(
    shared: &Shared,
    mut write: impl FnMut() -> Result<(), PluginError>,
) -> Result<(), PluginError> {
    let s = &shared.settings;
    let mut backoff = s.retry_backoff;
    let mut attempt = 0;
    loop {
        match write() {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < s.max_retries => {
                attempt += 1;
                Counters::add(&shared.counters.retries, 1);
                tracing::warn!(
                    attempt,
                    max_retries = s.max_retries,
                    "transient write error, retrying in {backoff:?}: {e}"
                );
                thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn fail_rows(work: &Work, rows: &[usize], e: &PluginError, shared: &Shared) {
    if shared.fail_rows(&work.batch, rows, &work.origin, "sink", &e.to_string()) {
        // Kept in the dead-letter file, so behind us as far as a resumed run is concerned.
        acknowledge(work, rows, shared);
    }
}
