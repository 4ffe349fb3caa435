//! A stable cost: the instructions the host and its plugins execute per row, counted by
//! valgrind's callgrind (repeatable to a fraction of a percent, where timings on a shared 2-core
//! machine move 2x). Callgrind counts only the process it runs, not MariaDB or the graph database,
//! and runs it ~50x slower, so each path is run on a small slice of rows and on a fixed-cost slice
//! ([`SMALL`] rows: start-up, connections, compiling), and the difference is divided by the
//! difference in rows:
//!
//! - source path: MySQL -> console (count only): reading, decoding, the plugin boundary;
//! - sink path: MySQL -> Bolt; the sink's own part (encoding to PackStream, the Bolt client) is
//!   the sink path minus the source path;
//! - transform boundary: MySQL -> a transform -> console, minus the source path, for each of
//!   [`BOUNDARIES`]: the Rust `identity` (encoded world) and `field-map` (values world), and each
//!   language's identity and row-by-row example (Python, JavaScript), the latter on fewer rows
//!   (their interpreters run ~50x slower under callgrind too).
//!
//! The top entries are the functions whose own (exclusive) count per row differs most. A job is run
//! once first, uncounted, under valgrind without a tool (the same emulated CPU, several times
//! faster than callgrind), so that neither counted run compiles the transform.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;
use xtask::graph::fresh_graph;

use super::compare::{bolt_spec, nodes_must_be};
use super::transforms::{with_transform, TRANSFORMS};
use super::{bench_dir, console_spec, release_bin, seed, write_json, Opts, BENCH_DB};

/// The fixed-cost slice and the measured slice (of a Python or JavaScript transform: [`SCRIPT`]).
const SMALL: u64 = 1_000;
const LARGE: u64 = 21_000;
const SCRIPT: u64 = 11_000;

/// The transforms whose boundary is counted: component (of [`TRANSFORMS`], with its config), the
/// path's name, and the measured slice.
const BOUNDARIES: &[(&str, &str, u64)] = &[
    (
        "identity",
        "transform boundary, Rust identity (- source path)",
        LARGE,
    ),
    (
        "field-map",
        "transform boundary, Rust field-map, values world (- source path)",
        LARGE,
    ),
    (
        "py-identity",
        "transform boundary, Python identity (- source path)",
        SCRIPT,
    ),
    (
        "py-full-name",
        "transform boundary, Python full-name, row dicts (- source path)",
        SCRIPT,
    ),
    (
        "js-identity",
        "transform boundary, JavaScript identity (- source path)",
        SCRIPT,
    ),
    (
        "js-email-domain",
        "transform boundary, JavaScript email-domain, row objects (- source path)",
        SCRIPT,
    ),
];
const TOP: usize = 8;

/// Instructions of one run: the total and per function (exclusive).
struct Counts {
    total: f64,
    functions: HashMap<String, f64>,
}

fn slice(spec: &str, rows: u64) -> String {
    spec.replace(
        "    table: person_1m\n",
        &format!("    query: SELECT * FROM person_1m WHERE id <= {rows}\n"),
    )
}

/// Runs etlhost on `spec` under callgrind and reads the counts back.
fn count(name: &str, spec: &str, rows: u64) -> Result<Counts> {
    let out_path = valgrind("callgrind", name, spec, rows)?;
    annotate(&out_path)
}

