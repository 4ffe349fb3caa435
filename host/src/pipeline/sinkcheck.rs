//! Telling a failing sink from failing rows while a batch is bisected: see [`SinkCheck`].

use super::shared::Shared;
use super::work::Work;
use super::write::fail_rows;
use crate::plugin::PluginError;

/// How many rows, isolated one by one while no part of their batch could be written, must fail
/// with the same error before the sink is taken to be failing rather than the rows.
pub const SINK_FAILURE_ROWS: usize = 3;

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
pub struct SinkCheck {
    /// Rows isolated and failed so far, with their error, while the check is open.
    held: Vec<(usize, PluginError)>,
    /// Part of the batch was written, or the rows failed differently: rows fail as they come.
    closed: bool,
}

impl SinkCheck {
    /// A part of the batch was written: the sink works.
    pub fn written(&mut self, work: &Work, shared: &Shared) {
        self.close(work, shared);
    }

    /// `rows` failed with `e` and are not bisected further (one row, or a transient error).
    pub fn failed(&mut self, work: &Work, rows: &[usize], e: PluginError, shared: &Shared) {
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
    pub fn settle(mut self, work: &Work, shared: &Shared) {
        self.close(work, shared);
    }

    /// Whether rows are held: nothing of the batch is written yet, and the check is open.
    pub fn holding(&self) -> bool {
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
