//! `cargo xtask soak [--minutes N] [--seed S]`: a streaming job as a service under load and chaos.
//!
//! A MariaDB and an ArcadeDB of the soak's own; a schema (`team`, `member` with a cascading foreign
//! key, the insert-only `event`) and its spec from `etlhost init --mode stream` (the `event` flow
//! edited to `CREATE` from the binlog's head); two replicas of it (`replica-a`, `replica-b`, debug
//! build); about 1,000 changes a second for N minutes (default 30) while, at seeded random moments,
//! the active replica is SIGKILLed or paused past its lease, MariaDB or the Bolt server restarted
//! (each kind at least once, however short the run). Then the load stops and the graph is checked:
//! `etlhost verify` clean and every event written exactly once. Figures (peak RSS per replica, lag,
//! commit-to-graph latency, takeovers) are printed and written to `target/bench/soak.json`; the
//! exit is non-zero, with the reasons, when a check fails.

mod chaos;
mod load;
mod replica;
mod report;
mod rng;
mod setup;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xtask::{build, root, services};

use chaos::{Chaos, Fleet, Kind, SharedFleet};
use replica::Replica;
use rng::Rng;

pub struct Opts {
    pub minutes: f64,
    pub seed: u64,
}

pub fn usage() -> &'static str {
    "soak [--minutes N] [--seed S]"
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut opts = Opts {
        minutes: 30.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => opts.minutes = value()?.parse().context("--minutes: not a number")?,
            "--seed" => opts.seed = value()?.parse().context("--seed: not a number")?,
            _ => bail!("unknown argument {a}; usage: cargo xtask {}", usage()),
        }
    }
    if opts.minutes <= 0.0 {
        bail!("--minutes must be more than 0");
    }
    Ok(opts)
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    services::ensure()?;
    build(false)?;
    let dir = std::env::temp_dir().join(format!("etlhost-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "soak: seed {}, {} minutes, logs and data in {}",
        opts.seed,
        opts.minutes,
        dir.display()
    );
    let etlhost = root().join("target/debug/etlhost");
    let servers = setup::Servers::start(&dir)?;
    setup::create_schema(servers.mysql_port())?;
    let spec = setup::write_spec(&dir, &etlhost, &servers)?;
    let fleet: SharedFleet = Arc::new(Mutex::new(Fleet {
        replicas: [
            Replica::new("replica-a", &etlhost, &spec, &dir)?,
            Replica::new("replica-b", &etlhost, &spec, &dir)?,
        ],
        expected: [false; 2],
        lag: Vec::new(),
    }));
    let mut chaos = Chaos {
        fleet,
        servers,
        t0: Instant::now(),
        events: Vec::new(),
        failures: Vec::new(),
        windows: Vec::new(),
    };
    let result = soak(&opts, &mut chaos, &dir, &etlhost, &spec);
    for r in chaos.fleet.lock().unwrap().replicas.iter_mut() {
        r.kill();
    }
    drop(chaos);
    if result.is_ok() {
        // The servers' data is hundreds of MiB; the logs stay.
        let _ = std::fs::remove_dir_all(dir.join("mariadb/data"));
        let _ = std::fs::remove_dir_all(dir.join("arcadedb/databases"));
    }
    result
}

/// Starts the pair, runs the load and the chaos, then the checks and the report.
fn soak(opts: &Opts, chaos: &mut Chaos, dir: &Path, etlhost: &Path, spec: &Path) -> Result<()> {
    let port = chaos.servers.mysql_port();
    chaos.fleet.lock().unwrap().replicas[0].start()?;
    chaos.wait_role(0, "active", Duration::from_secs(300))?;
    chaos.wait_reached(&setup::head(port)?, Duration::from_secs(300))?;
    chaos.fleet.lock().unwrap().replicas[1].start()?;
    chaos.wait_role(1, "standby", Duration::from_secs(120))?;
    eprintln!(
        "soak: replica-a active, replica-b standby; load and chaos for {} minutes",
        opts.minutes
    );
    let sampling = sampler(chaos.fleet.clone());
    let mut rng = Rng::new(opts.seed);
    let big_every = Duration::from_secs_f64((opts.minutes * 60.0 / 4.0).clamp(20.0, 60.0));
    chaos.t0 = Instant::now();
    let load = load::Load::start(port, dir, &mut rng, big_every);
    let run = run_chaos(opts, chaos, &mut rng, &load);
    let made = load.stop();
    let load_end = chaos::unix_ms();
    run?;
    eprintln!(
        "soak: load stopped after {:.0} s, {} changes; waiting for the active replica to catch up",
        made.secs, made.changes
    );
    let caught_up = chaos.wait_reached(&setup::head(port)?, Duration::from_secs(600))?;
    sampling.stop();
    report::finish(report::Finish {
        opts,
        chaos,
        dir,
        etlhost,
        spec,
        made: &made,
        load_end,
        caught_up_s: caught_up,
    })
}

/// Events at random gaps until the minutes are over and each kind has happened at least once.
fn run_chaos(opts: &Opts, chaos: &mut Chaos, rng: &mut Rng, load: &load::Load) -> Result<()> {
    let end = Instant::now() + Duration::from_secs_f64(opts.minutes * 60.0);
    // About one event per minute and four more; each takes 5-25 s itself.
    let secs = opts.minutes * 60.0;
    let mean_gap = (secs / (opts.minutes + 4.0) - 12.0).clamp(5.0, 120.0);
    let mut round = Kind::ALL;
    rng.shuffle(&mut round);
    let mut done = 0usize;
    loop {
        chaos.idle(Duration::from_secs_f64(rng.between(0.5, 1.5) * mean_gap))?;
        if Instant::now() >= end && done >= Kind::ALL.len() {
            return Ok(());
        }
        if done > 0 && done.is_multiple_of(round.len()) {
            rng.shuffle(&mut round);
        }
        chaos.perform(round[done % round.len()])?;
        done += 1;
        eprintln!(
            "soak: {:.0} s, {} changes made",
            chaos.t0.elapsed().as_secs_f64(),
            load.changes()
        );
    }
}

/// Once a second: each replica's peak RSS, and the active one's lag.
struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn sampler(fleet: SharedFleet) -> Sampler {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        while !s.load(Relaxed) {
            let ports: Vec<u16> = {
                let mut f = fleet.lock().unwrap();
                f.replicas.iter_mut().for_each(Replica::sample_rss);
                f.replicas
                    .iter()
                    .filter(|r| r.running() && !r.paused)
                    .map(|r| r.port)
                    .collect()
            };
            let lag = ports.into_iter().find_map(|p| {
                let text = replica::scrape_port(p)?;
                (replica::role(&text).as_deref() == Some("active"))
                    .then(|| replica::gauge(&text, "etlhost_stream_lag_seconds"))
                    .flatten()
            });
            if let Some(lag) = lag {
                fleet.lock().unwrap().lag.push((chaos::unix_ms(), lag));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Sampler { stop, thread }
}

impl Sampler {
    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
