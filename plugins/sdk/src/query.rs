//! The optional read capability of a sink, for `etlhost verify`: run a read-only query with
//! parameters against the target and stream its rows back in batches (the [`crate::codec`]
//! format, one column per field the query returns).
//!
//! A sink library exports it as one more optional symbol, [`SINK_QUERY_SYMBOL`], returning a
//! [`SinkQueryVTable`]; [`export_sink_query!`](crate::export_sink_query) writes it. The host looks
//! it up by name, like `etlhost_sink_check`, so plugins built without it load unchanged (their
//! flows are reported as "not verifiable: the sink plugin cannot read") and nothing in
//! [`crate::abi`] changes. The table starts with its own version and size, checked by the host
//! before it reads anything else, so the table can grow without touching the plugin ABI.

use serde::{Deserialize, Serialize};

use crate::abi::{Instance, OwnedBuf, StrRef};
use crate::connector::{Sink, SplitReader};
use crate::error::OpenError;
use crate::value::Value;

/// The optional symbol: an `extern "C" fn() -> *const SinkQueryVTable` ([`SinkQueryFn`]).
pub const SINK_QUERY_SYMBOL: &str = "etlhost_sink_query";

/// The version of [`SinkQueryVTable`]'s layout.
pub const QUERY_VERSION: u32 = 1;

pub type SinkQueryFn = unsafe extern "C" fn() -> *const SinkQueryVTable;

#[repr(C)]
pub struct SinkQueryVTable {
    /// Must equal the host's [`QUERY_VERSION`]; read first.
    pub version: u32,
    /// `size_of::<SinkQueryVTable>()` as the plugin was compiled.
    pub size: u32,
    /// Connects with the sink's options (JSON) and starts the query of `request` (JSON, a
    /// [`QueryRequest`]). Errors: `STATUS_CONFIG` (an option), `STATUS_ERROR`, `STATUS_RETRYABLE`.
    pub open: unsafe extern "C" fn(
        options: StrRef,
        request: StrRef,
        out: *mut Instance,
        err: *mut OwnedBuf,
    ) -> u32,
    /// The next rows (a batch in the codec format), `STATUS_END` when the result is exhausted.
    pub next_batch: unsafe extern "C" fn(rows: Instance, out: *mut OwnedBuf) -> u32,
    /// Releases the result, whether or not it was read to the end.
    pub close: unsafe extern "C" fn(rows: Instance),
}

// SAFETY: vtables are immutable statics of function pointers.
unsafe impl Sync for SinkQueryVTable {}

/// A read-only query and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// In the target's own language (Cypher for the bolt sink).
    pub query: String,
    /// Named parameters (`$lo`, `$hi` for `etlhost verify`); a `Null` one is passed as null.
    #[serde(default)]
    pub params: Vec<(String, Value)>,
    /// Rows per batch the host would like; 0 lets the plugin choose.
    #[serde(default)]
    pub fetch_size: usize,
}

/// A sink that can also read: implement it and add
/// `etlhost_plugin_sdk::export_sink_query!(MySink);` beside `export_sink!`.
pub trait SinkQuery: Sink {
    type Rows: SplitReader;

    /// Connects and starts `request`; the rows are read from the returned reader. Must not write.
    fn query(options: Self::Options, request: &QueryRequest) -> Result<Self::Rows, OpenError>;
}

/// # Safety
/// ABI contract: `opts` and `request` readable; `out`, `err` writable.
pub unsafe extern "C" fn query_open<K: SinkQuery>(
    opts: StrRef,
    request: StrRef,
    out: *mut Instance,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        crate::export::guard(err, || {
            let options = crate::options::parse::<K::Options>(opts.as_bytes())?;
            let request: QueryRequest =
                serde_json::from_slice(request.as_bytes()).map_err(|e| {
                    crate::Error::permanent(format!("malformed query request from host: {e}"))
                })?;
            let rows = K::query(options, &request)?;
            out.write(Box::into_raw(Box::new(rows)) as Instance);
            Ok(crate::abi::STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `rows` is a live result of `K`; `out` writable.
pub unsafe extern "C" fn query_next<K: SinkQuery>(rows: Instance, out: *mut OwnedBuf) -> u32 {
    // SAFETY: the same contract as a source's `next_batch`.
    unsafe { crate::export::next_batch_of::<K::Rows>(rows, out) }
}

/// # Safety
/// ABI contract: `rows` is a live result of `K`, not used again.
pub unsafe extern "C" fn query_close<K: SinkQuery>(rows: Instance) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: ABI contract.
        drop(unsafe { Box::from_raw(rows as *mut K::Rows) })
    }));
}

/// The query table of a sink type.
pub const fn query_vtable<K: SinkQuery>() -> SinkQueryVTable {
    SinkQueryVTable {
        version: QUERY_VERSION,
        size: std::mem::size_of::<SinkQueryVTable>() as u32,
        open: query_open::<K>,
        next_batch: query_next::<K>,
        close: query_close::<K>,
    }
}

/// Exports a [`SinkQuery`] sink's read capability (use beside `export_sink!`):
/// `etlhost_plugin_sdk::export_sink_query!(MySink);`
#[macro_export]
macro_rules! export_sink_query {
    ($ty:ty) => {
        /// The optional read capability (`etlhost verify`), looked up by name by the host.
        #[unsafe(no_mangle)]
        pub extern "C" fn etlhost_sink_query() -> *const $crate::query::SinkQueryVTable {
            static VTABLE: $crate::query::SinkQueryVTable = $crate::query::query_vtable::<$ty>();
            &VTABLE
        }
    };
}
