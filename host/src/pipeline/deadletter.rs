//! The dead-letter file: every row that could not be written, with why, as JSON Lines.
//!
//! Appended to, never truncated, so earlier runs' rows are not lost; each line names the job and
//! the run's start time. The file is created at the first failed row.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use etlhost_plugin_sdk::Batch;

use crate::stats::iso_micros;
use crate::transform::Origin;

pub struct DeadLetter {
    path: PathBuf,
    job: String,
    flow: Option<String>,
    run: String,
    file: Mutex<Option<File>>,
}

impl DeadLetter {
    pub fn new(path: PathBuf, job: &str, flow: Option<&str>, run_start: SystemTime) -> Self {
        DeadLetter {
            path,
            job: job.to_string(),
            flow: flow.map(str::to_string),
            run: iso_micros(run_start),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Appends rows `rows` of `batch` (from `origin`, per row) with the error that failed them.
    pub fn record(
        &self,
        batch: &Batch,
        rows: &[usize],
        origin: &[(u32, Origin)],
        stage: &str,
        error: &str,
    ) -> std::io::Result<()> {
        let mut out = String::new();
        let time = iso_micros(SystemTime::now());
        for &i in rows {
            let mut line = serde_json::json!({
                "time": time,
                "job": self.job,
                "run": self.run,
                "split": origin[i].0,
                "stage": stage,
                "error": error,
                "row": batch.row_json(&batch.rows[i]),
            });
            if let Some(flow) = &self.flow {
                line["flow"] = flow.as_str().into();
            }
            out.push_str(&line.to_string());
            out.push('\n');
        }
        let mut file = self.file.lock().expect("dead-letter file poisoned");
        if file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            *file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let f = file.as_mut().expect("just opened");
        f.write_all(out.as_bytes())?;
        f.flush()
    }
}
