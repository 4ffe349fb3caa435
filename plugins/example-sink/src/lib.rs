//! A complete etlhost sink: appends each batch to a file, one JSON object per row, all or nothing.
use std::{fs::File, io::Write, sync::Mutex, sync::PoisonError};

use etlhost_plugin_sdk::{export_sink, Batch, ConfigError, Error, OpenError, Options, Sink};
use serde::Deserialize;

/// The options under `sink.options` in a job spec. Unknown keys are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlOptions {
    /// The file to append to; created if missing.
    path: String,
}

impl Options for JsonlOptions {
    fn check(&self) -> Result<(), ConfigError> {
        if self.path.trim().is_empty() {
            return Err(ConfigError::new("path", "must not be empty"));
        }
        Ok(())
    }
}

pub struct JsonlSink {
    file: File,
}
/// Writers (`sink.parallelism`) take turns, so cutting a failed batch off cuts off only that one.
static TURN: Mutex<()> = Mutex::new(());

impl Sink for JsonlSink {
    type Options = JsonlOptions;

    fn open(options: JsonlOptions) -> Result<Self, OpenError> {
        let path = &options.path;
        let file = File::options().append(true).create(true).open(path);
        let file = file.map_err(|e| Error::permanent(format!("cannot open {path}: {e}")))?;
        tracing::info!("appending rows to {path}");
        Ok(JsonlSink { file })
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        let mut lines = Vec::new();
        for row in &batch.rows {
            writeln!(lines, "{}", batch.row_json(row)).expect("a Vec takes every write");
        }
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let io = |e: std::io::Error| Error::permanent(format!("write failed: {e}"));
        let mut file = &self.file;
        let len = file.metadata().map_err(io)?.len();
        let done = file.write_all(&lines).and_then(|()| file.sync_data());
        done.or_else(|e| file.set_len(len).and(Err(e))).map_err(io)
    }
}

export_sink!(JsonlSink, name = "jsonl");
