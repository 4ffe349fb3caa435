//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `services`: install when absent and start MariaDB and the ArcadeDB Bolt server.
//! - `build [--release]`: build the etlhost binary and every plugin.
//! - `demo`: services, seed `test.person` with 100,000 rows, build what the job needs (not the WASM
//!   engine), run `jobs/person.yaml`, and read the node count back from the graph.
//! - `test [ARGS]`: services, build, then the whole test suite (`cargo test --workspace ARGS`).
//! - `bench [NAME] [--reps N] [--10m]`: benchmarks, medians of alternating runs and instructions
//!   per row; tables in `target/bench/*.json`.
//! - `structure [--check]`: files per folder, import cycles and functions over 100 lines, read
//!   with a Rust parser; `--check` fails on any (CI runs it).
//! - `soak [--minutes N] [--seed S]`: a streaming job's two replicas under load and chaos (kills,
//!   pauses, server restarts), then the graph checked; figures in `target/bench/soak.json`.
//! - `deploy-check`: the Kubernetes manifests in `deploy/kubernetes/` validated offline (schemas,
//!   wiring, the spec); needs `build` first.

mod bench;
mod demo;
mod deploy_check;
mod soak;
mod structure;

use std::process::Command;

use anyhow::{bail, Result};
use xtask::{build, cargo, root, run, services};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args
        .split_first()
        .map(|(t, r)| (t.as_str(), r))
        .unwrap_or(("help", &[]));
    match task {
        "services" => services::ensure(),
        "build" => build(rest.iter().any(|a| a == "--release")),
        "demo" => demo::run(),
        "bench" => bench::run(rest),
        "deploy-check" => deploy_check::run(),
        "soak" => soak::run(rest),
        "structure" => structure::run(rest),
        "test" => {
            services::ensure()?;
            build(false)?;
            run(Command::new(cargo())
                .args(["test", "--workspace"])
                .args(rest)
                .current_dir(root()))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <services | build [--release] | demo | test [cargo test args] | deploy-check | structure [--check] | {} | {}>",
                bench::usage(),
                soak::usage()
            );
            if task == "help" {
                Ok(())
            } else {
                bail!("unknown task {task}")
            }
        }
    }
}
