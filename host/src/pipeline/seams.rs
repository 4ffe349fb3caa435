//! The stages' view of the plugins: what readers read from and writers write to. The plugin
//! handles implement these; the pipeline's tests drive the same code with in-process fakes.

use std::sync::Arc;

use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::{Batch, Progress, Split};

use crate::plugin::{PluginError, ReaderHandle, SinkHandle, SourceHandle};

/// What the readers read from: a source plugin, or an in-process fake in tests.
pub trait SourceSide: Send + Sync {
    fn open_split(&self, split: &Split) -> Result<Box<dyn SplitRead>, PluginError>;
}

pub trait SplitRead: Send {
    fn next_batch(&mut self) -> Result<Option<Batch>, PluginError>;

    /// The next batch checked but not decoded, for the pass-through path (see `reader`), in
    /// `spare`'s memory if that is given (a buffer the writers are done with).
    fn next_encoded(&mut self, spare: Option<Encoded>) -> Result<Option<Encoded>, PluginError> {
        let _ = spare;
        Ok(self.next_batch()?.map(|b| Encoded::of(&b)))
    }
}

/// What a writer writes to: one sink plugin instance, or an in-process fake in tests.
pub trait SinkSide: Send {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError>;

    /// Writes a batch as the source encoded it (the pass-through path).
    fn write_encoded(&mut self, batch: &Encoded) -> Result<(), PluginError> {
        self.write_batch(&batch.decode())
    }
    fn finish(&mut self) -> Result<(), PluginError>;

    /// Progress in the target: `batch` and its split's `progress` in one transaction; `Ok(false)`
    /// when [`Progress::check`] found the batch committed already (nothing written).
    fn write_with_progress(
        &mut self,
        batch: &Batch,
        progress: &Progress,
    ) -> Result<bool, PluginError> {
        let _ = (batch, progress);
        Err(no_progress())
    }

    /// As [`SinkSide::write_with_progress`], of a batch as the source encoded it.
    fn write_encoded_with_progress(
        &mut self,
        batch: &Encoded,
        progress: &Progress,
    ) -> Result<bool, PluginError> {
        self.write_with_progress(&batch.decode(), progress)
    }
}

fn no_progress() -> PluginError {
    PluginError::Failed {
        plugin: "sink".into(),
        retryable: false,
        message: "this sink cannot record progress".into(),
    }
}

impl SourceSide for Arc<SourceHandle> {
    fn open_split(&self, split: &Split) -> Result<Box<dyn SplitRead>, PluginError> {
        Ok(Box::new(SourceHandle::open_split(self, split)?))
    }
}

impl SplitRead for ReaderHandle {
    fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
        ReaderHandle::next_batch(self)
    }
    fn next_encoded(&mut self, spare: Option<Encoded>) -> Result<Option<Encoded>, PluginError> {
        ReaderHandle::next_encoded(self, spare)
    }
}

impl SinkSide for SinkHandle {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError> {
        SinkHandle::write_batch(self, batch)
    }
    fn write_encoded(&mut self, batch: &Encoded) -> Result<(), PluginError> {
        SinkHandle::write_encoded(self, batch.as_bytes())
    }
    fn finish(&mut self) -> Result<(), PluginError> {
        SinkHandle::finish(self)
    }
    fn write_with_progress(
        &mut self,
        batch: &Batch,
        progress: &Progress,
    ) -> Result<bool, PluginError> {
        SinkHandle::write_with_progress(self, batch, progress)
    }
    fn write_encoded_with_progress(
        &mut self,
        batch: &Encoded,
        progress: &Progress,
    ) -> Result<bool, PluginError> {
        SinkHandle::write_encoded_with_progress(self, batch.as_bytes(), progress)
    }
}
