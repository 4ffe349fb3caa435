//! A sink's optional read capability (`etlhost_plugin_sdk::query`): looked up by name when the
//! library loads, and a handle on one running query that releases it exactly once.

use std::sync::Arc;

use etlhost_plugin_sdk::abi::{Instance, OwnedBuf, StrRef};
use etlhost_plugin_sdk::query::{
    QueryRequest, SinkQueryFn, SinkQueryVTable, QUERY_VERSION, SINK_QUERY_SYMBOL,
};
use etlhost_plugin_sdk::Batch;

use super::{handles::options_json, Kind, Plugin, PluginError};

/// The library's query table, when it exports one the host can read.
pub(super) fn lookup(
    lib: &'static libloading::Library,
    file: &str,
) -> Option<&'static SinkQueryVTable> {
    // SAFETY: the optional symbol's type is the one the SDK defines for it, a function returning
    // a static table that starts with its version and size.
    unsafe {
        let f = lib.get::<SinkQueryFn>(SINK_QUERY_SYMBOL.as_bytes()).ok()?;
        super::versioned_table(f(), QUERY_VERSION, file, "read capability")
    }
}

impl Plugin {
    /// Whether the sink can run read queries (`etlhost verify`).
    pub fn can_query(&self) -> bool {
        self.kind == Kind::Sink && self.query.is_some()
    }
}

/// The rows of one query a sink runs.
pub struct QueryHandle {
    plugin: Arc<Plugin>,
    vt: &'static SinkQueryVTable,
    rows: Instance,
}

// SAFETY: like a split reader, a result is used by one thread at a time.
unsafe impl Send for QueryHandle {}

impl QueryHandle {
    /// Connects with the sink's options and starts `request`. `None` when the sink cannot read.
    pub fn open(
        plugin: Arc<Plugin>,
        options: &serde_json::Map<String, serde_json::Value>,
        request: &QueryRequest,
    ) -> Option<Result<QueryHandle, PluginError>> {
        let vt = plugin.query.filter(|_| plugin.kind == Kind::Sink)?;
        let json = options_json(options);
        let req = serde_json::to_vec(request).expect("requests serialise");
        let mut rows: Instance = std::ptr::null_mut();
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; buffers valid for the call.
        let status =
            unsafe { (vt.open)(StrRef::new(&json), StrRef::new(&req), &mut rows, &mut err) };
        Some(
            plugin
                .status(status, err)
                .map(|()| QueryHandle { plugin, vt, rows }),
        )
    }

    /// The next rows, or `None` at the end of the result.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
        let plugin = &self.plugin;
        let mut out = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; `&mut self` gives exclusive use of the result.
        let status = unsafe { (self.vt.next_batch)(self.rows, &mut out) };
        plugin.next_batch(status, out)
    }
}

impl Drop for QueryHandle {
    fn drop(&mut self) {
        // SAFETY: released once.
        unsafe { (self.vt.close)(self.rows) };
    }
}
