//! `etlhost validate SPEC`: the spec and every plugin's options checked, every transform component
//! loaded (compiled into the cache, so that the first run does not pay for it) with its config
//! checked, and (unless `--offline`) each sink connected and checking that it could write; no data
//! moved.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_RUN};
use crate::check::{self, CheckError};
use crate::job::Job;

pub fn run(spec: &Path, offline: bool) -> ExitCode {
    let job = match super::load_job(spec) {
        Ok(j) => j,
        Err(code) => return code,
    };
    if let Err(code) = load_transforms(&job) {
        return code;
    }
    if !offline {
        if let Err(code) = check_sinks(&job) {
            return code;
        }
    }
    let flows: Vec<String> = job
        .spec
        .flows_in_order()
        .map(|f| {
            let p = &job.plugins[f.index];
            let route = format!(
                "{} {} -> {} {}",
                p.source.name, p.source.version, p.sink.name, p.sink.version
            );
            if job.spec.multi_flow {
                format!("flow '{}': {route}", f.flow.name)
            } else {
                route
            }
        })
        .collect();
    println!(
        "{}: ok (job '{}': {})",
        spec.display(),
        job.spec.job.name,
        flows.join("; ")
    );
    ExitCode::SUCCESS
}

/// Each flow's transforms compiled (or found in the cache) and given their config, as a run would.
fn load_transforms(job: &Job) -> Result<(), ExitCode> {
    for flow in job.spec.flows_in_order() {
        match crate::transform::load(flow) {
            Ok(Some(_)) => tracing::info!(
                flow = %flow.flow.name,
                "{} transform(s) loaded; compiled components are cached in {}",
                flow.flow.transforms.len(),
                job.spec.job.cache_dir.display()
            ),
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(EXIT_CONFIG));
            }
        }
    }
    Ok(())
}

/// Each sink connects and checks its options online.
fn check_sinks(job: &Job) -> Result<(), ExitCode> {
    match check::check_sinks(job) {
        Ok(unchecked) => {
            for flow in unchecked {
                tracing::info!(flow = %flow, "the sink plugin has no online check: validated offline only");
            }
            Ok(())
        }
        Err(CheckError::Config(e)) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
        Err(CheckError::Failed(m)) => {
            eprintln!("error: {m}");
            Err(ExitCode::from(EXIT_RUN))
        }
    }
}
