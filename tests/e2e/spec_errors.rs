//! Bad specs fail before any data moves, with the file, line and key in the message.

use std::path::Path;

use etlhost::spec::Spec;

use crate::support::{etlhost_command, etlhost_with_spec, Output};

const GOOD: &str = "name: errors
source:
  plugin: mysql
  options:
    url: mysql://127.0.0.1:3306/test
    table: person
sink:
  plugin: bolt
  max_batch_size: 500
  options:
    uri: bolt://127.0.0.1:7687
    user: root
    password: ${ETLHOST_TEST_NEVER_SET:-x}
    query: \"UNWIND $batch AS row CREATE (:P {id: row.id})\"
";

fn validate(name: &str, text: &str) -> (String, String) {
    let (path, out) = etlhost_with_spec("validate", name, text, &["--offline"]);
    if out.code == 0 {
        return (path.display().to_string(), String::new());
    }
    assert_eq!(out.code, 2, "config errors exit with 2:\n{}", out.stderr);
    (
        path.display().to_string(),
        out.stderr.trim_end().to_string(),
    )
}

#[test]
fn a_good_spec_validates() {
    let (path, out) = etlhost_with_spec("validate", "good.yaml", GOOD, &["--offline"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "{path}: ok (job 'errors': mysql 0.1.0 -> bolt 0.1.0)",
            path = path.display()
        )
    );
}

#[test]
fn unknown_key() {
    let text = GOOD.replace(
        "  max_batch_size: 500\n",
        "  max_batch_size: 500\n  batch_size: 10\n",
    );
    let (path, err) = validate("unknown_key.yaml", &text);
    assert_eq!(
        err,
        format!(
            "error: {path}:10: sink.batch_size: unknown key, expected one of `plugin`, `max_batch_size`, \
             `batch_timeout`, `max_batch_bytes`, `write_mode`, `parallelism`, `max_retries`, `retry_backoff`, \
             `endpoints`, `options`"
        )
    );
}

#[test]
fn wrong_type() {
    let text = GOOD.replace("max_batch_size: 500", "max_batch_size: lots");
    let (path, err) = validate("wrong_type.yaml", &text);
    assert_eq!(
        err,
        format!(
            "error: {path}:9: sink.max_batch_size: invalid type: string \"lots\", expected usize"
        )
    );
}

#[test]
fn partition_keys_that_name_no_column_or_one_twice() {
    for (key, message) in [
        ("5", "expected a column name or a list of column names"),
        ("[]", "names no column"),
        ("[id, name, id]", "names `id` twice"),
    ] {
        let text = GOOD.replace(
            "  plugin: mysql\n",
            &format!("  plugin: mysql\n  partition_column: {key}\n"),
        );
        let (path, err) = validate("partition_key.yaml", &text);
        assert_eq!(
            err,
            format!("error: {path}:4: source.partition_column: {message}")
        );
    }
}

#[test]
fn missing_plugin_file() {
    let text = GOOD.replace("plugin: bolt", "plugin: ./plugins/libnothing.so");
    let (path, err) = validate("missing_plugin.yaml", &text);
    let dir = Path::new(&path).parent().unwrap().display().to_string();
    assert_eq!(
        err,
        format!(
            "error: {path}:8: sink.plugin: plugin file {dir}/./plugins/libnothing.so not found"
        )
    );
}

#[test]
fn unknown_plugin_name() {
    let text = GOOD.replace("plugin: bolt", "plugin: neo5j");
    let (path, err) = validate("unknown_plugin.yaml", &text);
    assert!(
        err.starts_with(&format!(
            "error: {path}:8: sink.plugin: plugin 'neo5j' not found: no libetlhost_neo5j.so or libneo5j.so in "
        )),
        "{err}"
    );
}

#[test]
fn a_source_used_as_a_sink() {
    let text = GOOD.replace("plugin: bolt", "plugin: mysql");
    let (path, err) = validate("wrong_kind.yaml", &text);
    assert!(
        err.starts_with(&format!("error: {path}:8: sink.plugin: plugin 'mysql' (")),
        "{err}"
    );
    assert!(
        err.ends_with(") is a source, but sink needs a sink"),
        "{err}"
    );
}

#[test]
fn plugin_option_missing_is_reported_by_the_plugin_at_the_spec_line() {
    let text = GOOD.replace("    uri: bolt://127.0.0.1:7687\n", "");
    let (path, err) = validate("missing_uri.yaml", &text);
    assert_eq!(err, format!("error: {path}:10: sink.options.uri: missing"));
}

