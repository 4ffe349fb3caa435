//! `etlhost new sink`: the project it writes builds with the commands its own README gives and
//! runs its job against MariaDB, writing exactly the table's rows; a used folder and a bad name
//! are refused with their reasons.

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::services::{MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER};

use crate::support::{etlhost, exec, outside, person_table, Output};

fn new_sink(cwd: &Path, args: &[&str]) -> Output {
    Command::new(etlhost())
        .args(["new", "sink"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
        .into()
}

/// The commands of the README's first `sh` block, without their comments.
fn readme_commands(readme: &str) -> Vec<String> {
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README has an sh block");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs a README command in `dir` as a user would, with `cargo` and `etlhost` being this build's.
fn run_command(dir: &Path, command: &str, db: &str) -> Output {
    let mut words = command.split_whitespace();
    let program = match words.next().unwrap() {
        "cargo" => PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
        "etlhost" => etlhost(),
        other => PathBuf::from(other),
    };
    let mut command = Command::new(program);
    command.args(words);
    run_in(dir, command, db)
}

/// No target folder from the environment (the spec names the library under ./target), and the
/// job's source is the test's database.
fn run_in(dir: &Path, mut command: Command, db: &str) -> Output {
    command
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env(
            "ETLHOST_MYSQL_URL",
            format!("mysql://127.0.0.1:{MYSQL_PORT}/{db}"),
        )
        .env("ETLHOST_MYSQL_USER", MYSQL_USER)
        .env("ETLHOST_MYSQL_PASSWORD", MYSQL_PASSWORD)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
        .into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_sink_builds_and_runs_its_job_with_the_commands_of_its_readme() {
    let root = outside("scaffold");
    let out = new_sink(&root, &["csvout"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "wrote sink plugin `csvout` in csvout; to build and run it (see its README.md):\n  \
         cd csvout\n  cargo build --release\n  etlhost run job.yaml\n  cat csvout.csv\n"
    );
    let project = root.join("csvout");
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert_eq!(
        commands,
        [
            "cargo build --release",
            "etlhost run job.yaml",
            "cat csvout.csv"
        ]
    );

    let db = "e2e_scaffold";
    let pool = person_table(db, 2500, "p-").await;
    // What CSV must quote or tell apart: a delimiter and quotes, NULL and the empty string.
    exec(&pool, "UPDATE person SET name = 'a, \"b\"' WHERE id = 2").await;
    exec(&pool, "UPDATE person SET name = NULL WHERE id = 3").await;
    exec(&pool, "UPDATE person SET name = '' WHERE id = 4").await;
    let row = |id: u32| match id {
        2 => "2,\"a, \"\"b\"\"\"".to_string(),
        3 => "3,".to_string(),
        4 => "4,\"\"".to_string(),
        _ => format!("{id},p-{id}"),
    };

    let mut csv = String::new();
    for command in &commands {
        let out = run_command(&project, command, db);
        assert_eq!(out.code, 0, "`{command}` failed: {}", out.stderr);
        if command.starts_with("cat ") {
            csv = out.stdout;
        }
    }
    // One split without a key is read in the server's order: compare the rows by id.
    let by_id = |text: &str| {
        let mut lines: Vec<String> = text.lines().skip(1).map(String::from).collect();
        lines.sort_by_key(|l| l.split(',').next().unwrap().parse::<u32>().unwrap());
        lines
    };
    assert_eq!(csv.lines().next(), Some("id,name"));
    assert_eq!(by_id(&csv), (1..=2500).map(row).collect::<Vec<_>>());

    // A second run appends every row again (the first one completed, so nothing to resume), and
    // no second header: the file is no longer new.
    let out = run_command(&project, "etlhost run job.yaml", db);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let csv = std::fs::read_to_string(project.join("csvout.csv")).unwrap();
    assert_eq!(csv.matches("id,name\n").count(), 1);
    let twice: Vec<String> = (1..=2500).flat_map(|id| [row(id), row(id)]).collect();
    assert_eq!(by_id(&csv), twice);

    // All or nothing per batch: with the file size capped (RLIMIT_FSIZE, SIGXFSZ ignored so a
    // write past the cap fails with EFBIG after writing what fits), batches and their halves fail
    // part-way. The sink cuts each failed write back, so the file holds whole lines only, each row
    // once: the longest run of rows that fits.
    std::fs::remove_file(project.join("csvout.csv")).unwrap();
    let cap = 20_000;
    let mut capped = Command::new("sh");
    capped
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={cap} \"$0\" run job.yaml --fresh"
        ))
        .arg(etlhost());
    let out = run_in(&project, capped, db);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("cannot write to csvout.csv: File too large (os error 27)"),
        "{}",
        out.stderr
    );
    let mut fits = vec!["id,name".to_string()];
    let mut len = "id,name\n".len();
    for id in 1..=2500 {
        len += row(id).len() + 1;
        if len > cap {
            break;
        }
        fits.push(row(id));
    }
    let csv = std::fs::read_to_string(project.join("csvout.csv")).unwrap();
    assert_eq!(csv, fits.join("\n") + "\n");
}

#[test]
fn a_used_folder_and_a_bad_name_are_refused() {
    let root = outside("scaffold-refused");
    std::fs::create_dir_all(root.join("taken")).unwrap();
    std::fs::write(root.join("taken/notes.txt"), "mine").unwrap();

    let out = new_sink(&root, &["taken"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: taken exists and is not empty; choose another folder with --dir, or remove it\n"
    );
    let out = new_sink(&root, &["csvout", "--dir", "taken"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: taken exists and is not empty; choose another folder with --dir, or remove it\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("taken/notes.txt")).unwrap(),
        "mine"
    );
    assert!(!root.join("taken/Cargo.toml").exists());

    for bad in ["Csv", "2csv", "csv.out", "csv-"] {
        let out = new_sink(&root, &[bad]);
        assert_eq!(out.code, 2, "{bad}");
        assert_eq!(
            out.stderr,
            format!(
                "error: `{bad}` is not a valid sink name: use lowercase ASCII letters, digits, `-` \
                 and `_`, starting with a letter and not ending in `-` or `_`, at most 64 \
                 characters (it names the plugin in job specs and the crate etlhost-NAME)\n"
            )
        );
        assert!(!root.join(bad).exists(), "{bad}");
    }

    let out = new_sink(&root, &["csvout", "--sdk", "nowhere"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: the plugin SDK (crate etlhost-plugin-sdk) is not at nowhere (--sdk)\n"
    );
    assert!(!root.join("csvout").exists());
}
