//! The C ABI between the host and a plugin library. Only `#[repr(C)]` types and plain integers cross.
//!
//! A plugin library exports one symbol, [`ENTRY_SYMBOL`], an `extern "C" fn() -> *const
//! PluginDescriptor` (a sink may export a second, optional one, [`SINK_CHECK_SYMBOL`]). The host reads `abi_version` and `descriptor_size` first and refuses the
//! library unless both match what it was built with; only then does it read any other field.
//!
//! Within one ABI version nothing in this module changes: no field is added, removed, reordered or
//! retyped, and no status code changes meaning. New behaviour that needs none of that travels in the
//! JSON of [`SourceVTable::call`]. Anything else is a new ABI version.
//!
//! Ownership: whoever allocates frees. Buffers the plugin fills ([`OwnedBuf`]) are released by the
//! host calling the plugin's `free_buf`; buffers the host passes ([`StrRef`]) are borrowed for the
//! duration of the call only. Instances and readers are released by the matching `close`/`free`.
//!
//! Threads: a source instance may be used by several host threads at once (`open_split` and `call`);
//! a split reader and a sink instance are used by one thread at a time, not always the same one.

use std::ffi::c_void;

/// Bumped on any change to the types in this module, or to the batch format in [`crate::codec`]
/// (2: points, UTC timestamps, lists and maps).
pub const ABI_VERSION: u32 = 2;

/// The one symbol a plugin library exports.
pub const ENTRY_SYMBOL: &str = "etlhost_plugin_entry";

/// An optional second symbol of sink libraries, a [`SinkCheckFn`]: connects with the options and
/// checks that writing would work (the target accepts the query, the credentials are right)
/// without writing anything, for `etlhost validate`. It is looked up by name, so libraries built
/// before it existed load unchanged (they are validated offline only) and nothing in the
/// descriptor or vtables changes.
pub const SINK_CHECK_SYMBOL: &str = "etlhost_sink_check";

/// `check(options, err)`: `STATUS_OK` when checked, [`STATUS_NOT_CHECKED`] when the sink has no
/// online check, else `STATUS_CONFIG` / `STATUS_ERROR` / `STATUS_RETRYABLE` with `err` filled
/// (released with the descriptor's `free_buf`).
pub type SinkCheckFn = unsafe extern "C" fn(options: StrRef, err: *mut OwnedBuf) -> u32;

/// [`SinkCheckFn`] only: the sink checks nothing beyond the offline `validate`.
pub const STATUS_NOT_CHECKED: u32 = 1;

/// Optional sink symbol, a [`SinkCheckFn`]: whether the sink can write change batches
/// ([`crate::change`]) with these options. `STATUS_OK`: yes; [`STATUS_NOT_CHECKED`]: the sink
/// cannot write changes at all; `STATUS_CONFIG`: an option is missing or wrong for it (a row kind
/// without a query). Looked up by name like [`SINK_CHECK_SYMBOL`]; a library without it cannot
/// be the sink of a streaming flow.
pub const SINK_CHECK_CHANGES_SYMBOL: &str = "etlhost_sink_check_changes";

/// Optional sink symbol, a [`SinkWriteChangesFn`]: writes one change batch (a batch in
/// [`crate::codec`]'s format with the reserved columns of [`crate::change`]), with the status
/// codes of [`SinkVTable::write_batch`].
pub const SINK_WRITE_CHANGES_SYMBOL: &str = "etlhost_sink_write_changes";

/// `write_changes(sink, batch, err)`, see [`SINK_WRITE_CHANGES_SYMBOL`].
pub type SinkWriteChangesFn =
    unsafe extern "C" fn(sink: Instance, batch: StrRef, err: *mut OwnedBuf) -> u32;

pub const KIND_SOURCE: u32 = 1;
pub const KIND_SINK: u32 = 2;

/// The call succeeded; any output is in the out parameters.
pub const STATUS_OK: u32 = 0;
/// `next_batch` only: the split has no more rows.
pub const STATUS_END: u32 = 1;
/// A permanent error; the error buffer holds UTF-8 text.
pub const STATUS_ERROR: u32 = 2;
/// A transient error (connection lost, deadlock, server busy): the same call may succeed if
/// retried. The error buffer holds UTF-8 text.
pub const STATUS_RETRYABLE: u32 = 3;
/// The options are invalid; the error buffer holds JSON `{"key": "a.b", "message": "..."}` where
/// `key` is the path of the offending option below the connector's `options`.
pub const STATUS_CONFIG: u32 = 4;

pub const LOG_ERROR: u32 = 1;
pub const LOG_WARN: u32 = 2;
pub const LOG_INFO: u32 = 3;
pub const LOG_DEBUG: u32 = 4;
pub const LOG_TRACE: u32 = 5;

/// Bytes borrowed from the caller for the duration of one call (or `'static` in a descriptor).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StrRef {
    pub ptr: *const u8,
    pub len: usize,
}

