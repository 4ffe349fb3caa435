//! Connecting to PostgreSQL: the TLS modes against a server of the test's own that accepts TLS
//! only (a self-signed authority and a server certificate made here with the openssl CLI), for
//! reads and for `mode: stream` (whose replication session checks as the query connections do),
//! and SCRAM-SHA-256 and md5 logins and a wrong password on the shared server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xtask::postgres::{ExtraPgOptions, ExtraPostgres};
use xtask::services::{PG_MD5_PASSWORD, PG_MD5_USER, PG_PASSWORD, PG_USER};

use crate::stream::{first_error, graph_rows_at, run_to_end, stream_spec, Running};
use crate::support::{
    etlhost_with_spec, pg_schema, pg_spec, pg_sql, pg_sql_at, pg_url, pg_url_at, run_job_output,
    scratch_dir, SpecBuilder,
};

/// The host name the server's certificate is made out to; the tests connect to 127.0.0.1, which
/// it does not name, or to `localhost`, which it names too.
const CERT_HOST: &str = "db.etlhost.test";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority (`ca.crt`) and a server key and certificate it signed for
/// [`CERT_HOST`] and `localhost` (`server.key`, `server.crt`), in `dir`.
fn certificates(dir: &Path) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ],
            &["-out", "ca.crt", "-subj", "/CN=etlhost test CA"][..],
            &days[..],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=db.etlhost.test",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        format!("subjectAltName=DNS:{CERT_HOST},DNS:localhost\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ],
            &[
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-extfile",
                "san.ext",
            ][..],
            &days[..],
        ]
        .concat(),
    );
}

/// A server that accepts TLS connections only, with five rows in `public.t`.
fn tls_only_server(dir: &Path) -> ExtraPostgres {
    certificates(dir);
    let file = |name: &str| (name.to_string(), std::fs::read(dir.join(name)).unwrap());
    let opts = ExtraPgOptions {
        conf: vec![
            "ssl = on".into(),
            "ssl_cert_file = '{dir}/server.crt'".into(),
            "ssl_key_file = '{dir}/server.key'".into(),
        ],
        hba: Some(
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n"
                .into(),
        ),
        files: vec![file("server.crt"), file("server.key")],
    };
    let server = ExtraPostgres::start(&dir.join("server"), &opts).expect("start PostgreSQL");
    pg_sql_at(
        server.port,
        "etl",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5);",
    );
    server
}

