//! `etlhost status SPEC`: where a job stands, read from where its progress is kept, on a machine
//! that never ran it: a sharded run's plan, splits and rows in the target; a failed run's failure
//! (in the target and in a local checkpoint); a target that cannot be read (exit 3, its error, no
//! password); and a streaming job's lease, writers and snapshot in the target.

use std::path::Path;

use crate::support::{
    etlhost_command, exec, graph, person_table, scratch_dir, Output, SpecBuilder, PERSON_ID_INDEX,
    PERSON_MERGE,
};

/// `etlhost status SPEC` with `extra` arguments.
fn status(spec: &Path, extra: &[&str]) -> Output {
    etlhost_command()
        .arg("status")
        .arg(spec)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("ETLHOST_RUN")
        .output()
        .unwrap()
        .into()
}

/// `etlhost status SPEC --json [extra]`, which must succeed, parsed.
fn status_json(spec: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json"];
    args.extend(extra);
    let out = status(spec, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.stdout))
}

/// `etlhost run SPEC extra...`, quietly; its output.
fn run(spec: &Path, extra: &[&str]) -> Output {
    etlhost_command()
        .arg("run")
        .arg(spec)
        .args(extra)
        .args(["--quiet"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
        .into()
}

/// Asserts `text`'s lines: each expected line equals the output's line at its place, or, ending
/// in `…`, starts with what comes before it (a time that varies).
fn assert_lines(text: &str, expected: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (got, want) in lines.iter().zip(expected) {
        match want.strip_suffix('…') {
            Some(head) => assert!(got.starts_with(head), "{got:?} !~ {want:?} in:\n{text}"),
            None => assert_eq!(got, want, "in:\n{text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_a_sharded_run_in_the_target_and_refuses_an_unreadable_target() {
    let db = "e2e_status_shards";
    person_table(db, 100, "person-").await;
    graph(db).await;
    let dir = scratch_dir("status_shards");
    let spec = dir.join("status.yaml");
    let builder = SpecBuilder::new("status_shards")
        .top("checkpoint: {store: target}")
        .mysql_table(db, "person")
        .partition("id", 4)
        .sink_bolt(db, PERSON_MERGE)
        .setup(PERSON_ID_INDEX);
    std::fs::write(&spec, builder.clone().build()).unwrap();

    let out = status(&spec, &["--run", "s1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_lines(
        &out.stdout,
        &[
            "job `status_shards`, run 's1'",
            "",
            "flow `status_shards`: batch, progress in the target",
            "  no plan recorded: the flow has not started in this run, or it finished in one process (which removes its records)",
        ],
    );

    // Two shards of run s1, one after the other: their records stay in the target.
    for shard in ["0/2", "1/2"] {
        let out = run(&spec, &["--shard", shard, "--run", "s1"]);
        assert_eq!(out.code, 0, "shard {shard}: {}", out.stderr);
    }
    let out = status(&spec, &["--run", "s1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_lines(
        &out.stdout,
        &[
            "job `status_shards`, run 's1'",
            "",
            "flow `status_shards`: batch, progress in the target",
            "  plan:        4 splits for 2 shard(s), planned at …",
            "  splits:      4 done, 0 in progress, 0 not started, of 4",
            "  rows:        100 written",
            "  failure:     none",
        ],
    );
    let json = status_json(&spec, &["--run", "s1"]);
    assert_eq!(json["job"], "status_shards");
    assert_eq!(json["run"], "s1");
    assert_eq!(json["stream"], serde_json::Value::Null);
    let flow = &json["flows"][0];
    assert_eq!(flow["flow"], "status_shards");
    assert_eq!(flow["mode"], "batch");
    assert_eq!(flow["store"], "target");
    assert_eq!(flow["recorded"], true);
    assert_eq!(flow["plan"]["splits"], 4);
    assert_eq!(flow["plan"]["shards"], 2);
    assert_eq!(
        flow["splits"],
        serde_json::json!({"total": 4, "done": 4, "in_progress": 0, "not_started": 0})
    );
    assert_eq!(flow["rows"], 100);
    assert_eq!(flow["failure"], serde_json::Value::Null);
    assert_eq!(flow["read_error"], serde_json::Value::Null);

    // A target that refuses the login: exit 3, the flow and the sink's error named, no password.
    let wrong = builder
        .build()
        .replace("password: etlhost-pass", "password: Wr0ng-s3cret");
    assert!(wrong.contains("Wr0ng-s3cret"), "{wrong}");
    std::fs::write(&spec, wrong).unwrap();
    let out = status(&spec, &["--run", "s1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    assert!(
        error.starts_with("error: flow `status_shards`: cannot read its progress in the target: "),
        "{}",
        out.stderr
    );
    assert!(error.contains("Authentication failed"), "{}", out.stderr);
    assert!(!out.stderr.contains("Wr0ng-s3cret"), "{}", out.stderr);
    assert!(!out.stdout.contains("Wr0ng-s3cret"), "{}", out.stdout);
}

/// `person` holds ids 1..=100 and 1000, which the sink refuses.
async fn person_with_a_bad_row(db: &str) {
    let pool = person_table(db, 100, "p").await;
    exec(&pool, "INSERT INTO person VALUES (1000, 'bad')").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_how_a_run_failed_in_the_target_and_in_a_local_checkpoint() {
    let db = "e2e_status_failed";
    person_with_a_bad_row(db).await;
    let g = graph(db).await;
    // A node with the bad row's key is there already: the unique constraint refuses that row.
    g.run(neo4rs::query("CREATE (:Person {id: 1000})"))
        .await
        .unwrap();
    let dir = scratch_dir("status_failed");
    let dl = dir.join("dl.jsonl");
    let spec = dir.join("failed.yaml");
    let text = SpecBuilder::new("status_failed")
        .top(format_args!("dead_letter: {}", dl.display()))
        .mysql_table(db, "person")
        .sink_bolt(
            db,
            "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})",
        )
        .setup("CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE")
        .build();
    std::fs::write(&spec, text).unwrap();
    let out = run(&spec, &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);

    let out = status(&spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let failure = format!(
        "1 rows failed, more than max_failed_rows (0); they are in {}",
        dl.display()
    );
    let failure_line = "  failure:     at …";
    let failed_rows = format!("  failed rows: 1 in {}", dl.display());
    assert_lines(
        &out.stdout,
        &[
            "job `status_failed`, the default run",
            "",
            "flow `status_failed`: batch, progress in the target",
            "  plan:        1 splits for 1 shard(s), planned at …",
            "  splits:      1 done, 0 in progress, 0 not started, of 1",
            "  rows:        101 written",
            failure_line,
            &failed_rows,
        ],
    );
    assert!(
        out.stdout.contains(&format!("Z: {failure}\n")),
        "{}",
        out.stdout
    );
    let json = status_json(&spec, &[]);
    let f = &json["flows"][0]["failure"];
    assert_eq!(f["error"], failure.as_str());
    assert_eq!(f["failed_rows"], 1);
    assert_eq!(f["dead_letter"], dl.display().to_string());
    assert_eq!(f["too_many_failed_rows"], true);

    // The same failure kept in a local checkpoint, read without connecting anywhere.
    let cp = dir.join("cp");
    let local = SpecBuilder::new("status_failed_local")
        .top(format_args!("dead_letter: {}", dl.display()))
        .top(format_args!("checkpoint: {{dir: {}}}", cp.display()))
        .mysql_table(db, "person")
        .sink_plugin("faulty")
        .sink_option("fail_on: 1000")
        .build();
    let spec = dir.join("local.yaml");
    std::fs::write(&spec, local).unwrap();
    let file = cp.join("status_failed_local.checkpoint.json");
    let header = format!(
        "flow `status_failed_local`: batch, progress in the local checkpoint {}",
        file.display()
    );
    let out = status(&spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_lines(
        &out.stdout,
        &[
            "job `status_failed_local`, the default run",
            "",
            &header,
            "  no checkpoint: the flow has not run here, or its job finished (which removes it)",
        ],
    );
    let out = run(&spec, &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let out = status(&spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_lines(
        &out.stdout,
        &[
            "job `status_failed_local`, the default run",
            "",
            &header,
            "  plan:        1 splits, checkpoint written at …",
            "  splits:      1 done, 0 in progress, 0 not started, of 1",
            failure_line,
            &failed_rows,
        ],
    );
    let json = status_json(&spec, &[]);
    let flow = &json["flows"][0];
    assert_eq!(flow["store"], "local");
    assert_eq!(flow["file"], file.display().to_string());
    assert_eq!(flow["rows"], serde_json::Value::Null);
    assert_eq!(flow["failure"]["error"], failure.as_str());
}

/// The lease holder a running stream's metrics name.
fn metrics_holder(metrics: &str) -> Option<String> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("etlhost_stream_lease_holder{"))?;
    Some(
        line.split("holder=\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_string(),
    )
}

/// Polls `status --json` until `ready` holds of its stream, for at most a minute.
fn stream_status_when(
    spec: &Path,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let json = status_json(spec, &[]);
        if ready(&json["stream"]) {
            return json;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the status never got there: {json:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_a_streaming_job_s_lease_writers_and_snapshot_in_the_target() {
    let name = "e2e_status_stream";
    let pool = person_table(name, 10, "p").await;
    graph(name).await;
    let dir = scratch_dir(name);
    let spec = dir.join(format!("{name}.yaml"));
    let url = format!("mysql://127.0.0.1:{}/{name}", xtask::services::MYSQL_PORT);
    // A short lease: renewed every second, so the job's record follows the stream closely.
    let extra = "stream: {lease: 3s}\n";
    let text = crate::stream::stream_spec(name, &url, name, &dir, extra);
    std::fs::write(&spec, text).unwrap();
    let mut job = crate::stream::Running::start(&spec, &dir, true);
    // Changes made once the stream follows the log, so that they are streamed, not snapshot.
    let started = crate::stream::head(&pool).await;
    job.wait_until_acked(&started);
    exec(&pool, "INSERT INTO person VALUES (11, 'p11'), (12, 'p12')").await;
    exec(&pool, "UPDATE person SET name = 'renamed' WHERE id = 3").await;
    exec(&pool, "DELETE FROM person WHERE id = 5").await;
    let target = crate::stream::head(&pool).await;
    job.wait_until_acked(&target);
    let holder = metrics_holder(&job.scrape().unwrap()).expect("a lease holder metric");

    let json = stream_status_when(&spec, |s| {
        s["snapshot_done"] == true
            && s["writers"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| !w["last"].is_null()))
    });
    let s = &json["stream"];
    assert_eq!(s["store"], "target");
    assert_eq!(s["flows"], serde_json::json!([name]));
    assert_eq!(s["lease"]["holder"], holder.as_str());
    assert_eq!(s["lease"]["epoch"], 1);
    assert_eq!(s["lease"]["state"], "active");
    assert_eq!(s["last_error"], serde_json::Value::Null);
    assert!(s["resume"]["file"].is_string(), "{s:#}");
    assert!(s["lag"]["head"]["file"].is_string(), "{s:#}");
    let writers: Vec<(String, u64, u64, u64)> = s["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_u64().unwrap();
            (
                w["flow"].as_str().unwrap().to_string(),
                n("writers"),
                n("slot"),
                n("epoch"),
            )
        })
        .collect();
    assert_eq!(
        writers,
        [(name.to_string(), 2, 0, 1), (name.to_string(), 2, 1, 1)]
    );
    let flow = &json["flows"][0];
    assert_eq!(flow["mode"], "stream");
    assert_eq!(flow["store"], "target");

    let out = status(&spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lease = format!("  lease:       active in {holder}, epoch 1, expires in …");
    let header = format!("stream of flow(s) `{name}`: position and lease in the target");
    let writer = |slot: u32| format!("  writer `{name}` {slot} of 2: …");
    assert_lines(
        &out.stdout,
        &[
            &format!("job `{name}`, the default run"),
            "",
            &header,
            &lease,
            "  resume:      …",
            "  snapshot:    done",
            "  last error:  none",
            "  lag:         …",
            &writer(0),
            &writer(1),
        ],
    );

    // SIGTERM releases the lease: a standby would take over at once.
    assert_eq!(job.terminate(), 130);
    let json = status_json(&spec, &[]);
    assert_eq!(json["stream"]["lease"]["state"], "released", "{json:#}");
    let out = status(&spec, &[]);
    let released = format!("  lease:       released by {holder} (epoch 1): no process is active");
    assert!(out.stdout.lines().any(|l| l == released), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_a_stream_kept_in_its_local_file() {
    let name = "e2e_status_stream_local";
    let pool = person_table(name, 10, "p").await;
    graph(name).await;
    let dir = scratch_dir(name);
    let spec = dir.join(format!("{name}.yaml"));
    let url = format!("mysql://127.0.0.1:{}/{name}", xtask::services::MYSQL_PORT);
    let text = crate::stream::stream_spec(name, &url, name, &dir, "")
        .replace("interval: 100ms}", "interval: 100ms, store: local}");
    std::fs::write(&spec, text).unwrap();
    let file = dir.join("cp").join(format!("{name}.stream.json"));
    let header = format!(
        "stream of flow(s) `{name}`: position in the local file {} (no lease)",
        file.display()
    );
    let out = status(&spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_lines(
        &out.stdout,
        &[
            &format!("job `{name}`, the default run"),
            "",
            &header,
            "  nothing recorded: the stream has not started",
        ],
    );

    let mut job = crate::stream::Running::start(&spec, &dir, true);
    let started = crate::stream::head(&pool).await;
    job.wait_until_acked(&started);
    exec(&pool, "INSERT INTO person VALUES (11, 'p11')").await;
    let written = crate::stream::head(&pool).await;
    job.wait_until_acked(&written);
    assert_eq!(job.terminate(), 130);

    let json = status_json(&spec, &[]);
    let s = &json["stream"];
    assert_eq!(s["store"], "local");
    assert_eq!(s["file"], file.display().to_string());
    assert_eq!(s["snapshot_done"], true);
    assert_eq!(s["lease"], serde_json::Value::Null);
    assert_eq!(s["writers"], serde_json::json!([]));
    // SIGTERM recorded the position acknowledged last: at or past the insert's commit.
    let resume = (
        s["resume"]["file"].as_str().unwrap().to_string(),
        s["resume"]["pos"].as_u64().unwrap(),
    );
    assert!(resume >= written, "{resume:?} < {written:?}");
    assert!(s["lag"]["head"]["file"].is_string(), "{s:#}");
    assert_eq!(json["flows"][0]["store"], "local");
    let out = status(&spec, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_lines(
        &out.stdout,
        &[
            &format!("job `{name}`, the default run"),
            "",
            &header,
            "  resume:      …",
            "  snapshot:    done",
            "  lag:         …",
        ],
    );
}
