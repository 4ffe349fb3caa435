//! `etlhost new sink NAME`.

use std::path::Path;
use std::process::ExitCode;

pub fn run(name: &str, dir: Option<&Path>) -> ExitCode {
    let _ = (name, dir);
    eprintln!("error: not yet");
    ExitCode::from(super::super::EXIT_CONFIG)
}
