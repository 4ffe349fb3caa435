//! The bolt sink against ArcadeDB servers of the tests' own that require TLS: every URI scheme
//! carries the person job, and every way TLS can go wrong gives a message naming the URI and the
//! cause. Certificates are made at run time with the `keytool` of ArcadeDB's bundled Java.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use xtask::graph::{fresh_graph_at, graph_count_at};
use xtask::keystore;
use xtask::services::{ExtraArcadeDb, BOLT_PORT, HTTP_PORT, MYSQL_PORT};

use std::process::Stdio;

use crate::support::{
    etlhost_with_spec, person_table, read_summary, run_job_output, scratch_dir, spawn_run,
    wait_for_first_nodes, Output, Proxy, SpecBuilder, Way,
};

/// A TLS-only ArcadeDB and the PEM of its self-signed certificate.
struct TlsServer {
    server: ExtraArcadeDb,
    cert: PathBuf,
}

/// A PKCS12 keystore with one self-signed RSA key for `localhost` (and no IP address, so that
/// connecting by 127.0.0.1 is a host-name mismatch), valid from `start` (keytool syntax) for
/// `days`; returns the keystore and the certificate as PEM.
fn keystore(dir: &Path, start: Option<&str>, days: u32) -> (PathBuf, PathBuf) {
    let ks = keystore::self_signed(dir, "dns:localhost", start, days, "tls-test").unwrap();
    let pem = keystore::export_pem(dir, &ks, "tls-test").unwrap();
    (ks, pem)
}

fn start_tls_server(name: &str, start: Option<&str>, days: u32) -> TlsServer {
    let dir = scratch_dir(name);
    let (ks, cert) = keystore(&dir, start, days);
    let ks = ks.display().to_string();
    let pass = "tls-test".to_string();
    let server = ExtraArcadeDb::start(
        &dir.join("home"),
        &[
            ("bolt.ssl", "REQUIRED".into()),
            ("ssl.keyStore", ks.clone()),
            ("ssl.keyStorePassword", pass.clone()),
            ("ssl.trustStore", ks),
            ("ssl.trustStorePassword", pass),
        ],
    )
    .unwrap();
    TlsServer { server, cert }
}

/// One TLS server per test binary (a JVM takes seconds to start); it stops when the binary exits.
fn tls_server() -> &'static TlsServer {
    static S: OnceLock<TlsServer> = OnceLock::new();
    S.get_or_init(|| start_tls_server("tls-server", None, 30))
}

/// A server whose certificate expired two days ago.
fn expired_server() -> &'static TlsServer {
    static S: OnceLock<TlsServer> = OnceLock::new();
    S.get_or_init(|| start_tls_server("tls-expired", Some("-3d"), 1))
}

/// The person job's spec with the sink pointed at `uri`, `extra` sink option lines added.
fn person_spec(name: &str, db: &str, uri: &str, extra: &str) -> String {
    let spec = SpecBuilder::new(name)
        .mysql_table("tls_people", "person")
        .sink_bolt_uri(uri, db)
        .batch(500);
    extra
        .lines()
        .fold(spec, |spec, line| spec.sink_option(line.trim()))
        .cypher("UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name})")
        .build()
}

fn run_failing(name: &str, text: &str) -> Output {
    let (_, out) = etlhost_with_spec("run", &format!("{name}.yaml"), text, &[]);
    out
}

const ROWS: u64 = 3_000;

