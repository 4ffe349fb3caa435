//! `etlhost validate` fills the compile cache so that the first run of a job compiles nothing: the
//! run after it loads every transform (of both worlds) from `cache_dir` and leaves the cached files
//! as `validate` wrote them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::support::{etlhost_command, person_table, scratch_dir, Output, SpecBuilder};

/// A transform built by `cargo xtask build`.
fn component(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(format!("transforms/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`",
        path.display()
    );
    path
}

/// The cached files: name -> (size, modification time).
fn cached(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, (m.len(), m.modified().unwrap()))
        })
        .collect()
}

/// `etlhost COMMAND SPEC ARGS`, logging what the transform engine does.
fn etlhost(command: &str, spec: &Path, args: &[&str]) -> Output {
    etlhost_command()
        .arg(command)
        .arg(spec)
        .args(args)
        .env("RUST_LOG", "warn,etlhost::transform=info")
        .output()
        .unwrap()
        .into()
}

/// The engine's `cached=` field for each transform the output names, in the order logged.
fn cache_hits(stderr: &str) -> Vec<(String, bool)> {
    stderr
        .lines()
        .filter(|l| l.contains(" ready in "))
        .map(|l| {
            let field = |key: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .unwrap_or_else(|| panic!("no {key} in {l}"))
                    .to_string()
            };
            (field("transform="), field("cached=") == "true")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_run_after_validate_finds_every_component_compiled() {
    let db = "e2e_transform_warm";
    person_table(db, 20, "p").await;
    let dir = scratch_dir("transform_warm");
    let cache = dir.join("cache");
    let spec = SpecBuilder::new("transform_warm")
        .top(format_args!("cache_dir: {}", cache.display()))
        .top(format_args!("dead_letter: {}", dir.join("dl.jsonl").display()))
        .mysql_table(db, "person")
        .transforms(&format!(
            "  - name: same\n    component: {}\n  - name: labels\n    component: {}\n    config: {{compute: {{label: \"{{name}}!\"}}}}",
            component("identity").display(),
            component("field-map").display()
        ))
        .sink_option("mode: count")
        .build();
    let path = dir.join("job.yaml");
    std::fs::write(&path, spec).unwrap();

    let out = etlhost("validate", &path, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        cache_hits(&out.stderr),
        [("same".to_string(), false), ("labels".to_string(), false)],
        "validate compiles both:\n{}",
        out.stderr
    );
    let before = cached(&cache);
    assert_eq!(
        before.len(),
        2,
        "one compiled file per component: {before:?}"
    );

    let summary = dir.join("summary.json");
    let summary_arg = summary.display().to_string();
    let out = etlhost("run", &path, &["--fresh", "--summary-json", &summary_arg]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        cache_hits(&out.stderr),
        [("same".to_string(), true), ("labels".to_string(), true)],
        "the run loads both from the cache:\n{}",
        out.stderr
    );
    assert_eq!(
        cached(&cache),
        before,
        "the run wrote nothing into the cache"
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(
        (s["read"].as_u64(), s["written"].as_u64()),
        (Some(20), Some(20)),
        "{s}"
    );
}
