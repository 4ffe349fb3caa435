//! What a stream reports: changes by kind, changes/s, the last acknowledged position, lag (seconds
//! behind the newest binlog event, and bytes of binlog behind the server's head), in the progress
//! log, `--summary-json` (`stream`) and a Prometheus text endpoint (`--metrics-addr`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Position};

#[derive(Debug)]
pub struct Progress {
    /// The commit of the last transaction whose every change is written.
    pub acked: Position,
    /// When the server wrote the last acknowledged change (seconds since 1970).
    pub acked_ts: u64,
    /// Where the server's log is, as last asked.
    pub head: Option<Position>,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    started: Instant,
}

impl Progress {
    pub fn new(at: Position) -> Self {
        Progress {
            acked: at,
            acked_ts: 0,
            head: None,
            inserts: 0,
            updates: 0,
            deletes: 0,
            started: Instant::now(),
        }
    }

    /// Counts a written chunk and moves the position to its last complete transaction.
    pub fn count(&mut self, b: &ChangeBatch) {
        for c in &b.changes {
            match c.kind {
                ChangeKind::Insert => self.inserts += 1,
                ChangeKind::Update => self.updates += 1,
                ChangeKind::Delete => self.deletes += 1,
                ChangeKind::Mark => {}
            }
        }
        if let Some(c) = b.changes.iter().rev().find(|c| c.last) {
            self.acked = c.commit.clone();
            self.acked_ts = c.timestamp as u64;
        }
    }

    pub fn changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }

    /// Bytes of binlog between the acknowledged position and the head (0 when caught up); `None`
    /// when the head is in a later file than the position.
    pub fn bytes_behind(&self) -> Option<u64> {
        let h = self.head.as_ref()?;
        if h.file == self.acked.file {
            Some(h.pos.saturating_sub(self.acked.pos))
        } else {
            None
        }
    }

    pub fn caught_up(&self) -> bool {
        self.bytes_behind() == Some(0)
    }

    /// Seconds between the newest event and the last acknowledged one: 0 when caught up.
    pub fn lag_secs(&self) -> u64 {
        if self.caught_up() || self.acked_ts == 0 {
            return 0;
        }
        super::follow::now_secs().saturating_sub(self.acked_ts)
    }

    pub fn per_sec(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.changes() as f64 / secs
        } else {
            0.0
        }
    }

    pub fn line(&self) -> String {
        format!(
            "stream: {} changes ({} inserts, {} updates, {} deletes; {:.0}/s), lag {} s, {} behind, at {}",
            self.changes(),
            self.inserts,
            self.updates,
            self.deletes,
            self.per_sec(),
            self.lag_secs(),
            self.bytes_behind()
                .map_or("a binlog file or more".to_string(), |b| format!("{b} bytes")),
            self.acked
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "changes": self.changes(),
            "inserts": self.inserts,
            "updates": self.updates,
            "deletes": self.deletes,
            "changes_per_sec": self.per_sec(),
            "lag_seconds": self.lag_secs(),
            "bytes_behind": self.bytes_behind(),
            "caught_up": self.caught_up(),
            "position": self.acked,
            "head": self.head,
        })
    }

    /// The Prometheus text format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let metric = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            &mut out,
            "etlhost_stream_changes_total",
            "counter",
            "Changes written to the sink.",
            self.changes().to_string(),
        );
        out.push_str(
            "# HELP etlhost_stream_changes_by_kind_total Changes written, by row kind.\n\
             # TYPE etlhost_stream_changes_by_kind_total counter\n",
        );
        for (kind, n) in [
            ("insert", self.inserts),
            ("update", self.updates),
            ("delete", self.deletes),
        ] {
            out.push_str(&format!(
                "etlhost_stream_changes_by_kind_total{{kind=\"{kind}\"}} {n}\n"
            ));
        }
        metric(
            &mut out,
            "etlhost_stream_changes_per_second",
            "gauge",
            "Changes written per second since the stream started.",
            format!("{:.3}", self.per_sec()),
        );
        metric(
            &mut out,
            "etlhost_stream_lag_seconds",
            "gauge",
            "Seconds between the newest binlog event and the last acknowledged one.",
            self.lag_secs().to_string(),
        );
        metric(
            &mut out,
            "etlhost_stream_bytes_behind",
            "gauge",
            "Bytes of binlog between the acknowledged position and the server's head (-1: a later file).",
            self.bytes_behind().map_or("-1".into(), |b| b.to_string()),
        );
        metric(
            &mut out,
            "etlhost_stream_caught_up",
            "gauge",
            "1 when every change up to the server's head is acknowledged.",
            (self.caught_up() as u8).to_string(),
        );
        out.push_str(&format!(
            "# HELP etlhost_stream_position Last acknowledged binlog position.\n# TYPE etlhost_stream_position gauge\netlhost_stream_position{{file=\"{}\",gtid=\"{}\"}} {}\n",
            self.acked.file,
            self.acked.gtid.as_deref().unwrap_or(""),
            self.acked.pos
        ));
        out
    }
}

/// A tiny HTTP responder: every request gets the metrics. One thread, one connection at a time.
pub fn serve(addr: SocketAddr, progress: Arc<Mutex<Progress>>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    tracing::info!("metrics on http://{addr}/metrics");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = conn.read(&mut buf);
            let body = progress.lock().map(|p| p.prometheus()).unwrap_or_default();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    Ok(())
}
