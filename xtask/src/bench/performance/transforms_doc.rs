//! The figures of `docs/transforms.md`, generated: each table sits between a pair of marker
//! comments and is written from the bench's JSON (`transforms.json`, `transform-components.json`,
//! `instructions.json`) by every `cargo xtask bench` and `cargo xtask bench report`. The prose
//! around them is written by hand and refers to them. A table whose JSON is not in
//! `target/bench` (CI's case) is left as it is; [`check`] says whether the page is up to date.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{machine, text, thousands, utc};

/// The page, relative to the docs folder.
const PAGE: &str = "transforms.md";

/// A table made from a JSON file of the bench.
type Make = fn(&Value) -> String;

/// Each generated table: its marker name, the JSON it is made from, and how.
const SECTIONS: &[(&str, &str, Make)] = &[
    (
        "transform-components",
        "transform-components.json",
        components,
    ),
    ("transforms", "transforms.json", throughput),
    ("transform-instructions", "instructions.json", instructions),
];

/// `text` with every section whose JSON is in `bench` generated again; unknown or unpaired
/// markers are errors.
fn generate(text: &str, bench: &Path) -> Result<String> {
    let mut out = text.to_string();
    for (name, file, make) in SECTIONS {
        let begin = format!("<!-- bench:{name} begin");
        let end = format!("<!-- bench:{name} end -->");
        let (Some(b), Some(e)) = (out.find(&begin), out.find(&end)) else {
            bail!("docs/{PAGE} has no `{begin} ... -->` and `{end}` pair: put them back around the table");
        };
        let path = bench.join(file);
        if !path.exists() {
            continue;
        }
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let start = b + out[b..].find("-->").map_or(0, |i| i + 3);
        if start > e {
            bail!("docs/{PAGE}: `{begin}` is not closed by `-->` before `{end}`");
        }
        let body = format!("\n{}", make(&json));
        out.replace_range(start..e, &body);
    }
    Ok(out)
}

/// Writes the page's tables from the JSON in `bench` (nothing when `docs` has no such page, as in
/// a test's scratch folder).
pub fn write(bench: &Path, docs: &Path) -> Result<()> {
    let page = docs.join(PAGE);
    let Ok(text) = std::fs::read_to_string(&page) else {
        return Ok(());
    };
    let new = generate(&text, bench)?;
    if new != text {
        std::fs::write(&page, new)?;
        println!("written: the bench's tables in {}", page.display());
    }
    Ok(())
}

/// Fails, naming the command that fixes it, when a table of the page is not what the JSON in
/// `bench` gives. Run by the test below, which CI runs (`cargo xtask test`).
#[cfg(test)]
pub fn check(bench: &Path, docs: &Path) -> Result<()> {
    let page = docs.join(PAGE);
    let text = std::fs::read_to_string(&page)
        .with_context(|| format!("cannot read {}", page.display()))?;
    if generate(&text, bench)? != text {
        bail!(
            "the tables of {} differ from what {} gives: run `cargo xtask bench report`",
            page.display(),
            bench.display()
        );
    }
    Ok(())
}

/// The line above a table: which run made it.
fn provenance(j: &Value) -> String {
    let reps = j["reps"].as_u64();
    let mut s = format!(
        "`{}`, {} UTC, {}",
        text(&j["command"], "(command not recorded)"),
        j["written_at"]
            .as_u64()
            .map_or("(time not recorded)".into(), utc),
        machine(j)
    );
    if let Some(r) = reps {
        let _ = write!(s, "; medians of {r} runs");
        if r < 5 {
            s += " (a short run that checked the bench works: not figures to quote)";
        }
    }
    s + ".\n\n"
}

fn json_without(j: &Value, key: &str) -> Value {
    let mut j = j.clone();
    if let Value::Object(m) = &mut j {
        m.remove(key);
    }
    j
}

fn seconds(v: &Value) -> String {
    v.as_f64()
        .filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.2} s"))
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .filter(|x| x.is_finite() && *x > 0.0)
        .map_or("-".into(), |x| format!("{:.0} MiB", x / 1048576.0))
}

