//! `etlhost verify SPEC`: every flow's source compared with the graph, a table per flow, and an
//! exit code that is 0 only when every flow matches.

use std::process::ExitCode;

use super::flags::VerifyArgs;
use super::{EXIT_CONFIG, EXIT_DIFFERENT, EXIT_NOT_VERIFIABLE, EXIT_RUN};
use crate::verify::{self, VerifyError};

pub fn run(args: &VerifyArgs) -> ExitCode {
    let job = match super::load_job(&args.spec) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let opts = verify::Options {
        sample: args.sample,
        chunk_rows: args.chunk_rows.max(1),
        seed,
    };
    let reports = match verify::verify(&job, &opts) {
        Ok(r) => r,
        Err(VerifyError::Config(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(VerifyError::Failed(m)) => {
            eprintln!("error: {m}");
            return ExitCode::from(EXIT_RUN);
        }
    };
    let count = |status: &str| reports.iter().filter(|r| r.status() == status).count();
    let (matching, different) = (count("match"), count("DIFFERENT"));
    let unverifiable = count("not verifiable");
    for r in &reports {
        print!("{r}");
    }
    println!(
        "verify: {} of {} flows match, {different} different, {unverifiable} not verifiable",
        matching,
        reports.len()
    );
    if let Some(path) = &args.summary_json {
        let json = serde_json::json!({
            "job": job.spec.job.name,
            "flows": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "match": different == 0 && unverifiable == 0,
        });
        let text = serde_json::to_string_pretty(&json).expect("JSON serialises") + "\n";
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_RUN);
        }
    }
    if different > 0 {
        ExitCode::from(EXIT_DIFFERENT)
    } else if unverifiable > 0 {
        ExitCode::from(EXIT_NOT_VERIFIABLE)
    } else {
        ExitCode::SUCCESS
    }
}
