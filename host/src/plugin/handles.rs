//! Safe, owning wrappers around plugin instances: each releases its instance exactly once.

use std::fmt;
use std::sync::Arc;

use etlhost_plugin_sdk::abi::{self, Instance, OwnedBuf, SinkVTable, SourceVTable, StrRef};
use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{
    codec, Batch, Catalog, ConfigError, CursorRange, KeyBounds, KeySample, PlanRequest, Split,
    Value,
};

use super::{Kind, Plugin};

/// A plugin call that failed, with the plugin's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// Invalid options; `key` is below the connector's `options`.
    Config { plugin: String, error: ConfigError },
    Failed {
        plugin: String,
        retryable: bool,
        message: String,
    },
}

impl PluginError {
    pub(super) fn from_status(plugin: &str, status: u32, text: String) -> Self {
        let plugin = plugin.to_string();
        match status {
            abi::STATUS_CONFIG => {
                let error =
                    serde_json::from_str(&text).unwrap_or_else(|_| ConfigError::new("", text));
                PluginError::Config { plugin, error }
            }
            abi::STATUS_RETRYABLE => PluginError::Failed {
                plugin,
                retryable: true,
                message: text,
            },
            abi::STATUS_ERROR => PluginError::Failed {
                plugin,
                retryable: false,
                message: text,
            },
            other => PluginError::Failed {
                plugin,
                retryable: false,
                message: format!("unknown status {other} ({text})"),
            },
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PluginError::Failed {
                retryable: true,
                ..
            }
        )
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Config { plugin, error } => write!(f, "plugin {plugin}: {error}"),
            PluginError::Failed {
                plugin, message, ..
            } => write!(f, "plugin {plugin}: {message}"),
        }
    }
}

impl std::error::Error for PluginError {}

pub(super) fn options_json(options: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(options).expect("JSON maps always serialise")
}

/// An open source instance, shared by all readers.
pub struct SourceHandle {
    plugin: Arc<Plugin>,
    vt: &'static SourceVTable,
    inst: Instance,
}

// SAFETY: the ABI requires source instances to be usable from several threads at once.
unsafe impl Send for SourceHandle {}
unsafe impl Sync for SourceHandle {}

impl SourceHandle {
    pub fn open(
        plugin: Arc<Plugin>,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Arc<Self>, PluginError> {
        assert_eq!(plugin.kind, Kind::Source, "caller checks the plugin kind");
        // SAFETY: kind is Source, so the vtable pointer is non-null and static.
        let vt = unsafe { &*plugin.desc.source };
        let json = options_json(options);
        let mut inst: Instance = std::ptr::null_mut();
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; buffers valid for the call.
        let status = unsafe { (vt.open)(StrRef::new(&json), &mut inst, &mut err) };
        plugin.status(status, err)?;
        Ok(Arc::new(SourceHandle { plugin, vt, inst }))
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn key_bounds(
        &self,
        column: &str,
        cursor: Option<&CursorRange>,
    ) -> Result<KeyBounds, PluginError> {
        self.call(
            &PlanRequest::KeyBounds {
                column: column.to_string(),
                cursor: cursor.cloned(),
            },
            "key bounds",
        )
    }

    /// The bounds of an incremental read's cursor column from `from` on.
    pub fn cursor_bounds(
        &self,
        column: &str,
        from: Option<&Value>,
    ) -> Result<KeyBounds, PluginError> {
        self.call(
            &PlanRequest::CursorBounds {
                column: column.to_string(),
                from: from.cloned(),
            },
            "cursor bounds",
        )
    }

    /// About `count` sampled keys of `column`, ascending (see [`PlanRequest::KeySample`]).
    pub fn key_sample(
        &self,
        columns: &[String],
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, PluginError> {
        self.call(
            &PlanRequest::KeySample {
                columns: columns.to_vec(),
                cursor: cursor.cloned(),
                count,
            },
            "key sample",
        )
    }

    pub fn describe(&self) -> Result<Catalog, PluginError> {
        self.call(&PlanRequest::Describe, "catalog")
    }

    /// `mode: stream`: the server's checks and where its change log is now.
    pub fn stream_head(&self) -> Result<etlhost_plugin_sdk::StreamHead, PluginError> {
        self.call(&PlanRequest::StreamPosition, "stream position")
    }

    /// `mode: stream`, once before the snapshot: the source makes what following `tables` needs
    /// and says where to start (with a snapshot at it, when it has one). A source built before the
    /// request is asked for its head instead.
    pub fn stream_start(
        &self,
        tables: &[String],
    ) -> Result<etlhost_plugin_sdk::StreamHead, PluginError> {
        let request = PlanRequest::StreamStart {
            tables: tables.to_vec(),
        };
        match self.call(&request, "stream start") {
            Ok(head) => Ok(head),
            Err(e) if e.to_string().contains("unknown variant") => self.stream_head(),
            Err(e) => Err(e),
        }
    }

    /// `mode: stream`: tells the source that every change up to `position` is recorded.
    pub fn stream_ack(&self, position: &etlhost_plugin_sdk::Position) -> Result<(), PluginError> {
        let request = PlanRequest::StreamAck {
            position: position.clone(),
        };
        self.call::<serde_json::Value>(&request, "stream ack")
            .map(drop)
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: &PlanRequest,
        what: &str,
    ) -> Result<T, PluginError> {
        let req = serde_json::to_vec(request).expect("requests serialise");
        let mut out = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; the instance is live while self is.
        let status = unsafe { (self.vt.call)(self.inst, StrRef::new(&req), &mut out) };
        let bytes = self.plugin.output(status, out)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.plugin.malformed(format!("malformed {what}: {e}")))
    }

    pub fn open_split(self: &Arc<Self>, split: &Split) -> Result<ReaderHandle, PluginError> {
        let json = serde_json::to_vec(split).expect("splits serialise");
        let mut reader: Instance = std::ptr::null_mut();
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; buffers valid for the call.
        let status =
            unsafe { (self.vt.open_split)(self.inst, StrRef::new(&json), &mut reader, &mut err) };
        self.plugin.status(status, err)?;
        Ok(ReaderHandle {
            source: self.clone(),
            reader,
        })
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        // SAFETY: released once; readers hold an Arc to self, so none is still open.
        unsafe { (self.vt.close)(self.inst) };
    }
}

/// A split being read.
pub struct ReaderHandle {
    source: Arc<SourceHandle>,
    reader: Instance,
}

// SAFETY: the ABI allows a reader to move between threads (used by one at a time).
unsafe impl Send for ReaderHandle {}

impl ReaderHandle {
    /// The next batch, or `None` at the end of the split.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
        let plugin = &self.source.plugin;
        let mut out = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; `&mut self` gives exclusive use of the reader.
        let status = unsafe { (self.source.vt.next_batch)(self.reader, &mut out) };
        plugin.next_batch(status, out)
    }

    /// The next batch as the plugin encoded it, checked but not decoded; copied into `spare`'s
    /// memory when given one.
    pub fn next_encoded(&mut self, spare: Option<Encoded>) -> Result<Option<Encoded>, PluginError> {
        let plugin = &self.source.plugin;
        let mut out = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; `&mut self` gives exclusive use of the reader.
        let status = unsafe { (self.source.vt.next_batch)(self.reader, &mut out) };
        plugin.next_encoded(status, out, spare)
    }
}

impl Plugin {
    /// What a `next_batch` call of the plugin answered: a batch, the end, or its error.
    pub(crate) fn next_batch(
        &self,
        status: u32,
        out: OwnedBuf,
    ) -> Result<Option<Batch>, PluginError> {
        match status {
            abi::STATUS_OK => {
                // SAFETY: the plugin filled `out`; it is decoded before being freed.
                let decoded = codec::decode(unsafe { out.as_bytes() });
                self.free(out);
                decoded.map(Some).map_err(|e| self.malformed(e.to_string()))
            }
            s => self.end_or_error(s, out).map(|_| None),
        }
    }

