//! What a WASM transform costs: 1,000,000 rows into the console sink with no transform, then with
//! each of [`TRANSFORMS`], alternating; ratios of medians to no transform. First, per component,
//! a one-row job with an empty compile cache and again with a warm one: what compiling costs.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;

use super::{
    alternate, bench_dir, console_spec, etlhost, etlhost_sample, etlhost_sample_writing, median,
    plain, report, seed, write_json, Case, Opts,
};

const ROWS: u64 = 1_000_000;

/// The transforms the benchmark runs: component (in `target/transforms`), label, config, and how
/// many of the rows it writes (the others it filters out).
const TRANSFORMS: &[(&str, &str, &str, u64)] = &[
    ("identity", "identity (Rust, encoded)", "{}", ROWS),
    ("py-identity", "identity (Python)", "{}", ROWS),
    ("js-identity", "identity (JavaScript)", "{}", ROWS),
    (
        "filter",
        "filter: id <= 500000 (Rust, encoded)",
        "{column: id, op: \"<=\", value: 500000}",
        ROWS / 2,
    ),
    (
        "field-map",
        "field-map: a computed column (Rust)",
        "{compute: {label: \"{name} <{email}>\"}}",
        ROWS,
    ),
    (
        "py-full-name",
        "full-name, row dicts (Python)",
        "{first: name, last: email}",
        ROWS,
    ),
    (
        "js-email-domain",
        "email-domain, row objects (JS)",
        "{}",
        ROWS,
    ),
];

/// The console job of `table` with transform `name` (its own state folder).
pub fn with_transform(table: &str, name: &str, config: &str) -> String {
    let dir = xtask::root().join("target/transforms");
    let state = bench_dir().join("transform-state").join(name);
    console_spec(table, 1, 1).replace(
        "sink:",
        &format!(
            "checkpoint:\n  dir: {}\ncache_dir: {}\ntransforms:\n  - name: {name}\n    component: {}\n    config: {config}\nsink:",
            state.join("checkpoints").display(),
            state.join("cache").display(),
            dir.join(format!("{name}.wasm")).display()
        ),
    )
}

fn compile_costs(opts: &Opts) -> Result<()> {
    let dir = xtask::root().join("target/transforms");
    println!(
        "\nTransform components: size, and a one-row job with a cold and a warm compile cache (median of {})",
        opts.reps
    );
    println!(
        "{:<34} {:>10} {:>12} {:>12}",
        "component", "MB", "cold run s", "warm run s"
    );
    let mut components = Vec::new();
    for (name, _, config, _) in TRANSFORMS {
        let one_row = with_transform("person_1m", name, config).replace(
            "    table: person_1m\n",
            "    query: SELECT * FROM person_1m WHERE id = 1\n",
        );
        let timed = || -> Result<f64> {
            let started = Instant::now();
            let (s, _) = etlhost(&format!("compile-{name}"), &one_row)?;
            if s["written"].as_u64() != Some(1) {
                bail!("{name}: one-row job wrote {}", s["written"]);
            }
            Ok(started.elapsed().as_secs_f64())
        };
        let cache = bench_dir().join("transform-state").join(name).join("cache");
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for _ in 0..opts.reps {
            remove(&cache)?;
            cold.push(timed()?);
            warm.push(timed()?);
        }
        let bytes = std::fs::metadata(dir.join(format!("{name}.wasm")))?.len();
        let (cold, warm) = (median(cold), median(warm));
        println!(
            "{:<34} {:>10.2} {:>12.2} {:>12.2}",
            name,
            bytes as f64 / 1e6,
            cold,
            warm
        );
        components.push(json!({
            "component": name, "bytes": bytes, "cold_run_seconds_median": cold,
            "warm_run_seconds_median": warm,
        }));
    }
    write_json(
        "transform-components.json",
        &json!({ "components": components }),
    )
}

fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_1m", ROWS)?;
    compile_costs(opts)?;
    let none = console_spec("person_1m", 1, 1);
    let mut cases = vec![Case::new("no transform", None, move || {
        etlhost_sample("no transform", "transform-none", &none, ROWS)
    })];
    for (name, label, config, written) in TRANSFORMS {
        let spec = with_transform("person_1m", name, config);
        let file = format!("transform-{name}");
        cases.push(Case::new(*label, Some(0), move || {
            etlhost_sample_writing(label, &file, &spec, ROWS, *written)
        }));
    }
    report(
        "Transforms: 1,000,000 rows, MySQL -> console (count only), 1 reader; ratio of medians to no transform",
        "transforms.json",
        &alternate(opts.reps, cases)?,
        &plain,
    )
}
