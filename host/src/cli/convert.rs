//! `etlhost convert JOB.conf -o SPEC`: a SeaTunnel job file written as an etlhost spec (the
//! mapping is [`crate::seatunnel`]).

use std::process::ExitCode;

use super::flags::ConvertArgs;
use super::EXIT_CONFIG;

pub fn run(a: &ConvertArgs) -> ExitCode {
    match crate::seatunnel::convert(&a.input, &a.output, a.force) {
        Ok(notes) => {
            println!(
                "wrote {} ({notes} comments on keys whose meaning changed)",
                a.output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
