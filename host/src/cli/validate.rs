//! `etlhost validate SPEC`: the spec and every plugin's options checked, no data moved.

use std::path::Path;
use std::process::ExitCode;

pub fn run(spec: &Path) -> ExitCode {
    let job = match super::load_job(spec) {
        Ok(j) => j,
        Err(code) => return code,
    };
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
