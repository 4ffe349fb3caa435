//! `limits pg-source CONNINFO RELATION`: the fastest read of a PostgreSQL table with no host in
//! between, the postgres source's own method: the column types from preparing `SELECT *`, then
//! one binary `COPY (SELECT * FROM RELATION) TO STDOUT`, every value decoded into its Rust type
//! (an integer, a `&str`, a timestamp's microseconds) so the loop does the work a reader must.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::types::{FromSql, Type};

/// A `timestamp` or `timestamptz`: microseconds since 2000-01-01, as PostgreSQL sends them.
struct Micros(i64);

impl<'a> FromSql<'a> for Micros {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let b: [u8; 8] = raw.try_into()?;
        Ok(Micros(i64::from_be_bytes(b)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ
    }
}

/// Decodes column `i` of `row` by its type; NULL counts as decoded.
fn decode(row: &BinaryCopyOutRow, i: usize, ty: &Type) -> Result<()> {
    match *ty {
        Type::INT2 => _ = std::hint::black_box(row.try_get::<Option<i16>>(i)?),
        Type::INT4 => _ = std::hint::black_box(row.try_get::<Option<i32>>(i)?),
        Type::INT8 => _ = std::hint::black_box(row.try_get::<Option<i64>>(i)?),
        Type::FLOAT8 => _ = std::hint::black_box(row.try_get::<Option<f64>>(i)?),
        Type::BOOL => _ = std::hint::black_box(row.try_get::<Option<bool>>(i)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => {
            _ = std::hint::black_box(row.try_get::<Option<&str>>(i)?)
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            _ = std::hint::black_box(row.try_get::<Option<Micros>>(i)?.map(|m| m.0))
        }
        _ => bail!("limits pg-source: no decoder for column {i} of type {ty}"),
    }
    Ok(())
}

pub async fn source(conninfo: &str, relation: &str) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    let start = Instant::now();
    let select = format!("SELECT * FROM {relation}");
    let types: Vec<Type> = client
        .prepare(&select)
        .await?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let copy = client
        .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
        .await?;
    let rows = BinaryCopyOutStream::new(copy, &types);
    let mut rows = std::pin::pin!(rows);
    let mut n = 0u64;
    while let Some(row) = rows.next().await {
        let row = row?;
        for (i, ty) in types.iter().enumerate() {
            decode(&row, i, ty)?;
        }
        n += 1;
    }
    super::report(n, start.elapsed().as_secs_f64());
    Ok(())
}
