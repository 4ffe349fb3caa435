//! A TCP proxy between a job and a real server, which the test holds or cuts at a moment it
//! chooses: a server that stops mid-read without a test having to time it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which way bytes go through the proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Way {
    /// From the job to the server (queries, rows written to a sink).
    ToServer,
    /// From the server to the job (rows read from a source).
    ToClient,
}

#[derive(Default)]
struct State {
    /// Bytes forwarded: to the server, to the client.
    sent: [u64; 2],
    /// Forwarding stops once this many bytes have gone this way, until `resume`.
    hold_at: Option<(Way, u64)>,
    /// While set, new connections are closed at once.
    cut: bool,
    /// The connections the test has not closed; a pump whose connection is gone stops.
    conns: Vec<Conn>,
    next_id: u64,
}

/// A connection through the proxy: its job's port and both sockets.
struct Conn {
    id: u64,
    client_port: u16,
    client: TcpStream,
    server: TcpStream,
}

impl Conn {
    fn close(&self) {
        let _ = (
            self.client.shutdown(Shutdown::Both),
            self.server.shutdown(Shutdown::Both),
        );
    }
}

impl State {
    /// Bytes that may go `way` now.
    fn allowed(&self, way: Way) -> u64 {
        match self.hold_at {
            Some((w, at)) if w == way => at.saturating_sub(self.sent[w as usize]),
            Some((w, at)) if self.sent[w as usize] >= at => 0,
            _ => u64::MAX,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    target: u16,
}

/// Listens on a free port of 127.0.0.1 and forwards every connection to the server on `target`.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            target,
        });
        let accepting = shared.clone();
        // The thread ends with the test process: a blocked accept holds nothing else.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                accepting.connect(client);
            }
        });
        Proxy { port, shared }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Bytes forwarded `way` so far.
    pub fn sent(&self, way: Way) -> u64 {
        self.state().sent[way as usize]
    }

    /// Forwards until `bytes` more have gone `way`, then holds every connection, both
    /// ways, open and silent: the job stops at that byte, whatever its speed (`0`: at once).
    pub fn hold_after(&self, way: Way, bytes: u64) {
        let mut s = self.state();
        let at = s.sent[way as usize] + bytes;
        s.hold_at = Some((way, at));
        drop(s);
        self.shared.changed.notify_all();
    }

    /// Whether nothing goes through: the bytes of [`Proxy::hold_after`] have gone.
    pub fn holding(&self) -> bool {
        let s = self.state();
        s.allowed(Way::ToServer) == 0 && s.allowed(Way::ToClient) == 0
    }

    /// Waits (a minute at the most) until nothing goes through; fails at once, with its stderr
    /// if that is piped, if `job` ends meanwhile.
    pub fn wait_holding(&self, job: &mut Child) {
        let start = Instant::now();
        while !self.holding() {
            if let Some(status) = job.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = job.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("the job ended ({status}) before the proxy held it: {stderr}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the proxy held nothing within a minute ({} bytes to the server, {} to the client)",
                self.sent(Way::ToServer),
                self.sent(Way::ToClient)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets `step` bytes go `way` at a time, holding every connection between steps, until
    /// `reached` (asked while they are held, so what it looks at stands still) says so; they stay
    /// held then. A job can thus be stopped at a state it reaches, never past its end.
    pub fn step_until(
        &self,
        job: &mut Child,
        way: Way,
        step: u64,
        mut reached: impl FnMut() -> bool,
    ) {
        loop {
            self.hold_after(way, step);
            self.wait_holding(job);
            if reached() {
                return;
            }
        }
    }

    /// Closes every connection, both sides, and closes new ones at once until [`Proxy::resume`]:
    /// as the server going away.
    pub fn cut(&self) {
        let mut s = self.state();
        s.cut = true;
        for conn in s.conns.drain(..) {
            conn.close();
        }
        drop(s);
        self.shared.changed.notify_all();
    }

    /// SIGKILLs `job` and closes its connections through the proxy, dropping what they hold:
    /// what the job sent but the proxy held never reaches the server, as when a job dies on its
    /// own (held until [`Proxy::resume`], its last batch would land after its successor began).
    pub fn kill(&self, job: &mut Child) {
        let ports = job_ports(job.id(), self.port);
        assert!(
            !ports.is_empty(),
            "the job has no connection through the proxy"
        );
        job.kill().unwrap();
        job.wait().unwrap();
        self.state().conns.retain(|conn| {
            let keep = !ports.contains(&conn.client_port);
            if !keep {
                conn.close();
            }
            keep
        });
        self.shared.changed.notify_all();
    }

    /// Forwards again, and accepts connections again after a cut.
    pub fn resume(&self) {
        let mut s = self.state();
        s.cut = false;
        s.hold_at = None;
        drop(s);
        self.shared.changed.notify_all();
    }
}

impl Shared {
    fn connect(self: &Arc<Self>, client: TcpStream) {
        let mut s = self.state.lock().unwrap();
        if s.cut {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", self.target)) else {
            return;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let id = s.next_id;
        s.next_id += 1;
        s.conns.push(Conn {
            id,
            client_port: client.peer_addr().map_or(0, |a| a.port()),
            client: client.try_clone().unwrap(),
            server: server.try_clone().unwrap(),
        });
        drop(s);
        for (from, to, way) in [
            (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                Way::ToServer,
            ),
            (server, client, Way::ToClient),
        ] {
            let shared = self.clone();
            std::thread::spawn(move || shared.pump(from, to, way, id));
        }
    }

    /// Copies `from` to `to`, counting, and waiting while held; ends with either side or when
    /// the test closes connection `id`.
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, way: Way, id: u64) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let Some(k) = self.take(way, id, chunk.len()) else {
                    return;
                };
                if to.write_all(&chunk[..k]).is_err() {
                    return;
                }
                chunk = &chunk[k..];
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }

    /// Counts up to `want` bytes as gone `way` and says how many may go, waiting while none may
    /// (counted before they are written, so that connections in parallel never pass a hold);
    /// `None` once the test has closed connection `id`.
    fn take(&self, way: Way, id: u64, want: usize) -> Option<usize> {
        let mut s = self.state.lock().unwrap();
        loop {
            if !s.conns.iter().any(|c| c.id == id) {
                return None;
            }
            let k = s.allowed(way).min(want as u64);
            if k > 0 {
                s.sent[way as usize] += k;
                return Some(k as usize);
            }
            s = self.changed.wait(s).unwrap();
        }
    }
}

/// The local ports of process `pid`'s TCP connections to `port` (from /proc: the tests run on
/// Linux).
fn job_ports(pid: u32, port: u16) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) && port_of(f[2]) == Some(port) {
                ports.extend(port_of(f[1]));
            }
        }
    }
    ports
}
