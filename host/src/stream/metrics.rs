//! What a stream reports: changes by kind, changes/s, changes that failed (dead-lettered), the last
//! acknowledged position, lag (seconds behind the newest binlog event, and bytes of binlog behind
//! the server's head), in the progress
//! log, `--summary-json` (`stream`) and a Prometheus text endpoint (`--metrics-addr`, which also
//! answers `/healthz`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Position};

#[derive(Debug, Clone)]
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
    /// Changes the sink refused for good that went to the dead-letter file (not in the kinds).
    pub failed: u64,
    /// Changes written for cascades and TRUNCATE that the log did not have (not read, so not in
    /// the kinds either).
    pub cascaded: u64,
    /// What this process is for the job (with the position in the target, one of several).
    pub role: Role,
    /// The job's lease as last read or written: holder, epoch, expiry (ms since 1970).
    pub lease: Option<(String, u64, u64)>,
    /// Times this process became the active one.
    pub takeovers: u64,
    /// The change log is being followed (the snapshot is done): before, `acked` is where the
    /// stream will start, not a position anything has caught up with, so it is not reported.
    pub following: bool,
    /// The last position stored where a restart resumes from (the local file's, or the one the
    /// lease's last renewal stored in the target), which the source may let its server forget
    /// (`stream_ack`). Not `acked`: a mark moves that without anything stored.
    pub stored: Option<Position>,
    started: Instant,
    beat: Instant,
}

/// A process's part in a streaming job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reading its position, claiming the lease.
    Starting,
    /// Following the change log and writing (the snapshot included).
    Active,
    /// Waiting for the active process's lease to expire.
    Standby,
    /// Another process took the job over; this one stops.
    Fenced,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Starting, Role::Active, Role::Standby, Role::Fenced];

    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
        }
    }
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
            failed: 0,
            cascaded: 0,
            role: Role::Starting,
            lease: None,
            takeovers: 0,
            following: false,
            stored: None,
            started: Instant::now(),
            beat: Instant::now(),
        }
    }

    /// Counts a chunk whose changes `failed` (indices into `b.changes`, in order) went to the
    /// dead-letter file and the others were written, and moves the position to its last complete
    /// transaction.
    pub fn count(&mut self, b: &ChangeBatch, failed: &[usize]) {
        self.beat();
        self.failed += failed.len() as u64;
        let mut failed = failed.iter().peekable();
        for (i, c) in b.changes.iter().enumerate() {
            if failed.next_if_eq(&&i).is_some() {
                continue;
            }
            match c.kind {
                ChangeKind::Insert => self.inserts += 1,
                ChangeKind::Update => self.updates += 1,
                ChangeKind::Delete => self.deletes += 1,
                ChangeKind::Mark | ChangeKind::Truncate => {}
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
        self.following && self.bytes_behind() == Some(0)
    }

    /// Seconds between the newest event and the last acknowledged one: 0 when caught up.
    pub fn lag_secs(&self) -> u64 {
        if self.caught_up() || self.acked_ts == 0 {
            return 0;
        }
        now_secs().saturating_sub(self.acked_ts)
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
            "stream: {} changes ({} inserts, {} updates, {} deletes; {:.0}/s), {} failed, lag {} s, {} behind, at {}",
            self.changes(),
            self.inserts,
            self.updates,
            self.deletes,
            self.per_sec(),
            self.failed,
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
            "failed_changes": self.failed,
            "cascaded_changes": self.cascaded,
            "changes_per_sec": self.per_sec(),
            "lag_seconds": self.lag_secs(),
            "bytes_behind": self.bytes_behind(),
            "caught_up": self.caught_up(),
            "position": self.acked,
            "head": self.head,
        })
    }

    /// The Prometheus text format (0.0.4), as `/metrics` serves it.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(self, &mut out);
        out
    }

    /// The loop that writes changes is turning: `/healthz` answers 200 while the last beat is
    /// recent.
    pub fn beat(&mut self) {
        self.beat = Instant::now();
    }

    pub fn alive(&self) -> bool {
        self.beat.elapsed() < STALE_AFTER
    }

    /// `/readyz`: an active process whose loop turns, or a standby that can read the lease.
    pub fn ready(&self) -> bool {
        matches!(self.role, Role::Active | Role::Standby) && self.alive()
    }
}

/// How long the follow loop may go without a beat before `/healthz` says it is stuck: its turns
/// are at most 200 ms apart, so this is a loop that has stopped, not a slow one.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// Reads the progress at each scrape, so the follow loop only updates its own struct.
#[derive(Debug)]
struct StreamCollector(Arc<Mutex<Progress>>);

impl Collector for StreamCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        match self.0.lock() {
            Ok(p) => describe(&p, encoder),
            Err(_) => Ok(()),
        }
    }
}

fn encode(p: &Progress, out: &mut String) -> std::fmt::Result {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StreamCollector(Arc::new(Mutex::new(p.clone())))));
    prometheus_text::encode(out, &registry)
}

