//! The glue between the safe traits and the C ABI. Connector authors use the macros
//! [`export_source!`](crate::export_source) and [`export_sink!`](crate::export_sink), not these
//! functions.
//!
//! Every exported function catches panics: a panic unwinding out of an `extern "C"` function
//! aborts the host, so it is turned into a `STATUS_ERROR` naming the panic instead. (A plugin built
//! with `panic = "abort"` cannot be protected this way.)

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::abi::*;
use crate::codec;
use crate::connector::{Sink, Source, SplitReader};
use crate::error::{Error, OpenError};
use crate::options::{self, Options};
use crate::split::{CursorRange, PlanRequest, Split};

fn panic_text(p: Box<dyn Any + Send>) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into());
    format!("plugin panicked: {what}")
}

/// Writes `bytes` to an out-parameter buffer.
///
/// # Safety
/// `out` is null or valid for writes.
unsafe fn put(out: *mut OwnedBuf, bytes: Vec<u8>) {
    if !out.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { out.write(OwnedBuf::from_vec(bytes)) };
    }
}

/// Runs `f`, converting errors and panics into a status and a message in `err`.
///
/// # Safety
/// `err` is null or valid for writes.
pub(crate) unsafe fn guard(err: *mut OwnedBuf, f: impl FnOnce() -> Result<u32, OpenError>) -> u32 {
    let (status, text) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => return status,
        Ok(Err(OpenError::Config(c))) => (
            STATUS_CONFIG,
            serde_json::to_vec(&c).expect("a ConfigError always serialises"),
        ),
        Ok(Err(OpenError::Other(e))) => {
            let status = if e.retryable {
                STATUS_RETRYABLE
            } else {
                STATUS_ERROR
            };
            (status, e.message.into_bytes())
        }
        Err(p) => (STATUS_ERROR, panic_text(p).into_bytes()),
    };
    // SAFETY: guaranteed by the caller.
    unsafe { put(err, text) };
    status
}

/// # Safety
/// `buf` came from this library.
pub unsafe extern "C" fn free_buf(buf: OwnedBuf) {
    // SAFETY: guaranteed by the caller; dropping a Vec cannot panic.
    drop(unsafe { buf.into_vec() });
}

/// Installs the log forwarder for the plugin called `plugin` (the export macros call this from
/// the descriptor's `set_log`).
pub fn set_log(plugin: &'static str, log: LogFn, max_level: u32) {
    let _ = catch_unwind(|| crate::log::install(plugin, log, max_level));
}

