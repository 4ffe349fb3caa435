//! The `etlhost` binary: parses the command line and hands it to the command's module in
//! [`etlhost::cli`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use etlhost::cli::{self, flags::Cli, flags::Command};
use etlhost::report;

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (docs/decisions/0002-mimalloc-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(report::LogWriter::new)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Run(args) => cli::run::run(args),
        Command::Validate { spec, offline } => cli::validate::run(&spec, offline),
        Command::Plan { spec } => cli::plan::run(&spec),
        Command::Plugins => cli::plugins::run(),
        Command::Init(args) => cli::init::run(args),
        Command::Convert(args) => cli::convert::run(&args),
        Command::Verify(args) => cli::verify::run(&args),
        Command::New(args) => cli::new::run(args),
        Command::Status(args) => cli::status::run(&args),
    }
}
