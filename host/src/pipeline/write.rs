//! What every delivery mode does with a batch: write it with retries (the one policy of
//! [`crate::retry`]), and once its rows are written or failed, count them and acknowledge them to
//! the progress tracker.

use std::thread;

use etlhost_plugin_sdk::Batch;

use super::seams::SinkSide;
use super::shared::Shared;
use super::work::Work;
use crate::plugin::PluginError;
use crate::stats::Counters;

/// `rows` of `work` are written.
pub fn written(work: &Work, rows: &[usize], shared: &Shared) {
    Counters::add(&shared.counters.written, rows.len());
    Counters::add(&shared.counters.batches, 1);
    acknowledge(work, rows, shared);
}

/// Tells the progress tracker that `rows` are behind us, as runs of consecutive row numbers.
pub fn acknowledge(work: &Work, rows: &[usize], shared: &Shared) {
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

/// `batch`, with retries.
pub fn write_with_retries(
    sink: &mut dyn SinkSide,
    batch: &Batch,
    shared: &Shared,
) -> Result<(), PluginError> {
    with_retries(shared, || sink.write_batch(batch))
}

/// Runs `write` until it succeeds, fails permanently, or has been retried `max_retries` times.
pub fn with_retries<T>(
    shared: &Shared,
    mut write: impl FnMut() -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    let s = &shared.settings;
    let mut backoff = s.retry_policy().start();
    loop {
        let e = match write() {
            Ok(done) => return Ok(done),
            Err(e) if e.is_retryable() => e,
            Err(e) => return Err(e),
        };
        let Some(wait) = backoff.next_wait() else {
            return Err(e);
        };
        Counters::add(&shared.counters.retries, 1);
        tracing::warn!(
            attempt = backoff.retried(),
            max_retries = s.max_retries,
            "transient write error, retrying in {wait:?}: {e}"
        );
        thread::sleep(wait);
    }
}

/// `rows` of `work` failed with `e`: into the dead-letter file, and acknowledged once kept there.
pub fn fail_rows(work: &Work, rows: &[usize], e: &PluginError, shared: &Shared) {
    if shared.fail_rows(&work.batch, rows, &work.origin, "sink", &e.to_string()) {
        // Kept in the dead-letter file, so behind us as far as a resumed run is concerned.
        acknowledge(work, rows, shared);
    }
}
