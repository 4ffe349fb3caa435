//! The `postgres` source: reads a table or a query from PostgreSQL, one split (key range, or
//! block range of a table without a key) at a time, by binary `COPY ... TO STDOUT`, so every
//! column keeps its type and rows stream without per-row round trips.
//!
//! The crate reads: `options` (the configuration), `connect` (tokio-postgres with rustls TLS),
//! `source` (planning: bounds, samples; opening splits), `catalog` (`describe` for `etlhost
//! init`), `reader` (a split's rows), `types` (PostgreSQL values into the batch format),
//! `replication` (`mode: stream`) and `sql` (the SQL text they share).

mod catalog;
mod connect;
mod options;
mod plan;
mod plugin;
mod reader;
mod relation;
mod replication;
mod source;
mod sql;
pub mod types;

use etlhost_plugin_sdk::export_source;

pub use options::{JsonAs, PgOptions, TlsMode};
pub use reader::PgReader;
pub use source::PgSource;

export_source!(PgSource, name = "postgres");

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (README, "Performance"). Memory crosses the boundary only back to its owner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
