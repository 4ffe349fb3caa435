//! What a person watching a job sees off a terminal: a progress block every `progress_interval`,
//! nothing with `--quiet`, and never a password, even in debug logs.

use crate::support::{etlhost_with_spec, exec, mysql, SpecBuilder};

fn slow_spec(password_in_url: bool) -> String {
    let url = if password_in_url {
        "mysql://etl:etl@127.0.0.1:3306/e2e_progress"
    } else {
        "mysql://127.0.0.1:3306/e2e_progress"
    };
    SpecBuilder::new("progress")
        .top("progress_interval: 100ms")
        .source_url(url)
        .table("t")
        .source_option("fetch_size: 10")
        .sink_plugin("faulty")
        .batch(10)
        .sink_option("delay_ms: 150")
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_progress_block_is_printed_off_a_terminal_and_not_with_quiet() {
    let pool = mysql("e2e_progress").await;
    exec(&pool, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    exec(&pool, "INSERT INTO t SELECT seq FROM seq_1_to_50").await;

    // Five batches at 150 ms each: at least one 100 ms interval passes mid-job.
    let (_, out) = etlhost_with_spec("run", "progress.yaml", &slow_spec(false), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("           Job Progress Information\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Job                   : progress\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Rows Read per Reader  : "),
        "{}",
        out.stderr
    );

    let (_, out) = etlhost_with_spec(
        "run",
        "progress_quiet.yaml",
        &slow_spec(false),
        &["--quiet"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("Job Progress Information"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Job Statistic Information"),
        "the final statistics are always printed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_never_reach_the_logs() {
    let pool = mysql("e2e_progress_secret").await;
    exec(&pool, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    // A wrong password inside the URL, with every log line the host and plugins can emit.
    let text = slow_spec(true)
        .replace("e2e_progress", "e2e_progress_secret")
        .replace("etl:etl@", "etl:Sup3r-s3cret@")
        .replace("    password: etl\n", "");
    let out = crate::support::etlhost_command()
        .arg("run")
        .arg({
            let (p, _) = etlhost_with_spec("validate", "secret.yaml", &text, &[]);
            p
        })
        .arg("--fresh")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Access denied for user 'etl'"), "{stderr}");
    assert!(
        !stderr.contains("Sup3r-s3cret"),
        "a password leaked:\n{stderr}"
    );
}