// SAFETY: a StrRef is a read-only view; the descriptor's ones point at static strings.
unsafe impl Sync for StrRef {}
unsafe impl Send for StrRef {}

impl StrRef {
    pub const fn from_static(s: &'static str) -> Self {
        StrRef {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub fn new(bytes: &[u8]) -> Self {
        StrRef {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must point at `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes allocated by the plugin and handed to the host, which releases them with the plugin's
/// `free_buf` (never with its own allocator).
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedBuf {
    pub const EMPTY: OwnedBuf = OwnedBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Plugin side: gives a vector's allocation away.
    pub fn from_vec(v: Vec<u8>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        OwnedBuf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Plugin side: takes the allocation back, to drop it.
    ///
    /// # Safety
    /// The buffer must come from [`OwnedBuf::from_vec`] in the same library.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
        }
    }

    /// Host side: a view of the bytes, valid until the buffer is freed.
    ///
    /// # Safety
    /// The buffer must have been filled by the plugin and not yet freed.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// The host's log sink: level is one of the `LOG_*` constants.
pub type LogFn = unsafe extern "C" fn(level: u32, target: StrRef, message: StrRef);

#[repr(C)]
pub struct PluginDescriptor {
    /// Must equal the host's [`ABI_VERSION`]; read before anything else.
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` as the plugin was compiled.
    pub descriptor_size: u32,
    /// [`KIND_SOURCE`] or [`KIND_SINK`].
    pub kind: u32,
    /// The plugin's name as used in a job spec, e.g. `mysql`.
    pub name: StrRef,
    /// The plugin crate's version.
    pub version: StrRef,
    /// The SDK version the plugin was built with.
    pub sdk_version: StrRef,
    /// Releases a buffer the plugin filled.
    pub free_buf: unsafe extern "C" fn(buf: OwnedBuf),
    /// Routes the plugin's log events to the host, up to `max_level`. Called once, before any other
    /// function except `validate`.
    pub set_log: unsafe extern "C" fn(log: LogFn, max_level: u32),
    /// Checks options (JSON) without connecting anywhere: `STATUS_OK` or `STATUS_CONFIG`.
    pub validate: unsafe extern "C" fn(options: StrRef, err: *mut OwnedBuf) -> u32,
    /// Non-null exactly when `kind` is [`KIND_SOURCE`].
    pub source: *const SourceVTable,
    /// Non-null exactly when `kind` is [`KIND_SINK`].
    pub sink: *const SinkVTable,
}

// SAFETY: descriptors are immutable statics.
unsafe impl Sync for PluginDescriptor {}

pub type Instance = *mut c_void;

#[repr(C)]
pub struct SourceVTable {
    /// Creates a source instance from options (JSON). Errors: `STATUS_CONFIG` or `STATUS_ERROR`.
    pub open: unsafe extern "C" fn(options: StrRef, out: *mut Instance, err: *mut OwnedBuf) -> u32,
    /// A planning request and its answer, both JSON (see [`crate::split::PlanRequest`]).
    pub call: unsafe extern "C" fn(source: Instance, request: StrRef, out: *mut OwnedBuf) -> u32,
    /// Starts reading one split (JSON, [`crate::split::Split`]).
    pub open_split: unsafe extern "C" fn(
        source: Instance,
        split: StrRef,
        out: *mut Instance,
        err: *mut OwnedBuf,
    ) -> u32,
    /// The next batch of the split, encoded as in [`crate::codec`]; `STATUS_END` when done.
    pub next_batch: unsafe extern "C" fn(reader: Instance, out: *mut OwnedBuf) -> u32,
    /// Releases a reader, whether or not it reached the end.
    pub close_split: unsafe extern "C" fn(reader: Instance),
    /// Releases the source instance after all its readers.
    pub close: unsafe extern "C" fn(source: Instance),
}

// SAFETY: vtables are immutable statics of function pointers.
unsafe impl Sync for SourceVTable {}

#[repr(C)]
pub struct SinkVTable {
    /// Creates a sink instance (one per host writer) from options (JSON).
    pub open: unsafe extern "C" fn(options: StrRef, out: *mut Instance, err: *mut OwnedBuf) -> u32,
    /// Writes one batch (encoded as in [`crate::codec`]) durably before returning `STATUS_OK`.
    pub write_batch: unsafe extern "C" fn(sink: Instance, batch: StrRef, err: *mut OwnedBuf) -> u32,
    /// Called once after the last batch of a successful job.
    pub finish: unsafe extern "C" fn(sink: Instance, err: *mut OwnedBuf) -> u32,
    /// Releases the sink instance.
    pub close: unsafe extern "C" fn(sink: Instance),
}

// SAFETY: vtables are immutable statics of function pointers.
unsafe impl Sync for SinkVTable {}
