//! PostgreSQL 15 for tests and the demo: the shared server of `cargo xtask services` (its own
//! cluster under `.services/postgres`, on 127.0.0.1:5432) and [`ExtraPostgres`], a server of a
//! test's own on a free port that it can kill and restart.
//!
//! PostgreSQL refuses to run as root, so every cluster is owned by the `postgres` user the Debian
//! package creates, and the superuser reaches it over a unix socket inside the cluster's folder
//! (`trust`, but the folder and socket are readable by root and postgres only). TCP logins on
//! loopback need a password: SCRAM-SHA-256 for everyone but the md5 test role.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run;
use crate::services::{
    free_port, services_dir, PG_DATABASE, PG_MD5_PASSWORD, PG_MD5_USER, PG_PASSWORD, PG_PORT,
    PG_USER,
};

/// Where Debian's `postgresql-15` puts its programs (not on PATH, unlike `psql`).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const POSTGIS_CONTROL: &str = "/usr/share/postgresql/15/extension/postgis.control";
/// The settings file every cluster includes from `postgresql.conf`; rewritten on each start so a
/// changed setting reaches an existing cluster (after a restart, for those that need one).
const CONF_FILE: &str = "etlhost.conf";

/// Installs PostgreSQL 15 and PostGIS with apt-get when either is missing.
pub fn install() -> Result<()> {
    if Path::new(PG_BIN).join("postgres").exists() && Path::new(POSTGIS_CONTROL).exists() {
        return Ok(());
    }
    eprintln!("xtask: installing postgresql-15 and postgresql-15-postgis-3 from Debian's packages");
    run(Command::new("apt-get").args(["update", "-qq"])).context(
        "apt-get update failed (PostgreSQL is installed with apt-get, which needs root)",
    )?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "postgresql-15",
            "postgresql-15-postgis-3",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing postgresql-15 and postgresql-15-postgis-3 failed")?;
    if !Path::new(POSTGIS_CONTROL).exists() {
        bail!("postgresql-15-postgis-3 is installed but {POSTGIS_CONTROL} is missing");
    }
    Ok(())
}

/// The `postgres` user's uid and gid, which own every cluster.
fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!("there is no `postgres` user (the postgresql-15 package creates it)");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// Makes `path` and everything under it the `postgres` user's.
fn chown_postgres(path: &Path) -> Result<()> {
    run(Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(path))
}

/// A command run as the `postgres` user. `setpriv` execs in place (runuser and su fork), so the
/// process started is the program itself and a kill reaches it.
fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--reset-env",
        program,
    ]);
    cmd
}

/// The lines of [`CONF_FILE`]: loopback only, the socket in the cluster's folder, what logical
/// replication needs, and `extra` (`name = value` lines).
fn conf_lines(dir: &Path, port: u16, extra: &[String]) -> String {
    let mut lines = vec![
        "listen_addresses = '127.0.0.1'".to_string(),
        format!("port = {port}"),
        format!("unix_socket_directories = '{}'", dir.display()),
        "unix_socket_permissions = 0700".into(),
        // Streaming: a slot per stream job (tests run several at once) and a sender for each.
        "wal_level = logical".into(),
        "max_replication_slots = 64".into(),
        "max_wal_senders = 64".into(),
        "max_connections = 300".into(),
        "password_encryption = 'scram-sha-256'".into(),
        // Only an operating-system crash loses what fsync would have kept; killing the server,
        // which the tests do, does not.
        "fsync = off".into(),
        "logging_collector = off".into(),
    ];
    lines.extend(extra.iter().cloned());
    lines.join("\n") + "\n"
}

/// The default client authentication: the superuser over the cluster's own socket, the md5
/// test role by md5 and everyone else by SCRAM over loopback (replication connections too).
pub fn default_hba() -> String {
    format!(
        "local all all trust\n\
         host all {PG_MD5_USER} 127.0.0.1/32 md5\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n"
    )
}

