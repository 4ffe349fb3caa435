//! `cargo xtask services`: installs (when absent) and starts MariaDB, PostgreSQL 15 (see
//! [`crate::postgres`]) and an ArcadeDB Bolt server on loopback, waits until each accepts
//! connections, and creates what tests and the demo log in with.
//! Idempotent: services already answering are left alone.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::graph::http_at;
use crate::{root, run};

pub const MYSQL_PORT: u16 = 3306;
pub const MYSQL_USER: &str = "etl";
pub const MYSQL_PASSWORD: &str = "etl";
pub const PG_PORT: u16 = 5432;
pub const PG_USER: &str = "etl";
pub const PG_PASSWORD: &str = "etl";
pub const PG_DATABASE: &str = "etl";
/// A role whose password is stored as an md5 hash and checked by an `md5` pg_hba line, for the
/// md5 login test (every other role logs in with SCRAM-SHA-256).
pub const PG_MD5_USER: &str = "etl_md5";
pub const PG_MD5_PASSWORD: &str = "etl-md5";
pub const BOLT_PORT: u16 = 7687;
pub const HTTP_PORT: u16 = 2480;
pub const GRAPH_USER: &str = "root";
pub const GRAPH_PASSWORD: &str = "etlhost-pass";
/// The PyPI release whose jars and bundled Java runtime were verified here.
const ARCADEDB_PACKAGE: &str = "arcadedb-embedded==26.10.2.post1";

pub fn services_dir() -> PathBuf {
    root().join(".services")
}

pub(crate) fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Polls `ready` every 200 ms until it holds or `limit` passes.
fn wait_for(
    what: &str,
    limit: Duration,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            eprintln!(
                "xtask: {what} is ready ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    bail!(
        "{what} did not become ready within {} s; last lines of {}:\n{}",
        limit.as_secs(),
        log.display(),
        tail.join("\n")
    )
}

/// Starts a long-lived server in its own process group, so it outlives this command; its id.
fn spawn_daemon(cmd: &mut Command, log: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    Ok(child.id())
}

pub fn ensure() -> Result<()> {
    std::fs::create_dir_all(services_dir())?;
    ensure_mariadb()?;
    crate::postgres::ensure()?;
    ensure_arcadedb()?;
    Ok(())
}