/// Counters and gauges with the names, help and labels the endpoint has always had (the
/// counters' `_total` is added by the encoder).
fn describe(p: &Progress, mut e: DescriptorEncoder) -> std::fmt::Result {
    let changes = ConstCounter::new(p.changes());
    changes.encode(e.encode_descriptor(
        "etlhost_stream_changes",
        "Changes written to the sink.",
        None,
        MetricType::Counter,
    )?)?;
    let mut by_kind = e.encode_descriptor(
        "etlhost_stream_changes_by_kind",
        "Changes written, by row kind.",
        None,
        MetricType::Counter,
    )?;
    for (kind, n) in [
        ("insert", p.inserts),
        ("update", p.updates),
        ("delete", p.deletes),
    ] {
        let labels = [("kind", kind)];
        ConstCounter::new(n).encode(by_kind.encode_family(&labels)?)?;
    }
    ConstCounter::new(p.failed).encode(e.encode_descriptor(
        "etlhost_stream_failed_changes",
        "Changes the sink refused for good, written to the dead-letter file.",
        None,
        MetricType::Counter,
    )?)?;
    ConstCounter::new(p.cascaded).encode(e.encode_descriptor(
        "etlhost_stream_cascaded_changes",
        "Changes written for foreign-key cascades and TRUNCATE, which the binlog does not have.",
        None,
        MetricType::Counter,
    )?)?;
    gauge(
        &mut e,
        "etlhost_stream_changes_per_second",
        "Changes written per second since the stream started.",
        (p.per_sec() * 1000.0).round() / 1000.0,
    )?;
    gauge(
        &mut e,
        "etlhost_stream_lag_seconds",
        "Seconds between the newest binlog event and the last acknowledged one.",
        p.lag_secs(),
    )?;
    gauge(
        &mut e,
        "etlhost_stream_bytes_behind",
        "Bytes of binlog between the acknowledged position and the server's head (-1: a later file).",
        p.bytes_behind().map_or(-1, |b| b as i64),
    )?;
    gauge(
        &mut e,
        "etlhost_stream_caught_up",
        "1 when every change up to the server's head is acknowledged.",
        p.caught_up() as u64,
    )?;
    if p.following {
        let mut position = e.encode_descriptor(
            "etlhost_stream_position",
            "Last acknowledged binlog position.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("file", p.acked.file.as_str()),
            ("gtid", p.acked.gtid.as_deref().unwrap_or("")),
        ];
        ConstGauge::new(p.acked.pos).encode(position.encode_family(&labels)?)?;
    }
    describe_role(p, e)
}

/// The process's role and the job's lease, for an orchestrator's dashboards.
fn describe_role(p: &Progress, mut e: DescriptorEncoder) -> std::fmt::Result {
    {
        let mut role = e.encode_descriptor(
            "etlhost_stream_role",
            "1 for this process's role in the job (starting, active, standby, fenced), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for r in Role::ALL {
            let labels = [("role", r.name())];
            ConstGauge::new(u64::from(p.role == r)).encode(role.encode_family(&labels)?)?;
        }
    }
    ConstCounter::new(p.takeovers).encode(e.encode_descriptor(
        "etlhost_stream_takeovers",
        "Times this process became the job's active process.",
        None,
        MetricType::Counter,
    )?)?;
    let Some((holder, epoch, expires)) = &p.lease else {
        return Ok(());
    };
    {
        let mut h = e.encode_descriptor(
            "etlhost_stream_lease_holder",
            "1, labelled with the process that holds the job's lease.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1u64).encode(h.encode_family(&[("holder", holder.as_str())])?)?;
    }
    gauge(
        &mut e,
        "etlhost_stream_lease_epoch",
        "The lease's epoch: it grows by one at every takeover.",
        *epoch,
    )?;
    let left = (*expires as i64 - now_ms() as i64) as f64 / 1000.0;
    gauge(
        &mut e,
        "etlhost_stream_lease_expires_in_seconds",
        "Seconds until the job's lease expires, by this process's clock (negative: expired).",
        left.max(-1.0e9),
    )
}

/// Every metric family `/metrics` serves, as its lines name them (counters with `_total`): what a
/// dashboard may query. The lease's appear once the job's lease has been read.
pub fn exported_names() -> Vec<String> {
    let mut p = Progress::new(Position::default());
    p.lease = Some((String::new(), 0, 0));
    p.following = true;
    let text = p.prometheus();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

fn gauge<N>(e: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> std::fmt::Result
where
    N: prometheus_client::encoding::EncodeGaugeValue,
{
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Serves `GET /metrics` (the Prometheus text format) and `GET /healthz` (200 while the follow
/// loop beats, 503 once it has stopped) on `addr`; any other path is a 404.
///
/// tiny_http rather than an async server: the host has no runtime to share, and its pool reads
/// each connection on a thread of its own, so a slow or idle scraper never holds up the next one.
pub fn serve(addr: SocketAddr, progress: Arc<Mutex<Progress>>) -> std::io::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("metrics: not an IP address"))?;
    tracing::info!("metrics on http://{bound}/metrics, health on http://{bound}/healthz");
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StreamCollector(progress.clone())));
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let response = answer(request.method(), request.url(), &registry, &progress);
            let _ = request.respond(response);
        }
    });
    Ok(bound)
}

