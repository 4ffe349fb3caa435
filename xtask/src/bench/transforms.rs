//! What a WASM transform costs: 1,000,000 rows into the console sink with no transform, then with
//! each of [`TRANSFORMS`], alternating; ratios of medians to no transform. A Python or JavaScript
//! transform has a native baseline in the same turns ([`native`]): its source file run by
//! `python3` or `node` over the same rows in memory. First, per component, a one-row job with an
//! empty compile cache, again with a warm one, and right after `etlhost validate` filled an empty
//! one: what compiling costs, and that validating spares the first run of it.

mod native;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{
    alternate, bench_dir, console_spec, etlhost, etlhost_sample, etlhost_sample_writing, median,
    release_bin, report, seed, write_json, Case, Figure, Opts,
};

const ROWS: u64 = 1_000_000;

/// The transforms the benchmark runs: component (in `target/transforms`), label, config, and how
/// many of the rows it writes (the others it filters out).
pub const TRANSFORMS: &[(&str, &str, &str, u64)] = &[
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
        "py-full-name-values",
        "full-name, row dicts (Python, values world)",
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

/// The one-row job of a component: its spec, and a run of it that must write the row (its
/// seconds and peak RSS).
fn one_row(name: &'static str, config: &str) -> (String, impl Fn() -> Result<(f64, f64)>) {
    let spec = with_transform("person_1m", name, config).replace(
        "    table: person_1m\n",
        "    query: SELECT * FROM person_1m WHERE id = 1\n",
    );
    let run_spec = spec.clone();
    let timed = move || -> Result<(f64, f64)> {
        let started = Instant::now();
        let (s, _) = etlhost(&format!("compile-{name}"), &run_spec)?;
        if s["written"].as_u64() != Some(1) {
            bail!("{name}: one-row job wrote {}", s["written"]);
        }
        let rss = s["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN);
        Ok((started.elapsed().as_secs_f64(), rss))
    };
    (spec, timed)
}

/// `etlhost validate` on `spec` (which compiles its transforms into the cache): its seconds.
fn validate(name: &str, spec: &str) -> Result<f64> {
    let path = bench_dir().join(format!("validate-{name}.yaml"));
    std::fs::write(&path, spec)?;
    let started = Instant::now();
    let out = Command::new(release_bin("etlhost"))
        .arg("validate")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!(
            "etlhost validate {} failed:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Per component, medians of `reps` turns of: a one-row job with an empty cache (cold), again
/// (warm), `etlhost validate` with an empty cache, and the one-row job after it.
fn compile_costs(opts: &Opts) -> Result<()> {
    let dir = xtask::root().join("target/transforms");
    println!(
        "\nTransform components: size, and a one-row job with a cold and a warm compile cache, and right after `etlhost validate` (median of {})",
        opts.reps
    );
    println!(
        "{:<34} {:>8} {:>11} {:>11} {:>11} {:>15}",
        "component", "MB", "cold run s", "warm run s", "validate s", "run after it s"
    );
    let mut components = Vec::new();
    for (name, _, config, _) in TRANSFORMS {
        let (spec, timed) = one_row(name, config);
        let cache = bench_dir().join("transform-state").join(name).join("cache");
        // Seconds: cold, warm, validate, after it; peak RSS: cold, warm.
        let mut t: [Vec<f64>; 6] = Default::default();
        for _ in 0..opts.reps {
            remove(&cache)?;
            let ((cold, cold_rss), (warm, warm_rss)) = (timed()?, timed()?);
            remove(&cache)?;
            let validated = validate(name, &spec)?;
            let (after, _) = timed()?;
            for (v, x) in t
                .iter_mut()
                .zip([cold, warm, validated, after, cold_rss, warm_rss])
            {
                v.push(x);
            }
        }
        let bytes = std::fs::metadata(dir.join(format!("{name}.wasm")))?.len();
        let [cold, warm, validated, after, cold_rss, warm_rss] = t.map(median);
        println!(
            "{:<34} {:>8.2} {:>11.2} {:>11.2} {:>11.2} {:>15.2}",
            name,
            bytes as f64 / 1e6,
            cold,
            warm,
            validated,
            after
        );
        components.push(json!({
            "component": name, "bytes": bytes, "cold_run_seconds_median": cold,
            "warm_run_seconds_median": warm, "validate_seconds_median": validated,
            "run_after_validate_seconds_median": after,
            "cold_run_peak_rss_bytes_median": cold_rss, "warm_run_peak_rss_bytes_median": warm_rss,
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

/// The component a figure of the table measures (sandboxed or native), if any.
fn component_of(figure: &str) -> Option<(&'static str, bool)> {
    TRANSFORMS.iter().find_map(|(name, label, ..)| {
        if *label == figure {
            Some((*name, false))
        } else {
            native::of(name)
                .filter(|(r, s, e)| native::label(*r, s, e) == figure)
                .map(|_| (*name, true))
        }
    })
}

/// The fields a figure adds to `transforms.json`: its component; for a native figure, the
/// function-only rates; for a sandboxed one with a native baseline, that baseline and the ratios.
fn native_fields(
    figures: &[Figure],
    function_secs: &HashMap<String, Vec<f64>>,
    f: &Figure,
) -> (Option<String>, Value) {
    let Some((component, is_native)) = component_of(&f.name) else {
        return (None, json!({}));
    };
    let function_only = |label: &str| -> Vec<f64> {
        let secs = function_secs.get(label).map_or(&[][..], |v| v);
        secs.iter().map(|s| f.rows() as f64 / s).collect()
    };
    if is_native {
        let rates = function_only(&f.name);
        let (lo, hi) = (
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        );
        let fields = json!({"component": component, "native": true,
            "function_only_rows_per_sec": {"median": median(rates), "min": lo, "max": hi}});
        return (None, fields);
    }
    let Some((r, s, e)) = native::of(component) else {
        return (None, json!({"component": component}));
    };
    let label = native::label(r, s, e);
    let Some(n) = figures.iter().find(|n| n.name == label) else {
        return (None, json!({"component": component}));
    };
    let (native, function) = (n.median_rate(), median(function_only(&label)));
    let ratio = f.median_rate() / native;
    let column = format!(
        "native {native:.0}/s ({function:.0}/s function alone): sandboxed/native {ratio:.3}"
    );
    let fields = json!({"component": component, "native_baseline": {
        "run": label, "source": s, "entry": e, "rows_per_sec_median": native,
        "function_only_rows_per_sec_median": function, "sandboxed_to_native": ratio,
        "sandboxed_to_function_only": f.median_rate() / function,
    }});
    (Some(column), fields)
}

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_1m", ROWS)?;
    compile_costs(opts)?;
    let rows_file = native::rows_file("person_1m", ROWS)?;
    // The function-only seconds of each native run, by figure (its sample holds the other time).
    let function_secs = RefCell::new(HashMap::<String, Vec<f64>>::new());
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
        if let Some((runtime, source, entry)) = native::of(name) {
            let native_label = native::label(runtime, source, entry);
            // Components built from one source (one per world) share its native figure.
            if cases.iter().any(|c| c.name == native_label) {
                continue;
            }
            let (rows_file, function_secs) = (&rows_file, &function_secs);
            cases.push(Case::new(native_label.clone(), None, move || {
                let (sample, function) = native::sample(name, config, rows_file, *written)?;
                let mut secs = function_secs.borrow_mut();
                secs.entry(native_label.clone()).or_default().push(function);
                Ok(sample)
            }));
        }
    }
    let figures = alternate(opts.reps, cases)?;
    let function_secs = function_secs.into_inner();
    report(
        "Transforms: 1,000,000 rows, MySQL -> console (count only), 1 reader; ratio of medians to no transform",
        "transforms.json",
        &figures,
        &|f| native_fields(&figures, &function_secs, f),
    )
}
