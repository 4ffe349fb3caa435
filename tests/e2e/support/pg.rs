//! PostgreSQL for the end-to-end tests: databases and schemas of a test's own on the shared server
//! of `cargo xtask services`, SQL run with `psql` (the server's own client, so the setup does not
//! share code or bugs with the plugin under test), and job specs reading with `plugin: postgres`.

use std::path::Path;

use xtask::services::{PG_DATABASE, PG_PASSWORD, PG_PORT, PG_USER};

use super::{etlhost, init_with, require, Output, SpecBuilder};

/// `postgres://127.0.0.1:<port>/<db>`, without credentials (the spec gives them as options).
pub fn pg_url_at(port: u16, db: &str) -> String {
    format!("postgres://127.0.0.1:{port}/{db}")
}

pub fn pg_url(db: &str) -> String {
    pg_url_at(PG_PORT, db)
}

/// Runs `sql` (any number of statements, in one transaction) in database `db` of the server on
/// `port` as the test user; the rows' text (`|` between columns). Panics with the server's error.
pub fn pg_sql_at(port: u16, db: &str, sql: &str) -> String {
    let out = xtask::postgres::psql(port)
        .args(["-d", db, "-1", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(sql.as_bytes())?;
            child.wait_with_output()
        })
        .expect("cannot run psql");
    assert!(
        out.status.success(),
        "psql in database {db} on port {port} failed: {}\nSQL: {sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// [`pg_sql_at`] on the shared server.
pub fn pg_sql(db: &str, sql: &str) -> String {
    require(PG_PORT, "PostgreSQL");
    pg_sql_at(PG_PORT, db, sql)
}

/// A fresh, empty database `db` owned by the test user on the shared server (dropped first with
/// whatever holds it open, e.g. a replication slot of an earlier run's).
pub fn pg_database(db: &str) {
    require(PG_PORT, "PostgreSQL");
    let out = xtask::postgres::psql(PG_PORT)
        .args(["-d", PG_DATABASE])
        .args([
            "-c",
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        ])
        .args(["-c", &format!("CREATE DATABASE \"{db}\" OWNER {PG_USER}")])
        .output()
        .expect("cannot run psql");
    assert!(
        out.status.success(),
        "creating database {db} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh, empty schema `schema` in the shared database `etl` (where PostGIS is installed).
pub fn pg_schema(schema: &str) {
    let q = format!("\"{}\"", schema.replace('"', "\"\""));
    pg_sql(
        PG_DATABASE,
        &format!("DROP SCHEMA IF EXISTS {q} CASCADE; CREATE SCHEMA {q};"),
    );
}

/// The YAML of `spec` with its source read by the postgres plugin as the test user. The builder
/// writes a MySQL source; the options (url, user, password, table or query) are the same names.
pub fn pg_spec(spec: &SpecBuilder) -> String {
    pg_plugin_built();
    let text = spec.build();
    assert!(text.contains("  plugin: mysql\n"));
    assert!(text.contains(&format!(
        "    user: {PG_USER}\n    password: {PG_PASSWORD}\n"
    )));
    text.replacen("  plugin: mysql\n", "  plugin: postgres\n", 1)
}

/// Fails the test early and clearly when the postgres plugin is not built beside the binary (here,
/// not in [`super::etlhost`], so the other tests do not need it).
fn pg_plugin_built() {
    let lib = etlhost().with_file_name("libetlhost_postgres.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo xtask test`, or `cargo build -p etlhost-postgres`",
        lib.display()
    );
}

/// `etlhost init OUTPUT --force` for PostgreSQL database `db` into graph database `graph_db`.
pub fn pg_init(db: &str, graph_db: &str, output: &Path, extra: &[&str]) -> Output {
    pg_plugin_built();
    let url = pg_url(db);
    let source = [
        "--source-plugin",
        "postgres",
        "--source-url",
        &url,
        "--source-user",
        PG_USER,
        "--source-password",
        PG_PASSWORD,
    ];
    init_with(&source, graph_db, output, extra)
}