/// Fails, naming the folder and the fix, when the `postgres` user cannot reach `dir`: a checkout
/// under a private home folder (`/root` is 0700) would otherwise fail later in initdb's words.
fn reachable_by_postgres(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (uid, _) = postgres_ids()?;
    for folder in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(folder) else {
            continue;
        };
        if meta.uid() != uid && meta.mode() & 0o001 == 0 {
            bail!(
                "PostgreSQL runs as the `postgres` user, which cannot enter {} (mode {:o}), on \
                 the way to its cluster in {}: `chmod o+x {}`, or check the project out elsewhere",
                folder.display(),
                meta.mode() & 0o7777,
                dir.display(),
                folder.display()
            );
        }
    }
    Ok(())
}

/// Where a cluster asked for in `dir` lives: `dir` itself when the `postgres` user can reach it,
/// else a folder of its own under /var/lib/postgresql named after `dir`, so that a checkout under
/// a private home folder (`/root` is 0700) still gets its servers without opening that folder up.
fn cluster_home(dir: &Path) -> Result<PathBuf> {
    if reachable_by_postgres(dir).is_ok() {
        return Ok(dir.to_path_buf());
    }
    let name: String = dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let home = Path::new("/var/lib/postgresql/etlhost").join(name.trim_matches('_'));
    std::fs::create_dir_all(home.parent().expect("a parent"))?;
    reachable_by_postgres(&home)?;
    Ok(home)
}

