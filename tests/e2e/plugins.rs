//! Third-party plugins: a sink built outside this workspace from the SDK alone runs a real job;
//! broken libraries are refused with the file named; a plugin that panics fails only its rows.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    etlhost_command, etlhost_with_spec, exec, mysql, outside, read_summary, workspace, SpecBuilder,
};

#[test]
fn the_sdk_readme_shows_the_example_plugin_as_it_is() {
    let readme = std::fs::read_to_string(workspace().join("plugins/sdk/README.md")).unwrap();
    let source =
        std::fs::read_to_string(workspace().join("plugins/example-sink/src/lib.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{source}```")),
        "plugins/sdk/README.md is out of date"
    );
    assert!(
        source.lines().count() <= 55,
        "the example no longer fits the README's promise"
    );
}

/// The example sink, copied out of the tree with its SDK dependency pointed at the SDK by path
/// and built there: its library.
fn build_the_example_outside() -> PathBuf {
    let krate = outside("jsonl-sink");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let example = workspace().join("plugins/example-sink");
    let manifest = std::fs::read_to_string(example.join("Cargo.toml"))
        .unwrap()
        .replace(
            "path = \"../sdk\"",
            &format!("path = \"{}\"", workspace().join("plugins/sdk").display()),
        );
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(example.join("src/lib.rs"), krate.join("src/lib.rs")).unwrap();
    let target = std::env::temp_dir().join("etlhost-e2e-plugin-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(
        built.success(),
        "the example plugin does not build outside the workspace"
    );
    let lib = target.join("debug/libetlhost_jsonl.so");
    assert!(lib.exists());
    lib
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_built_outside_the_workspace_from_the_sdk_alone_runs_a_job() {
    let lib = build_the_example_outside();

    let pool = mysql("e2e_plugin").await;
    exec(
        &pool,
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50)) CHARACTER SET utf8mb4",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO t SELECT seq, CONCAT('名前-', seq) FROM seq_1_to_2500",
    )
    .await;

    // By path in the spec.
    let out_file = outside("jsonl-out").join("by-path.jsonl");
    let text = SpecBuilder::new("by_path")
        .mysql_table("e2e_plugin", "t")
        .sink_plugin(lib.display())
        .batch(300)
        .sink_option(format_args!("path: {}", out_file.display()))
        .build();
    let summary = outside("jsonl-summary").join("s.json");
    let (_, out) = etlhost_with_spec(
        "run",
        "by_path.yaml",
        &text,
        &["--summary-json", &summary.display().to_string()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read_summary(&summary)["written"], 2500);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2500);
    assert_eq!(lines[0], serde_json::json!({"id": 1, "name": "名前-1"}));
    assert_eq!(
        lines.iter().map(|l| l["id"].as_i64().unwrap()).sum::<i64>(),
        2500 * 2501 / 2
    );

    // By name, found on ETLHOST_PLUGIN_PATH, with the plugin's log line under its name.
    let out_file = out_file.with_file_name("by-name.jsonl");
    let text = SpecBuilder::new("by_name")
        .mysql_table("e2e_plugin", "t")
        .sink_plugin("jsonl")
        .sink_option(format_args!("path: {}", out_file.display()))
        .build();
    let spec = outside("jsonl-spec").join("by_name.yaml");
    std::fs::write(&spec, text).unwrap();
    let plugin_dir = lib.parent().unwrap();
    let run = etlhost_command()
        .arg("run")
        .arg(&spec)
        .env("ETLHOST_PLUGIN_PATH", plugin_dir)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap().lines().count(),
        2500
    );
    assert!(
        stderr.contains(&format!(
            "INFO plugin: appending rows to {} plugin=jsonl",
            out_file.display()
        )),
        "{stderr}"
    );

    let list = etlhost_command()
        .arg("plugins")
        .env("ETLHOST_PLUGIN_PATH", plugin_dir)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["jsonl", "sink", "0.1.0", "2", &lib.display().to_string()]),
        "{list}"
    );
}

