//! The native baseline of a Python or JavaScript transform (issue 34: "the limit a sandboxed
//! transform is held against"): the very source file its component is built from, run by this
//! machine's `python3` or `node` over the bench's rows already in memory
//! (`plugins/transforms/native/`: a small harness and stand-ins for the modules that exist only
//! inside the component).
//!
//! Every harness reads the same dump of the table (`target/bench/<table>.tsv`, written once with
//! `mariadb -B`), untimed, and times two things:
//! - the function over row objects built beforehand (dicts, JS objects; for a whole-batch
//!   transform, batches of value lists): the function alone;
//! - building those objects from the parsed values, then the function: **the figure a sandboxed
//!   transform is compared with**, since the component too is handed values and must make the
//!   dicts or objects its function takes (reading MySQL is in neither).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench::{bench_dir, timed_output, Sample, BENCH_DB};

/// The interpreter a native baseline runs on.
#[derive(Clone, Copy)]
pub enum Runtime {
    Python,
    Node,
}

/// What runs natively for a component of `super::transforms::TRANSFORMS`: the component, its
/// runtime, the source file it is built from, and the entry the harness calls (`row`: the SDK's
/// row function, one dict or object a row; `batch`: the module's own `process` on batches of
/// 1,000 rows). A new component gets a baseline with one line here (and, for an entry of a new
/// SDK API, a timer in the harness); components built from one source share one native figure.
pub const NATIVE: &[(&str, Runtime, &str, &str)] = &[
    (
        "py-identity",
        Runtime::Python,
        "plugins/transforms/python/identity.py",
        "batch",
    ),
    (
        "py-full-name",
        Runtime::Python,
        "plugins/transforms/python/full_name.py",
        "row",
    ),
    (
        "py-full-name-values",
        Runtime::Python,
        "plugins/transforms/python/full_name.py",
        "row",
    ),
    (
        "js-identity",
        Runtime::Node,
        "plugins/transforms/js/identity.js",
        "batch",
    ),
    (
        "js-email-domain",
        Runtime::Node,
        "plugins/transforms/js/email-domain.js",
        "row",
    ),
];

/// The native baseline of `component`, if it has one.
pub fn of(component: &str) -> Option<(Runtime, &'static str, &'static str)> {
    NATIVE
        .iter()
        .find(|(c, ..)| *c == component)
        .map(|(_, r, s, e)| (*r, *s, *e))
}

/// The label of a native figure.
pub fn label(runtime: Runtime, source: &str, entry: &str) -> String {
    let file = source.rsplit('/').next().unwrap_or(source);
    let (who, objects) = match runtime {
        Runtime::Python => ("CPython", "dicts"),
        Runtime::Node => ("Node.js", "objects"),
    };
    match entry {
        "row" => format!("native {who}: {file} row, building {objects}"),
        _ => format!("native {who}: {file} {entry}, building batches"),
    }
}

/// `bench.<table>` as tab-separated text with a header line, dumped once (again when its line
/// count is not `rows` + 1).
pub fn rows_file(table: &str, rows: u64) -> Result<PathBuf> {
    let path = bench_dir().join(format!("{table}.tsv"));
    let lines = std::fs::read(&path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0);
    if lines == rows + 1 {
        return Ok(path);
    }
    eprintln!("xtask: dumping {BENCH_DB}.{table} to {}", path.display());
    std::fs::create_dir_all(bench_dir())?;
    let file = std::fs::File::create(&path)?;
    let status = xtask::mariadb()
        .args([
            "-B",
            "-e",
            &format!("SELECT id, name, email, created_at FROM {BENCH_DB}.{table} ORDER BY id"),
        ])
        .stdout(file)
        .status()
        .context("cannot run mariadb")?;
    if !status.success() {
        bail!("dumping {BENCH_DB}.{table} to {} failed", path.display());
    }
    Ok(path)
}

/// One native run: a sample whose time is the building-objects figure, and the function-only
/// seconds. `config` is the component's YAML config; `written` the rows the transform must keep.
pub fn sample(component: &str, config: &str, rows: &Path, written: u64) -> Result<(Sample, f64)> {
    let (runtime, source, entry) =
        of(component).with_context(|| format!("{component} has no native baseline"))?;
    let config: Value = serde_yaml_ng::from_str(config)
        .with_context(|| format!("{component}: config `{config}` is not YAML"))?;
    let dir = xtask::root().join("plugins/transforms/native");
    let (program, harness) = match runtime {
        Runtime::Python => ("python3", dir.join("native.py")),
        Runtime::Node => ("node", dir.join("native.mjs")),
    };
    let args = json!({
        "source": xtask::root().join(source), "entry": entry, "config": config, "rows": rows,
    });
    let (out, cpu) = timed_output(Command::new(program).arg(&harness).arg(args.to_string()))?;
    if !out.status.success() {
        bail!(
            "{program} {} for {component} failed:\n{}",
            harness.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().unwrap_or(""))
        .with_context(|| format!("no report from {}: {text}", harness.display()))?;
    if v["kept"].as_u64() != Some(written) {
        bail!(
            "native {component} kept {} rows, expected {written}",
            v["kept"]
        );
    }
    let seconds = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let sample = Sample {
        rows: v["rows"].as_u64().unwrap_or(0),
        secs: seconds("with_objects_seconds"),
        cpu,
        ..Sample::default()
    };
    Ok((sample, seconds("function_seconds")))
}
