//! A complete etlhost sink: appends every row to a file, one JSON object per line.
use std::fs::File;
use std::io::{BufWriter, Write};

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

impl Sink for JsonlSink {
    type Options = JsonlOptions;

    fn open(options: JsonlOptions) -> Result<Self, OpenError> {
        let path = &options.path;
        let file = File::options().append(true).create(true).open(path);
        let file = file.map_err(|e| Error::permanent(format!("cannot open {path}: {e}")))?;
        tracing::info!("appending rows to {path}");
        Ok(JsonlSink { file })
    }

    /// The host batches and retries; a sink writes one batch, durably, and returns.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::permanent(format!("write failed: {e}"));
        let mut out = BufWriter::new(&self.file);
        for row in &batch.rows {
            serde_json::to_writer(&mut out, &batch.row_json(row)).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

export_sink!(JsonlSink, name = "jsonl");