fn answer(
    method: &tiny_http::Method,
    url: &str,
    registry: &Registry,
    progress: &Mutex<Progress>,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    use tiny_http::{Method, Response};
    let path = url.split('?').next().unwrap_or(url);
    if !matches!(method, Method::Get | Method::Head) {
        return Response::from_string("method not allowed\n").with_status_code(405);
    }
    match path {
        "/metrics" => {
            let mut body = String::new();
            if prometheus_text::encode(&mut body, registry).is_err() {
                return Response::from_string("cannot encode the metrics\n").with_status_code(500);
            }
            Response::from_string(body).with_header(header(prometheus_text::CONTENT_TYPE))
        }
        "/healthz" => {
            if progress.lock().is_ok_and(|p| p.alive()) {
                Response::from_string("ok")
            } else {
                Response::from_string("the stream's loop has stopped turning\n")
                    .with_status_code(503)
            }
        }
        "/readyz" => match progress.lock() {
            Ok(p) if p.ready() => Response::from_string(p.role.name()),
            Ok(p) => Response::from_string(format!("not ready: {}\n", p.role.name()))
                .with_status_code(503),
            Err(_) => Response::from_string("not ready\n").with_status_code(503),
        },
        _ => Response::from_string("not found: /metrics, /healthz or /readyz\n")
            .with_status_code(404),
    }
}

fn header(content_type: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a valid header")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch, as the acknowledged transactions' timestamps are.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn at(file: &str, gtid: Option<&str>) -> Progress {
        let mut p = Progress::new(Position {
            file: file.into(),
            pos: 4,
            gtid: gtid.map(str::to_string),
            skip: 0,
        });
        p.following = true;
        p
    }

    #[test]
    fn label_values_are_escaped() {
        let text = at("bin\"log\\01\n", Some("0-1-\"2\"")).prometheus();
        let line = text
            .lines()
            .find(|l| l.starts_with("etlhost_stream_position{"))
            .unwrap();
        assert_eq!(
            line,
            r#"etlhost_stream_position{file="bin\"log\\01\n",gtid="0-1-\"2\""} 4"#
        );
    }

    #[test]
    fn names_and_types_stay_as_they_were() {
        let text = at("binlog.000001", None).prometheus();
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(
            types,
            [
                "# TYPE etlhost_stream_changes_total counter",
                "# TYPE etlhost_stream_changes_by_kind_total counter",
                "# TYPE etlhost_stream_failed_changes_total counter",
                "# TYPE etlhost_stream_cascaded_changes_total counter",
                "# TYPE etlhost_stream_changes_per_second gauge",
                "# TYPE etlhost_stream_lag_seconds gauge",
                "# TYPE etlhost_stream_bytes_behind gauge",
                "# TYPE etlhost_stream_caught_up gauge",
                "# TYPE etlhost_stream_position gauge",
                "# TYPE etlhost_stream_role gauge",
                "# TYPE etlhost_stream_takeovers_total counter",
            ]
        );
        for sample in [
            "etlhost_stream_changes_total 0",
            "etlhost_stream_changes_by_kind_total{kind=\"insert\"} 0",
            "etlhost_stream_changes_by_kind_total{kind=\"delete\"} 0",
            "etlhost_stream_failed_changes_total 0",
            "etlhost_stream_cascaded_changes_total 0",
            "etlhost_stream_bytes_behind -1",
            "etlhost_stream_caught_up 0",
            "etlhost_stream_position{file=\"binlog.000001\",gtid=\"\"} 4",
        ] {
            assert!(text.lines().any(|l| l == sample), "{sample} in\n{text}");
        }
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let (status, _, body) = request(addr, path);
        (status, body)
    }

    /// Status, head and body of a plain HTTP/1.0 GET, as a scraper sends it.
    fn request(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, head.to_string(), body.to_string())
    }

    #[test]
    fn paths_answer_on_a_real_socket() {
        let progress = Arc::new(Mutex::new(at("binlog.000001", None)));
        let addr = serve("127.0.0.1:0".parse().unwrap(), progress.clone()).unwrap();
        // A scraper that connects and says nothing must not hold up the others.
        let _idle = std::net::TcpStream::connect(addr).unwrap();
        let (status, head, body) = request(addr, "/metrics");
        assert_eq!(status, 200);
        assert!(
            head.lines().any(|l| l
                .eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
            "{head}"
        );
        assert!(body.contains("etlhost_stream_position{file=\"binlog.000001\""));
        assert_eq!(get(addr, "/healthz"), (200, "ok".to_string()));
        assert_eq!(get(addr, "/other").0, 404);
        assert_eq!(get(addr, "/").0, 404);
        progress.lock().unwrap().beat -= STALE_AFTER;
        assert_eq!(get(addr, "/healthz").0, 503);
    }
}
