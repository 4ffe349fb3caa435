//! How a run was asked for on the command line: read by the run, by its batch and stream flows and
//! by the progress stores alike, so it sits below them all.

use crate::report;
use crate::shard::Shard;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Discard checkpoints instead of resuming from them.
    pub fresh: bool,
    /// Accept an earlier run's failure instead of refusing to go on from it (`--accept-failures`).
    pub accept_failures: bool,
    /// Ignore stored cursors: read every row, then store the cursor anew.
    pub full: bool,
    pub report: report::Mode,
    /// `mode: stream`: where to serve Prometheus metrics.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// This process's share of the job's splits.
    pub shard: Shard,
    /// The run all shards share (`--run`, `ETLHOST_RUN`); empty by default.
    pub run: String,
}
