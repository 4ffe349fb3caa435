//! The `console` sink: prints each row as a JSON line on standard output, or with `mode: count` only
//! counts rows (a sink that costs nothing, for measuring the source path).

use std::io::Write;

use etlhost_plugin_sdk::{codec, export_sink, Batch, Error, OpenError, Options, Sink};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One JSON object per row.
    #[default]
    Rows,
    /// Nothing per row; the row count when the job finishes.
    Count,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOptions {
    #[serde(default)]
    pub mode: Mode,
}

impl Options for ConsoleOptions {}

pub struct ConsoleSink {
    mode: Mode,
    rows: u64,
}

impl Sink for ConsoleSink {
    type Options = ConsoleOptions;

    fn open(options: ConsoleOptions) -> Result<Self, OpenError> {
        Ok(ConsoleSink {
            mode: options.mode,
            rows: 0,
        })
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        self.rows += batch.len() as u64;
        if self.mode == Mode::Rows {
            let mut out = std::io::stdout().lock();
            for row in &batch.rows {
                let line = batch.row_json(row).to_string();
                writeln!(out, "{line}")
                    .map_err(|e| Error::permanent(format!("cannot write to stdout: {e}")))?;
            }
        }
        Ok(())
    }

    fn write_encoded(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.mode == Mode::Count {
            // Counting needs no values: the row count is in the buffer's header.
            let n = codec::row_count(bytes).map_err(|e| Error::permanent(e.to_string()))?;
            self.rows += n as u64;
            return Ok(());
        }
        let batch = codec::decode(bytes).map_err(|e| Error::permanent(e.to_string()))?;
        self.write_batch(&batch)
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.mode == Mode::Count {
            println!("console: {} rows", self.rows);
        }
        Ok(())
    }
}

export_sink!(ConsoleSink, name = "console");

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (README, "Performance"). Memory crosses the boundary only back to its owner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
