//! The `mysql` source: reads a table or a query from MySQL or MariaDB, one split (key range) at a
//! time, streaming rows in MySQL's binary protocol so every column keeps its type: by a client of
//! its own that parses them in place (`built_in`, over the crate `etlhost_mysql_wire`), or by
//! mysql_async where that one cannot connect.
//!
//! The crate reads: `options` (the configuration), `source` (planning: bounds, samples, the
//! catalog; opening splits), `reader` (a split's rows through mysql_async), `built_in` (through
//! the crate `etlhost_mysql_wire`), `types` (MySQL values into the batch format), `binlog`
//! (`mode: stream`) and `sql` (the SQL text they share).

mod binlog;
mod built_in;
mod options;
mod reader;
mod sample;
mod source;
mod sql;
mod types;

use etlhost_plugin_sdk::export_source;

pub use options::{Client, JsonAs, MySqlOptions};
pub use reader::MySqlReader;
pub use source::MySqlSource;

export_source!(MySqlSource, name = "mysql");

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (README, "Performance"). Memory crosses the boundary only back to its owner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
