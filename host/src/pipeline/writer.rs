//! A writer: owns one sink instance and writes the batches it receives, one call per batch.
//!
//! A batch that fails with a transient error (connection lost, deadlock, server busy) is tried
//! again after an exponential backoff with jitter ([`crate::retry`]), up to `max_retries` times. A batch that fails permanently is
//! cut in halves, and each half written on its own, until the rows that fail are isolated: the good
//! rows are written, each bad row goes to the dead-letter file with the error and is counted as
//! failed. Rows whose batch still fails transiently after every retry are failed with that error;
//! they are not bisected, since halves would only fail the same way.
//!
//! A sink that fails whatever it is given (a read-only database, a full disk, a user without
//! write permission) is not bisected down to every row: see [`SinkCheck`]. The job then fails as
//! a sink error, and the rows not written are given back ([`Shared::give_back`]), not failed.

use std::thread;

use crossbeam_channel::Receiver;
use etlhost_plugin_sdk::Batch;

use super::batcher::Work;
use super::control::StopReason;
use super::seams::SinkSide;
use super::shared::Shared;
use crate::plugin::PluginError;
use crate::stats::Counters;

pub fn run(mut sink: Box<dyn SinkSide>, batches: Receiver<Work>, shared: &Shared) {
    // The loop ends only when the batcher has sent its last (partial) batch and hung up.
    for mut work in batches {
        if shared.sink_failed() {
            // Writing to a sink known to fail would only fail again, and, for a batch carrying
            // progress, could record progress past rows given back before it.
            shared.give_back(work.origin.iter().copied());
        } else if work.progress.is_some() {
            super::ordered::deliver(&mut *sink, &mut work, shared);
        } else if work.encoded.is_some() {
            // Pass-through batches are never grouped.
            deliver_encoded(&mut *sink, &mut work, shared);
        } else {
            // A grouped flow's batch waits until no other writer holds its groups (see `grouping`).
            let _bucket = work.lane.as_ref().map(|l| l.hold());
            let all: Vec<usize> = (0..work.batch.len()).collect();
            let mut check = SinkCheck::default();
            deliver(&mut *sink, &work, &work.batch, &all, &mut check, shared);
            check.settle(&work, shared);
        }
        shared.recycle(work);
    }
    if shared.control.reason() != StopReason::Error && !shared.sink_failed() {
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
            let mut check = SinkCheck::default();
            failed(sink, work, &all, e, &mut check, shared);
            check.settle(work, shared);
        }
    }
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

fn written(work: &Work, rows: &[usize], shared: &Shared) {
    Counters::add(&shared.counters.written, rows.len());
    Counters::add(&shared.counters.batches, 1);
    acknowledge(work, rows, shared);
}

/// `rows` failed to be written together: halves are tried on their own until the rows that fail
/// are isolated, unless the error is transient (halves would fail the same way).
fn failed(
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

/// How many rows, isolated one by one while no part of their batch could be written, must fail
/// with the same error before the sink is taken to be failing rather than the rows.
pub(super) const SINK_FAILURE_ROWS: usize = 3;

/// Tells a sink that fails every row (a read-only database, a full disk, a failing fsync, a user
/// without write permission) from rows that fail, while one batch is bisected.
///
/// The rule: if the first [`SINK_FAILURE_ROWS`] rows isolated alone all fail permanently with the
/// same error text, and no part of the batch has been written before them, the sink is failing.
/// Bisection goes left first, so those rows are found after about `log2(batch)` failed writes of
/// halves that hold them, and a sink that fails everything costs that many writes, not one per
/// row; the job fails as a sink error (exit 3, retried by an orchestrator) instead of putting
/// every row read into the dead-letter file until `max_failed_rows` stops it (exit 4, which
/// says "fix your data").
///
/// Why it does not misjudge bad rows mixed with good ones: any part of the batch written, or
/// one isolated row failing with another text, or a transient failure, ends the check for the
/// batch, and from then on rows fail one by one as before. Errors that name the row (ArcadeDB's
/// duplicate key over Bolt names the key: `Duplicated key [17] found on index 'Person[id]' ...`)
/// never share a text. What is misjudged is a batch whose first [`SINK_FAILURE_ROWS`] rows are
/// all bad with an error that says nothing of the row: the job fails as a sink error, its rows
/// given back, not lost, and a rerun fails the same way until those rows are fixed. A batch of
/// fewer rows than that is never judged: its rows fail one by one, as before.
///
/// The rows under test are held, neither failed nor acknowledged, until the check is decided:
/// failing the first one would stop the job for too many failed rows (with `max_failed_rows: 0`,
/// the default) before the sink could be found out, and would put rows that are not at fault
/// into the dead-letter file.
#[derive(Default)]
pub(super) struct SinkCheck {
    /// Rows isolated and failed so far, with their error, while the check is open.
    held: Vec<(usize, PluginError)>,
    /// Part of the batch was written, or the rows failed differently: rows fail as they come.
    closed: bool,
}

impl SinkCheck {
    /// A part of the batch was written: the sink works.
    pub(super) fn written(&mut self, work: &Work, shared: &Shared) {
        self.close(work, shared);
    }

    /// `rows` failed with `e` and are not bisected further (one row, or a transient error).
    pub(super) fn failed(&mut self, work: &Work, rows: &[usize], e: PluginError, shared: &Shared) {
        if shared.sink_failed() {
            self.give_back(work, shared);
            return shared.give_back(rows.iter().map(|&i| work.origin[i]));
        }
        let same = |(_, first): &(usize, PluginError)| first.to_string() == e.to_string();
        let holds = !self.closed
            && rows.len() == 1
            && !e.is_retryable()
            && self.held.first().is_none_or(same);
        if !holds {
            self.close(work, shared);
            return fail_rows(work, rows, &e, shared);
        }
        self.held.push((rows[0], e));
        if self.held.len() >= SINK_FAILURE_ROWS {
            let error = self.held[0].1.to_string();
            shared.sink_failing(self.held.len(), &error);
            self.give_back(work, shared);
        }
    }

    /// The batch is done: rows still held fail as they would have.
    pub(super) fn settle(mut self, work: &Work, shared: &Shared) {
        self.close(work, shared);
    }

    /// Whether rows are held: nothing of the batch is written yet, and the check is open.
    pub(super) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn close(&mut self, work: &Work, shared: &Shared) {
        if shared.sink_failed() {
            return self.give_back(work, shared);
        }
        self.closed = true;
        for (row, e) in std::mem::take(&mut self.held) {
            fail_rows(work, &[row], &e, shared);
        }
    }

    fn give_back(&mut self, work: &Work, shared: &Shared) {
        self.closed = true;
        let held = std::mem::take(&mut self.held);
        shared.give_back(held.iter().map(|&(row, _)| work.origin[row]));
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
    let mut backoff = s.retry_policy().start();
    loop {
        let e = match write() {
            Ok(()) => return Ok(()),
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

pub(super) fn fail_rows(work: &Work, rows: &[usize], e: &PluginError, shared: &Shared) {
    if shared.fail_rows(&work.batch, rows, &work.origin, "sink", &e.to_string()) {
        // Kept in the dead-letter file, so behind us as far as a resumed run is concerned.
        acknowledge(work, rows, shared);
    }
}
