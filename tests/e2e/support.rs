//! What every end-to-end test needs: the real services (started by `cargo xtask services`), fresh
//! databases of its own on both sides, and the etlhost binary built by `cargo xtask build`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use neo4rs::{query, ConfigBuilder, Graph};
use xtask::services::{
    BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER,
};

mod pg;
mod proxy;
mod spec;

pub use pg::*;
pub use proxy::{Proxy, Way};
pub use spec::{SpecBuilder, PERSON_ID_INDEX, PERSON_MERGE};

fn require(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!("{what} is not listening on 127.0.0.1:{port}: run `cargo xtask services` (or `cargo xtask test`)");
    }
}

/// This repository's root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh, empty folder `name` of the test's own, under cargo's scratch folder for tests.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh, empty folder outside the workspace, so that only a project's own `[workspace]`
/// decides how it builds (cargo would take a crate inside this one for a member).
pub fn outside(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etlhost-e2e-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The etlhost binary of this build profile, next to the plugin libraries.
pub fn etlhost() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let bin = target.join("debug/etlhost");
    assert!(
        bin.exists() && target.join("debug/libetlhost_mysql.so").exists(),
        "{} or the plugins are missing: run `cargo xtask test`, which builds them first",
        bin.display()
    );
    bin
}

/// `etlhost`, run in a scratch folder, so that what a job writes beside it (the default
/// dead-letter file, `.etlhost/` checkpoints and compile cache) never lands in the source tree.
pub fn etlhost_command() -> Command {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = Command::new(etlhost());
    cmd.current_dir(work);
    cmd
}

pub fn mysql_url(db: &str) -> String {
    format!("mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{MYSQL_PORT}/{db}")
}

/// A fresh, empty MySQL database of the test's own.
pub async fn mysql(db: &str) -> mysql_async::Pool {
    require(MYSQL_PORT, "MariaDB");
    let admin = mysql_async::Pool::new(mysql_url("mysql").as_str());
    let mut c = admin
        .get_conn()
        .await
        .expect("MySQL login as the test user");
    c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
        .await
        .unwrap();
    c.query_drop(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"))
        .await
        .unwrap();
    drop(c);
    admin.disconnect().await.unwrap();
    mysql_async::Pool::new(mysql_url(db).as_str())
}

/// A fresh MySQL database `db` holding `person(id INT PRIMARY KEY, name VARCHAR(100))` with ids
/// `1..=rows` and names `<prefix><id>`.
pub async fn person_table(db: &str, rows: u64, prefix: &str) -> mysql_async::Pool {
    let pool = mysql(db).await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100))",
    )
    .await;
    exec(
        &pool,
        &format!("INSERT INTO person SELECT seq, CONCAT('{prefix}', seq) FROM seq_1_to_{rows}"),
    )
    .await;
    pool
}

pub async fn exec(pool: &mysql_async::Pool, sql: &str) {
    let mut c = pool.get_conn().await.unwrap();
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A fresh, empty graph database of the test's own, and a neo4rs client for it.
pub async fn graph(db: &str) -> Graph {
    require(BOLT_PORT, "the Bolt server");
    xtask::graph::fresh_graph(db).expect("create graph database");
    let config = ConfigBuilder::default()
        .uri(format!("127.0.0.1:{BOLT_PORT}"))
        .user(GRAPH_USER)
        .password(GRAPH_PASSWORD)
        .db(db)
        .build()
        .unwrap();
    Graph::connect(config).await.unwrap()
}

/// The value of column `n` in the single row a Cypher query returns.
pub async fn one<T: for<'a> serde::Deserialize<'a>>(g: &Graph, cypher: &str) -> T {
    let mut rows = g
        .execute(query(cypher))
        .await
        .unwrap_or_else(|e| panic!("{cypher}: {e}"));
    let row = rows
        .next()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{cypher}: no row"));
    row.get::<T>("n")
        .unwrap_or_else(|e| panic!("{cypher}: {e}"))
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Writes `text` as spec file `name` in a scratch directory and runs `etlhost <command> <file>`.
pub fn etlhost_with_spec(
    command: &str,
    name: &str,
    text: &str,
    extra: &[&str],
) -> (PathBuf, Output) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("specs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    // Every run starts fresh: a checkpoint left by an earlier failing run must not be resumed.
    let fresh: &[&str] = if command == "run" { &["--fresh"] } else { &[] };
    let out = etlhost_command()
        .arg(command)
        .arg(&path)
        .args(fresh)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let output = Output::from(out);
    (path, output)
}

/// Runs a job spec to completion and returns its `--summary-json` and the process output.
pub fn run_job_output(name: &str, text: &str) -> (serde_json::Value, Output) {
    run_job_with(name, text, &[])
}

/// [`run_job_output`] with more arguments for `etlhost run` (e.g. `--full`).
pub fn run_job_with(name: &str, text: &str, extra: &[&str]) -> (serde_json::Value, Output) {
    let summary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.summary.json"));
    let summary_arg = summary.display().to_string();
    let mut args = vec!["--summary-json", summary_arg.as_str()];
    args.extend(extra);
    let (_, out) = etlhost_with_spec("run", &format!("{name}.yaml"), text, &args);
    assert_eq!(out.code, 0, "etlhost run failed:\n{}", out.stderr);
    let json = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (json, out)
}

/// Runs a job spec to completion and returns its `--summary-json`.
pub fn run_job(name: &str, text: &str) -> serde_json::Value {
    run_job_output(name, text).0
}

/// Starts `etlhost run SPEC --summary-json SUMMARY` in the background, stderr captured.
pub fn spawn_run(spec: &Path, summary: &Path, stdout: Stdio) -> Child {
    etlhost_command()
        .args([
            "run",
            "--fresh",
            &spec.display().to_string(),
            "--summary-json",
            &summary.display().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn read_summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Polls the graph (HTTP API on `port`) until a running job has committed some `:Person` nodes;
/// returns how many. Fails the test if none appear within a minute.
pub fn wait_for_first_nodes(port: u16, db: &str) -> u64 {
    for _ in 0..2400 {
        let n = xtask::graph::graph_count_at(port, db, "MATCH (p:Person) RETURN count(p) AS n")
            .unwrap_or(0);
        if n > 0 {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the job never wrote a node to {db}");
}

/// `etlhost init OUTPUT --force` for MySQL database `db` into graph database `graph_db`.
pub fn etlhost_init(db: &str, graph_db: &str, output: &Path, extra: &[&str]) -> Output {
    let url = format!("mysql://127.0.0.1:{MYSQL_PORT}/{db}");
    let source = [
        "--source-url",
        &url,
        "--source-user",
        MYSQL_USER,
        "--source-password",
        "${ETLHOST_MYSQL_PASSWORD:-etl}",
    ];
    init_with(&source, graph_db, output, extra)
}

/// `etlhost init OUTPUT --force` with the `--source-*` arguments `source`, into graph database
/// `graph_db` of the shared Bolt server.
pub fn init_with(source: &[&str], graph_db: &str, output: &Path, extra: &[&str]) -> Output {
    let out = etlhost_command()
        .arg("init")
        .arg(output)
        .arg("--force")
        .args(source)
        .args([
            "--sink-uri",
            &format!("bolt://127.0.0.1:{BOLT_PORT}"),
            "--sink-user",
            GRAPH_USER,
            "--sink-password",
            GRAPH_PASSWORD,
            "--sink-database",
            graph_db,
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    Output::from(out)
}