    /// As [`Plugin::next_batch`], the batch checked instead of decoded.
    pub(crate) fn next_encoded(
        &self,
        status: u32,
        out: OwnedBuf,
        spare: Option<Encoded>,
    ) -> Result<Option<Encoded>, PluginError> {
        match status {
            abi::STATUS_OK => {
                let checked = match spare {
                    // SAFETY: the plugin filled `out`; it is copied before being freed.
                    Some(e) => {
                        let checked = e.check_into(unsafe { out.as_bytes() });
                        self.free(out);
                        checked
                    }
                    None => Encoded::check(self.take(out)),
                };
                checked.map(Some).map_err(|e| self.malformed(e.to_string()))
            }
            s => self.end_or_error(s, out).map(|_| None),
        }
    }

    fn end_or_error(&self, status: u32, out: OwnedBuf) -> Result<(), PluginError> {
        if status == abi::STATUS_END {
            self.free(out);
            return Ok(());
        }
        // Any other status is an error, which `output` returns with the plugin's text.
        self.output(status, out).map(|_| ())
    }
}

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        // SAFETY: released once.
        unsafe { (self.source.vt.close_split)(self.reader) };
    }
}

/// One sink instance, owned by one writer.
pub struct SinkHandle {
    plugin: Arc<Plugin>,
    vt: &'static SinkVTable,
    inst: Instance,
}

// SAFETY: the ABI allows a sink instance to move between threads (used by one at a time).
unsafe impl Send for SinkHandle {}

impl SinkHandle {
    pub fn open(
        plugin: Arc<Plugin>,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, PluginError> {
        assert_eq!(plugin.kind, Kind::Sink, "caller checks the plugin kind");
        // SAFETY: kind is Sink, so the vtable pointer is non-null and static.
        let vt = unsafe { &*plugin.desc.sink };
        let json = options_json(options);
        let mut inst: Instance = std::ptr::null_mut();
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; buffers valid for the call.
        let status = unsafe { (vt.open)(StrRef::new(&json), &mut inst, &mut err) };
        plugin.status(status, err)?;
        Ok(SinkHandle { plugin, vt, inst })
    }

    pub fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError> {
        self.write_encoded(&codec::encode(batch))
    }

    /// Writes a batch already in the format of [`codec`], as it is.
    pub fn write_encoded(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; `&mut self` gives exclusive use of the instance.
        let status = unsafe { (self.vt.write_batch)(self.inst, StrRef::new(bytes), &mut err) };
        self.plugin.status(status, err)
    }

    /// Writes a change batch ([`etlhost_plugin_sdk::change`]) in the codec's format
    /// ([`etlhost_plugin_sdk::ChangeBatch::encode`]); the plugin was checked to have the symbol
    /// before the stream started.
    pub fn write_changes(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        let Some((_, write)) = self.plugin.changes else {
            return Err(self
                .plugin
                .malformed("this sink cannot write changes".into()));
        };
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: the symbol has the SinkWriteChangesFn type; `&mut self` gives exclusive use.
        let status = unsafe { write(self.inst, StrRef::new(bytes), &mut err) };
        self.plugin.status(status, err)
    }

    pub(super) fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub(super) fn instance(&mut self) -> Instance {
        self.inst
    }

    pub fn finish(&mut self) -> Result<(), PluginError> {
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract.
        let status = unsafe { (self.vt.finish)(self.inst, &mut err) };
        self.plugin.status(status, err)
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        // SAFETY: released once.
        unsafe { (self.vt.close)(self.inst) };
    }
}
