//! Reruns that never lie: a run is identified by its spec *after* `${VAR}` expansion, a rerun of a
//! failed job that has nothing left to read reports that failure (until `--fresh` or
//! `--accept-failures`), and `validate` loads every transform component.

use std::path::{Path, PathBuf};

use xtask::graph::graph_count;

use crate::support::{etlhost_command, exec, graph, mysql, scratch_dir, Output, SpecBuilder};

/// The table the specs read: `TABLE` from the environment, `person` without it.
const TABLE: &str = "${TABLE:-person}";

/// `etlhost run SPEC` without `--fresh` (so earlier progress is found), with `TABLE` set.
fn run(spec: &Path, table: &str, extra: &[&str]) -> Output {
    etlhost_command()
        .arg("run")
        .arg(spec)
        .args(extra)
        .env("TABLE", table)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
        .into()
}

/// `person` holds ids 1..=100; `person_bad` the same and id 1000, which the sink refuses.
async fn tables(db: &str) {
    let pool = mysql(db).await;
    for t in ["person", "person_bad"] {
        exec(
            &pool,
            &format!("CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20))"),
        )
        .await;
        exec(
            &pool,
            &format!("INSERT INTO {t} SELECT seq, CONCAT('p', seq) FROM seq_1_to_100"),
        )
        .await;
    }
    exec(&pool, "INSERT INTO person_bad VALUES (1000, 'bad')").await;
}

/// The message of a rerun that found the earlier run's failure and nothing left to read; the time
/// of that failure is the one part that varies.
fn assert_earlier_failure(out: &Output, job: &str, dead_letter: &Path) {
    let dl = dead_letter.display();
    let head = format!("error: job failed: the earlier run of job '{job}' failed at ");
    let tail = format!(
        ": 1 rows failed, more than max_failed_rows (0); they are in {dl}; it read every split, so nothing is left to read: run with --fresh to run the job again, or with --accept-failures to accept that failure (its 1 failed rows stay in {dl})"
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no earlier-failure error in:\n{}", out.stderr));
    assert!(line.ends_with(&tail), "{line}");
    assert_eq!(out.code, 4, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_with_other_variables_or_after_a_failure_never_reports_success_local() {
    tables("e2e_reruns_local").await;
    let dir = scratch_dir("reruns_local");
    let (cp_dir, dl) = (dir.join("cp"), dir.join("dl.jsonl"));
    let spec = dir.join("reruns.yaml");
    let text = SpecBuilder::new("reruns")
        .top(format_args!("dead_letter: {}", dl.display()))
        .top(format_args!("checkpoint: {{dir: {}}}", cp_dir.display()))
        .mysql_table("e2e_reruns_local", TABLE)
        .sink_plugin("faulty")
        .sink_option("fail_on: 1000")
        .build();
    std::fs::write(&spec, text).unwrap();
    let cp = cp_dir.join("reruns.checkpoint.json");

    // One bad row: every split read, the job failed, its checkpoint kept.
    let out = run(&spec, "person_bad", &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(cp.exists(), "a failed run keeps its checkpoint");

    // The same file with another table from the environment is another job: refused.
    let out = run(&spec, "person", &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: {}: the spec changed since job 'reruns' was checkpointed in {}; run with --fresh to start over",
            spec.display(),
            cp.display()
        )
    );

    // The same values again: nothing is left to read, and the earlier failure is reported.
    let out = run(&spec, "person_bad", &[]);
    assert_earlier_failure(&out, "reruns", &dl);
    assert!(cp.exists());

    // Accepted: the run succeeds, and the next one starts over.
    let out = run(&spec, "person_bad", &["--accept-failures"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!cp.exists(), "an accepted failure ends the job");
    let out = run(&spec, "person", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Rows Read             : 100\n"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_with_other_variables_or_after_a_failure_never_reports_success_target() {
    tables("e2e_reruns_target").await;
    let g = graph("e2e_reruns_target").await;
    // A node with the bad row's key is there already: the unique constraint refuses that row.
    g.run(neo4rs::query("CREATE (:Person {id: 1000})"))
        .await
        .unwrap();
    let dir = scratch_dir("reruns_target");
    let dl = dir.join("dl.jsonl");
    let spec = dir.join("reruns_target.yaml");
    let text = SpecBuilder::new("reruns_target")
        .top(format_args!("dead_letter: {}", dl.display()))
        .mysql_table("e2e_reruns_target", TABLE)
        .sink_bolt(
            "e2e_reruns_target",
            "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})",
        )
        .setup("CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE")
        .build();
    std::fs::write(&spec, text).unwrap();

    let out = run(&spec, "person_bad", &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let count = || graph_count("e2e_reruns_target", "MATCH (p:Person) RETURN count(p) AS n");
    assert_eq!(count().unwrap(), 101);

    let out = run(&spec, "person", &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: {}: the spec changed since job 'reruns_target' recorded its plan in the target (the default run); run with --fresh to start over",
            spec.display()
        )
    );

    let out = run(&spec, "person_bad", &[]);
    assert_earlier_failure(&out, "reruns_target", &dl);

    let out = run(&spec, "person_bad", &["--accept-failures"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Nothing was written twice, and the run's records are gone: the next run starts over.
    assert_eq!(count().unwrap(), 101);
    let records = graph_count(
        "e2e_reruns_target",
        "MATCH (p) WHERE p:EtlhostPlan OR p:EtlhostProgress RETURN count(p) AS n",
    );
    assert_eq!(records.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_loads_every_transform_and_fills_the_compile_cache() {
    let dir = scratch_dir("validate_transforms");
    let cache = dir.join("cache");
    let identity = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("transforms/identity.wasm");
    let spec = |component: &Path| {
        SpecBuilder::new("validate_transforms")
            .top(format_args!("cache_dir: {}", cache.display()))
            .mysql_table("e2e_validate_transforms", TABLE)
            .transforms(&format!(
                "  - name: same\n    component: {}",
                component.display()
            ))
            .build()
    };
    let path = dir.join("job.yaml");
    let validate = |text: String| -> Output {
        std::fs::write(&path, text).unwrap();
        etlhost_command()
            .args(["validate", "--offline"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
            .into()
    };

    let missing = dir.join("missing.wasm");
    let out = validate(spec(&missing));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: {}:12: transforms[0].component: ",
            path.display()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&missing.display().to_string()));

    let out = validate(spec(&identity));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"), "{cached:?}");
}