/// Runs etlhost on `spec` under valgrind's `tool`, checks it wrote `rows` rows, and returns
/// where callgrind's output went.
fn valgrind(tool: &str, name: &str, spec: &str, rows: u64) -> Result<std::path::PathBuf> {
    let dir = bench_dir().join("callgrind");
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join(format!("{name}-{rows}.yaml"));
    let out_path = dir.join(format!("{name}-{rows}.callgrind.out"));
    let summary = dir.join(format!("{name}-{rows}.summary.json"));
    std::fs::write(&spec_path, spec)?;
    let mut cmd = Command::new("valgrind");
    cmd.arg(format!("--tool={tool}"));
    if tool == "callgrind" {
        cmd.arg(format!("--callgrind-out-file={}", out_path.display()));
    }
    let out = cmd
        .arg(release_bin("etlhost"))
        .arg("run")
        .arg(&spec_path)
        .arg("--fresh")
        .arg("--summary-json")
        .arg(&summary)
        .env("RUST_LOG", "warn")
        .output()
        .context("cannot run valgrind (apt-get install valgrind)")?;
    if !out.status.success() {
        bail!(
            "valgrind --tool={tool} run of {} failed:\n{}",
            spec_path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
    if s["written"].as_u64() != Some(rows) {
        bail!("{name}: wrote {} of {rows} rows", s["written"]);
    }
    Ok(out_path)
}

/// `callgrind_annotate`'s totals and per-function exclusive counts.
fn annotate(file: &Path) -> Result<Counts> {
    let out = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--inclusive=no", "--auto=no"])
        .arg(file)
        .output()
        .context("cannot run callgrind_annotate")?;
    if !out.status.success() {
        bail!(
            "callgrind_annotate {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = Counts {
        total: f64::NAN,
        functions: HashMap::new(),
    };
    for line in text.lines() {
        // `1,234,567 (12.34%)  file:function [object]`, or `... PROGRAM TOTALS`.
        let line = line.trim();
        let Some((n, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.replace(',', "").parse::<f64>() else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(r, |(_, r)| r).trim_start(),
            None => rest,
        };
        if rest.starts_with("PROGRAM TOTALS") {
            counts.total = n;
            continue;
        }
        let (name, object) = match rest.split_once(" [") {
            Some((n, o)) => (n, o.trim_end_matches(']').rsplit('/').next().unwrap_or(o)),
            None => (rest, "etlhost"),
        };
        let name = name.split_once(':').map_or(name, |(_, f)| f);
        let key = format!("{} [{object}]", short(name));
        *counts.functions.entry(key).or_default() += n;
    }
    if counts.total.is_nan() {
        bail!(
            "no PROGRAM TOTALS in callgrind_annotate's output for {}",
            file.display()
        );
    }
    Ok(counts)
}

/// A function's name without its hash suffix and long generic arguments.
fn short(name: &str) -> String {
    let name = name.trim();
    let name = match name.rfind("::h") {
        Some(i) if name[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => &name[..i],
        _ => name,
    };
    let mut out = String::new();
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '<' => {
                if depth == 0 {
                    out.push_str("<..>");
                }
                depth += 1;
            }
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("<..><..>", "<..>")
}

/// Per row: (large - small) / (their difference in rows), total and per function.
fn per_row(small: &Counts, large: &Counts, rows: u64) -> (f64, HashMap<String, f64>) {
    let rows = rows as f64;
    let mut f: HashMap<String, f64> = HashMap::new();
    for (k, v) in &large.functions {
        *f.entry(k.clone()).or_default() += v / rows;
    }
    for (k, v) in &small.functions {
        *f.entry(k.clone()).or_default() -= v / rows;
    }
    ((large.total - small.total) / rows, f)
}

fn minus(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> HashMap<String, f64> {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() -= v;
    }
    out
}

fn top(f: &HashMap<String, f64>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = f.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(TOP);
    v
}

/// Instructions per row of `spec` on `large` rows minus [`SMALL`] rows, after an uncounted
/// run that fills the compile cache.
fn measure(name: &str, spec: &str, graph: bool, large: u64) -> Result<(f64, HashMap<String, f64>)> {
    eprintln!("xtask: callgrind: {name}, {SMALL} and {large} rows");
    // Not counted: fills the transforms' compile cache, which both counted runs then find. Under
    // valgrind, since the CPU it reports has other features, which changes the cache's key.
    if graph {
        fresh_graph(BENCH_DB)?;
    }
    valgrind("none", &format!("{name}-warm"), &slice(spec, SMALL), SMALL)?;
    let mut runs = Vec::new();
    for rows in [SMALL, large] {
        if graph {
            fresh_graph(BENCH_DB)?;
        }
        runs.push(count(name, &slice(spec, rows), rows)?);
        if graph {
            nodes_must_be(rows, name)?;
        }
    }
    Ok(per_row(&runs[0], &runs[1], large - SMALL))
}

/// A counted path: its name, instructions per row, per function, and the rows of its large slice.
type Counted = (String, f64, HashMap<String, f64>, u64);

/// Each of [`BOUNDARIES`]: its name, instructions per row minus the source path's, per function.
fn boundaries(source: f64, source_f: &HashMap<String, f64>) -> Result<Vec<Counted>> {
    let mut out = Vec::new();
    for (component, path, large) in BOUNDARIES {
        let config = TRANSFORMS
            .iter()
            .find(|t| t.0 == *component)
            .map_or("{}", |t| t.2);
        // A cache of its own: the timing bench empties the transforms' caches, and a component
        // compiled under valgrind (~4 minutes for a Python or JS one) is kept for the next run.
        let spec = with_transform("person_1m", component, config).replace(
            &format!("transform-state/{component}/cache"),
            &format!("callgrind/cache/{component}"),
        );
        let (n, f) = measure(&format!("transform-{component}"), &spec, false, *large)?;
        out.push((path.to_string(), n - source, minus(&f, source_f), *large));
    }
    Ok(out)
}

pub fn run(_: &Opts) -> Result<()> {
    seed("person_1m", 1_000_000)?;
    let source_spec = console_spec("person_1m", 1, 1);
    let sink_spec = bolt_spec("person_1m", "batch", 1000);
    let (source, source_f) = measure("source", &source_spec, false, LARGE)?;
    let (sink, sink_f) = measure("sink", &sink_spec, true, LARGE)?;
    let mut paths = vec![
        (
            "source path (MySQL -> console count)".to_string(),
            source,
            source_f.clone(),
            LARGE,
        ),
        (
            "sink path (MySQL -> Bolt)".into(),
            sink,
            sink_f.clone(),
            LARGE,
        ),
        (
            "sink encoding + Bolt client (sink path - source path)".into(),
            sink - source,
            minus(&sink_f, &source_f),
            LARGE,
        ),
    ];
    paths.extend(boundaries(source, &source_f)?);
    println!(
        "\nInstructions per row (callgrind, etlhost process only: N rows minus {SMALL} rows, divided by the difference)"
    );
    let mut out = Vec::new();
    for (name, per, functions, large) in &paths {
        println!("{name:<72} {per:>10.0} instructions/row ({large} - {SMALL} rows)");
        let entries = top(functions);
        for (f, n) in &entries {
            println!("    {n:>10.0}  {f}");
        }
        out.push(json!({
            "path": name, "instructions_per_row": per, "large_rows": large,
            "top": entries.iter().map(|(f, n)| json!({"function": f, "instructions_per_row": n})).collect::<Vec<_>>(),
        }));
    }
    write_json(
        "instructions.json",
        &json!({"small_rows": SMALL, "large_rows": LARGE, "paths": out}),
    )
}