fn tls_spec(name: &str, port: u16, tls: &str, ca: Option<&Path>) -> String {
    let mut spec = SpecBuilder::new(name)
        .source_url(&pg_url_at(port, "etl"))
        .table("t")
        .source_option(format_args!("tls: {tls}"));
    if let Some(ca) = ca {
        spec = spec.source_option(format_args!("trusted_ca: {}", ca.display()));
    }
    pg_spec(&spec)
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_tls_modes_against_a_tls_only_server() {
    let dir = scratch_dir("pg_tls");
    let server = tls_only_server(&dir);
    let ca = dir.join("ca.crt");

    // require: encrypted, the certificate not checked (as libpq's sslmode=require).
    let (summary, _) = run_job_output(
        "pg_tls_require",
        &tls_spec("pg_tls_require", server.port, "require", None),
    );
    assert_eq!(summary["written"], 5, "{summary}");
    // prefer (the default) takes TLS when the server offers it.
    let (summary, _) = run_job_output(
        "pg_tls_prefer",
        &tls_spec("pg_tls_prefer", server.port, "prefer", None),
    );
    assert_eq!(summary["written"], 5, "{summary}");
    // verify-ca: the chain is checked against trusted_ca, the host name is not.
    let text = tls_spec("pg_tls_verify_ca", server.port, "verify-ca", Some(&ca));
    let (summary, _) = run_job_output("pg_tls_verify_ca", &text);
    assert_eq!(summary["written"], 5, "{summary}");

    let refused = |name: &str, text: &str| {
        let (_, out) = etlhost_with_spec("run", &format!("{name}.yaml"), text, &[]);
        assert_ne!(out.code, 0, "{name}: {}", out.stderr);
        out.stderr.trim_end().to_string()
    };
    let prefix = format!(
        "error: cannot start source: plugin postgres: cannot connect to PostgreSQL at 127.0.0.1:{}/etl: ",
        server.port
    );
    // verify-full: the certificate names another host than the URL's: refused, saying so.
    let text = tls_spec("pg_tls_verify_full", server.port, "verify-full", Some(&ca));
    assert_eq!(
        refused("pg_tls_verify_full", &text),
        format!(
            "{prefix}error performing TLS handshake: invalid peer certificate: certificate not \
             valid for name \"127.0.0.1\"; certificate is only valid for \
             DnsName(\"{CERT_HOST}\") or DnsName(\"localhost\") (`verify-full` checks the host \
             in `url` against the certificate: connect by a name it was issued for, or use \
             `verify-ca`)"
        )
    );
    // verify-ca without the authority: the self-signed chain is not trusted.
    let text = tls_spec("pg_tls_untrusted", server.port, "verify-ca", None);
    assert_eq!(
        refused("pg_tls_untrusted", &text),
        format!(
            "{prefix}error performing TLS handshake: invalid peer certificate: UnknownIssuer \
             (the server's certificate is not signed by an authority in `trusted_ca` (the \
             system's when not given); give the CA that signed it, or `tls: require` to encrypt \
             without checking)"
        )
    );
    // disable against a server whose pg_hba.conf has hostssl lines only: the server's refusal.
    // As the md5 role, whose password is no word of the message (the redaction of `etl`'s
    // password, `etl`, would hide the user and database names too).
    let text = tls_spec("pg_tls_disable", server.port, "disable", None).replace(
        &format!("    user: {PG_USER}\n    password: {PG_PASSWORD}\n"),
        &format!("    user: {PG_MD5_USER}\n    password: {PG_MD5_PASSWORD}\n"),
    );
    assert_eq!(
        refused("pg_tls_disable", &text),
        format!(
            "{prefix}no pg_hba.conf entry for host \"127.0.0.1\", user \"{PG_MD5_USER}\", \
             database \"etl\", no encryption (check `user` and `password`, and the server's \
             pg_hba.conf)"
        )
    );
    drop(server);
}

/// `mode: stream` of `person` from the TLS-only server on `port` (host `host` in the URL) into a
/// fresh graph database `name`, in `tls` mode with the test's authority as `trusted_ca`.
fn tls_stream_spec(dir: &Path, name: &str, host: &str, port: u16, tls: &str) -> PathBuf {
    xtask::graph::fresh_graph(name).expect("create graph database");
    let url = pg_url_at(port, "etl").replacen("127.0.0.1", host, 1);
    let ca = dir.join("ca.crt");
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let text = stream_spec(name, &url, name, &dir.join(name), "")
        .replacen("plugin: mysql", "plugin: postgres", 1)
        .replacen(
            "table: person}",
            &format!(
                "table: person, tls: {tls}, trusted_ca: \"{}\", slot: {name}, publication: {name}}}",
                ca.display()
            ),
            1,
        );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the graph's `:Person` ids are `1..=n`.
fn wait_for_ids(job: &mut Running, graph_db: &str, n: i64) {
    let start = Instant::now();
    let want: Vec<i64> = (1..=n).collect();
    loop {
        if let Some(code) = job.exited() {
            panic!("etlhost exited ({code}):\n{}", job.stderr());
        }
        let got: Vec<i64> = graph_rows_at(xtask::services::HTTP_PORT, graph_db)
            .into_keys()
            .collect();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the graph holds {got:?}, not 1..={n}\n{}",
            job.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Streaming over TLS: `verify-full` by a name the certificate lists and `verify-ca` by an address
/// it does not list both follow inserts into the graph; the modes that do not check out are
/// refused before any slot is made, with the texts of the query connections.
#[test]
fn pg_tls_stream_checks_as_the_reads_do() {
    let dir = scratch_dir("pg_tls_stream");
    let server = tls_only_server(&dir);
    let port = server.port;
    pg_sql_at(
        port,
        "etl",
        "CREATE TABLE person (id int PRIMARY KEY, name text, bio text, n bigint);
         INSERT INTO person SELECT i, 'p' || i, NULL, i FROM generate_series(1, 5) i;",
    );
    let cases = [
        ("e_pgtls_full", "localhost", "verify-full", 10),
        ("e_pgtls_ca", "127.0.0.1", "verify-ca", 15),
    ];
    for (name, host, tls, n) in cases {
        let spec = tls_stream_spec(&dir, name, host, port, tls);
        let mut job = Running::start(&spec, &dir.join(name), true);
        wait_for_ids(&mut job, name, n - 5);
        pg_sql_at(
            port,
            "etl",
            &format!(
                "INSERT INTO person SELECT i, 'p' || i, NULL, i FROM generate_series({}, {n}) i",
                n - 4
            ),
        );
        wait_for_ids(&mut job, name, n);
        assert_eq!(job.terminate(), 130, "{name}");
    }

    let refused = |name: &str, host: &str, tls: &str, edit: &dyn Fn(String) -> String| {
        let spec = tls_stream_spec(&dir, name, host, port, tls);
        std::fs::write(&spec, edit(std::fs::read_to_string(&spec).unwrap())).unwrap();
        let (code, stderr) = run_to_end(&spec, &["--fresh"]);
        assert_ne!(code, 0, "{name}: {stderr}");
        first_error(&stderr).to_string()
    };
    let prefix = |host: &str| {
        format!(
            "error: cannot start source: plugin postgres: cannot connect to PostgreSQL at \
             {host}:{port}/etl: "
        )
    };
    let same = |text: String| text;
    // verify-full: the certificate does not name the URL's host.
    assert_eq!(
        refused("e_pgtls_name", "127.0.0.1", "verify-full", &same),
        format!(
            "{}error performing TLS handshake: invalid peer certificate: certificate not valid \
             for name \"127.0.0.1\"; certificate is only valid for DnsName(\"{CERT_HOST}\") or \
             DnsName(\"localhost\") (`verify-full` checks the host in `url` against the \
             certificate: connect by a name it was issued for, or use `verify-ca`)",
            prefix("127.0.0.1")
        )
    );
    // verify-ca without the authority: the self-signed chain is not trusted.
    let ca = format!(", trusted_ca: \"{}\"", dir.join("ca.crt").display());
    assert_eq!(
        refused("e_pgtls_issuer", "localhost", "verify-ca", &|t| t
            .replacen(&ca, "", 1)),
        format!(
            "{}error performing TLS handshake: invalid peer certificate: UnknownIssuer (the \
             server's certificate is not signed by an authority in `trusted_ca` (the system's \
             when not given); give the CA that signed it, or `tls: require` to encrypt without \
             checking)",
            prefix("localhost")
        )
    );
    // disable against hostssl lines only: the server's refusal (as the md5 role, see above).
    let md5 = |text: String| {
        text.replacen(
            &format!("user: {PG_USER}, password: {PG_PASSWORD}"),
            &format!("user: {PG_MD5_USER}, password: {PG_MD5_PASSWORD}"),
            1,
        )
    };
    assert_eq!(
        refused("e_pgtls_plain", "127.0.0.1", "disable", &md5),
        format!(
            "{}no pg_hba.conf entry for host \"127.0.0.1\", user \"{PG_MD5_USER}\", database \
             \"etl\", no encryption (check `user` and `password`, and the server's pg_hba.conf)",
            prefix("127.0.0.1")
        )
    );
    drop(server);
}

/// The shared server's `etl` logs in with SCRAM-SHA-256, `etl_md5` by md5: its pg_hba line says md5
/// and its password is stored as an md5 hash, which SCRAM could not use (cargo xtask services).
#[tokio::test(flavor = "multi_thread")]
async fn pg_scram_and_md5_logins() {
    pg_schema("e2e_pg_auth");
    pg_sql(
        "etl",
        &format!(
            "CREATE TABLE e2e_pg_auth.t (id int PRIMARY KEY); INSERT INTO e2e_pg_auth.t SELECT generate_series(1, 3);
             GRANT USAGE ON SCHEMA e2e_pg_auth TO {PG_MD5_USER}; GRANT SELECT ON e2e_pg_auth.t TO {PG_MD5_USER};"
        ),
    );
    let spec = SpecBuilder::new("pg_auth_scram")
        .source_url(&pg_url("etl"))
        .table("e2e_pg_auth.t");
    let (summary, _) = run_job_output("pg_auth_scram", &pg_spec(&spec));
    assert_eq!(summary["written"], 3, "{summary}");

    let md5 = pg_spec(
        &SpecBuilder::new("pg_auth_md5")
            .source_url(&pg_url("etl"))
            .table("e2e_pg_auth.t"),
    )
    .replace(
        &format!("    user: {PG_USER}\n    password: {PG_PASSWORD}\n"),
        &format!("    user: {PG_MD5_USER}\n    password: {PG_MD5_PASSWORD}\n"),
    );
    let (summary, _) = run_job_output("pg_auth_md5", &md5);
    assert_eq!(summary["written"], 3, "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_a_wrong_password_is_refused_without_showing_it() {
    let secret = "not-the-Passw0rd";
    let text = pg_spec(
        &SpecBuilder::new("pg_auth_wrong")
            .source_url(&pg_url("etl"))
            .table("t"),
    )
    .replace(
        &format!("    password: {PG_PASSWORD}\n"),
        &format!("    password: {secret}\n"),
    );
    let (_, out) = etlhost_with_spec("run", "pg_auth_wrong.yaml", &text, &[]);
    assert_ne!(out.code, 0);
    assert_eq!(
        out.stderr.trim_end(),
        "error: cannot start source: plugin postgres: cannot connect to PostgreSQL at \
         127.0.0.1:5432/etl: password authentication failed for user \"etl\" (check `user` and \
         `password`, and the server's pg_hba.conf)"
    );
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    assert!(!out.stdout.contains(secret), "{}", out.stdout);
}
