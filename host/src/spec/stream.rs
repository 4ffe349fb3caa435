//! The job's `stream:` block: how its streaming flows treat very large source transactions and
//! changes the sink refuses for good. One block per job, since a job's streaming flows share one
//! change reader and one dispatch loop.

use serde::Deserialize;

use super::Span;

/// `stream: {max_transaction_changes, on_failed_change, max_failed_changes, lease}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// A source transaction with more changes than this is applied in parts as it is read, so
    /// memory does not grow with it; readers of the graph may then see it part-applied.
    #[serde(default = "default_max_transaction_changes")]
    pub max_transaction_changes: u64,
    /// What a change the sink refuses for good does: stop the stream (default), or go to the
    /// dead-letter file while the stream goes on.
    #[serde(default)]
    pub on_failed_change: OnFailedChange,
    /// With `dead_letter`: how many changes may fail before the stream stops; none: no limit.
    pub max_failed_changes: Option<u64>,
    /// With the position in the target: how long the active process's lease lasts unrenewed
    /// (it renews it every third of that). A standby takes over once it has expired; so this is
    /// how long a stream may stand still after its process dies, and how long a process may be
    /// cut off from the graph (or paused) before another takes over.
    #[serde(default = "default_lease")]
    pub lease: Span,
}

/// Tens of seconds: long enough for a garbage-collection pause or a Bolt server restart, short
/// enough that a standby takes over before anyone notices the lag.
fn default_lease() -> Span {
    Span(std::time::Duration::from_secs(30))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailedChange {
    #[default]
    Stop,
    DeadLetter,
}

/// Tens of thousands: a part this size is written in a few transactions of the default batch
/// size and holds a few MiB of rows.
pub const DEFAULT_MAX_TRANSACTION_CHANGES: u64 = 20_000;

fn default_max_transaction_changes() -> u64 {
    DEFAULT_MAX_TRANSACTION_CHANGES
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            max_transaction_changes: DEFAULT_MAX_TRANSACTION_CHANGES,
            on_failed_change: OnFailedChange::Stop,
            max_failed_changes: None,
            lease: default_lease(),
        }
    }
}
