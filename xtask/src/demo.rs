//! `cargo xtask demo`: the main job, end to end, on a fresh graph.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use xtask::graph::{fresh_graph, graph_count};
use xtask::services;
use xtask::{build_demo, root};

pub const ROWS: u64 = 100_000;

pub fn run_sql(sql: &str) -> Result<()> {
    xtask::run(xtask::mariadb().args(["-e", sql]))
}

pub fn run() -> Result<()> {
    services::ensure()?;
    eprintln!("xtask: seeding test.person with {ROWS} rows");
    run_sql(&format!(
        "CREATE DATABASE IF NOT EXISTS test;
         USE test;
         DROP TABLE IF EXISTS test.person;
         CREATE TABLE test.person (id INT PRIMARY KEY, name VARCHAR(100));
         INSERT INTO test.person SELECT seq, CONCAT('person-', seq) FROM seq_1_to_{ROWS};"
    ))?;
    fresh_graph("test")?;
    build_demo()?;
    let start = Instant::now();
    xtask::run(
        Command::new(root().join("target/release/etlhost"))
            // The graph was just emptied: a checkpoint of an earlier, interrupted demo must not be resumed.
            .args(["run", "jobs/person.yaml", "--fresh"])
            .current_dir(root()),
    )?;
    let wall = start.elapsed().as_secs_f64();
    let nodes = graph_count("test", "MATCH (p:Person) RETURN count(p) AS n")?;
    println!("demo: {nodes} :Person nodes in graph database 'test' ({ROWS} rows in MySQL), etlhost ran {wall:.2} s");
    if nodes != ROWS {
        bail!("expected {ROWS} nodes, found {nodes}");
    }
    Ok(())
}