/// # Safety
/// ABI contract: `options` is readable, `err` writable.
pub unsafe extern "C" fn validate<O: Options>(opts: StrRef, err: *mut OwnedBuf) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        guard(err, || {
            options::parse::<O>(opts.as_bytes())?;
            Ok(STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `opts` readable; `out`, `err` writable.
pub unsafe extern "C" fn source_open<S: Source>(
    opts: StrRef,
    out: *mut Instance,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe { open_instance(opts, out, err, S::open) }
}

/// Parses options, creates an instance with `open` and hands it out boxed.
///
/// # Safety
/// ABI contract: `opts` readable; `out`, `err` writable.
unsafe fn open_instance<O: Options, T>(
    opts: StrRef,
    out: *mut Instance,
    err: *mut OwnedBuf,
    open: impl FnOnce(O) -> Result<T, OpenError>,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        guard(err, || {
            let instance = open(options::parse::<O>(opts.as_bytes())?)?;
            out.write(Box::into_raw(Box::new(instance)) as *mut c_void);
            Ok(STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `source` is a live instance of `S`; `request` readable; `out` writable.
pub unsafe extern "C" fn source_call<S: Source>(
    source: Instance,
    request: StrRef,
    out: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let s = &*(source as *const S);
        let mut answer = Vec::new();
        let status = guard(out, || {
            let req: PlanRequest = serde_json::from_slice(request.as_bytes())
                .map_err(|e| Error::permanent(format!("unsupported planning request: {e}")))?;
            let not_incremental =
                || Error::permanent("this source cannot read incrementally (no cursor support)");
            answer = match req {
                PlanRequest::KeyBounds {
                    cursor: Some(_), ..
                } if !S::INCREMENTAL => return Err(not_incremental().into()),
                PlanRequest::KeyBounds { column, cursor } => {
                    serde_json::to_vec(&s.key_bounds(&column, cursor.as_ref())?)
                }
                PlanRequest::CursorBounds { .. } if !S::INCREMENTAL => {
                    return Err(not_incremental().into())
                }
                PlanRequest::CursorBounds { column, from } => {
                    let cursor = CursorRange {
                        column: column.clone(),
                        from,
                        to: None,
                    };
                    serde_json::to_vec(&s.key_bounds(&column, Some(&cursor))?)
                }
                PlanRequest::Describe => serde_json::to_vec(&s.describe()?),
                PlanRequest::KeySample {
                    cursor: Some(_), ..
                } if !S::INCREMENTAL => return Err(not_incremental().into()),
                PlanRequest::KeySample {
                    columns,
                    cursor,
                    count,
                } => serde_json::to_vec(&s.key_sample(&columns, cursor.as_ref(), count)?),
                PlanRequest::StreamPosition if !S::STREAMS => {
                    return Err(Error::permanent("this source cannot stream changes").into())
                }
                PlanRequest::StreamPosition => serde_json::to_vec(&s.stream_head()?),
                PlanRequest::StreamStart { .. } | PlanRequest::StreamAck { .. } if !S::STREAMS => {
                    return Err(Error::permanent("this source cannot stream changes").into())
                }
                PlanRequest::StreamStart { tables } => {
                    serde_json::to_vec(&s.stream_start(&tables)?)
                }
                PlanRequest::StreamAck { position } => {
                    s.stream_ack(&position)?;
                    serde_json::to_vec(&serde_json::Value::Null)
                }
            }
            .map_err(|e| Error::permanent(e.to_string()))?;
            Ok(STATUS_OK)
        });
        if status == STATUS_OK {
            put(out, answer);
        }
        status
    }
}

/// # Safety
/// ABI contract: `source` is a live instance of `S`; `split` readable; `out`, `err` writable.
pub unsafe extern "C" fn source_open_split<S: Source>(
    source: Instance,
    split: StrRef,
    out: *mut Instance,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let s = &*(source as *const S);
        guard(err, || {
            let split: Split = serde_json::from_slice(split.as_bytes())
                .map_err(|e| Error::permanent(format!("malformed split from host: {e}")))?;
            if split.stream.is_some() && !S::STREAMS {
                return Err(Error::permanent("this source cannot stream changes").into());
            }
            if split.cursor.is_some() && !S::INCREMENTAL {
                return Err(Error::permanent(
                    "this source cannot read incrementally (no cursor support)",
                )
                .into());
            }
            let reader = s.open_split(&split)?;
            out.write(Box::into_raw(Box::new(reader)) as *mut c_void);
            Ok(STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `reader` is a live reader of `S`; `out` writable.
pub unsafe extern "C" fn source_next_batch<S: Source>(reader: Instance, out: *mut OwnedBuf) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let r = &mut *(reader as *mut S::Reader);
        let mut encoded = None;
        let status = guard(out, || match r.next_encoded()? {
            Some(bytes) => {
                encoded = Some(bytes);
                Ok(STATUS_OK)
            }
            None => Ok(STATUS_END),
        });
        if let Some(bytes) = encoded {
            put(out, bytes);
        }
        status
    }
}

/// `next_batch` of any [`SplitReader`] (the rows of a sink's query too).
///
/// # Safety
/// ABI contract: `reader` is a live `R`; `out` writable.
pub(crate) unsafe fn next_batch_of<R: SplitReader>(reader: Instance, out: *mut OwnedBuf) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let r = &mut *(reader as *mut R);
        let mut encoded = None;
        let status = guard(out, || match r.next_batch()? {
            Some(batch) => {
                encoded = Some(codec::encode(&batch));
                Ok(STATUS_OK)
            }
            None => Ok(STATUS_END),
        });
        if let Some(bytes) = encoded {
            put(out, bytes);
        }
        status
    }
}

/// # Safety
/// ABI contract: `reader` is a live reader of `S`, not used again.
pub unsafe extern "C" fn source_close_split<S: Source>(reader: Instance) {
    // SAFETY: ABI contract.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(unsafe { Box::from_raw(reader as *mut S::Reader) })
    }));
}

/// # Safety
/// ABI contract: `source` is a live instance of `S`, not used again.
pub unsafe extern "C" fn source_close<S: Source>(source: Instance) {
    // SAFETY: ABI contract.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(unsafe { Box::from_raw(source as *mut S) })
    }));
}

