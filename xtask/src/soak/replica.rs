//! The two etlhost replicas of the soak's spec: child processes, their metrics, their memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

pub struct Replica {
    pub name: &'static str,
    pub port: u16,
    etlhost: PathBuf,
    spec: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// Processes started so far; each logs to a file of its own.
    pub lives: u32,
    /// SIGSTOPped: its metrics endpoint would accept a connection and never answer.
    pub paused: bool,
    /// The largest `VmHWM` seen over its processes, in bytes.
    pub peak_rss: u64,
}

impl Replica {
    pub fn new(name: &'static str, etlhost: &Path, spec: &Path, dir: &Path) -> Result<Replica> {
        Ok(Replica {
            name,
            port: xtask::services::free_port()?,
            etlhost: etlhost.to_path_buf(),
            spec: spec.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
            lives: 0,
            paused: false,
            peak_rss: 0,
        })
    }

    /// The log of its current (or last) process.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.{}.log", self.name, self.lives))
    }

    /// Starts a process; call from the main thread only: the child is killed when the thread that
    /// started it ends (so that an interrupted soak leaves no replica behind).
    pub fn start(&mut self) -> Result<()> {
        self.lives += 1;
        let log = std::fs::File::create(self.log())?;
        let mut cmd = Command::new(&self.etlhost);
        cmd.arg("run")
            .arg(&self.spec)
            .args([
                "--quiet",
                "--metrics-addr",
                &format!("127.0.0.1:{}", self.port),
            ])
            .env("ETLHOST_HOLDER", self.name)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().context("cannot start etlhost")?);
        self.paused = false;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self.pid().context("the replica is not running")?;
        // SAFETY: kill only sends a signal to our own child.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Its process's exit status once it has ended (then it has none running).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
            self.paused = false;
        }
        Ok(status)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Its metrics text; `None` while it does not answer (or is paused).
    pub fn metrics(&self) -> Option<String> {
        if self.paused || !self.running() {
            return None;
        }
        scrape_port(self.port)
    }

    /// Reads its process's `VmHWM` into [`Replica::peak_rss`].
    pub fn sample_rss(&mut self) {
        if let Some(hwm) = self.pid().and_then(vm_hwm) {
            self.peak_rss = self.peak_rss.max(hwm);
        }
    }

    /// The last lines of its current log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL and reap, at the end of the soak or of a failed one.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An exit status as a word: `code 75`, `signal 9`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

/// `/metrics` on loopback with timeouts (unlike [`xtask::metrics::scrape`]): a replica under
/// SIGSTOP, or one that is starting, must not hang the soak.
pub fn scrape_port(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.").then_some(text)
}

/// The role a replica's metrics on `port` report.
pub fn scrape_role(port: u16) -> Option<String> {
    role(&scrape_port(port)?)
}

/// The role whose `etlhost_stream_role` gauge is 1.
pub fn role(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("etlhost_stream_role{role=\"")?;
        let (role, value) = rest.split_once("\"} ")?;
        (value.trim().parse::<f64>().ok()? == 1.0).then(|| role.to_string())
    })
}

/// A gauge without labels.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A process's peak resident set (`VmHWM`) in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_role_and_a_gauge_are_read_from_the_text() {
        let text =
            "etlhost_stream_role{role=\"starting\"} 0\netlhost_stream_role{role=\"active\"} 1\n\
                    etlhost_stream_lag_seconds 0.25\netlhost_stream_lag_seconds_x 9\n";
        assert_eq!(super::role(text).as_deref(), Some("active"));
        assert_eq!(super::gauge(text, "etlhost_stream_lag_seconds"), Some(0.25));
        assert_eq!(
            super::role("etlhost_stream_role{role=\"active\"} 0\n"),
            None
        );
    }
}
