//! `etlhost plan SPEC`: each flow's splits (range, estimated rows), no data moved.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_RUN};
use crate::error::RunError;
use crate::pipeline::describe_split;
use crate::plugin::SourceHandle;
use crate::{cursor, plan};

pub fn run(spec: &Path) -> ExitCode {
    let job = match super::load_job(spec) {
        Ok(j) => j,
        Err(code) => return code,
    };
    for flow in job.spec.flows_in_order() {
        if job.spec.multi_flow {
            println!("flow {}:", flow.flow.name);
        }
        let plugin = job.plugins[flow.index].source.clone();
        let source = match SourceHandle::open(plugin, &flow.flow.source.options) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot start source: {e}");
                return ExitCode::from(EXIT_RUN);
            }
        };
        let planned = cursor::range(flow, &source, false).and_then(|cursor| {
            plan::plan(flow, &source, cursor.as_ref()).map_err(RunError::Config)
        });
        match planned {
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
            }
            Err(e @ RunError::Config(_)) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_RUN);
            }
        }
    }
    ExitCode::SUCCESS
}