#[test]
fn plugin_option_rule() {
    let text = GOOD.replace("UNWIND $batch AS row", "UNWIND $rows AS row");
    let (path, err) = validate("bad_query.yaml", &text);
    assert_eq!(
        err,
        format!(
            "error: {path}:14: sink.options.query: must use the parameter $batch (e.g. UNWIND $batch AS row CREATE ...)"
        )
    );
}

#[test]
fn unset_environment_variable() {
    let text = GOOD.replace("${ETLHOST_TEST_NEVER_SET:-x}", "${ETLHOST_TEST_NEVER_SET}");
    let (path, err) = validate("env.yaml", &text);
    assert_eq!(
        err,
        format!("error: {path}:13: sink.options.password: environment variable ETLHOST_TEST_NEVER_SET is not set")
    );
}

#[test]
fn toml_errors_name_lines_too() {
    let text = "name = \"t\"\n\n[source]\nplugin = \"mysql\"\n\n[source.options]\nurl = \"mysql://h/db\"\n\
                tabel = \"person\"\n\n[sink]\nplugin = \"console\"\n";
    let (path, err) = validate("typo.toml", text);
    assert_eq!(
        err,
        format!(
            "error: {path}:8: source.options.tabel: unknown key, expected one of `url`, `user`, `password`, \
             `table`, `query`, `fetch_size`, `connection_check_timeout_sec`, `tinyint1_as_bool`, \
             `bit1_as_bool`, `json`, `json_columns`, `client`"
        )
    );
}

#[test]
fn wrong_password_is_reported_without_the_password() {
    let text = GOOD
        .replace("    table: person\n", "    table: person\n    user: etl\n    password: not-the-pw-s3cret\n")
        .replace("plugin: bolt", "plugin: console")
        .replace(
            "  options:\n    uri: bolt://127.0.0.1:7687\n    user: root\n    password: ${ETLHOST_TEST_NEVER_SET:-x}\n    query: \"UNWIND $batch AS row CREATE (:P {id: row.id})\"\n",
            "",
        );
    let (_, out) = etlhost_with_spec("run", "wrong_pw.yaml", &text, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Access denied for user 'etl'@'localhost'"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-pw-s3cret"), "{}", out.stderr);
}

#[test]
fn yaml_and_toml_jobs_are_the_same_job() {
    let jobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs");
    let yaml = Spec::load(&jobs.join("person.yaml")).unwrap();
    let toml = Spec::load(&jobs.join("person.toml")).unwrap();
    assert_eq!(yaml.job, toml.job);
    assert_eq!(yaml.job.flows[0].sink.max_batch_size, 1000);
}

#[test]
fn progress_in_the_target_needs_a_sink_that_keeps_it() {
    let console = GOOD.replace(
        &GOOD[GOOD.find("sink:").unwrap()..],
        "sink:\n  plugin: console\n",
    );
    let text = console.clone() + "checkpoint:\n  store: target\n";
    let (path, err) = validate("store_target.yaml", &text);
    assert_eq!(
        err,
        format!("error: {path}:10: checkpoint.store: is `target`, but the sink plugin `console` of flow `errors` cannot keep progress in the target")
    );
    let text = console.clone() + "shards: 4\n";
    let (path, err) = validate("shards_console.yaml", &text);
    assert_eq!(
        err,
        format!("error: {path}:9: shards: splits the job into shards, which share their plan and progress through the target, but the sink plugin `console` of flow `errors` cannot keep progress in the target")
    );
    // What a run's command line adds (`--shard`) meets the same checks, before anything is read.
    let (_, out) = etlhost_with_spec("run", "shard_fresh.yaml", &console, &["--shard", "0/2"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        "error: --fresh cannot be used with shards: it would discard the other shards' progress; start a new run instead (--run or ETLHOST_RUN; this is the default run)"
    );
    let shard = |name: &str, text: &str| {
        let (path, out) = etlhost_with_spec("validate", name, text, &["--offline"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let out = Output::from(
            etlhost_command()
                .args(["run", &path.display().to_string(), "--shard", "0/2"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 2, "{}", out.stderr);
        (
            path.display().to_string(),
            out.stderr.trim_end().to_string(),
        )
    };
    let (path, err) = shard("shard_console.yaml", &console);
    assert_eq!(
        err,
        format!("error: {path}:8: sink.plugin: the sink plugin `console` cannot keep progress in the target, which shards need")
    );
    let (path, err) = shard(
        "shard_local.yaml",
        &(GOOD.to_string() + "checkpoint:\n  store: local\n"),
    );
    assert_eq!(
        err,
        format!("error: {path}:16: checkpoint.store: is `local`, but shards share their plan and progress through the target: use `target` or `auto`")
    );
}
