//! Self-signed keystores for the TLS-only ArcadeDB servers that the e2e tests and `bench tls`
//! start, made with the `keytool` of ArcadeDB's own Java runtime (no OpenSSL needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::services::java_tool;

/// A PKCS12 keystore `server.p12` in `dir` with one RSA key for `CN=localhost` and the subject
/// alternative names `san` (keytool syntax: `dns:localhost,ip:127.0.0.1`), valid from `start`
/// (keytool's `-startdate`, e.g. `-10d`; now when `None`) for `days`.
pub fn self_signed(
    dir: &Path,
    san: &str,
    start: Option<&str>,
    days: u32,
    password: &str,
) -> Result<PathBuf> {
    let ks = dir.join("server.p12");
    let days = days.to_string();
    let san = format!("SAN={san}");
    let mut args = vec![
        "-genkeypair",
        "-alias",
        "s",
        "-keyalg",
        "RSA",
        "-keysize",
        "2048",
        "-dname",
        "CN=localhost",
        "-ext",
        &san,
        "-storetype",
        "PKCS12",
        "-storepass",
        password,
        "-keypass",
        password,
        "-validity",
        &days,
    ];
    if let Some(s) = start {
        args.extend(["-startdate", s]);
    }
    keytool(dir, &args, &ks, None)?;
    Ok(ks)
}

/// The certificate of keystore `ks` as PEM, in `server.pem` beside it.
pub fn export_pem(dir: &Path, ks: &Path, password: &str) -> Result<PathBuf> {
    let pem = dir.join("server.pem");
    let args = ["-exportcert", "-rfc", "-alias", "s", "-storepass", password];
    keytool(dir, &args, ks, Some(&pem))?;
    Ok(pem)
}

/// Runs keytool with `args`, then `-keystore ks` (and `-file file`). It runs in `dir`, where a
/// crashed JVM writes its hs_err log; a JVM that dies of a signal (seen once, SIGSEGV in
/// libjimage, on a loaded machine) is run again, up to three times in all, since that is the tool
/// failing, not what asked for the keystore.
fn keytool(dir: &Path, args: &[&str], ks: &Path, file: Option<&Path>) -> Result<()> {
    let keytool = java_tool("keytool")?;
    for attempt in 1..=3 {
        let mut cmd = Command::new(&keytool);
        cmd.current_dir(dir).args(args).arg("-keystore").arg(ks);
        if let Some(f) = file {
            cmd.arg("-file").arg(f);
        }
        let out = cmd.output().context("cannot run keytool")?;
        if out.status.success() {
            return Ok(());
        }
        // 134: the JVM aborted after a fatal error.
        let crashed = out.status.code().is_none_or(|c| c == 134);
        if !crashed || attempt == 3 {
            bail!(
                "keytool {} failed ({}): {}",
                args[0],
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if args[0] == "-genkeypair" {
            let _ = std::fs::remove_file(ks);
        }
    }
    unreachable!("the last attempt returns")
}
