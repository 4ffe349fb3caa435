//! Relationships in parallel: 100,000 `MATCH (a) MATCH (b) CREATE (a)-[:KNOWS]->(b)` rows between
//! 1,000 nodes, by one writer, by four writers as they come, by two and four writers grouped
//! by their endpoints' hashes (`sink.endpoints`), and by two and four writers grouped by the
//! buckets the nodes are in (`sink.endpoints.placement`, the types created with buckets before
//! the nodes are loaded); deadlock retries counted, and where the CPU went.

use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;
use xtask::graph::{bucket_ddl, fresh_graph, graph_count, graph_sql};
use xtask::services::{BOLT_PORT, GRAPH_PASSWORD, GRAPH_USER};

use super::{
    alternate, cores, etlhost, mysql_options, report, seed_with, server_cpu, Case, Opts, Sample,
};

const ROWS: u64 = 100_000;
const PEOPLE: u64 = 1000;
const GRAPH: &str = "bench_knows";

#[derive(Clone, Copy, PartialEq)]
enum Grouping {
    None,
    Hash,
    Placement,
}

fn spec(writers: usize, grouping: Grouping) -> String {
    let endpoints = match grouping {
        Grouping::None => "",
        Grouping::Hash => "      endpoints: {start: a, end: b}\n",
        Grouping::Placement => {
            "      endpoints:\n        start: a\n        end: b\n        placement: \"MATCH (p:Person) RETURN p.id AS key, elementId(p) AS place\"\n"
        }
    };
    format!(
        "name: bench-knows
source:
  plugin: mysql
  options:
{}sink:
  plugin: bolt
  options:
    uri: bolt://127.0.0.1:{BOLT_PORT}
    user: {GRAPH_USER}
    password: {GRAPH_PASSWORD}
    database: {GRAPH}
flows:
  - name: people
    source: {{options: {{table: knows_people}}}}
    sink:
      options:
        setup: [\"CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE\"]
        query: \"UNWIND $batch AS row CREATE (:Person {{id: row.id}})\"
  - name: knows
    after: [people]
    parallelism: 2
    source: {{partition_column: id, partition_num: 4, options: {{table: knows_100k}}}}
    sink:
      parallelism: {writers}
{endpoints}      options:
        query: \"UNWIND $batch AS row MATCH (a:Person {{id: row.a}}) MATCH (b:Person {{id: row.b}}) CREATE (a)-[:KNOWS]->(b)\"
",
        mysql_options("knows_people")
    )
}

/// One run into a fresh graph: the `knows` flow's time and retries, and the CPU every process
/// used while the job ran.
fn sample(name: &str, spec: &str, ddl: &[String]) -> Result<Sample> {
    fresh_graph(GRAPH)?;
    graph_sql(GRAPH, &ddl.iter().map(String::as_str).collect::<Vec<_>>())?;
    let (graph0, mysql0) = (server_cpu("arcadedb"), server_cpu("mariadbd"));
    let started = Instant::now();
    let (s, cpu) = etlhost(name, spec)?;
    let wall = started.elapsed().as_secs_f64();
    let (graph1, mysql1) = (server_cpu("arcadedb"), server_cpu("mariadbd"));
    let knows = &s["flows"][1];
    if knows["written"].as_u64() != Some(ROWS) {
        bail!("{name}: knows wrote {}, expected {ROWS}", knows["written"]);
    }
    let rels = graph_count(GRAPH, "MATCH ()-[r:KNOWS]->() RETURN count(r) AS n")?;
    if rels != ROWS {
        bail!("{name}: {rels} relationships in the graph, expected {ROWS}");
    }
    Ok(Sample {
        rows: ROWS,
        secs: knows["duration_secs"].as_f64().unwrap_or(f64::NAN),
        peak_rss: s["peak_rss_bytes"].as_u64().unwrap_or(0),
        retries: knows["retries"].as_u64().unwrap_or(0),
        cpu,
        wall,
        graph_cpu: graph1 - graph0,
        mysql_cpu: mysql1 - mysql0,
    })
}

pub fn run(opts: &Opts) -> Result<()> {
    seed_with("knows_people", PEOPLE, "id INT PRIMARY KEY", "seq", 1)?;
    // Row `1000 q + i` links person i + 1 to person (7 i + q) % 1000 + 1: 100,000 distinct pairs.
    seed_with(
        "knows_100k",
        ROWS,
        "id INT PRIMARY KEY, a INT, b INT",
        "seq, seq % 1000 + 1, (7 * (seq % 1000) + seq DIV 1000) % 1000 + 1",
        0,
    )?;
    let cases = [
        ("1 writer", 1, Grouping::None),
        ("4 writers, rows as they come", 4, Grouping::None),
        ("2 writers, grouped by endpoints", 2, Grouping::Hash),
        ("4 writers, grouped by endpoints", 4, Grouping::Hash),
        ("2 writers, grouped by placement", 2, Grouping::Placement),
        ("4 writers, grouped by placement", 4, Grouping::Placement),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, writers, grouping))| {
        let spec = spec(writers, grouping);
        let ddl = match grouping {
            Grouping::Placement => bucket_ddl("Person", "KNOWS", writers),
            _ => Vec::new(),
        };
        let file = format!("knows-{writers}-{i}");
        Case::new(name, (i > 0).then_some(0), move || {
            sample(&file, &spec, &ddl)
        })
    })
    .collect();
    let figures = alternate(opts.reps, cases)?;
    report(
        &format!(
            "Relationships: 100,000 CREATE (a)-[:KNOWS]->(b) between 1,000 nodes, 2 readers; the knows flow's rows/s, ratio of medians to 1 writer; retries per run; CPU seconds per wall second ({} cores): etlhost / ArcadeDB / MariaDB",
            cores()
        ),
        "knows.json",
        &figures,
        &|f| {
            let per_wall = |x: fn(&Sample) -> f64| {
                super::median(f.samples.iter().map(|s| x(s) / s.wall).collect())
            };
            let (e, g, m) = (
                per_wall(|s| s.cpu),
                per_wall(|s| s.graph_cpu),
                per_wall(|s| s.mysql_cpu),
            );
            (
                Some(format!(
                    "retries {:?}; cores {e:.2} / {g:.2} / {m:.2}",
                    f.retries()
                )),
                json!({"retries": f.retries(), "cores_busy_median": {"etlhost": e, "arcadedb": g, "mariadb": m}}),
            )
        },
    )
}
