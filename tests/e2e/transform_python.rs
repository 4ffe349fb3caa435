//! The Python SDK on the `encoded-transform` world: its batch format against the host's (every
//! MySQL type decoded in the guest, encoded again, and what reaches the sink the same as without
//! the transform), its answers (dead letters with their reason, a raise narrowed down to its
//! row), and the SDK's own unit tests under native CPython.

use std::path::PathBuf;

use crate::support::{exec, mysql, run_job_output, workspace, SpecBuilder};

/// A transform built by `cargo xtask build`.
fn component(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(format!("transforms/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build`",
        path.display()
    );
    path.display().to_string()
}

fn dead_letter(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.dead-letter.jsonl"))
}

/// `every` of MySQL database `db`: a column of each type the source reads, one row of values
/// at the edges of their ranges, one of NULLs, one of ordinary values.
async fn every_type_table(db: &str) {
    let pool = mysql(db).await;
    exec(
        &pool,
        "CREATE TABLE every (id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, \
         bi BIGINT, bu BIGINT UNSIGNED, fl FLOAT, db DOUBLE, dc DECIMAL(30,10), \
         vc VARCHAR(50), tx TEXT, bin VARBINARY(8), bl BLOB, d DATE, dt DATETIME(6), \
         ts TIMESTAMP(6) NULL, tm TIME(6), yr YEAR, en ENUM('a','b'), st SET('x','y','z'), \
         bt BIT(5), b1 BIT(1), js JSON, pt POINT, ge GEOMETRY)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO every VALUES \
         (1, -128, 65535, -9223372036854775808, 18446744073709551615, -1.5, 2.5e300, \
          '-12345678901234567890.0123456789', 'café 中文 😀', REPEAT('long ', 100), \
          X'00FF10', X'DEADBEEF', '1000-01-01', '9999-12-31 23:59:59.999999', \
          '2000-01-01 00:00:00.000001', '-838:59:59.000000', 1901, 'b', 'x,z', b'10101', b'1', \
          '{\"a\": [1, -2, 18446744073709551615, 1.5, \"s\", null, true, {}], \"b\": {\"c\": []}}', \
          ST_GeomFromText('POINT(13.4 52.5)', 4326), ST_GeomFromText('LINESTRING(0 0,1 1)')), \
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
         (3, 7, 8, 9, 10, 0.25, -0.0, 0.5, '', '', X'', X'', '2024-02-29', \
          '2024-02-29 01:02:03', '2038-01-19 03:14:07.5', '12:00:00', 2024, 'a', '', b'0', \
          b'0', '[]', ST_GeomFromText('POINT(-1 -2)'), NULL)",
    )
    .await;
}

/// The console job of `every` (JSON read as values), with `transforms` if any.
fn every_job(name: &str, db: &str, transforms: Option<&str>) -> String {
    let mut spec = SpecBuilder::new(name)
        .top(format_args!("dead_letter: {}", dead_letter(name).display()))
        .top("max_failed_rows: 10")
        .mysql_table(db, "every")
        .source_option("json_columns: [js]");
    if let Some(t) = transforms {
        spec = spec.transforms(t);
    }
    spec.build()
}

/// The rows a console job printed, sorted.
fn printed(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_decodes_and_encodes_every_mysql_type_as_the_host_does() {
    every_type_table("e2e_py_every").await;
    let (plain, plain_out) = run_job_output(
        "py_every_plain",
        &every_job("py_every_plain", "e2e_py_every", None),
    );
    assert_eq!(plain["written"], 3, "{plain}");
    // Every value is decoded, checked against the type the SDK promises, encoded again and
    // compared with the host's bytes (a mismatch would dead-letter the row naming the column).
    let transforms = format!("  - name: rt\n    component: {}", component("py-roundtrip"));
    let _ = std::fs::remove_file(dead_letter("py_every"));
    let (summary, out) = run_job_output(
        "py_every",
        &every_job("py_every", "e2e_py_every", Some(&transforms)),
    );
    let dead = std::fs::read_to_string(dead_letter("py_every")).unwrap_or_default();
    assert_eq!(summary["failed"], 0, "{summary}\n{dead}");
    assert_eq!(summary["written"], 3, "{summary}");
    let rows = printed(&out.stdout);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert_eq!(rows, printed(&plain_out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_row_errors_and_exceptions_are_dead_lettered_with_their_reason() {
    let pool = mysql("e2e_py_fail").await;
    exec(
        &pool,
        "CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(20))",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO item SELECT seq, CONCAT('n', seq) FROM seq_1_to_300",
    )
    .await;
    let transforms = format!(
        "  - name: rt\n    component: {}\n    config: {{error_on: 17, raise_on: 230}}",
        component("py-roundtrip")
    );
    let spec = SpecBuilder::new("py_fail")
        .top(format_args!(
            "dead_letter: {}",
            dead_letter("py_fail").display()
        ))
        .top("max_failed_rows: 10")
        .mysql_table("e2e_py_fail", "item")
        .transforms(&transforms)
        .batch(100)
        .build();
    let _ = std::fs::remove_file(dead_letter("py_fail"));
    let (summary, out) = run_job_output("py_fail", &spec);
    assert_eq!(summary["read"], 300, "{summary}");
    assert_eq!(summary["written"], 298, "{summary}");
    assert_eq!(summary["failed"], 2, "{summary}");
    assert_eq!(printed(&out.stdout).len(), 298);
    let mut errors: Vec<(i64, String)> = std::fs::read_to_string(dead_letter("py_fail"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["row"]["id"].as_i64().unwrap(),
                v["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors[0],
        (17, "transform rt: told to refuse id 17".to_string())
    );
    // The raise fails the call; the host retries its rows in halves down to row 230, whose
    // reason names the transform's line that raised.
    assert_eq!(errors[1].0, 230);
    assert!(
        errors[1].1.starts_with(
            "transform rt: returned an error: KeyError: 'no such key' (roundtrip.py, line "
        ),
        "{}",
        errors[1].1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_full_name_gives_the_same_rows_and_dead_letters_in_both_worlds() {
    let pool = mysql("e2e_py_worlds").await;
    exec(
        &pool,
        "CREATE TABLE customer (id INT PRIMARY KEY, first_name VARCHAR(20), \
         last_name VARCHAR(20), inactive BOOLEAN, balance DECIMAL(12,4), seen DATETIME(6))",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO customer SELECT seq, CONCAT('ann ', seq), \
         IF(seq % 97 = 0, NULL, CONCAT('LEE', seq)), seq % 10 = 0, seq * 1000 + 0.0001, \
         TIMESTAMP('2024-02-29 01:02:03.000004') + INTERVAL seq SECOND FROM seq_1_to_500",
    )
    .await;
    // The same module built for the encoded world and for the values world (the one of
    // components built before): what reaches the sink and the dead letters are the same.
    let mut outputs = Vec::new();
    for world in ["py-full-name", "py-full-name-values"] {
        let name = format!("py_worlds_{}", world.replace('-', "_"));
        let transforms = format!(
            "  - name: names\n    component: {}\n    config: {{skip_when: inactive}}",
            component(world)
        );
        let spec = SpecBuilder::new(&name)
            .top(format_args!(
                "dead_letter: {}",
                dead_letter(&name).display()
            ))
            .top("max_failed_rows: 100")
            .mysql_table("e2e_py_worlds", "customer")
            .transforms(&transforms)
            .build();
        let _ = std::fs::remove_file(dead_letter(&name));
        let (summary, out) = run_job_output(&name, &spec);
        assert_eq!(summary["filtered"], 50, "{summary}");
        assert_eq!(summary["failed"], 5, "{summary}");
        let mut dead: Vec<(i64, String)> = std::fs::read_to_string(dead_letter(&name))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["row"]["id"].as_i64().unwrap(),
                    v["error"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        dead.sort();
        outputs.push((printed(&out.stdout), dead));
    }
    assert_eq!(outputs[0].0.len(), 445);
    assert!(
        outputs[0].0[0].contains("\"full_name\":\"Ann 1 Lee1\""),
        "{}",
        outputs[0].0[0]
    );
    assert_eq!(
        outputs[0].1[0],
        (97, "transform names: no last_name for id 97".into())
    );
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn python_sdk_unit_tests_pass_under_native_cpython() {
    let dir = workspace().join("plugins/transforms/python/tests");
    let out = std::process::Command::new("python3")
        .arg("test_sdk.py")
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
