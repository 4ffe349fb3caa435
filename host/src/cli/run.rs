//! `etlhost run SPEC`: runs (or resumes) a job, prints its statistics, and maps how it ended to an
//! exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::flags::RunArgs;
use super::{
    EXIT_CONFIG, EXIT_FAILED_ROWS, EXIT_FENCED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_RUN,
};
use crate::error::RunError;
use crate::pipeline::{Control, StopReason};
use crate::report;
use crate::run::{self, RunOptions};

pub fn run(args: RunArgs) -> ExitCode {
    let job = match super::load_job(&args.spec) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let report_mode = if args.quiet {
        report::Mode::Quiet
    } else if std::io::stderr().is_terminal() {
        report::Mode::Bars
    } else {
        report::Mode::Text(job.spec.job.progress_interval.0)
    };
    let control = Arc::new(Control::default());
    let on_signal = control.clone();
    // The first Ctrl-C (or SIGTERM) stops reading and lets every row already read be written; a
    // second one exits at once.
    let _ = ctrlc::set_handler(move || {
        if on_signal.reason() == StopReason::Interrupted {
            eprintln!("interrupted again: exiting without waiting");
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("interrupted: finishing the rows already read (Ctrl-C again to abort)");
        on_signal.stop(StopReason::Interrupted);
    });
    let env = |name: &str| std::env::var(name).ok();
    let shard = match crate::shard::Shard::resolve(args.shard, &job.spec, &env) {
        Ok(s) => s,
        Err(RunError::Config(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUN);
        }
    };
    let opts = RunOptions {
        fresh: args.fresh,
        accept_failures: args.accept_failures,
        full: args.full,
        report: report_mode,
        metrics_addr: args.metrics_addr,
        shard,
        run: args.run.or_else(|| env("ETLHOST_RUN")).unwrap_or_default(),
    };
    let (summary, code) = match run::run(&job, control.clone(), &opts) {
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
                StopReason::Fenced => EXIT_FENCED,
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
    let mut summary = summary;
    if let Some(s) = summary.as_mut().filter(|_| shard.is_sharded()) {
        s.shard = Some(shard.to_string());
    }
    if let Some(s) = &summary {
        eprintln!("{s}");
        if let Some(path) = &args.summary_json {
            let json = serde_json::to_string_pretty(s).expect("summaries serialise");
            if let Err(e) = std::fs::write(path, json + "\n") {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(EXIT_RUN);
            }
        }
    }
    code
}