/// Creates a cluster in `dir/data` (owned by postgres) with `hba` as its pg_hba.conf.
fn initdb(dir: &Path, hba: &str) -> Result<()> {
    reachable_by_postgres(dir)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    chown_postgres(dir)?;
    let out = as_postgres(&format!("{PG_BIN}/initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ])
        .output()
        .context("cannot run initdb")?;
    if !out.status.success() {
        bail!(
            "initdb of {} failed: {}{}",
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str(&format!("\ninclude_if_exists = '{CONF_FILE}'\n"));
    std::fs::write(&conf, text)?;
    std::fs::write(data.join("pg_hba.conf"), hba)?;
    chown_postgres(dir)
}

/// Writes the cluster's settings file (owned by postgres).
fn write_conf(dir: &Path, port: u16, extra: &[String]) -> Result<()> {
    let path = dir.join("data").join(CONF_FILE);
    std::fs::write(&path, conf_lines(dir, port, extra))?;
    chown_postgres(&path)
}

/// `psql` as the superuser over the cluster's socket in `dir`, to database `db`; stdout.
pub fn superuser_sql(dir: &Path, port: u16, db: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .arg("-h")
        .arg(dir)
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql])
        .output()
        .context("cannot run psql")?;
    if !out.status.success() {
        bail!(
            "psql as the superuser in {} failed: {}\nSQL: {sql}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `psql` over TCP as the test user (the password in the environment, not on the command line).
pub fn psql(port: u16) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", PG_USER])
        .args([
            "-d",
            PG_DATABASE,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .env("PGPASSWORD", PG_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "5");
    cmd
}

/// Whether `etl` logs in over TCP on `port` and the server runs with `wal_level = logical`;
/// `None` when it cannot log in at all.
fn tcp_login_wal_logical(port: u16) -> Option<bool> {
    let out = psql(port)
        .args(["-c", "SHOW wal_level"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim() == "logical")
}

/// The roles, database and extension tests log in with, idempotently: `etl` (LOGIN CREATEDB
/// REPLICATION, owner of database `etl`, where PostGIS is created) and the md5 role, whose
/// password is stored as an md5 hash so that the md5 pg_hba line can check it.
fn create_roles(dir: &Path, port: u16) -> Result<()> {
    let roles = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_USER}') THEN
             CREATE ROLE {PG_USER} LOGIN; END IF;
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_MD5_USER}') THEN
             CREATE ROLE {PG_MD5_USER} LOGIN; END IF;
         END $$;
         SET password_encryption = 'scram-sha-256';
         ALTER ROLE {PG_USER} LOGIN CREATEDB REPLICATION PASSWORD '{PG_PASSWORD}';
         SET password_encryption = 'md5';
         ALTER ROLE {PG_MD5_USER} LOGIN PASSWORD '{PG_MD5_PASSWORD}';"
    );
    superuser_sql(dir, port, "postgres", &roles).context("creating the etl roles failed")?;
    let exists = superuser_sql(
        dir,
        port,
        "postgres",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"),
    )?;
    if exists.is_empty() {
        superuser_sql(
            dir,
            port,
            "postgres",
            &format!("CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}"),
        )?;
    }
    superuser_sql(
        dir,
        port,
        PG_DATABASE,
        &format!(
            "CREATE EXTENSION IF NOT EXISTS postgis;
             GRANT ALL ON DATABASE {PG_DATABASE} TO {PG_MD5_USER};"
        ),
    )
    .context("creating the postgis extension in database etl failed")?;
    Ok(())
}

/// Polls until `etl` can log in over TCP on `port`; the log's tail in the error otherwise.
fn wait_ready(port: u16, log: &Path, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let ok = Command::new(format!("{PG_BIN}/pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    bail!(
        "PostgreSQL on 127.0.0.1:{port} did not accept connections within {} s; last lines of {}:\n{}",
        limit.as_secs(),
        log.display(),
        tail.join("\n")
    )
}

/// `pg_ctl` as postgres on the shared cluster, in a process group of its own so that the server
/// outlives this command.
fn pg_ctl(dir: &Path, log: &Path, action: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let status = as_postgres(&format!("{PG_BIN}/pg_ctl"))
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(log)
        .args(["-w", "-t", "120", action])
        .stdout(Stdio::null())
        .process_group(0)
        .status()
        .context("cannot run pg_ctl")?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "pg_ctl {action} of {} failed ({status}); last lines of {}:\n{}",
            dir.display(),
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// The shared server of `cargo xtask services`. A server already on the port that lets `etl` in
/// with `wal_level = logical` is kept; ours is restarted when it runs without logical WAL; a
/// foreign one without it is an error, since streaming cannot work against it.
pub fn ensure() -> Result<()> {
    install()?;
    let dir = cluster_home(&services_dir().join("postgres"))?;
    let log = dir.with_extension("log");
    let ours = dir.join("data/PG_VERSION").exists();
    match tcp_login_wal_logical(PG_PORT) {
        Some(true) => {
            eprintln!("xtask: PostgreSQL already running on 127.0.0.1:{PG_PORT}");
        }
        Some(false) if ours => {
            eprintln!("xtask: PostgreSQL on 127.0.0.1:{PG_PORT} runs without wal_level = logical: restarting it");
            write_conf(&dir, PG_PORT, &[])?;
            pg_ctl(&dir, &log, "restart")?;
        }
        Some(false) => bail!(
            "a PostgreSQL on 127.0.0.1:{PG_PORT} that is not .services/postgres runs without \
             wal_level = logical; stop it (streaming needs logical WAL, which only a restart sets)"
        ),
        None if crate::services::listening(PG_PORT) && !ours => bail!(
            "port {PG_PORT} is taken by something that does not let '{PG_USER}' log in; stop it \
             so that cargo xtask services can start PostgreSQL there"
        ),
        None => {
            if !ours {
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("xtask: creating a PostgreSQL cluster in {}", dir.display());
                initdb(&dir, &default_hba())?;
            }
            write_conf(&dir, PG_PORT, &[])?;
            // Appended to, as MariaDB's; pg_ctl writes it as postgres.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            chown_postgres(&log)?;
            eprintln!("xtask: starting PostgreSQL (log: {})", log.display());
            if !crate::services::listening(PG_PORT) {
                pg_ctl(&dir, &log, "start")?;
            }
            wait_ready(PG_PORT, &log, Duration::from_secs(60))?;
        }
    }
    // Ours now if it was just created.
    if dir.join("data/PG_VERSION").exists() {
        create_roles(&dir, PG_PORT)?;
    }
    if tcp_login_wal_logical(PG_PORT) != Some(true) {
        bail!("PostgreSQL is up but '{PG_USER}' cannot log in over TCP on 127.0.0.1:{PG_PORT} with wal_level = logical");
    }
    eprintln!("xtask: PostgreSQL ready on 127.0.0.1:{PG_PORT} (user {PG_USER}, database {PG_DATABASE}, wal_level = logical, PostGIS)");
    Ok(())
}

/// What an [`ExtraPostgres`] starts with besides the defaults.
#[derive(Default, Clone)]
pub struct ExtraPgOptions {
    /// `name = value` lines; `{dir}` stands for the server's folder (e.g. `ssl_cert_file =
    /// '{dir}/server.crt'`).
    pub conf: Vec<String>,
    /// The whole pg_hba.conf in place of [`default_hba`]; keep `local all all trust` in it, which
    /// the superuser needs.
    pub hba: Option<String>,
    /// Files written into the server's folder before it starts, owned by postgres with mode 0600
    /// (PostgreSQL refuses a private key others can read).
    pub files: Vec<(String, Vec<u8>)>,
}

/// A PostgreSQL server of a test's own, on a free port with its cluster in a folder of the
/// test's, with the same roles, database and PostGIS as the shared one; killed when the value is
/// dropped or the process that started it dies, however it dies.
pub struct ExtraPostgres {
    pub port: u16,
    pub dir: PathBuf,
    watchdog: Child,
}

impl ExtraPostgres {
    /// Creates the cluster in `dir` (emptied first), starts it and creates the roles. Ready when
    /// this returns.
    pub fn start(dir: &Path, opts: &ExtraPgOptions) -> Result<ExtraPostgres> {
        install()?;
        postgres_ids()?;
        let dir = &cluster_home(dir)?;
        let _ = std::fs::remove_dir_all(dir);
        let hba = opts.hba.clone().unwrap_or_else(default_hba);
        initdb(dir, &hba)?;
        for (name, bytes) in &opts.files {
            let path = dir.join(name);
            std::fs::write(&path, bytes)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        chown_postgres(dir)?;
        let port = free_port()?;
        let conf: Vec<String> = opts
            .conf
            .iter()
            .map(|l| l.replace("{dir}", &dir.display().to_string()))
            .collect();
        write_conf(dir, port, &conf)?;
        let watchdog = Self::spawn(dir, port)?;
        let db = ExtraPostgres {
            port,
            dir: dir.to_path_buf(),
            watchdog,
        };
        create_roles(dir, port)?;
        Ok(db)
    }

    /// Runs SQL as the superuser over the server's socket, in database `db`; its output.
    pub fn superuser_sql(&self, db: &str, sql: &str) -> Result<String> {
        superuser_sql(&self.dir, self.port, db, sql)
    }

    /// Kills the server (as a crash: SIGKILL to the postmaster and its children) and starts it again on the
    /// same port and data, ready when this returns.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.watchdog = Self::spawn(&self.dir, self.port)?;
        Ok(())
    }

    fn spawn(dir: &Path, port: u16) -> Result<Child> {
        let log = dir.join("server.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let server = as_postgres(&format!("{PG_BIN}/postgres"));
        let mut server_args: Vec<String> = server
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        server_args.extend(["-D".to_string(), dir.join("data").display().to_string()]);
        // A shell holds the server and kills it when its stdin, a pipe only this process writes
        // to, reaches end of file. The postmaster's children (which PostgreSQL puts in sessions
        // of their own) are killed with it, and the shell waits until each is gone or a zombie:
        // one left running would keep the shared memory a restart needs.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                r#""$@" & j=$!; read -r _; c=$(ps -o pid= --ppid $j); kill -9 $j $c; wait $j;
                   for p in $c; do
                     while [ -e /proc/$p ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/$p/stat; do
                       sleep 0.05; done; done"#,
            )
            .arg("sh")
            .arg(server.get_program())
            .args(&server_args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut watchdog = cmd.spawn().context("cannot start postgres")?;
        if let Err(e) = wait_ready(port, &log, Duration::from_secs(60)) {
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

impl Drop for ExtraPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
