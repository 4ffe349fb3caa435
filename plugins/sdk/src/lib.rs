//! # etlhost plugin SDK
//!
//! Everything needed to build an etlhost source or sink as a shared library (`cdylib`), without the
//! etlhost source tree:
//!
//! - implement [`Source`] + [`SplitReader`], or [`Sink`], with options as a serde struct that
//!   implements [`Options`];
//! - export it with [`export_source!`] or [`export_sink!`];
//! - build with `crate-type = ["cdylib"]` and point a job spec's `plugin:` at the `.so`.
//!
//! The host owns splitting, scheduling, batching, retries and checkpoints. A source only reads the
//! rows of one [`Split`]; a sink only writes one [`Batch`] per call and never holds rows back.
//!
//! What crosses the boundary: options as JSON (errors name the key, see [`ConfigError`]), splits as
//! JSON, batches in the binary format documented in [`codec`], errors as UTF-8 text with a
//! retryable flag, and log events from `tracing` (forwarded to the host, which prefixes the plugin's
//! name). The C-level contract is in [`abi`]; its version is [`abi::ABI_VERSION`].

pub mod abi;
pub mod change;
pub mod codec;
mod connector;
mod error;
pub mod export;
mod log;
pub mod options;
pub mod progress;
pub mod query;
pub mod redact;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod split;
pub mod stream_state;
pub mod value;
pub mod view;

pub use change::{Change, ChangeBatch, ChangeKind, Position, StreamHead, StreamRequest};
pub use connector::{Sink, Source, SplitReader};
pub use error::{ConfigError, Error, OpenError};
pub use options::Options;
pub use progress::{Failure, Plan, Progress, SinkProgress, State, StateRequest};
pub use query::{QueryRequest, SinkQuery};
pub use split::{
    Catalog, ColumnInfo, CursorRange, ForeignKey, KeyBounds, KeyRange, KeySample, PlanRequest,
    Split, TableInfo,
};
pub use stream_state::{
    ChangeId, Lease, Marked, SinkStream, StreamRecord, StreamStateRequest, WriterMark,
    WriterRecord, WriterSlot,
};
pub use value::{Batch, Column, ColumnType, Point, Row, Schema, Value};
pub use view::{ChangeBatchView, ChangeView, RowRef, ValueRef};

/// The SDK's version, recorded in every plugin's descriptor.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
