//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `services`: install when absent and start MariaDB and the ArcadeDB Bolt server.
//! - `build [--release]`: build the etlhost binary and every plugin.
//! - `demo`: services, seed `test.person` with 100,000 rows, build what the job needs (not the WASM
//!   engine), run `jobs/person.yaml`, and read the node count back from the graph.
//! - `test [ARGS]`: services, build, then the whole test suite (`cargo test --workspace ARGS`).
//! - `bench`: throughput benchmarks as ratios within one run; tables in `target/bench/*.json`.
//!   `bench stream`: streaming against batch, and commit-to-graph latency (`bench_stream.rs`).

mod bench;
mod bench_stream;
mod demo;

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
        "bench" if args.get(1).is_some_and(|a| a == "stream") => bench_stream::run(),
        "bench" => bench::run(args.get(1).map(String::as_str)),
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
                "usage: cargo xtask <services | build [--release] | demo | test [cargo test args] | bench [readers|batching|transforms|compare]>"
            );
            if task == "help" {
                Ok(())
            } else {
                bail!("unknown task {task}")
            }
        }
    }
}
