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
    /// Counts cuts: a pump of an earlier generation stops.
    generation: u64,
    /// The open sockets of this generation, both sides, for `cut`.
    sockets: Vec<TcpStream>,
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
        s.generation += 1;
        for sock in s.sockets.drain(..) {
            let _ = sock.shutdown(Shutdown::Both);
        }
        drop(s);
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
        let generation = s.generation;
        s.sockets.push(client.try_clone().unwrap());
        s.sockets.push(server.try_clone().unwrap());
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
            std::thread::spawn(move || shared.pump(from, to, way, generation));
        }
    }

    /// Copies `from` to `to`, counting, and waiting while held; ends with either side or a cut.
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, way: Way, generation: u64) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending = Vec::new();
        loop {
            if pending.is_empty() {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
            match self.take(way, generation, pending.len()) {
                Take::Go(k) => {
                    if to.write_all(&pending[..k]).is_err() {
                        break;
                    }
                    pending.drain(..k);
                }
                // What a job sent before it was killed must not arrive once the test lets
                // things go on: its last batch would land after its successor began. (A server
                // that goes away is left to be found after the hold, as a job would find it.)
                Take::Held if way == Way::ToClient || still_there(&mut from, &mut pending) => {}
                Take::Held | Take::Cut => {
                    let _ = (from.shutdown(Shutdown::Both), to.shutdown(Shutdown::Both));
                    return;
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }

    /// Counts up to `want` bytes as gone `way` and says how many may go (counted before they are
    /// written, so that connections in parallel never pass a hold). While none may, it waits a
    /// little, or for a change, and says `Held`: the pump looks at its peer before it forwards.
    fn take(&self, way: Way, generation: u64, want: usize) -> Take {
        let mut s = self.state.lock().unwrap();
        if s.generation != generation {
            return Take::Cut;
        }
        match s.allowed(way).min(want as u64) {
            0 => {
                let (s, _) = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap();
                if s.generation != generation {
                    Take::Cut
                } else {
                    Take::Held
                }
            }
            k => {
                s.sent[way as usize] += k;
                Take::Go(k as usize)
            }
        }
    }
}

/// What a pump may do with the bytes it holds.
enum Take {
    /// Forward this many.
    Go(usize),
    /// Nothing yet.
    Held,
    /// The connection was cut.
    Cut,
}

/// Whether `from` is still open, reading what it sent meanwhile into `pending`, and giving the
/// end of a peer that has just died a moment to arrive (only this pump reads `from`, and a read
/// timeout touches no write).
fn still_there(from: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let open = loop {
        match from.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => {
                break matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    };
    let _ = from.set_read_timeout(None);
    open
}
