//! Live progress for people watching a job: bars on a terminal, a compact block every
//! `progress_interval` elsewhere (CI, log files), nothing with `--quiet`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::Counters;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars for the job and each reader.
    Bars,
    /// A text block every interval.
    Text(Duration),
    Quiet,
}

/// The bars currently drawn, so that log lines are printed above them instead of through them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// A `tracing` writer for stderr that suspends the bars while a log line is written.
pub struct LogWriter(Vec<u8>);

impl LogWriter {
    pub fn new() -> Self {
        LogWriter(Vec::new())
    }
}

impl Default for LogWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        let bars = BARS.lock().ok().and_then(|b| b.clone());
        let write = || {
            let _ = std::io::stderr().write_all(&line);
        };
        match bars {
            Some(mp) => mp.suspend(write),
            None => write(),
        }
    }
}

/// A running reporter; [`Reporter::finish`] stops it.
pub struct Reporter {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn start(
        mode: Mode,
        job: &str,
        counters: Arc<Counters>,
        estimated_rows: Option<u64>,
    ) -> Reporter {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = job.to_string();
        let thread = match mode {
            Mode::Quiet => None,
            Mode::Text(every) => Some(std::thread::spawn(move || {
                text(&job, &counters, estimated_rows, every, rx)
            })),
            Mode::Bars => Some(std::thread::spawn(move || {
                bars(&counters, estimated_rows, rx)
            })),
        };
        Reporter {
            stop: Some(tx),
            thread,
        }
    }

    pub fn finish(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The incident's engine printed "Job Progress Information" every 60 s; this is that block.
pub fn progress_block(
    job: &str,
    c: &Counters,
    estimated: Option<u64>,
    elapsed: Duration,
) -> String {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (read, written, failed) = (get(&c.read), get(&c.written), get(&c.failed));
    let mut out = String::new();
    let line = "***********************************************\n";
    out.push_str(line);
    out.push_str("           Job Progress Information\n");
    out.push_str(line);
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<22}: {v}\n"));
    row("Job", job.to_string());
    row("Elapsed", format!("{:.1} s", elapsed.as_secs_f64()));
    row(
        "Rows Read",
        format!("{read} ({:.0}/s)", rate(read, elapsed)),
    );
    row(
        "Rows Written",
        format!("{written} ({:.0}/s)", rate(written, elapsed)),
    );
    row("Rows Failed", failed.to_string());
    if let Some(total) = estimated.filter(|t| *t > 0) {
        let done = written + failed;
        let pct = 100.0 * done as f64 / total as f64;
        let speed = rate(done, elapsed);
        let eta = if speed > 0.0 && total > done {
            format!(", about {:.0} s left", (total - done) as f64 / speed)
        } else {
            String::new()
        };
        row("Estimated Total", format!("{total} ({pct:.0}% done{eta})"));
    }
    let per: Vec<String> = c.per_reader.iter().map(|r| get(r).to_string()).collect();
    row("Rows Read per Reader", per.join(", "));
    out.push_str(line.trim_end());
    out
}

fn text(job: &str, c: &Counters, estimated: Option<u64>, every: Duration, stop: Receiver<()>) {
    let start = Instant::now();
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let block = progress_block(job, c, estimated, start.elapsed());
        let _ = writeln!(std::io::stderr().lock(), "{block}");
    }
}

fn bars(c: &Counters, estimated: Option<u64>, stop: Receiver<()>) {
    let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let total = match estimated.filter(|t| *t > 0) {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "job      [{bar:30}] {pos}/{len} rows written, {msg}, ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::no_length().with_style(
            ProgressStyle::with_template("job      {spinner} {pos} rows written, {msg}")
                .expect("valid template"),
        ),
    };
    let total = mp.add(total);
    let readers: Vec<ProgressBar> = (0..c.per_reader.len())
        .map(|i| {
            let style = ProgressStyle::with_template(&format!(
                "reader {i:<2}{{spinner}} {{pos}} rows read, {{msg}}"
            ))
            .expect("valid template");
            mp.add(ProgressBar::no_length().with_style(style))
        })
        .collect();
    *BARS.lock().expect("bars poisoned") = Some(mp.clone());
    let start = Instant::now();
    let update = || {
        let per_sec = |n: u64| format!("{:.0} rows/s", rate(n, start.elapsed()));
        let done = c.written.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        total.set_position(done);
        total.set_message(per_sec(done));
        for (bar, n) in readers.iter().zip(&c.per_reader) {
            let n = n.load(Ordering::Relaxed);
            bar.set_position(n);
            bar.set_message(per_sec(n));
        }
    };
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(100)) {
        update();
    }
    update();
    *BARS.lock().expect("bars poisoned") = None;
    total.finish();
    for r in &readers {
        r.finish();
    }
    let _ = mp.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_shows_rates_and_the_estimate() {
        let c = Counters::new(2);
        Counters::add(&c.read, 500);
        Counters::add(&c.written, 400);
        Counters::add(&c.per_reader[0], 300);
        Counters::add(&c.per_reader[1], 200);
        let block = progress_block("person", &c, Some(1000), Duration::from_secs(10));
        assert!(
            block.contains("Rows Read             : 500 (50/s)"),
            "{block}"
        );
        assert!(
            block.contains("Estimated Total       : 1000 (40% done, about 15 s left)"),
            "{block}"
        );
        assert!(
            block.contains("Rows Read per Reader  : 300, 200"),
            "{block}"
        );
    }
}
