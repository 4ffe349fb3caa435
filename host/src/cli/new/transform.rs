//! `etlhost new transform --lang LANG NAME`.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::flags::Lang;

pub fn run(lang: Lang, name: &str, dir: Option<&Path>) -> ExitCode {
    let _ = (lang, name, dir);
    eprintln!("error: not yet");
    ExitCode::from(super::super::EXIT_CONFIG)
}
