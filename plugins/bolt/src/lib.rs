//! The `bolt` sink: writes each batch to a Neo4j-compatible graph database in one transaction, with a
//! user's Cypher query that receives the batch as `$batch`, a list of maps keyed by column name:
//!
//! ```cypher
//! UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p.name = row.name
//! ```
//!
//! A NULL column is left out of its row's map, so the property is absent, as in Neo4j.
//!
//! The crate reads: `options` (the configuration), `sink` (connections, the query check, one
//! transaction per batch), `encoding` (values into PackStream), and beside them the change
//! stream's writes (`changes`), `params_by_position` (`params`), the exactly-once progress record
//! (`progress`) and `etlhost verify`'s reads (`read`). The Bolt client itself is the crate
//! [`etlhost_bolt_client`].

mod changes;
mod encoding;
mod options;
mod params;
mod progress;
mod read;
mod sink;
mod stream_state;

use etlhost_plugin_sdk::{export_sink, Batch, ConfigError, Error, OpenError, Sink};

pub use encoding::{encode_params, encode_params_for};
pub use etlhost_bolt_client::{Auth, BoltError, Connection, RoutingTable, Settings, Target, Trust};
pub use options::{AuthScheme, BoltOptions, DecimalAs, Temporal};
pub use sink::BoltSink;
use sink::{needs_new_route, needs_new_session};

impl Sink for BoltSink {
    type Options = BoltOptions;

    fn open(options: BoltOptions) -> Result<Self, OpenError> {
        BoltSink::start(options, true)
    }

    /// Connects (routing included) and has the server compile the query; runs no `setup`.
    const CHECKS: bool = true;

    fn check(options: BoltOptions) -> Result<(), OpenError> {
        BoltSink::start(options, false).map(drop)
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        params::fits(&self.options, batch)?;
        match self.try_batch(batch) {
            Ok(()) => Ok(()),
            Err((e, Some(cause))) if needs_new_session(&cause) => {
                // Log in again on a new connection and try once more; wrong credentials fail again.
                tracing::warn!("{e}; logging in again on a new connection and retrying once");
                if self.target.routing {
                    self.table = None;
                }
                self.try_batch(batch).map_err(|(e, _)| e)
            }
            Err((e, Some(cause))) if self.target.routing && needs_new_route(&cause) => {
                // The leader moved or the server went away: a new table, and one more try.
                tracing::warn!("{e}; refreshing the routing table and retrying once");
                self.table = None;
                self.conn = None;
                self.try_batch(batch).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    const CHANGES: bool = true;

    fn check_changes(options: &BoltOptions) -> Result<(), ConfigError> {
        changes::check_options(options)
    }

    fn write_changes(&mut self, batch: &etlhost_plugin_sdk::ChangeBatch) -> Result<(), Error> {
        // Without a mark nothing refuses the transaction but its own statements' errors.
        self.write_values(batch, None).map(drop)
    }

    fn write_changes_encoded(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.write_bytes(bytes, None).map(drop)
    }
}

export_sink!(BoltSink, name = "bolt");
// `etlhost verify` reads the graph through the sink (read.rs).
etlhost_plugin_sdk::export_sink_query!(BoltSink);
etlhost_plugin_sdk::export_sink_progress!(BoltSink);
etlhost_plugin_sdk::export_sink_stream!(BoltSink);

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (README, "Performance"). Memory crosses the boundary only back to its owner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
