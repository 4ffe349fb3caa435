//! etlhost: moves rows from a source plugin to a sink plugin, owning everything in between —
//! planning, scheduling, batching and accounting.
//!
//! The modules in layers, bottom to top; a module imports only from the layers below it (or its
//! own), never up, so there are no import cycles (`cargo xtask structure` checks it):
//!
//! 1. The model: [`spec`] (the job spec file, YAML or TOML, and its errors; it imports nothing of
//!    the host), [`state_file`] (files that outlive a run, written atomically), [`plugin`]
//!    (connector libraries called through the C ABI), [`stats`] (row accounting and the final
//!    statistics), [`retry`] (how long to wait before trying again).
//! 2. Built on it: [`error`] (why a job did not run to the end), [`report`] (live progress for
//!    people), [`shard`] (one job spread over several processes), [`options`] (how a run was
//!    asked for), [`transform`] (WASM transforms), [`job`] (a spec with its plugins loaded and
//!    options validated), [`check`] (sinks checked online without writing), [`plan`] (which splits
//!    a flow reads), [`cursor`] (how far an incremental flow read, kept between runs),
//!    [`placement`] (where the nodes of a relationship flow are), [`checkpoint`] (the local
//!    progress file).
//! 3. [`pipeline`]: readers, batcher and writers moving one flow's rows.
//! 4. [`progress`]: where a flow keeps its progress (a local checkpoint, or the target), chosen
//!    once per flow.
//! 5. [`batch`]: one batch flow, in named steps.
//! 6. [`stream`]: `mode: stream`, following the source's change log; its snapshot is batch flows.
//! 7. [`run`]: a job's flows in order, batch or stream.
//! 8. Beside the run, using the layers below: [`verify`] (the graph compared with the source),
//!    [`init`] (a generated spec from a source's tables), [`seatunnel`] (SeaTunnel job files read
//!    as specs, and converted).
//! 9. [`cli`]: the `etlhost` commands, a module each, and their arguments.

pub mod batch;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod cursor;
pub mod error;
pub mod init;
pub mod job;
pub mod options;
pub mod pipeline;
pub mod placement;
pub mod plan;
pub mod plugin;
pub mod progress;
pub mod report;
pub mod retry;
pub mod run;
pub mod seatunnel;
pub mod shard;
pub mod spec;
pub mod state_file;
pub mod stats;
pub mod stream;
pub mod transform;
pub mod verify;
