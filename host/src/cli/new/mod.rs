//! `etlhost new sink NAME` and `etlhost new transform --lang LANG NAME`: a project outside this
//! repository that builds and runs as written, so a third party's first hour goes on their own
//! code, not on the build.

mod sink;
mod transform;

use std::process::ExitCode;

use super::flags::NewArgs;

pub fn run(args: NewArgs) -> ExitCode {
    match args {
        NewArgs::Sink { name, dir, sdk } => sink::run(&name, dir.as_deref(), sdk.as_deref()),
        NewArgs::Transform { lang, name, dir } => transform::run(lang, &name, dir.as_deref()),
    }
}