fn components(j: &Value) -> String {
    let mut md = provenance(j);
    md += "| component | size | one-row job, empty cache (peak RSS) | cache warm (peak RSS) | `etlhost validate`, empty cache | one-row job right after it |\n|---|---:|---:|---:|---:|---:|\n";
    for c in j["components"].as_array().map_or(&[][..], |v| v) {
        let _ = writeln!(
            md,
            "| `{}` | {:.2} MB | {} ({}) | {} ({}) | {} | {} |",
            text(&c["component"], "?"),
            c["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            seconds(&c["cold_run_seconds_median"]),
            mib(&c["cold_run_peak_rss_bytes_median"]),
            seconds(&c["warm_run_seconds_median"]),
            mib(&c["warm_run_peak_rss_bytes_median"]),
            seconds(&c["validate_seconds_median"]),
            seconds(&c["run_after_validate_seconds_median"]),
        );
    }
    md
}

fn rate(v: &Value) -> String {
    v.as_f64().map_or("-".into(), thousands)
}

fn ratio(v: &Value) -> String {
    v.as_f64()
        .filter(|x| x.is_finite())
        .map_or(String::new(), |x| format!("{x:.2}"))
}

fn throughput(j: &Value) -> String {
    let mut md = provenance(j);
    md += "| run | rows/s, median (min-max) | to no transform | native baseline, building the dicts or objects: rows/s | sandboxed / native | native, the function alone: rows/s | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|\n";
    for f in j["figures"].as_array().map_or(&[][..], |v| v) {
        if f["native"].as_bool() == Some(true) {
            continue;
        }
        let r = &f["rows_per_sec"];
        let n = &f["native_baseline"];
        let _ = writeln!(
            md,
            "| {} | {} ({}-{}) | {} | {} | {} | {} | {} |",
            text(&f["run"], "?"),
            rate(&r["median"]),
            rate(&r["min"]),
            rate(&r["max"]),
            ratio(&f["ratio_of_medians"]),
            if n.is_null() {
                String::new()
            } else {
                rate(&n["rows_per_sec_median"])
            },
            ratio(&n["sandboxed_to_native"]),
            if n.is_null() {
                String::new()
            } else {
                rate(&n["function_only_rows_per_sec_median"])
            },
            mib(&f["peak_rss_bytes"]),
        );
    }
    md
}

fn instructions(j: &Value) -> String {
    // One count per path: callgrind repeats to a fraction of a percent, so runs are not medians.
    let mut md = provenance(&json_without(j, "reps"));
    let small = j["small_rows"].as_u64().unwrap_or(0);
    md += "| path | instructions per row | rows counted | largest own counts per row |\n|---|---:|---:|---|\n";
    for p in j["paths"].as_array().map_or(&[][..], |v| v) {
        let path = text(&p["path"], "?");
        if !(path.starts_with("transform boundary") || path.starts_with("source path")) {
            continue;
        }
        let large = p["large_rows"].as_u64().or(j["large_rows"].as_u64());
        let top: Vec<String> = p["top"]
            .as_array()
            .map_or(&[][..], |v| v)
            .iter()
            .take(3)
            .map(|e| {
                let n = e["instructions_per_row"].as_f64().unwrap_or(0.0);
                format!("`{}` {n:.0}", text(&e["function"], "?"))
            })
            .collect();
        let _ = writeln!(
            md,
            "| {path} | {} | {} | {} |",
            rate(&p["instructions_per_row"]),
            large.map_or("-".into(), |l| format!(
                "{} - {}",
                thousands(l as f64),
                thousands(small as f64)
            )),
            top.join(", ").replace('|', "\\|"),
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// CI's guard: the committed page's tables are what the JSON here gives (when there is any).
    #[test]
    fn the_transform_docs_are_what_the_bench_json_gives() {
        let root = xtask::root();
        check(&root.join("target/bench"), &root.join("docs")).unwrap();
    }

    #[test]
    fn tables_are_generated_between_their_markers_and_left_alone_without_json() {
        let dir = std::env::temp_dir().join(format!("xtask-transforms-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = "intro\n<!-- bench:transform-components begin -->\nold\n<!-- bench:transform-components end -->\n\
            mid\n<!-- bench:transforms begin: generated -->\nold\n<!-- bench:transforms end -->\n\
            <!-- bench:transform-instructions begin -->\nkept\n<!-- bench:transform-instructions end -->\nend\n";
        let figure = json!({"run": "full-name (Python)", "rows_per_sec": {"median": 40000.0, "min": 30000.0, "max": 50000.0},
            "ratio_of_medians": 0.02, "peak_rss_bytes": 62914560,
            "native_baseline": {"rows_per_sec_median": 1200000.0, "sandboxed_to_native": 0.0333, "function_only_rows_per_sec_median": 2500000.0}});
        let native = json!({"run": "native CPython", "native": true, "rows_per_sec": {}});
        let t = json!({"command": "cargo xtask bench transforms --reps 5", "written_at": 1_796_000_000u64, "reps": 5,
            "machine": {"cores": 2}, "figures": [figure, native]});
        std::fs::write(dir.join("transforms.json"), t.to_string()).unwrap();
        let c = json!({"reps": 1, "components": [{"component": "py-identity", "bytes": 18_360_000,
            "cold_run_seconds_median": 8.0, "warm_run_seconds_median": 0.06}]});
        std::fs::write(dir.join("transform-components.json"), c.to_string()).unwrap();
        let md = generate(page, &dir).unwrap();
        std::fs::write(dir.join(PAGE), &md).unwrap();
        check(&dir, &dir).unwrap();
        std::fs::write(dir.join(PAGE), page).unwrap();
        let err = check(&dir, &dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("run `cargo xtask bench report`"), "{err}");
        assert!(md.contains("| full-name (Python) | 40,000 (30,000-50,000) | 0.02 | 1,200,000 | 0.03 | 2,500,000 | 60 MiB |"), "{md}");
        assert!(!md.contains("native CPython"), "{md}");
        assert!(
            md.contains("| `py-identity` | 18.36 MB | 8.00 s (-) | 0.06 s (-) | - | - |"),
            "{md}"
        );
        assert!(md.contains("not figures to quote"), "{md}");
        assert!(md.contains("<!-- bench:transforms begin: generated -->\n`cargo xtask bench transforms --reps 5`, 2026-11-30 00:53 UTC, 2 cores; medians of 5 runs.\n"), "{md}");
        assert!(md.contains("begin -->\nkept\n<!--"), "{md}");
        assert!(
            md.starts_with("intro\n") && md.ends_with("end -->\nend\n"),
            "{md}"
        );
        assert!(generate("no markers", &dir).is_err());
    }
}
