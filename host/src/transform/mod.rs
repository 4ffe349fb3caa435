//! User transforms: WASM components (interface in `wit/transform.wit`) run between the readers and
//! the batcher, sandboxed by wasmtime.
//!
//! - [`engine`]: one wasmtime engine per job, components compiled once and cached on disk.
//! - [`worker`]: a chain of instances owned by one reader thread (one store each), with deadlines,
//!   memory limits, and isolation of the rows that make a call fail.
//! - [`values`]: rows across the boundary.
//!
//! Sandbox: an instance gets no files, network or environment variables unless the spec grants
//! them (`allow`), at most `memory` bytes of linear memory, and `deadline` per call (enforced with
//! wasmtime's epoch interruption, so a guest in an endless loop is stopped).

pub mod engine;
pub mod values;
pub mod worker;

pub use engine::{Compiled, TransformError, Transforms};
pub use worker::{Chain, Outcome};