async fn people() {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            person_table("tls_people", ROWS, "tls-").await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_the_person_job_runs_through_every_scheme() {
    people().await;
    let s = tls_server();
    let (bolt, http) = (s.server.bolt, s.server.http);
    let ca = format!("    trusted_ca: {}\n", s.cert.display());
    let cases = [
        (
            "tls_ssc",
            format!("bolt+ssc://127.0.0.1:{bolt}"),
            String::new(),
        ),
        ("tls_ca", format!("bolt://localhost:{bolt}"), ca.clone()),
        (
            "tls_route_ssc",
            format!("neo4j+ssc://127.0.0.1:{bolt}"),
            String::new(),
        ),
        ("tls_route_ca", format!("neo4j://localhost:{bolt}"), ca),
    ];
    for (db, uri, extra) in &cases {
        fresh_graph_at(http, db).unwrap();
        let (summary, out) = run_job_output(db, &person_spec(db, db, uri, extra));
        assert_eq!(summary["written"], ROWS, "{uri}: {}", out.stderr);
        let n = graph_count_at(http, db, "MATCH (p:Person) RETURN count(p) AS n").unwrap();
        assert_eq!(n, ROWS, "{uri}");
        let n = graph_count_at(
            http,
            db,
            "MATCH (p:Person {id: 1234}) WHERE p.name = 'tls-1234' RETURN count(p) AS n",
        )
        .unwrap();
        assert_eq!(n, 1, "{uri}");
    }
    // Routing without TLS, on the shared plaintext server.
    xtask::graph::fresh_graph("tls_route_plain").unwrap();
    let uri = format!("neo4j://127.0.0.1:{BOLT_PORT}");
    let (summary, out) = run_job_output(
        "tls_route_plain",
        &person_spec("tls_route_plain", "tls_route_plain", &uri, ""),
    );
    assert_eq!(summary["written"], ROWS, "{}", out.stderr);
    let n = graph_count_at(
        HTTP_PORT,
        "tls_route_plain",
        "MATCH (p:Person) RETURN count(p) AS n",
    )
    .unwrap();
    assert_eq!(n, ROWS);
}

/// Runs the person job against `uri`, expecting it to fail at start with exit code 3, and returns
/// the error line.
fn start_error(name: &str, uri: &str, extra: &str) -> String {
    let out = run_failing(name, &person_spec(name, "tls_never", uri, extra));
    assert_eq!(out.code, 3, "{}", out.stderr);
    out.stderr.trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_an_untrusted_certificate_is_refused() {
    people().await;
    let bolt = tls_server().server.bolt;
    assert_eq!(
        start_error(
            "tls_untrusted",
            &format!("bolt+s://root:etlhost-pass@localhost:{bolt}"),
            ""
        ),
        format!(
            "error: cannot start sink: plugin bolt: cannot connect to \
             bolt+s://root:***@localhost:{bolt}: the server's certificate is not trusted: no \
             trusted root issued it (use trusted_ca with the CA's PEM file, or bolt+ssc:// / \
             neo4j+ssc:// to accept it unverified)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_a_certificate_for_another_host_is_refused() {
    people().await;
    let s = tls_server();
    let bolt = s.server.bolt;
    assert_eq!(
        start_error(
            "tls_mismatch",
            &format!("bolt://127.0.0.1:{bolt}"),
            &format!("    trusted_ca: {}\n", s.cert.display())
        ),
        format!(
            "error: cannot start sink: plugin bolt: cannot connect to bolt://127.0.0.1:{bolt}: \
             the server's certificate is not valid for the host name `127.0.0.1` (it names other \
             hosts; connect by a name the certificate lists)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_an_expired_certificate_is_refused() {
    people().await;
    let s = expired_server();
    let bolt = s.server.bolt;
    assert_eq!(
        start_error(
            "tls_expired",
            &format!("bolt://localhost:{bolt}"),
            &format!("    trusted_ca: {}\n", s.cert.display())
        ),
        format!(
            "error: cannot start sink: plugin bolt: cannot connect to bolt://localhost:{bolt}: \
             the server's certificate has expired"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_plaintext_to_a_server_that_requires_tls() {
    people().await;
    let bolt = tls_server().server.bolt;
    assert_eq!(
        start_error("tls_plain_to_tls", &format!("bolt://127.0.0.1:{bolt}"), ""),
        format!(
            "error: cannot start sink: plugin bolt: cannot connect to bolt://127.0.0.1:{bolt}: \
             Bolt protocol error: the server closed the connection during the Bolt handshake \
             (a server starting or stopping does this; so does one that expects TLS: then use \
             bolt+s://, bolt+ssc:// or trusted_ca (neo4j+s://, neo4j+ssc:// to route))"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_tls_to_a_plaintext_server() {
    people().await;
    assert_eq!(
        start_error(
            "tls_tls_to_plain",
            &format!("bolt+ssc://127.0.0.1:{BOLT_PORT}"),
            ""
        ),
        format!(
            "error: cannot start sink: plugin bolt: cannot connect to \
             bolt+ssc://127.0.0.1:{BOLT_PORT}: the server closed the connection during the TLS \
             handshake: it does not speak TLS on this port (use bolt:// or neo4j:// without +s/+ssc and \
             without trusted_ca)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_a_query_the_server_rejects_stops_the_job_before_a_row_is_read() {
    people().await;
    xtask::graph::fresh_graph("tls_badquery").unwrap();
    // A missing closing brace.
    // The empty line under `source:` keeps the query on line 18, where the error names it.
    let text = SpecBuilder::new("tls_badquery")
        .mysql_table("tls_people", "person")
        .source_line("")
        .sink_bolt(
            "tls_badquery",
            "UNWIND $batch AS row CREATE (:Person {id: row.id, name: row.name)",
        )
        .batch(500)
        .build();
    let dead = PathBuf::from("tls_badquery.dead-letter.jsonl");
    let (path, run) = etlhost_with_spec("run", "tls_badquery.yaml", &text, &[]);
    let expected = format!(
        "error: {}:18: sink.options.query: the server rejects the query: Syntax error at line 1:56 - extraneous input ')' expecting {{',', '}}'}} (Neo.ClientError.Statement.SyntaxError)",
        path.display()
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.trim_end(), expected);
    assert!(!dead.exists(), "rows were dead-lettered");
    let n = xtask::graph::graph_count("tls_badquery", "MATCH (p) RETURN count(p) AS n").unwrap();
    assert_eq!(n, 0);

    let (_, validate) = etlhost_with_spec("validate", "tls_badquery.yaml", &text, &[]);
    assert_eq!(validate.code, 2, "{}", validate.stderr);
    assert_eq!(validate.stderr.trim_end(), expected);
    let (_, offline) = etlhost_with_spec("validate", "tls_badquery.yaml", &text, &["--offline"]);
    assert_eq!(offline.code, 0, "{}", offline.stderr);
}

#[test]
fn tls_validate_connects_and_reports_what_fails() {
    let bolt = tls_server().server.bolt;
    let text = person_spec(
        "tls_validate",
        "tls_never",
        &format!("bolt+s://localhost:{bolt}"),
        "",
    );
    let (_, out) = etlhost_with_spec("validate", "tls_validate.yaml", &text, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: sink check failed: plugin bolt: cannot connect to bolt+s://localhost:{bolt}: \
             the server's certificate is not trusted: no trusted root issued it (use trusted_ca \
             with the CA's PEM file, or bolt+ssc:// / neo4j+ssc:// to accept it unverified)"
        )
    );
    let (_, out) = etlhost_with_spec("validate", "tls_validate.yaml", &text, &["--offline"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// ArcadeDB knows only basic authentication: `auth: none` and `auth: bearer` reach it (in LOGON,
/// Bolt 5.4) and are refused with its message; the token is never shown.
#[tokio::test(flavor = "multi_thread")]
async fn tls_auth_none_and_bearer_are_sent_and_refused_by_a_basic_only_server() {
    people().await;
    for (name, auth) in [
        ("tls_auth_none", "    auth: none\n"),
        (
            "tls_auth_bearer",
            "    auth: bearer\n    token: s3cr3t-t0ken\n",
        ),
    ] {
        let text = person_spec(
            name,
            "tls_never",
            &format!("bolt://127.0.0.1:{BOLT_PORT}"),
            auth,
        )
        .replace("    user: root\n", "")
        .replace("    password: etlhost-pass\n", "");
        let out = run_failing(name, &text);
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "error: cannot start sink: plugin bolt: cannot connect to \
                 bolt://127.0.0.1:{BOLT_PORT}: Neo.ClientError.Security.Unauthorized: Missing \
                 credentials"
            )
        );
    }
}

/// A `neo4j://` job whose server goes away mid-job: the sink asks for a new routing table and
/// retries, the host's retries carry it over the restart, and every row arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn tls_a_routed_job_survives_its_server_restarting() {
    const ROWS: u64 = 200_000;
    person_table("tls_reroute", ROWS, "person-").await;
    let mut server = ExtraArcadeDb::start(&scratch_dir("tls-reroute").join("home"), &[]).unwrap();
    fresh_graph_at(server.http, "tls_reroute").unwrap();
    // The job reads through a proxy that holds the rows once a part has gone: the server
    // restarts mid-job, however fast the job is. (Its writes cannot go through a proxy: the
    // routing table sends them to the address the server gives.)
    let proxy = Proxy::start(MYSQL_PORT);
    proxy.hold_after(Way::ToClient, 1_000_000);
    let text = SpecBuilder::new("tls_reroute")
        .source_url(&format!("mysql://127.0.0.1:{}/tls_reroute", proxy.port))
        .table("person")
        .sink_bolt_uri(&format!("neo4j://127.0.0.1:{}", server.bolt), "tls_reroute")
        .batch(200)
        .sink_line("max_retries: 40")
        .sink_line("retry_backoff: 100ms")
        .merge_people()
        .build();
    let (path, _) = etlhost_with_spec("validate", "tls_reroute.yaml", &text, &["--offline"]);
    let summary_path = scratch_dir("tls-reroute-summary").join("summary.json");
    let mut job = spawn_run(&path, &summary_path, Stdio::null());
    proxy.wait_holding(&mut job);
    let before = wait_for_first_nodes(server.http, "tls_reroute");
    assert!(
        before < ROWS,
        "the job finished before the server restarted"
    );
    server.restart().unwrap();
    proxy.resume();
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refreshing the routing table and retrying once"),
        "{stderr}"
    );
    let summary = read_summary(&summary_path);
    assert_eq!(summary["read"], ROWS);
    assert_eq!(summary["written"], ROWS);
    assert_eq!(summary["failed"], 0);
    let n = graph_count_at(
        server.http,
        "tls_reroute",
        "MATCH (p:Person) RETURN count(p) AS n",
    )
    .unwrap();
    assert_eq!(n, ROWS);
}
