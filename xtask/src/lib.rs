//! Project tasks as a library, so the end-to-end tests share the service addresses, credentials
//! and helpers with `cargo xtask` instead of repeating them.

pub mod graph;
pub mod keystore;
pub mod mariadb;
pub mod metrics;
pub mod postgres;
pub mod services;
pub mod transforms;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the binary and the plugin libraries (cdylibs are not built by `cargo test` on its own).
pub fn build(release: bool) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--workspace", "--exclude", "xtask"])
        .current_dir(root());
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    transforms::build()
}

/// Builds what `jobs/person.yaml` needs, in release mode: the binary without the WASM engine
/// (the largest part of a build), the mysql and bolt plugins, and the postgres source (for the
/// same job read from PostgreSQL).
pub fn build_demo() -> Result<()> {
    run(Command::new(cargo())
        .args(["build", "--release", "--no-default-features"])
        .args(["-p", "etlhost", "-p", "etlhost-mysql", "-p", "etlhost-bolt"])
        .args(["-p", "etlhost-postgres"])
        .current_dir(root()))
}

/// The `mariadb` client, logged in over TCP as the test user (the password in the environment,
/// not on the command line).
pub fn mariadb() -> Command {
    use services::{MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER};
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "-h127.0.0.1",
        &format!("-P{MYSQL_PORT}"),
        &format!("-u{MYSQL_USER}"),
    ])
    .env("MYSQL_PWD", MYSQL_PASSWORD);
    cmd
}

/// Runs a command with inherited output; fails with the command line if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
