//! What TLS costs: the person job written to two private ArcadeDB servers alike but for TLS, one
//! plaintext (`bolt://`) and one that requires TLS (`bolt+ssc://`, its certificate self-signed and
//! made here with the `keytool` of ArcadeDB's own Java), in alternating runs after warm-up runs.

use std::path::Path;

use anyhow::{bail, Result};
use xtask::graph::{fresh_graph_at, graph_count_at};
use xtask::keystore;
use xtask::services::{ExtraArcadeDb, BOLT_PORT};

use super::compare::bolt_spec;
use super::{alternate, bench_dir, etlhost_sample, plain, report, seed, Case, Opts, BENCH_DB};

const ROWS: u64 = 100_000;
const BATCH: usize = 1000;
/// Turns run before the counted ones and thrown away: a JVM's throughput still climbs over its
/// first runs, and the two servers must be measured in the same state.
const WARM_UP: usize = 3;
const STORE_PASSWORD: &str = "bench-tls";

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_100k", ROWS)?;
    let dir = bench_dir().join("tls");
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("xtask: bench tls: starting a plaintext and a TLS-only ArcadeDB");
    let plaintext = ExtraArcadeDb::start(&dir.join("plain"), &[])?;
    let tls = tls_server(&dir)?;
    let cases = || {
        vec![
            case("plaintext, bolt://", None, &plaintext, "bolt"),
            case("TLS, bolt+ssc://", Some(0), &tls, "bolt+ssc"),
        ]
    };
    eprintln!("xtask: bench tls: {WARM_UP} warm-up turns, not counted");
    alternate(WARM_UP, cases())?;
    report(
        "TLS: 100,000 rows MySQL -> Bolt (CREATE), batches of 1,000, into a plaintext and a TLS-only private ArcadeDB; ratio of medians to plaintext",
        "tls.json",
        &alternate(opts.reps, cases())?,
        &plain,
    )
}

/// A run of the bench's bolt job into `server` over `scheme`, into an empty graph whose node count
/// is checked after.
fn case<'a>(
    name: &str,
    baseline: Option<usize>,
    server: &'a ExtraArcadeDb,
    scheme: &str,
) -> Case<'a> {
    let spec = bolt_spec("person_100k", "batch", BATCH).replace(
        &format!("bolt://127.0.0.1:{BOLT_PORT}"),
        &format!("{scheme}://127.0.0.1:{}", server.bolt),
    );
    let file = format!("tls-{}", scheme.replace('+', "-"));
    let what = name.to_string();
    Case::new(name, baseline, move || {
        fresh_graph_at(server.http, BENCH_DB)?;
        let s = etlhost_sample(&what, &file, &spec, ROWS)?;
        let nodes = graph_count_at(
            server.http,
            BENCH_DB,
            "MATCH (p:Person) RETURN count(p) AS n",
        )?;
        if nodes != ROWS {
            bail!("{what}: {nodes} nodes in the graph, expected {ROWS}");
        }
        Ok(s)
    })
}

/// An ArcadeDB that accepts Bolt only over TLS, with a self-signed certificate for `localhost`.
fn tls_server(dir: &Path) -> Result<ExtraArcadeDb> {
    let home = dir.join("tls");
    std::fs::create_dir_all(&home)?;
    let ks = keystore::self_signed(
        &home,
        "dns:localhost,ip:127.0.0.1",
        None,
        30,
        STORE_PASSWORD,
    )?
    .display()
    .to_string();
    let pass = STORE_PASSWORD.to_string();
    ExtraArcadeDb::start(
        &home,
        &[
            ("bolt.ssl", "REQUIRED".into()),
            ("ssl.keyStore", ks.clone()),
            ("ssl.keyStorePassword", pass.clone()),
            ("ssl.trustStore", ks),
            ("ssl.trustStorePassword", pass),
        ],
    )
}
