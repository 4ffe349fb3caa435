//! etlhost: moves rows from a source plugin to a sink plugin, owning everything in between —
//! planning, scheduling, batching and accounting.
//!
//! - [`spec`]: the job spec file (YAML or TOML) and its errors.
//! - [`plugin`]: loading connector libraries and calling them through the C ABI.
//! - [`job`]: a spec with its plugins loaded and options validated.
//! - [`check`]: sinks checked online (`etlhost validate`) without writing.
//! - [`init`]: a generated spec from a source's tables and foreign keys.
//! - [`plan`]: which splits a job reads.
//! - [`run`]: a job's flows in order, each planned, resumed or narrowed to its cursor.
//! - [`pipeline`]: readers, batcher and writers.
//! - [`stats`]: row accounting and the final statistics.
//! - [`checkpoint`]: durable progress, for resuming a killed job.
//! - [`cursor`]: how far an incremental flow read, kept between runs.
//! - [`report`]: live progress for people: bars or a periodic block.

pub mod check;
pub mod checkpoint;
pub mod cursor;
pub mod init;
pub mod job;
pub mod pipeline;
pub mod plan;
pub mod plugin;
pub mod report;
pub mod run;
pub mod spec;
pub mod stats;
pub mod transform;
