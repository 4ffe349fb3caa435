//! A MariaDB server of a test's own (other settings than the shared one, or one a test restarts),
//! on a free port with its data in a folder of the test's, stopped when the value is dropped or
//! the process that started it dies, like [`crate::services::ExtraArcadeDb`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::services::free_port;

pub struct ExtraMariaDb {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    watchdog: Child,
}

impl ExtraMariaDb {
    /// Initialises a data folder in `dir` (emptied first) and starts `mariadbd` with `args` (e.g.
    /// `--log-bin=...`); the TCP user `etl`/`etl` has every privilege. Ready when this returns.
    pub fn start(dir: &Path, args: &[String]) -> Result<ExtraMariaDb> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("data"))?;
        let out = Command::new("mariadb-install-db")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--user=root", "--auth-root-authentication-method=normal"])
            .arg("--skip-test-db")
            .output()
            .context("cannot run mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port()?;
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string()))
            .collect();
        let watchdog = Self::spawn(dir, port, &args)?;
        let db = ExtraMariaDb {
            port,
            dir: dir.to_path_buf(),
            args,
            watchdog,
        };
        db.root_sql(
            "CREATE USER 'etl'@'127.0.0.1' IDENTIFIED BY 'etl'; \
             CREATE USER 'etl'@'localhost' IDENTIFIED BY 'etl'; \
             GRANT ALL PRIVILEGES ON *.* TO 'etl'@'127.0.0.1'; \
             GRANT ALL PRIVILEGES ON *.* TO 'etl'@'localhost';",
        )?;
        Ok(db)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Runs SQL as root over the server's socket.
    pub fn root_sql(&self, sql: &str) -> Result<String> {
        let out = Command::new("mariadb")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-N", "-B", "-e", sql])
            .output()?;
        if !out.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills the server (as a crash) and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.watchdog = Self::spawn(&self.dir, self.port, &self.args)?;
        Ok(())
    }

    fn spawn(dir: &Path, port: u16, args: &[String]) -> Result<Child> {
        let log = dir.join("server.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut server = Command::new("/usr/sbin/mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .args(["--user=root", "--bind-address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg("--innodb-buffer-pool-size=32M")
            .args(args);
        // A shell holds the server and kills it when its stdin, a pipe only this process writes
        // to, reaches end of file.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#""$@" & j=$!; read -r _; kill -9 $j; wait $j"#)
            .arg("sh")
            .arg(server.get_program())
            .args(server.get_args())
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut watchdog = cmd.spawn().context("cannot start mariadbd")?;
        let start = Instant::now();
        let sock = dir.join("mysqld.sock");
        while start.elapsed() < Duration::from_secs(60) {
            let ok = Command::new("mysqladmin")
                .arg(format!("--socket={}", sock.display()))
                .args(["-uroot", "ping", "--silent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(watchdog);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(watchdog.stdin.take());
        let _ = watchdog.wait();
        bail!(
            "mariadbd did not start within 60 s (log: {})",
            log.display()
        )
    }

    fn stop(&mut self) {
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

impl Drop for ExtraMariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
