//! `etlhost plugins`: the plugins on the search path, with kind, version and ABI version.

use std::process::ExitCode;

use crate::plugin;

pub fn run() -> ExitCode {
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