/// # Safety
/// ABI contract: `opts` readable; `out`, `err` writable.
pub unsafe extern "C" fn sink_open<K: Sink>(
    opts: StrRef,
    out: *mut Instance,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe { open_instance(opts, out, err, K::open) }
}

/// The [`SinkCheckFn`] of a sink type.
///
/// # Safety
/// ABI contract: `opts` readable; `err` writable.
pub unsafe extern "C" fn sink_check<K: Sink>(opts: StrRef, err: *mut OwnedBuf) -> u32 {
    if !K::CHECKS {
        return STATUS_NOT_CHECKED;
    }
    // SAFETY: ABI contract.
    unsafe {
        guard(err, || {
            K::check(options::parse::<K::Options>(opts.as_bytes())?)?;
            Ok(STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `sink` is a live instance of `K`; `batch` readable; `err` writable.
pub unsafe extern "C" fn sink_write_batch<K: Sink>(
    sink: Instance,
    batch: StrRef,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let k = &mut *(sink as *mut K);
        guard(err, || {
            k.write_encoded(batch.as_bytes())?;
            Ok(STATUS_OK)
        })
    }
}

/// The [`crate::abi::SINK_CHECK_CHANGES_SYMBOL`] function of a sink type.
///
/// # Safety
/// ABI contract: `opts` readable; `err` writable.
pub unsafe extern "C" fn sink_check_changes<K: Sink>(opts: StrRef, err: *mut OwnedBuf) -> u32 {
    if !K::CHANGES {
        return STATUS_NOT_CHECKED;
    }
    // SAFETY: ABI contract.
    unsafe {
        guard(err, || {
            K::check_changes(&options::parse::<K::Options>(opts.as_bytes())?)?;
            Ok(STATUS_OK)
        })
    }
}

/// The [`crate::abi::SINK_WRITE_CHANGES_SYMBOL`] function of a sink type.
///
/// # Safety
/// ABI contract: `sink` is a live instance of `K`; `batch` readable; `err` writable.
pub unsafe extern "C" fn sink_write_changes<K: Sink>(
    sink: Instance,
    batch: StrRef,
    err: *mut OwnedBuf,
) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let k = &mut *(sink as *mut K);
        guard(err, || {
            k.write_changes_encoded(batch.as_bytes())?;
            Ok(STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `sink` is a live instance of `K`; `err` writable.
pub unsafe extern "C" fn sink_finish<K: Sink>(sink: Instance, err: *mut OwnedBuf) -> u32 {
    // SAFETY: ABI contract.
    unsafe {
        let k = &mut *(sink as *mut K);
        guard(err, || {
            k.finish()?;
            Ok(STATUS_OK)
        })
    }
}

/// # Safety
/// ABI contract: `sink` is a live instance of `K`, not used again.
pub unsafe extern "C" fn sink_close<K: Sink>(sink: Instance) {
    // SAFETY: ABI contract.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(unsafe { Box::from_raw(sink as *mut K) })
    }));
}

/// The vtable for a source type.
pub const fn source_vtable<S: Source>() -> SourceVTable {
    SourceVTable {
        open: source_open::<S>,
        call: source_call::<S>,
        open_split: source_open_split::<S>,
        next_batch: source_next_batch::<S>,
        close_split: source_close_split::<S>,
        close: source_close::<S>,
    }
}

/// The vtable for a sink type.
pub const fn sink_vtable<K: Sink>() -> SinkVTable {
    SinkVTable {
        open: sink_open::<K>,
        write_batch: sink_write_batch::<K>,
        finish: sink_finish::<K>,
        close: sink_close::<K>,
    }
}

/// Exports a [`Source`](crate::Source) as this library's plugin:
/// `etlhost_plugin_sdk::export_source!(MySource, name = "my-source");`
#[macro_export]
macro_rules! export_source {
    ($ty:ty, name = $name:literal) => {
        $crate::__export_plugin!(
            $name,
            $crate::abi::KIND_SOURCE,
            <$ty as $crate::Source>::Options,
            {
                static VTABLE: $crate::abi::SourceVTable = $crate::export::source_vtable::<$ty>();
                &VTABLE
            },
            ::core::ptr::null()
        );
    };
}

/// Exports a [`Sink`](crate::Sink) as this library's plugin:
/// `etlhost_plugin_sdk::export_sink!(MySink, name = "my-sink");`
#[macro_export]
macro_rules! export_sink {
    ($ty:ty, name = $name:literal) => {
        $crate::__export_plugin!(
            $name,
            $crate::abi::KIND_SINK,
            <$ty as $crate::Sink>::Options,
            ::core::ptr::null(),
            {
                static VTABLE: $crate::abi::SinkVTable = $crate::export::sink_vtable::<$ty>();
                &VTABLE
            }
        );
        /// The optional online check (`etlhost validate`), looked up by name by the host.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn etlhost_sink_check(
            options: $crate::abi::StrRef,
            err: *mut $crate::abi::OwnedBuf,
        ) -> u32 {
            // SAFETY: the caller keeps the ABI contract of `SinkCheckFn`.
            unsafe { $crate::export::sink_check::<$ty>(options, err) }
        }
        /// Optional: whether the sink can write changes with these options (`mode: stream`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn etlhost_sink_check_changes(
            options: $crate::abi::StrRef,
            err: *mut $crate::abi::OwnedBuf,
        ) -> u32 {
            // SAFETY: the caller keeps the ABI contract of `SinkCheckFn`.
            unsafe { $crate::export::sink_check_changes::<$ty>(options, err) }
        }
        /// Optional: writes one change batch (`mode: stream`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn etlhost_sink_write_changes(
            sink: $crate::abi::Instance,
            batch: $crate::abi::StrRef,
            err: *mut $crate::abi::OwnedBuf,
        ) -> u32 {
            // SAFETY: the caller keeps the ABI contract of `SinkWriteChangesFn`.
            unsafe { $crate::export::sink_write_changes::<$ty>(sink, batch, err) }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($name:literal, $kind:expr, $options:ty, $source:expr, $sink:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn etlhost_plugin_entry() -> *const $crate::abi::PluginDescriptor {
            unsafe extern "C" fn set_log(log: $crate::abi::LogFn, max_level: u32) {
                $crate::export::set_log($name, log, max_level)
            }
            static DESCRIPTOR: $crate::abi::PluginDescriptor = $crate::abi::PluginDescriptor {
                abi_version: $crate::abi::ABI_VERSION,
                descriptor_size: ::core::mem::size_of::<$crate::abi::PluginDescriptor>() as u32,
                kind: $kind,
                name: $crate::abi::StrRef::from_static($name),
                version: $crate::abi::StrRef::from_static(env!("CARGO_PKG_VERSION")),
                sdk_version: $crate::abi::StrRef::from_static($crate::SDK_VERSION),
                free_buf: $crate::export::free_buf,
                set_log,
                validate: $crate::export::validate::<$options>,
                source: $source,
                sink: $sink,
            };
            &DESCRIPTOR
        }
    };
}
