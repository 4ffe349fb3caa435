//! The replicas as a pair, and what the soak does to them and to the servers: SIGKILL the active
//! replica, pause it past its lease, restart MariaDB, restart the Bolt server. Each event is
//! recorded with its time and, for a kill or a pause, how long until the other replica was active.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::replica::{describe, Replica};
use super::setup::{head, Servers, LEASE_SECS};

/// The exit code of a replica another one took the job from.
pub const FENCED: i32 = 75;

pub struct Fleet {
    pub replicas: [Replica; 2],
    /// Whose exit the chaos waits for itself (not restarted by [`Chaos::poll`]).
    pub expected: [bool; 2],
    /// `etlhost_stream_lag_seconds` of the active replica, once a second: (ms since 1970, lag).
    pub lag: Vec<(u64, f64)>,
}

pub type SharedFleet = Arc<Mutex<Fleet>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    KillActive,
    PauseActive,
    RestartMariaDb,
    RestartBolt,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::KillActive,
        Kind::PauseActive,
        Kind::RestartMariaDb,
        Kind::RestartBolt,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::KillActive => "sigkill_active",
            Kind::PauseActive => "sigstop_active",
            Kind::RestartMariaDb => "restart_mariadb",
            Kind::RestartBolt => "restart_bolt",
        }
    }
}

pub struct Chaos {
    pub fleet: SharedFleet,
    pub servers: Servers,
    pub t0: Instant,
    pub events: Vec<Value>,
    pub failures: Vec<String>,
    /// When something was being done to the replicas or servers, and 5 s after (ms since 1970):
    /// the figures outside them are the calm ones.
    pub windows: Vec<(u64, u64)>,
}

/// Milliseconds since 1970, the clock MySQL's and the graph's timestamps use.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Past an event, the stream is still catching up for a while.
const SETTLE_MS: u64 = 5_000;

fn lease() -> Duration {
    Duration::from_secs(LEASE_SECS)
}

impl Chaos {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Restarts a replica that ended on its own (as an orchestrator would) and records it: fenced
    /// (75) is what the design allows after an outage of the graph longer than the lease; any other
    /// exit is a failure of the soak.
    pub fn poll(&mut self) -> Result<()> {
        for i in 0..2 {
            let mut fleet = self.fleet.lock().unwrap();
            if fleet.expected[i] {
                continue;
            }
            let r = &mut fleet.replicas[i];
            let Some(status) = r.try_exit()? else {
                continue;
            };
            let (name, tail) = (r.name, r.log_tail(20));
            let log = r.log();
            r.start()?;
            drop(fleet);
            let what = format!("{name} exited on its own ({}), restarted", describe(status));
            eprintln!("soak: {what}; log {}:\n{tail}", log.display());
            if status.code() != Some(FENCED) {
                self.failures.push(format!("{what}; log {}", log.display()));
            }
            self.events.push(
                json!({"kind": "replica_exited", "at_s": self.now(), "replica": name,
                                    "exit": describe(status), "log": log}),
            );
            let now = unix_ms();
            self.windows
                .push((now, now + lease().as_millis() as u64 + SETTLE_MS));
        }
        Ok(())
    }

    /// Waits `d`, restarting replicas that end meanwhile.
    pub fn idle(&mut self, d: Duration) -> Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.poll()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn roles(&self) -> [Option<String>; 2] {
        let ports: Vec<(bool, u16)> = {
            let f = self.fleet.lock().unwrap();
            f.replicas
                .iter()
                .map(|r| (r.running() && !r.paused, r.port))
                .collect()
        };
        [0, 1].map(|i| {
            ports[i]
                .0
                .then(|| super::replica::scrape_role(ports[i].1))
                .flatten()
        })
    }