/// Compiles a one-file cdylib with rustc (no dependencies), for libraries the SDK would never make.
fn cdylib(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let lib = dir.join(format!("lib{name}.so"));
    let ok = Command::new("rustc")
        .args(["--edition", "2021", "--crate-type", "cdylib", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success());
    lib
}

#[test]
fn broken_plugin_files_are_refused_with_the_file_named() {
    let dir = outside("broken-plugins");
    let spec = |plugin: &Path| {
        format!(
            "name: broken\nsource:\n  plugin: mysql\n  options:\n    url: mysql://h/db\n    table: t\nsink:\n  plugin: {}\n",
            plugin.display()
        )
    };
    let validate = |name: &str, plugin: &Path| {
        let (path, out) = etlhost_with_spec("validate", name, &spec(plugin), &[]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        (path, out.stderr.trim_end().to_string())
    };

    let text = dir.join("libtext.so");
    std::fs::write(&text, "not a library").unwrap();
    let (path, err) = validate("not_a_library.yaml", &text);
    assert!(
        err.starts_with(&format!(
            "error: {}:8: sink.plugin: {} is not a loadable shared library: ",
            path.display(),
            text.display()
        )),
        "{err}"
    );

    let no_entry = cdylib(
        &dir,
        "noentry",
        "#[no_mangle]\npub extern \"C\" fn something_else() {}\n",
    );
    let (path, err) = validate("no_entry.yaml", &no_entry);
    assert_eq!(
        err,
        format!(
            "error: {}:8: sink.plugin: {} is not an etlhost plugin: it exports no `etlhost_plugin_entry` symbol",
            path.display(),
            no_entry.display()
        )
    );

    let future = cdylib(
        &dir,
        "future",
        "static D: [u32; 2] = [99, 4096];\n#[no_mangle]\npub extern \"C\" fn etlhost_plugin_entry() -> *const u32 { D.as_ptr() }\n",
    );
    let (path, err) = validate("abi.yaml", &future);
    assert_eq!(
        err,
        format!(
            "error: {}:8: sink.plugin: {}: plugin ABI version 99 does not match the host's ABI version 2; \
             rebuild the plugin against an etlhost-plugin-sdk with ABI version 2",
            path.display(),
            future.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_panics_or_fails_loses_only_its_rows() {
    let pool = mysql("e2e_faulty").await;
    exec(&pool, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    exec(&pool, "INSERT INTO t SELECT seq FROM seq_1_to_100").await;
    let dlq = outside("faulty-dlq").join("dead.jsonl");
    let text = |limit: u64| {
        SpecBuilder::new("faulty")
            .mysql_table("e2e_faulty", "t")
            .sink_plugin("faulty")
            .batch(10)
            .sink_option("panic_on: 7")
            .sink_option("fail_on: 13")
            .extra_yaml(&format!(
                "max_failed_rows: {limit}\ndead_letter: {}\n",
                dlq.display()
            ))
            .build()
    };
    let summary = dlq.with_file_name("summary.json");
    let (_, out) = etlhost_with_spec(
        "run",
        "faulty.yaml",
        &text(2),
        &["--summary-json", &summary.display().to_string()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = read_summary(&summary);
    assert_eq!(
        (s["written"].as_u64(), s["failed"].as_u64()),
        (Some(98), Some(2))
    );
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<(i64, &str)> = dead
        .iter()
        .map(|d| {
            (
                d["row"]["id"].as_i64().unwrap(),
                d["error"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (7, "plugin faulty: plugin panicked: boom at id 7"),
            (13, "plugin faulty: refused id 13")
        ]
    );

    // Over the limit, the job fails, naming the plugin and its message, and the host still reports.
    let (_, out) = etlhost_with_spec(
        "run",
        "faulty_strict.yaml",
        &text(0),
        &["--summary-json", &summary.display().to_string()],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("plugin faulty: plugin panicked: boom at id 7"),
        "{}",
        out.stderr
    );
    let s = read_summary(&summary);
    assert_eq!(
        s["read"],
        s["written"].as_u64().unwrap() + s["failed"].as_u64().unwrap()
    );
}
