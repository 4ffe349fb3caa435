//! `faulty`: a sink for tests of the host's handling of misbehaving plugins. It accepts every row
//! except those whose `id` column equals `panic_on` (it panics) or `fail_on` (it returns an error),
//! and can take `delay_ms` over each batch, like a slow database. With `append_to` it also appends
//! each batch to that file and syncs it, failing with the system's error as it comes (on
//! `/dev/full`: `No space left on device`, as on a full disk).

use std::fs::File;
use std::io::Write;

use etlhost_plugin_sdk::{export_sink, Batch, Error, OpenError, Options, Sink, Value};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultyOptions {
    panic_on: Option<i64>,
    fail_on: Option<i64>,
    #[serde(default)]
    delay_ms: u64,
    append_to: Option<String>,
}

impl Options for FaultyOptions {}

pub struct FaultySink(FaultyOptions, Option<File>);

impl Sink for FaultySink {
    type Options = FaultyOptions;

    fn open(options: FaultyOptions) -> Result<Self, OpenError> {
        tracing::info!(
            "faulty sink ready: panic_on={:?} fail_on={:?}",
            options.panic_on,
            options.fail_on
        );
        let file = match &options.append_to {
            Some(path) => Some(
                File::options()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| Error::permanent(format!("cannot open {path}: {e}")))?,
            ),
            None => None,
        };
        Ok(FaultySink(options, file))
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        std::thread::sleep(std::time::Duration::from_millis(self.0.delay_ms));
        let id = batch
            .schema
            .iter()
            .position(|c| c.name == "id")
            .expect("an id column");
        for row in &batch.rows {
            let Value::Int(v) = row[id] else { continue };
            if Some(v) == self.0.panic_on {
                panic!("boom at id {v}");
            }
            if Some(v) == self.0.fail_on {
                return Err(Error::permanent(format!("refused id {v}")));
            }
        }
        if let Some(mut file) = self.1.as_ref() {
            let mut lines = Vec::new();
            for row in &batch.rows {
                writeln!(lines, "{}", batch.row_json(row)).expect("a Vec takes every write");
            }
            let io = |e: std::io::Error| Error::permanent(format!("write failed: {e}"));
            file.write_all(&lines).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }
}

export_sink!(FaultySink, name = "faulty");
