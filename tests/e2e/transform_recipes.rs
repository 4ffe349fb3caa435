//! The recipes of `docs/transforms.md`, followed as a third party would: `etlhost new transform`
//! writes a project per language into a scratch folder outside the repository, the test runs the
//! commands its README gives (the very ones `docs/transforms.md` gives for the same name, which
//! the test checks), `sh -ec` and all, and compares the rows `etlhost run job.yaml` prints for a
//! MySQL table of its own.
//!
//! Only the README's "Install the tools (once)" step is not run as written, so that a run does
//! not download the tools again; each stands-in installs from the same pins, already fetched by
//! `cargo xtask build` (which `cargo xtask test` runs first):
//!
//! - Rust: `rustup target add wasm32-wasip2` is what `cargo xtask build` ran. The build runs with
//!   `CARGO_NET_OFFLINE=true`, resolving the project's crates from cargo's local cache (the SDK's
//!   dependencies, fetched for the repository's own transforms, and serde_json); its `target/` is a
//!   symlink to a folder kept between runs, so a rerun compiles only what changed.
//! - Python: `.venv` is a symlink to `target/tools/python`, the venv `cargo xtask build` made with
//!   pip from `plugins/transforms/python/requirements.txt`, whose pin the project's
//!   `requirements.txt` copies; the build command (`.venv/bin/componentize-py ...`) runs as
//!   written.
//! - JavaScript: `npm install --prefer-offline --no-audit --no-fund`, the README's `npm install`
//!   taking from npm's cache what it holds (filled by the `npm ci` of `cargo xtask build`, from
//!   the same package-lock.json the project copies), and without the audit's request.

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::services::MYSQL_PORT;

use crate::support::{etlhost, exec, mysql, workspace, Output};

/// The name `docs/transforms.md` builds its examples with.
const NAME: &str = "upper-name";

/// Rows in, as the scaffold's README shows them too.
const ROWS: &str = "(1, 'Ada'), (2, 'Zoë'), (3, NULL)";

/// What the example transform makes of them, in every language.
const PRINTED: &str = "{\"id\":1,\"name\":\"ADA\",\"name_length\":3}
{\"id\":2,\"name\":\"ZOË\",\"name_length\":3}
{\"id\":3,\"name\":null,\"name_length\":null}
";

fn target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The commands of the fenced `sh` block under `heading` in a README.
fn block(readme: &str, heading: &str) -> String {
    let (_, after) = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in the README:\n{readme}"));
    let (before, body) = after.split_once("```sh\n").unwrap();
    assert!(!before.contains("\n#"), "no sh block under {heading:?}");
    body.split_once("\n```").unwrap().0.to_string()
}

/// Runs `script` with `sh -ec` in `dir`.
fn sh(dir: &Path, script: &str, env: &[(&str, String)]) -> Output {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        // The README's paths assume cargo's own target folder, whatever the caller's setting.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| panic!("sh: {e}"));
    Output::from(out)
}

/// Writes the project for `lang` into a fresh scratch folder; returns it and its README.
fn scaffold(lang: &str) -> (PathBuf, String) {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("recipes-{lang}"));
    let dir = scratch.join(NAME);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&scratch).unwrap();
    let out = Output::from(
        Command::new(etlhost())
            .args(["new", "transform", "--lang", lang, NAME, "--dir"])
            .arg(&dir)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "etlhost new:\n{}", out.stderr);
    assert!(
        out.stdout.contains("etlhost run job.yaml"),
        "{}",
        out.stdout
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    // The recipe in the docs is the README's, word for word.
    let docs = std::fs::read_to_string(workspace().join("docs/transforms.md")).unwrap();
    for heading in ["## Install the tools (once)", "## Build"] {
        let commands = block(&readme, heading);
        assert!(
            docs.contains(&format!("```sh\n{commands}\n```")),
            "docs/transforms.md lacks the {lang} README's {heading:?} block:\n{commands}"
        );
    }
    (dir, readme)
}

/// A database of the test's own with the README's `person` table.
async fn person(db: &str) {
    let pool = mysql(db).await;
    exec(
        &pool,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(100))",
    )
    .await;
    exec(&pool, &format!("INSERT INTO person VALUES {ROWS}")).await;
    pool.disconnect().await.unwrap();
}

/// Runs the README's build block, then its run block against database `db`, and checks the rows.
fn build_and_run(dir: &Path, readme: &str, db: &str, env: &[(&str, String)]) {
    let build = sh(dir, &block(readme, "## Build"), env);
    assert_eq!(
        build.code, 0,
        "build failed:\n{}\n{}",
        build.stdout, build.stderr
    );
    let path = format!(
        "{}:{}",
        target().join("debug").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = sh(
        dir,
        &block(readme, "## Run"),
        &[
            ("PATH", path),
            (
                "ETLHOST_MYSQL_URL",
                format!("mysql://127.0.0.1:{MYSQL_PORT}/{db}"),
            ),
            ("RUST_LOG", "warn".to_string()),
        ],
    );
    assert_eq!(run.code, 0, "etlhost run failed:\n{}", run.stderr);
    assert_eq!(run.stdout, PRINTED, "stderr:\n{}", run.stderr);
    for line in ["Rows Written          : 3\n", "Rows Failed           : 0\n"] {
        assert!(run.stderr.contains(line), "{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_recipe_builds_and_runs() {
    person("e2e_recipe_rust").await;
    let (dir, readme) = scaffold("rust");
    assert_eq!(
        block(&readme, "## Install the tools (once)"),
        "rustup target add wasm32-wasip2"
    );
    let kept = dir.parent().unwrap().join("target");
    std::fs::create_dir_all(&kept).unwrap();
    std::os::unix::fs::symlink(&kept, dir.join("target")).unwrap();
    build_and_run(
        &dir,
        &readme,
        "e2e_recipe_rust",
        &[("CARGO_NET_OFFLINE", "true".to_string())],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_recipe_builds_and_runs() {
    person("e2e_recipe_python").await;
    let (dir, readme) = scaffold("python");
    assert_eq!(
        block(&readme, "## Install the tools (once)"),
        "python3 -m venv .venv\n.venv/bin/pip install -r requirements.txt"
    );
    let venv = target().join("tools/python");
    assert!(
        venv.join("bin/componentize-py").exists(),
        "{} has no componentize-py: run `cargo xtask build`",
        venv.display()
    );
    std::os::unix::fs::symlink(&venv, dir.join(".venv")).unwrap();
    build_and_run(&dir, &readme, "e2e_recipe_python", &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_recipe_builds_and_runs() {
    person("e2e_recipe_js").await;
    let (dir, readme) = scaffold("js");
    let install = block(&readme, "## Install the tools (once)");
    assert_eq!(install, "npm install");
    let out = sh(
        &dir,
        &format!("{install} --prefer-offline --no-audit --no-fund"),
        &[],
    );
    assert_eq!(out.code, 0, "npm install:\n{}\n{}", out.stdout, out.stderr);
    build_and_run(&dir, &readme, "e2e_recipe_js", &[]);
}
