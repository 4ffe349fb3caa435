//! A sink's optional stream capability (`etlhost_plugin_sdk::stream_state`): changes written with
//! their writer's record in one transaction, and the job's lease and position read and kept in the
//! target.

use etlhost_plugin_sdk::abi::{OwnedBuf, StrRef};
use etlhost_plugin_sdk::stream_state::{
    Marked, SinkStreamFn, SinkStreamVTable, StreamRecord, StreamStateRequest, WriterMark,
    SINK_STREAM_SYMBOL, STATUS_ALREADY_WRITTEN, STATUS_FENCED, STREAM_STATE_VERSION,
};

use super::{Kind, Plugin, PluginError, SinkHandle};

/// The library's stream table, when it exports one the host can read.
pub(super) fn lookup(
    lib: &'static libloading::Library,
    file: &str,
) -> Option<&'static SinkStreamVTable> {
    // SAFETY: the optional symbol's type is the one the SDK defines for it, a function returning
    // a static table that starts with its version and size.
    unsafe {
        let f = lib
            .get::<SinkStreamFn>(SINK_STREAM_SYMBOL.as_bytes())
            .ok()?;
        super::versioned_table(f(), STREAM_STATE_VERSION, file, "stream capability")
    }
}

impl Plugin {
    /// Whether the sink keeps a stream's position and lease in the target.
    pub fn records_stream(&self) -> bool {
        self.kind == Kind::Sink && self.stream.is_some()
    }

    /// Connects with the sink's options and answers `request`.
    pub fn stream_state(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
        request: &StreamStateRequest,
    ) -> Result<StreamRecord, PluginError> {
        let Some(vt) = self.stream.filter(|_| self.kind == Kind::Sink) else {
            return Err(self.malformed("this sink cannot keep a stream's position".into()));
        };
        self.ask_state(vt.state, options, request, "stream record")
    }
}

impl SinkHandle {
    /// Writes `changes` (a change batch in the codec's format,
    /// [`etlhost_plugin_sdk::ChangeBatch::encode`]) and moves
    /// the writer's record as `mark` says, in one transaction.
    pub fn write_changes_marked(
        &mut self,
        changes: &[u8],
        mark: &WriterMark,
    ) -> Result<Marked, PluginError> {
        let plugin = self.plugin();
        let Some(vt) = plugin.stream else {
            return Err(plugin.malformed("this sink cannot keep a stream's position".into()));
        };
        let json = serde_json::to_vec(mark).expect("marks serialise");
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; `&mut self` gives exclusive use of the instance.
        let status = unsafe {
            (vt.write)(
                self.instance(),
                StrRef::new(changes),
                StrRef::new(&json),
                &mut err,
            )
        };
        match status {
            STATUS_ALREADY_WRITTEN => {
                drop(self.plugin().take(err));
                Ok(Marked::AlreadyWritten)
            }
            STATUS_FENCED => {
                let why = self.plugin().take(err);
                Ok(Marked::Fenced(String::from_utf8_lossy(&why).into_owned()))
            }
            s => self.plugin().status(s, err).map(|()| Marked::Written),
        }
    }
}
