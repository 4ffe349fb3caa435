//! A sink's optional progress capability (`etlhost_plugin_sdk::progress`): batches written with
//! their split's progress in one transaction, and the plan and progress of a run read and stored
//! in the target.

use etlhost_plugin_sdk::abi::{OwnedBuf, StrRef};
use etlhost_plugin_sdk::progress::{
    SinkProgressFn, SinkProgressVTable, PROGRESS_VERSION, SINK_PROGRESS_SYMBOL,
    STATUS_ALREADY_WRITTEN,
};
use etlhost_plugin_sdk::{codec, Batch, Progress, State, StateRequest};

use super::{handles::options_json, Kind, Plugin, PluginError, SinkHandle};

/// A capability's `state(options, request, out, err)`, the same for progress and streams.
pub(super) type StateFn = unsafe extern "C" fn(StrRef, StrRef, *mut OwnedBuf, *mut OwnedBuf) -> u32;

/// The library's progress table, when it exports one the host can read.
pub(super) fn lookup(
    lib: &'static libloading::Library,
    file: &str,
) -> Option<&'static SinkProgressVTable> {
    // SAFETY: the optional symbol's type is the one the SDK defines for it, a function returning
    // a static table that starts with its version and size.
    unsafe {
        let f = lib
            .get::<SinkProgressFn>(SINK_PROGRESS_SYMBOL.as_bytes())
            .ok()?;
        super::versioned_table(f(), PROGRESS_VERSION, file, "progress capability")
    }
}

impl Plugin {
    /// Whether the sink keeps progress in the target.
    pub fn records_progress(&self) -> bool {
        self.kind == Kind::Sink && self.progress.is_some()
    }

    /// Connects with the sink's options and answers `request`.
    pub fn state(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
        request: &StateRequest,
    ) -> Result<State, PluginError> {
        let Some(vt) = self.progress.filter(|_| self.kind == Kind::Sink) else {
            return Err(self.malformed("this sink cannot record progress".into()));
        };
        self.ask_state(vt.state, options, request, "progress state")
    }

    /// Calls a capability's `state(options, request, out, err)` and reads its JSON answer.
    pub(super) fn ask_state<T: serde::de::DeserializeOwned>(
        &self,
        state: StateFn,
        options: &serde_json::Map<String, serde_json::Value>,
        request: &impl serde::Serialize,
        what: &str,
    ) -> Result<T, PluginError> {
        let json = options_json(options);
        let req = serde_json::to_vec(request).expect("requests serialise");
        let (mut out, mut err) = (OwnedBuf::EMPTY, OwnedBuf::EMPTY);
        // SAFETY: ABI contract; buffers valid for the call.
        let status = unsafe { state(StrRef::new(&json), StrRef::new(&req), &mut out, &mut err) };
        let answer = if status == etlhost_plugin_sdk::abi::STATUS_OK {
            drop(self.take(err));
            self.take(out)
        } else {
            drop(self.take(out));
            self.output(status, err)?
        };
        serde_json::from_slice(&answer)
            .map_err(|e| self.malformed(format!("unreadable {what}: {e}")))
    }
}

impl SinkHandle {
    /// Writes `batch` (possibly empty) and `progress` in one transaction; `Ok(false)` when
    /// [`Progress::check`] found the batch committed already.
    pub fn write_with_progress(
        &mut self,
        batch: &Batch,
        progress: &Progress,
    ) -> Result<bool, PluginError> {
        self.write_encoded_with_progress(&codec::encode(batch), progress)
    }

    /// As [`SinkHandle::write_with_progress`], of a batch already encoded.
    pub fn write_encoded_with_progress(
        &mut self,
        bytes: &[u8],
        progress: &Progress,
    ) -> Result<bool, PluginError> {
        let plugin = self.plugin();
        let Some(vt) = plugin.progress else {
            return Err(plugin.malformed("this sink cannot record progress".into()));
        };
        let json = serde_json::to_vec(progress).expect("progress serialises");
        let mut err = OwnedBuf::EMPTY;
        // SAFETY: ABI contract; `&mut self` gives exclusive use of the instance.
        let status = unsafe {
            (vt.write)(
                self.instance(),
                StrRef::new(bytes),
                StrRef::new(&json),
                &mut err,
            )
        };
        if status == STATUS_ALREADY_WRITTEN {
            drop(self.plugin().take(err));
            return Ok(false);
        }
        self.plugin().status(status, err).map(|()| true)
    }
}
