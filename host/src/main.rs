use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use etlhost::job::Job;
use etlhost::pipeline::{self, describe_split, Control, RunError, StopReason};
use etlhost::plan;
use etlhost::plugin::{self, SourceHandle};
use etlhost::report;
use etlhost::spec::Spec;

/// Declarative data movement: source and sink plugins, wired by a job spec.
#[derive(Parser)]
#[command(name = "etlhost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job spec (.yaml, .yml or .toml).
    Run {
        spec: PathBuf,
        /// Also write the final statistics to this file as JSON.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Start over: discard the job's checkpoint instead of resuming from it.
        #[arg(long)]
        fresh: bool,
        /// No progress bars or progress blocks (logs still follow RUST_LOG).
        #[arg(long)]
        quiet: bool,
    },
    /// Check a spec and its plugins' options without moving data.
    Validate { spec: PathBuf },
    /// Print the splits a job would read (range and estimated rows) without moving data.
    Plan { spec: PathBuf },
    /// List the plugins found on the plugin search path.
    Plugins,
}

/// Exit codes, documented in README.
const EXIT_CONFIG: u8 = 2;
const EXIT_RUN: u8 = 3;
const EXIT_FAILED_ROWS: u8 = 4;
const EXIT_INTERRUPTED: u8 = 130;
const EXIT_INTERNAL: u8 = 70;

/// Loads a spec and its plugins; a failure is reported and becomes the config-error exit code.
fn load_job(spec: &Path) -> Result<Job, ExitCode> {
    Spec::load(spec).and_then(Job::prepare).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(report::LogWriter::new)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { spec } => {
            let job = match load_job(&spec) {
                Ok(j) => j,
                Err(code) => return code,
            };
            println!(
                "{}: ok (job '{}': {} {} -> {} {})",
                spec.display(),
                job.spec.job.name,
                job.source.name,
                job.source.version,
                job.sink.name,
                job.sink.version
            );
            ExitCode::SUCCESS
        }
        Command::Run {
            spec,
            summary_json,
            fresh,
            quiet,
        } => {
            let job = match load_job(&spec) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let report_mode = if quiet {
                report::Mode::Quiet
            } else if std::io::stderr().is_terminal() {
                report::Mode::Bars
            } else {
                report::Mode::Text(job.spec.job.progress_interval.0)
            };
            let control = Arc::new(Control::default());
            let on_signal = control.clone();
            // The first Ctrl-C (or SIGTERM) stops reading and lets every row already read be
            // written; a second one exits at once.
            let _ = ctrlc::set_handler(move || {
                if on_signal.reason() == StopReason::Interrupted {
                    eprintln!("interrupted again: exiting without waiting");
                    std::process::exit(EXIT_INTERRUPTED as i32);
                }
                eprintln!("interrupted: finishing the rows already read (Ctrl-C again to abort)");
                on_signal.stop(StopReason::Interrupted);
            });
            let (summary, code) = match pipeline::run(&job, control.clone(), fresh, report_mode) {
                Ok(s) => (Some(s), ExitCode::SUCCESS),
                Err(RunError::Config(e)) => {
                    eprintln!("error: {e}");
                    (None, ExitCode::from(EXIT_CONFIG))
                }
                Err(RunError::Start(m)) => {
                    eprintln!("error: {m}");
                    (None, ExitCode::from(EXIT_RUN))
                }
                Err(RunError::Failed(s)) => {
                    let code = match control.reason() {
                        StopReason::Interrupted => EXIT_INTERRUPTED,
                        StopReason::TooManyFailedRows => EXIT_FAILED_ROWS,
                        _ => EXIT_RUN,
                    };
                    eprintln!(
                        "error: job {}: {}",
                        s.status,
                        s.error.as_deref().unwrap_or("unknown error")
                    );
                    (Some(*s), ExitCode::from(code))
                }
                Err(e @ RunError::Internal(_)) => {
                    eprintln!("error: {e}");
                    let RunError::Internal(s) = e else {
                        unreachable!()
                    };
                    (Some(*s), ExitCode::from(EXIT_INTERNAL))
                }
            };
            if let Some(s) = &summary {
                eprintln!("{s}");
                if let Some(path) = summary_json {
                    let json = serde_json::to_string_pretty(s).expect("summaries serialise");
                    if let Err(e) = std::fs::write(&path, json + "\n") {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        return ExitCode::from(EXIT_RUN);
                    }
                }
            }
            code
        }
        Command::Plan { spec } => {
            let job = match load_job(&spec) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let source = match SourceHandle::open(job.source.clone(), &job.spec.job.source.options)
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot start source: {e}");
                    return ExitCode::from(EXIT_RUN);
                }
            };
            match plan::plan(&job.spec, &source) {
                Ok(splits) => {
                    println!("{:>5}  {:>14}  RANGE", "SPLIT", "EST. ROWS");
                    for p in splits {
                        println!(
                            "{:>5}  {:>14}  {}",
                            p.split.id,
                            p.estimated_rows,
                            describe_split(&p.split)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Plugins => {
            println!(
                "{:<12} {:<7} {:<9} {:<4} PATH",
                "NAME", "KIND", "VERSION", "ABI"
            );
            for p in plugin::discover() {
                match p {
                    Ok(p) => println!(
                        "{:<12} {:<7} {:<9} {:<4} {}",
                        p.name,
                        p.kind.to_string(),
                        p.version,
                        etlhost_plugin_sdk::abi::ABI_VERSION,
                        p.path.display()
                    ),
                    Err(e) => println!("error: {e}"),
                }
            }
            ExitCode::SUCCESS
        }
    }
}
