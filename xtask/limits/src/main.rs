//! The raw limits etlhost is measured against, each the smallest loop that does the job with no
//! host in between. Prints one JSON line: rows, seconds, peak RSS.
//!
//! - `limits source URL TABLE`: mysql_async streaming read of the whole table.
//! - `limits pg-source CONNINFO RELATION`: tokio-postgres binary COPY of the whole table ([`pg`]).
//! - `limits sink-raw URL TABLE BOLT_ADDR USER PASSWORD DB BATCH`: the rows (read into memory
//!   first, untimed) written with `UNWIND $batch` over one TCP_NODELAY socket (the bolt sink's own
//!   client).
//! - `limits sink-neo4rs ...` (same arguments): the same with stock neo4rs, the client most Rust
//!   users would reach for.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use etlhost_bolt::{encode_params, Auth, Connection, DecimalAs, Settings, Temporal};
use etlhost_plugin_sdk::value::days_from_civil;
use etlhost_plugin_sdk::{Batch, Column, ColumnType, Value};
use mysql_async::prelude::Queryable;

mod pg;

const QUERY: &str = "UNWIND $batch AS row \
    CREATE (:Person {id: row.id, name: row.name, email: row.email, created_at: row.created_at})";

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn report(rows: u64, secs: f64) {
    let line =
        serde_json::json!({"rows": rows, "seconds": secs, "peak_rss_bytes": peak_rss_bytes()});
    println!("{line}");
}

async fn source(url: &str, table: &str) -> Result<()> {
    let pool = mysql_async::Pool::new(url);
    let mut conn = pool.get_conn().await?;
    let start = Instant::now();
    let mut result = conn.exec_iter(format!("SELECT * FROM {table}"), ()).await?;
    let mut rows = 0u64;
    while let Some(row) = result.next().await? {
        std::hint::black_box(row);
        rows += 1;
    }
    report(rows, start.elapsed().as_secs_f64());
    Ok(())
}

/// person(id, name, email, created_at) rows, as the sink would receive them.
async fn read_people(url: &str, table: &str) -> Result<Vec<Vec<Value>>> {
    let pool = mysql_async::Pool::new(url);
    let mut conn = pool.get_conn().await?;
    let rows: Vec<(i64, String, String, mysql_async::Value)> = conn
        .exec(
            format!("SELECT id, name, email, created_at FROM {table}"),
            (),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, email, at)| {
            let at = match at {
                mysql_async::Value::Date(y, mo, d, h, mi, s, us) => {
                    let secs = days_from_civil(y as i64, mo as u32, d as u32) * 86_400
                        + h as i64 * 3600
                        + mi as i64 * 60
                        + s as i64;
                    Value::DateTime(secs * 1_000_000 + us as i64)
                }
                _ => Value::Null,
            };
            vec![
                Value::Int(id),
                Value::String(name),
                Value::String(email),
                at,
            ]
        })
        .collect())
}

fn schema() -> etlhost_plugin_sdk::Schema {
    [
        ("id", ColumnType::Int),
        ("name", ColumnType::String),
        ("email", ColumnType::String),
        ("created_at", ColumnType::DateTime),
    ]
    .into_iter()
    .map(|(n, ty)| Column { name: n.into(), ty })
    .collect::<Vec<_>>()
    .into()
}

fn sink_raw(
    rows: Vec<Vec<Value>>,
    addr: &str,
    user: &str,
    password: &str,
    db: &str,
    batch: usize,
) -> Result<()> {
    let settings = Settings {
        auth: Auth::Basic { user, password },
        tls: None,
        routing: None,
        timeout: std::time::Duration::from_secs(10),
    };
    let mut conn = Connection::connect(addr, &settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let schema = schema();
    let start = Instant::now();
    let total = rows.len() as u64;
    for chunk in rows.chunks(batch) {
        let b = Batch {
            schema: schema.clone(),
            rows: chunk.to_vec(),
        };
        conn.run_in_transaction(Some(db), QUERY, |m| {
            encode_params(m, &b, Temporal::Native, DecimalAs::String)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    report(total, start.elapsed().as_secs_f64());
    Ok(())
}

async fn sink_neo4rs(
    rows: Vec<Vec<Value>>,
    addr: &str,
    user: &str,
    password: &str,
    db: &str,
    batch: usize,
) -> Result<()> {
    use neo4rs::{BoltList, BoltMap, BoltType};
    let config = neo4rs::ConfigBuilder::default()
        .uri(addr)
        .user(user)
        .password(password)
        .db(db)
        .build()?;
    let graph = neo4rs::Graph::connect(config).await?;
    let names = ["id", "name", "email", "created_at"];
    let start = Instant::now();
    let total = rows.len() as u64;
    for chunk in rows.chunks(batch) {
        let list: Vec<BoltType> = chunk
            .iter()
            .map(|row| {
                let mut m = BoltMap::new();
                for (name, v) in names.iter().zip(row) {
                    let bolt: BoltType = match v {
                        Value::Int(i) => (*i).into(),
                        Value::String(s) => s.clone().into(),
                        Value::DateTime(us) => chrono::DateTime::from_timestamp_micros(*us)
                            .map(|t| t.naive_utc())
                            .expect("in range")
                            .into(),
                        _ => continue,
                    };
                    m.put((*name).into(), bolt);
                }
                BoltType::Map(m)
            })
            .collect();
        let mut txn = graph.start_txn().await?;
        txn.run(neo4rs::query(QUERY).param("batch", BoltType::List(BoltList::from(list))))
            .await?;
        txn.commit().await?;
    }
    report(total, start.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["source", url, table] => source(url, table).await,
        ["pg-source", conninfo, relation] => pg::source(conninfo, relation).await,
        [mode @ ("sink-raw" | "sink-neo4rs"), url, table, addr, user, pw, db, batch] => {
            let batch: usize = batch.parse().context("BATCH")?;
            let rows = read_people(url, table).await?;
            if *mode == "sink-raw" {
                sink_raw(rows, addr, user, pw, db, batch)
            } else {
                sink_neo4rs(rows, addr, user, pw, db, batch).await
            }
        }
        _ => bail!("usage: limits source URL TABLE | limits pg-source CONNINFO RELATION | limits sink-raw|sink-neo4rs URL TABLE BOLT_ADDR USER PASSWORD DB BATCH"),
    }
}
