//! Row accounting for a job: what was read, written, failed and filtered, and the final check that
//! every row read is accounted for.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etlhost_plugin_sdk::Value;
use serde::Serialize;

/// Live counters, shared by every stage of a running job.
#[derive(Debug, Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub written: AtomicU64,
    pub failed: AtomicU64,
    pub filtered: AtomicU64,
    /// Rows transforms emitted beyond one per input row (expanded rows, rows held until finish).
    pub added: AtomicU64,
    pub batches: AtomicU64,
    /// Sink calls tried again after a transient error.
    pub retries: AtomicU64,
    /// Rows read by each reader, in reader order.
    pub per_reader: Vec<AtomicU64>,
}

impl Counters {
    pub fn new(readers: usize) -> Self {
        Counters {
            per_reader: (0..readers).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// How a job (or one of its flows) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
    Interrupted,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        })
    }
}

/// The statistics of a finished job, printed as a block and written by `--summary-json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub job: String,
    /// Set on the statistics of one flow of a job of several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Set on the statistics of one shard of a job (`2/4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub status: Status,
    pub start: String,
    pub end: String,
    pub duration_secs: f64,
    pub read: u64,
    pub written: u64,
    pub failed: u64,
    pub filtered: u64,
    pub added: u64,
    pub batches: u64,
    pub retries: u64,
    pub rows_per_sec: f64,
    pub read_per_reader: Vec<u64>,
    /// The process's peak resident memory (Linux `VmHWM`), 0 where unknown.
    pub peak_rss_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a job of several flows: each flow's statistics, in the order they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<Summary>,
    /// `mode: stream`: changes, lag and the last acknowledged position (see `stream::metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<serde_json::Value>,
}

/// UTC ISO 8601 to the millisecond, e.g. `2023-11-14T22:13:20.123Z`.
pub fn iso(t: SystemTime) -> String {
    // Whole milliseconds are enough for a human and keep the text short.
    let micros = epoch_micros(t);
    let text = Value::DateTime(micros - micros % 1000).to_string();
    format!("{}Z", text.trim_end_matches("000"))
}

/// UTC ISO 8601 to the microsecond, for records that order events.
pub fn iso_micros(t: SystemTime) -> String {
    format!("{}Z", Value::DateTime(epoch_micros(t)))
}

fn epoch_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as i64
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Summary {
    pub fn new(
        job: &str,
        flow: Option<&str>,
        status: Status,
        c: &Counters,
        start: SystemTime,
        end: SystemTime,
        error: Option<String>,
    ) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Summary {
            flow: flow.map(str::to_string),
            shard: None,
            read: get(&c.read),
            written: get(&c.written),
            failed: get(&c.failed),
            filtered: get(&c.filtered),
            added: get(&c.added),
            batches: get(&c.batches),
            retries: get(&c.retries),
            read_per_reader: c.per_reader.iter().map(get).collect(),
            ..Summary::timed(job, status, start, end, error)
        }
        .rated()
    }

    /// The job's statistics over the flows that ran: sums of their rows, the job's wall time.
    pub fn total(
        job: &str,
        flows: Vec<Summary>,
        status: Status,
        start: SystemTime,
        error: Option<String>,
    ) -> Self {
        let sum = |f: fn(&Summary) -> u64| flows.iter().map(f).sum::<u64>();
        Summary {
            read: sum(|s| s.read),
            written: sum(|s| s.written),
            failed: sum(|s| s.failed),
            filtered: sum(|s| s.filtered),
            added: sum(|s| s.added),
            batches: sum(|s| s.batches),
            retries: sum(|s| s.retries),
            flows,
            ..Summary::timed(job, status, start, SystemTime::now(), error)
        }
        .rated()
    }

    /// A summary of no rows over `start..end`.
    fn timed(
        job: &str,
        status: Status,
        start: SystemTime,
        end: SystemTime,
        error: Option<String>,
    ) -> Self {
        Summary {
            job: job.to_string(),
            flow: None,
            shard: None,
            status,
            start: iso(start),
            end: iso(end),
            duration_secs: end
                .duration_since(start)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
            read: 0,
            written: 0,
            failed: 0,
            filtered: 0,
            added: 0,
            batches: 0,
            retries: 0,
            rows_per_sec: 0.0,
            read_per_reader: Vec::new(),
            stream: None,
            peak_rss_bytes: peak_rss_bytes(),
            error,
            flows: Vec::new(),
        }
    }

    fn rated(mut self) -> Self {
        if self.duration_secs > 0.0 {
            self.rows_per_sec = self.written as f64 / self.duration_secs;
        }
        self
    }

    /// Every row read (or added by a transform) is written, failed (and dead-lettered) or
    /// filtered, whatever the outcome.
    pub fn balances(&self) -> bool {
        self.read + self.added == self.written + self.failed + self.filtered
            && self.flows.iter().all(Summary::balances)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "***********************************************")?;
        writeln!(f, "           Job Statistic Information")?;
        writeln!(f, "***********************************************")?;
        let rows: [(&str, String); 14] = [
            (
                "Job",
                match &self.flow {
                    Some(flow) => format!("{}/{flow}", self.job),
                    None => self.job.clone(),
                },
            ),
            ("Status", self.status.to_string()),
            ("Start Time", self.start.clone()),
            ("End Time", self.end.clone()),
            ("Total Time", format!("{:.3} s", self.duration_secs)),
            ("Rows Read", self.read.to_string()),
            ("Rows Written", self.written.to_string()),
            ("Rows Failed", self.failed.to_string()),
            ("Rows Filtered", self.filtered.to_string()),
            ("Rows Added", self.added.to_string()),
            ("Batches Written", self.batches.to_string()),
            ("Write Retries", self.retries.to_string()),
            ("Rows/s", format!("{:.0}", self.rows_per_sec)),
            (
                "Peak Memory",
                format!("{:.1} MiB", self.peak_rss_bytes as f64 / 1048576.0),
            ),
        ];
        for (k, v) in rows {
            writeln!(f, "{k:<22}: {v}")?;
            if let Some(shard) = self.shard.as_ref().filter(|_| k == "Job") {
                writeln!(f, "{:<22}: {shard}", "Shard")?;
            }
        }
        if self.flows.is_empty() {
            let per: Vec<String> = self.read_per_reader.iter().map(u64::to_string).collect();
            writeln!(f, "{:<22}: {}", "Rows Read per Reader", per.join(", "))?;
        } else {
            writeln!(
                f,
                "{:<20} {:<11} {:>10} {:>10} {:>8} {:>8} {:>9}",
                "Flow", "Status", "Read", "Written", "Failed", "Filtered", "Seconds"
            )?;
            for s in &self.flows {
                writeln!(
                    f,
                    "{:<20} {:<11} {:>10} {:>10} {:>8} {:>8} {:>9.3}",
                    s.flow.as_deref().unwrap_or(&s.job),
                    s.status,
                    s.read,
                    s.written,
                    s.failed,
                    s.filtered,
                    s.duration_secs
                )?;
            }
        }
        write!(f, "***********************************************")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso() {
        assert_eq!(
            iso(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(iso(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