fn mysql_tcp_login_works() -> bool {
    crate::mariadb()
        .args(["-e", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Asks the running server (as root, over its socket) for one variable.
fn mariadb_variable(name: &str) -> Option<String> {
    let out = Command::new("mariadb")
        .args(["-uroot", "-N", "-B", "-e", &format!("SELECT @@{name}")])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The settings streaming (binlog CDC) needs; `log_bin` cannot be switched on at run time.
/// `binlog_row_metadata=FULL` is recommended rather than needed: the binlog then names a row's
/// columns, so a schema change made while a stream is behind is followed by name instead of
/// stopping it.
fn binlog_args(datadir: &str) -> Vec<String> {
    vec![
        format!("--log-bin={}/binlog", datadir.trim_end_matches('/')),
        "--binlog-format=ROW".into(),
        "--binlog-row-image=FULL".into(),
        "--binlog-row-metadata=FULL".into(),
        "--server-id=1".into(),
    ]
}

fn ensure_mariadb() -> Result<()> {
    if listening(MYSQL_PORT) && mysql_tcp_login_works() {
        if mariadb_variable("log_bin").as_deref() == Some("0") {
            // Streaming needs the binary log, which only a restart turns on.
            eprintln!("xtask: MariaDB on 127.0.0.1:{MYSQL_PORT} runs without its binary log: restarting it with --log-bin");
            run(Command::new("mysqladmin").args(["-uroot", "shutdown"]))
                .context("stopping MariaDB to turn its binary log on failed")?;
            let log = services_dir().join("mariadb.log");
            wait_for("MariaDB to stop", Duration::from_secs(60), &log, || {
                !listening(MYSQL_PORT)
            })?;
        } else {
            eprintln!("xtask: MariaDB already running on 127.0.0.1:{MYSQL_PORT}");
            if mariadb_variable("binlog_row_metadata").is_some_and(|m| m != "FULL") {
                // Dynamic, unlike log_bin: no restart for a server started before it was set.
                run(Command::new("mariadb").args([
                    "-uroot",
                    "-e",
                    "SET GLOBAL binlog_row_metadata = FULL",
                ]))
                .context("setting binlog_row_metadata = FULL failed")?;
            }
            grant_etl_user()?;
            return Ok(());
        }
    }
    let server = Path::new("/usr/sbin/mariadbd");
    if !server.exists() {
        eprintln!("xtask: installing mariadb-server from Debian's packages");
        run(Command::new("apt-get").args(["update", "-qq"])).context(
            "apt-get update failed (MariaDB is installed with apt-get, which needs root)",
        )?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "mariadb-server"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("installing mariadb-server failed")?;
    }
    if !listening(MYSQL_PORT) {
        // Debian's package initialises /var/lib/mysql; without systemd the socket directory must
        // be made by hand.
        std::fs::create_dir_all("/run/mysqld")?;
        run(Command::new("chown").args(["mysql:mysql", "/run/mysqld"]))?;
        let log = services_dir().join("mariadb.log");
        eprintln!("xtask: starting MariaDB (log: {})", log.display());
        let _pid = spawn_daemon(
            Command::new(server)
                .args([
                    "--user=mysql",
                    "--bind-address=127.0.0.1",
                    &format!("--port={MYSQL_PORT}"),
                ])
                .args(binlog_args("/var/lib/mysql")),
            &log,
        )?;
        wait_for("MariaDB", Duration::from_secs(60), &log, || {
            Command::new("mysqladmin")
                .args(["ping", "--silent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
    }
    grant_etl_user()?;
    eprintln!("xtask: MariaDB ready on 127.0.0.1:{MYSQL_PORT} (user {MYSQL_USER}, binary log in ROW format)");
    Ok(())
}

/// The test user, idempotently. ALL PRIVILEGES on *.* includes REPLICATION SLAVE and REPLICATION
/// CLIENT (BINLOG MONITOR in MariaDB 10.5+), which streaming needs.
fn grant_etl_user() -> Result<()> {
    // root logs in over the unix socket only. A TCP login from 127.0.0.1 may be matched as
    // 'etl'@'localhost', so both accounts exist.
    let sql = format!(
        "CREATE USER IF NOT EXISTS '{u}'@'127.0.0.1' IDENTIFIED BY '{p}';
         CREATE USER IF NOT EXISTS '{u}'@'localhost' IDENTIFIED BY '{p}';
         GRANT ALL PRIVILEGES ON *.* TO '{u}'@'127.0.0.1';
         GRANT ALL PRIVILEGES ON *.* TO '{u}'@'localhost';
         CREATE DATABASE IF NOT EXISTS test;",
        u = MYSQL_USER,
        p = MYSQL_PASSWORD
    );
    run(Command::new("mariadb").args(["-uroot", "-e", &sql]))
        .context("creating the etl user failed")?;
    if !mysql_tcp_login_works() {
        bail!("MariaDB is up but '{MYSQL_USER}' cannot log in over TCP on 127.0.0.1:{MYSQL_PORT}");
    }
    Ok(())
}

fn arcadedb_ready(bolt: u16, http: u16) -> bool {
    listening(bolt)
        && http_at(http, "GET", "/api/v1/ready", None).is_ok_and(|(status, _)| status < 300)
}

/// The installed `arcadedb_embedded` package directory (jars and Java runtime inside).
fn arcadedb_package() -> Result<PathBuf> {
    let venv = services_dir().join("venv");
    let python = venv.join("bin/python");
    let locate = |python: &Path| -> Option<PathBuf> {
        let out = Command::new(python)
            .args([
                "-c",
                "import arcadedb_embedded, os; print(os.path.dirname(arcadedb_embedded.__file__))",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    if let Some(p) = python.exists().then(|| locate(&python)).flatten() {
        return Ok(p);
    }
    eprintln!(
        "xtask: installing {ARCADEDB_PACKAGE} from PyPI into {}",
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .context("python3 -m venv failed")?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        ARCADEDB_PACKAGE,
    ]))
    .context("pip install of ArcadeDB failed")?;
    locate(&python).context("arcadedb_embedded installed but cannot be imported")
}

fn ensure_arcadedb() -> Result<()> {
    if arcadedb_ready(BOLT_PORT, HTTP_PORT) {
        eprintln!("xtask: ArcadeDB already running (Bolt 127.0.0.1:{BOLT_PORT})");
        return Ok(());
    }
    if listening(BOLT_PORT) || listening(HTTP_PORT) {
        bail!("ports {BOLT_PORT}/{HTTP_PORT} are taken by something that is not a ready ArcadeDB");
    }
    start_arcadedb(&services_dir().join("arcadedb"), BOLT_PORT, HTTP_PORT)?;
    eprintln!("xtask: ArcadeDB ready: Bolt 127.0.0.1:{BOLT_PORT}, HTTP 127.0.0.1:{HTTP_PORT} (user {GRAPH_USER})");
    Ok(())
}

/// Starts an ArcadeDB server with the Bolt plugin, its data under `home`, and waits until it is
/// ready. Returns its process id. Tests use this for a private server they can stop and restart.
pub fn start_arcadedb(home: &Path, bolt: u16, http: u16) -> Result<u32> {
    let mut cmd = arcadedb_command(home, bolt, http, &[])?;
    let log = home.join("server.log");
    eprintln!(
        "xtask: starting ArcadeDB with the Bolt plugin on {bolt} (log: {})",
        log.display()
    );
    let pid = spawn_daemon(&mut cmd, &log)?;
    wait_for("ArcadeDB", Duration::from_secs(120), &log, || {
        arcadedb_ready(bolt, http)
    })?;
    Ok(pid)
}

/// The `java` command line of an ArcadeDB server with the Bolt plugin, data under `home`, and
/// `extra` system properties (`bolt.ssl`, `ssl.keyStore`, ... without the `arcadedb.` prefix).
fn arcadedb_command(
    home: &Path,
    bolt: u16,
    http: u16,
    extra: &[(&str, String)],
) -> Result<Command> {
    let java = java_tool("java")?;
    std::fs::create_dir_all(home.join("databases"))?;
    let prop = |k: &str, v: &str| format!("-Darcadedb.{k}={v}");
    let mut cmd = Command::new(&java);
    cmd.arg("-Xmx2g")
        .arg(prop("server.rootPath", &home.display().to_string()))
        .arg(prop(
            "server.databaseDirectory",
            &home.join("databases").display().to_string(),
        ))
        .arg(prop("server.rootPassword", GRAPH_PASSWORD))
        .arg(prop("server.httpIncomingHost", "127.0.0.1"))
        .arg(prop("server.httpIncomingPort", &http.to_string()))
        .arg(prop(
            "server.plugins",
            "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        ))
        .arg(prop("bolt.host", "127.0.0.1"))
        .arg(prop("bolt.port", &bolt.to_string()))
        .arg(prop("server.defaultDatabases", "test[root]"));
    for (k, v) in extra {
        cmd.arg(prop(k, v));
    }
    cmd.arg("-cp")
        .arg(format!("{}/jars/*", arcadedb_package()?.display()))
        .arg("com.arcadedb.server.ArcadeDBServer")
        .current_dir(home);
    Ok(cmd)
}

/// A program of the Java runtime that ships in the ArcadeDB package (`java`, `keytool`).
pub fn java_tool(name: &str) -> Result<PathBuf> {
    let pkg = arcadedb_package()?;
    let tool = pkg.join("jre/bin").join(name);
    if !tool.exists() {
        bail!(
            "the ArcadeDB package at {} carries no {name} in its Java runtime",
            pkg.display()
        );
    }
    Ok(tool)
}

/// A port on loopback that nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// An ArcadeDB server of a test's own, on free ports, that stops when this value is dropped or
/// when the process that started it exits, however it exits.
pub struct ExtraArcadeDb {
    pub bolt: u16,
    pub http: u16,
    pub home: PathBuf,
    extra: Vec<(&'static str, String)>,
    watchdog: std::process::Child,
}

impl ExtraArcadeDb {
    /// Starts the server with `extra` system properties (see [`arcadedb_command`]) and waits until
    /// its Bolt port and HTTP API answer.
    pub fn start(home: &Path, extra: &[(&'static str, String)]) -> Result<ExtraArcadeDb> {
        let (bolt, http) = (free_port()?, free_port()?);
        let watchdog = Self::spawn(home, bolt, http, extra)?;
        Ok(ExtraArcadeDb {
            bolt,
            http,
            home: home.to_path_buf(),
            extra: extra.to_vec(),
            watchdog,
        })
    }

    /// Kills the server (as a crash) and starts it again on the same ports and data, ready when
    /// this returns.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.watchdog = Self::spawn(&self.home, self.bolt, self.http, &self.extra)?;
        Ok(())
    }

    fn spawn(
        home: &Path,
        bolt: u16,
        http: u16,
        extra: &[(&str, String)],
    ) -> Result<std::process::Child> {
        let java = arcadedb_command(home, bolt, http, extra)?;
        let log = home.join("server.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        // A shell holds the server and kills it when its stdin, a pipe only this process writes
        // to, reaches end of file: when the value is dropped or this process dies. SIGKILL, as a
        // crash: a graceful shutdown fails the queries in flight with permanent errors first.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#""$@" & j=$!; read -r _; kill -9 $j; wait $j"#)
            .arg("sh")
            .arg(java.get_program())
            .args(java.get_args())
            .current_dir(home)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut watchdog = cmd.spawn().context("cannot start ArcadeDB")?;
        if let Err(e) = wait_for("ArcadeDB", Duration::from_secs(120), &log, || {
            arcadedb_ready(bolt, http)
        }) {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
            return Err(e);
        }
        Ok(watchdog)
    }

    fn stop(&mut self) {
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

impl Drop for ExtraArcadeDb {
    fn drop(&mut self) {
        self.stop();
    }
}
