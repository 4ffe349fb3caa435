//! The `etlhost` commands, one module each; [`flags`] holds their arguments. Each command returns
//! its exit code (the table in docs/running.md).

pub mod convert;
pub mod flags;
pub mod init;
pub mod new;
pub mod plan;
pub mod plugins;
pub mod run;
pub mod status;
pub mod validate;
pub mod verify;

use std::path::Path;
use std::process::ExitCode;

use crate::job::Job;
use crate::spec::Spec;

pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_RUN: u8 = 3;
pub const EXIT_FAILED_ROWS: u8 = 4;
pub const EXIT_INTERRUPTED: u8 = 130;
pub const EXIT_INTERNAL: u8 = 70;
/// A streaming job was taken over by another process (its lease and epoch in the target): this
/// one stopped writing. An orchestrator restarts it, and it waits as the standby.
pub const EXIT_FENCED: u8 = 75;
/// `etlhost verify`: a flow's graph differs from its source.
pub const EXIT_DIFFERENT: u8 = 5;
/// `etlhost verify`: nothing differs, but a flow could not be verified.
pub const EXIT_NOT_VERIFIABLE: u8 = 6;

/// Loads a spec (a SeaTunnel `.conf` too) and its plugins; a failure is reported and becomes the
/// config-error exit code.
fn load_job(spec: &Path) -> Result<Job, ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let conf: crate::spec::Reader = crate::seatunnel::spec_tree;
    Spec::load_with(spec, &env, Some(conf))
        .and_then(Job::prepare)
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        })
}