    /// Replica `i` reports `role` within `limit`: the seconds it took.
    pub fn wait_role(&mut self, i: usize, role: &str, limit: Duration) -> Result<f64> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.roles()[i].as_deref() == Some(role) {
                return Ok(start.elapsed().as_secs_f64());
            }
            self.poll()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        let f = self.fleet.lock().unwrap();
        let r = &f.replicas[i];
        bail!(
            "{} did not report role {role} within {} s; log {}:\n{}",
            r.name,
            limit.as_secs(),
            r.log().display(),
            r.log_tail(30)
        )
    }

    /// One replica active, the other standby: the active one's index.
    pub fn wait_steady(&mut self, limit: Duration) -> Result<usize> {
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.roles() {
                [Some(a), Some(b)] if a == "active" && b == "standby" => return Ok(0),
                [Some(a), Some(b)] if a == "standby" && b == "active" => return Ok(1),
                _ => {}
            }
            self.poll()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "no steady pair (one active, one standby) within {} s: roles {:?}",
            limit.as_secs(),
            self.roles()
        )
    }

    /// Waits for replica `i`'s process to end (it was signalled): its exit status.
    fn wait_exit(&mut self, i: usize, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.fleet.lock().unwrap().replicas[i].try_exit()? {
                return Ok(Some(s));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    /// Starts replica `i` again and waits until it is a standby.
    fn restart_standby(&mut self, i: usize) -> Result<()> {
        {
            let mut f = self.fleet.lock().unwrap();
            f.expected[i] = false;
            f.replicas[i].start()?;
        }
        self.wait_role(i, "standby", Duration::from_secs(120))?;
        Ok(())
    }

    /// Sends `sig` to the active replica (its memory sampled first, as it may not return); its
    /// index and when.
    fn signal_active(&mut self, sig: libc::c_int) -> Result<(usize, Instant)> {
        let a = self.wait_steady(Duration::from_secs(180))?;
        let mut f = self.fleet.lock().unwrap();
        f.expected[a] = true;
        let r = &mut f.replicas[a];
        r.sample_rss();
        r.signal(sig)?;
        r.paused = sig == libc::SIGSTOP;
        Ok((a, Instant::now()))
    }

    pub fn perform(&mut self, kind: Kind) -> Result<()> {
        let at = self.now();
        let start = unix_ms();
        eprintln!("soak: {at:.0} s: {}", kind.name());
        let mut event = match kind {
            Kind::KillActive => self.kill_active()?,
            Kind::PauseActive => self.pause_active()?,
            Kind::RestartMariaDb => {
                let t = Instant::now();
                self.servers.mysql.restart()?;
                self.recovered(t)?
            }
            Kind::RestartBolt => {
                let t = Instant::now();
                self.servers.graph.restart()?;
                self.recovered(t)?
            }
        };
        event["kind"] = json!(kind.name());
        event["at_s"] = json!(at);
        eprintln!("soak:   {event}");
        self.events.push(event);
        self.windows.push((start, unix_ms() + SETTLE_MS));
        Ok(())
    }

    fn kill_active(&mut self) -> Result<Value> {
        let (a, t) = self.signal_active(libc::SIGKILL)?;
        let status = self.wait_exit(a, Duration::from_secs(30))?;
        self.wait_role(1 - a, "active", 2 * lease() + Duration::from_secs(60))?;
        let takeover = t.elapsed().as_secs_f64();
        let name = self.fleet.lock().unwrap().replicas[a].name;
        self.restart_standby(a)?;
        Ok(json!({"replica": name, "exit": status.map(describe), "takeover_s": takeover}))
    }

    fn pause_active(&mut self) -> Result<Value> {
        let (a, t) = self.signal_active(libc::SIGSTOP)?;
        self.wait_role(1 - a, "active", 2 * lease() + Duration::from_secs(60))?;
        let takeover = t.elapsed().as_secs_f64();
        // Past its lease, certainly: the paused process must find out that it lost the job.
        let past = lease() + Duration::from_secs(2);
        self.idle(past.saturating_sub(t.elapsed()))?;
        let name = {
            let mut f = self.fleet.lock().unwrap();
            f.replicas[a].signal(libc::SIGCONT)?;
            f.replicas[a].paused = false;
            f.replicas[a].name
        };
        let stopped = t.elapsed().as_secs_f64();
        let status = self.wait_exit(a, 2 * lease() + Duration::from_secs(30))?;
        let log = self.fleet.lock().unwrap().replicas[a].log();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(s) if s.code() == Some(FENCED) && text.contains("fenced: ") => {}
            Some(s) => self.failures.push(format!(
                "{name} woke from SIGSTOP and exited with {} (expected code {FENCED} and a `fenced: ` message); log {}",
                describe(s),
                log.display()
            )),
            None => {
                self.failures.push(format!(
                    "{name} woke from SIGSTOP and did not exit within {} s (expected code {FENCED}); log {}",
                    (2 * lease() + Duration::from_secs(30)).as_secs(),
                    log.display()
                ));
                self.fleet.lock().unwrap().replicas[a].kill();
            }
        }
        self.restart_standby(a)?;
        Ok(
            json!({"replica": name, "stopped_s": stopped, "takeover_s": takeover,
                  "exit": status.map(describe)}),
        )
    }

    /// At the end: SIGTERM of the active replica hands the job over (it releases its lease), then
    /// the other one stops too. The handover is recorded as an event.
    pub fn handover(&mut self) -> Result<()> {
        let at = self.now();
        let (a, t) = self.signal_active(libc::SIGTERM)?;
        let status = self.wait_exit(a, Duration::from_secs(60))?;
        let took = self.wait_role(1 - a, "active", 2 * lease() + Duration::from_secs(30));
        let takeover = t.elapsed().as_secs_f64();
        let name = self.fleet.lock().unwrap().replicas[a].name;
        if let Err(e) = took {
            self.failures.push(format!("after SIGTERM of {name}: {e}"));
        }
        if status.and_then(|s| s.code()) != Some(130) {
            self.failures.push(format!(
                "{name} did not exit with code 130 on SIGTERM: {:?}",
                status.map(describe)
            ));
        }
        self.events.push(
            json!({"kind": "sigterm_active", "at_s": at, "replica": name,
                                "exit": status.map(describe), "takeover_s": takeover}),
        );
        let b = 1 - a;
        let mut f = self.fleet.lock().unwrap();
        f.expected[b] = true;
        f.replicas[b].sample_rss();
        f.replicas[b].signal(libc::SIGTERM)?;
        drop(f);
        if self.wait_exit(b, Duration::from_secs(60))?.is_none() {
            self.failures
                .push("the last replica did not exit within 60 s of SIGTERM".into());
        }
        Ok(())
    }

    /// After a server restart (begun at `t`): how long the server was down, and until the active
    /// replica had caught up with the head the server had once back.
    fn recovered(&mut self, t: Instant) -> Result<Value> {
        let down = t.elapsed().as_secs_f64();
        let at = head(self.servers.mysql_port())?;
        self.wait_reached(&at, Duration::from_secs(300))?;
        Ok(json!({"down_s": down, "recovered_s": t.elapsed().as_secs_f64()}))
    }

    /// Waits until the active replica has acknowledged `target` and says it is caught up.
    pub fn wait_reached(&mut self, target: &(String, u64), limit: Duration) -> Result<f64> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let active = self.active_metrics();
            if let Some(text) = active {
                let acked = xtask::metrics::acked(&text);
                let reached =
                    acked.is_some_and(|(f, p)| f > target.0 || (f == target.0 && p >= target.1));
                if reached && xtask::metrics::caught_up(&text) {
                    return Ok(start.elapsed().as_secs_f64());
                }
            }
            self.poll()?;
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the active replica did not reach the binlog head {}:{} within {} s",
            target.0,
            target.1,
            limit.as_secs()
        )
    }

    /// The metrics of the replica whose role is active.
    fn active_metrics(&self) -> Option<String> {
        let f = self.fleet.lock().unwrap();
        f.replicas.iter().find_map(|r| {
            let text = r.metrics()?;
            (super::replica::role(&text).as_deref() == Some("active")).then_some(text)
        })
    }
}
