//! etlhost: moves rows from a source plugin to a sink plugin, owning everything in between —
//! planning, scheduling, batching and accounting.
//!
//! - [`cli`]: the `etlhost` commands, a module each, and their arguments.
//! - [`spec`]: the job spec file (YAML or TOML) and its errors.
//! - [`plugin`]: loading connector libraries and calling them through the C ABI.
//! - [`job`]: a spec with its plugins loaded and options validated.
//! - [`check`]: sinks checked online (`etlhost validate`) without writing.
//! - [`init`]: a generated spec from a source's tables and foreign keys.
//! - [`plan`]: which splits a job reads.
//! - [`run`]: a job's flows in order, each planned, resumed or narrowed to its cursor.
//! - [`error`]: why a job did not run to the end.
//! - [`pipeline`]: readers, batcher and writers.
//! - [`stats`]: row accounting and the final statistics.
//! - [`checkpoint`]: durable progress, for resuming a killed job.
//! - [`target`]: progress kept in the target instead, in each batch's transaction; the shared plan.
//! - [`shard`]: one job spread over several processes.
//! - [`cursor`]: how far an incremental flow read, kept between runs.
//! - [`report`]: live progress for people: bars or a periodic block.
//! - [`transform`]: WASM transforms: loading, the engine, per-reader chains.
//! - [`state_file`]: files that outlive a run, written atomically.
//! - [`verify`]: `etlhost verify`, the graph compared with the source, row by row.
//! - [`seatunnel`]: SeaTunnel job files (HOCON) read as specs, and converted to YAML or TOML.

pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod cursor;
pub mod error;
pub mod init;
pub mod job;
pub mod pipeline;
pub mod placement;
pub mod plan;
pub mod plugin;
pub mod report;
pub mod retry;
pub mod run;
pub mod seatunnel;
pub mod shard;
pub mod spec;
pub mod state_file;
pub mod stats;
pub mod stream;
pub mod target;
pub mod transform;
pub mod verify;
