//! Planning: a key's bounds and a sample of its values, from which the host cuts splits; and
//! block bounds for a table split by `ctid`.

use etlhost_plugin_sdk::{ColumnType, CursorRange, Error, KeyBounds, KeySample, Value};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Row};

use crate::relation::KeyType;
use crate::source::PgSource;
use crate::sql::{cursor_sql, ident, CTID};
use crate::types::{self, Decode};

/// A fixed seed: the same table gives the same sample, so plans repeat.
const SEED: u32 = 20_261_207;

/// Up to this many blocks (1 GiB of 8 KiB blocks) a sample draws rows (`BERNOULLI`), which
/// reads the whole table, as the `count(*)` before it already does; above it, whole blocks
/// (`SYSTEM`), which reads only the blocks drawn. Rows of a block are often near each other in
/// key order, so a block sample cuts less even splits (4 text splits of 3,000,000 rows: 666k to
/// 829k rows, where a row sample cuts them within 1%).
const ROW_SAMPLE_BLOCKS: i64 = 131_072;

/// A value as the server sent it, in whatever type: decoded by the column's plan.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn value(row: &Row, i: usize, decode: &Decode, column: &str) -> Result<Value, Error> {
    let raw: Raw = row
        .try_get(i)
        .map_err(|e| Error::permanent(format!("column `{column}`: {e}")))?;
    decode
        .decode(raw.0)
        .map_err(|e| Error::permanent(format!("column `{column}`: {e}")))
}

impl PgSource {
    /// ` AND <cursor condition>` (or nothing), the cursor column's type looked up.
    async fn cursor_filter(
        &self,
        client: &Client,
        cursor: Option<&CursorRange>,
    ) -> Result<String, Error> {
        let Some(c) = cursor else {
            return Ok(String::new());
        };
        let col = std::slice::from_ref(&c.column);
        let ty = self.relation.key_types(client, &self.conn, col).await?;
        Ok(format!(" AND {}", cursor_sql(c, &ty[0].sql)))
    }

    async fn count(&self, client: &Client, filter: &str, what: &str) -> Result<u64, Error> {
        let sql = format!("SELECT count(*) FROM {} WHERE {filter}", self.relation.from);
        let n: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| {
                self.conn
                    .error(&format!("cannot count the rows of {what}"), &e)
            })?
            .get(0);
        Ok(n as u64)
    }

    pub(crate) async fn bounds(
        &self,
        column: &str,
        cursor: Option<&CursorRange>,
    ) -> Result<KeyBounds, Error> {
        let client = self.client().await?;
        if column == CTID {
            return self.block_bounds(&client).await;
        }
        let what = format!("`{column}` of {}", self.relation.what());
        let key = &self
            .relation
            .key_types(&client, &self.conn, &[column.to_string()])
            .await?[0];
        let plan = types::plan(column, &key.ty, &self.typing);
        let cursor = self.cursor_filter(&client, cursor).await?;
        let col = ident(column);
        let sel = types::select_expr("b.etlhost_k", &key.ty);
        let mut ends = Vec::new();
        // ORDER BY ... LIMIT 1 rather than min()/max(): it uses an index the same way, and works
        // for types without min() (uuid, bool) and in the column's collation.
        for dir in ["ASC", "DESC"] {
            let sql = format!(
                "SELECT {sel} FROM (SELECT {col} AS etlhost_k FROM {} WHERE {col} IS NOT NULL\
                 {cursor}) AS b ORDER BY b.etlhost_k {dir} LIMIT 1",
                self.relation.from
            );
            let row = client.query_opt(&sql, &[]).await.map_err(|e| {
                self.conn
                    .error(&format!("cannot query the bounds of {what}"), &e)
            })?;
            ends.push(match row {
                Some(row) => value(&row, 0, &plan.decode, column)?,
                None => Value::Null,
            });
        }
        let rows = self.count(&client, &format!("true{cursor}"), &what).await?;
        let max = ends.pop().unwrap_or(Value::Null);
        let min = ends.pop().unwrap_or(Value::Null);
        Ok(KeyBounds {
            column: column.to_string(),
            declared_type: key.sql.clone(),
            column_type: plan.column.ty,
            min,
            max,
            rows,
        })
    }

    /// The table's blocks as the key's range: 0 to the last block now (the last split is
    /// unbounded above, so blocks added meanwhile are read too); rows as the catalog estimates.
    async fn block_bounds(&self, client: &Client) -> Result<KeyBounds, Error> {
        self.check_ctid()?;
        let (blocks, rows) = self.blocks(client).await?;
        let (min, max) = if blocks > 0 {
            (Value::Int(0), Value::Int(blocks - 1))
        } else {
            (Value::Null, Value::Null)
        };
        Ok(KeyBounds {
            column: CTID.to_string(),
            declared_type: "tid (split by block number)".to_string(),
            column_type: ColumnType::Int,
            min,
            max,
            rows: rows.max(0) as u64,
        })
    }

    /// The table's blocks now, and its rows as the catalog estimates them (-1: never counted).
    async fn blocks(&self, client: &Client) -> Result<(i64, i64), Error> {
        let Some(table) = &self.relation.table else {
            return Ok((0, -1));
        };
        let row = client
            .query_one(
                "SELECT pg_relation_size($1::oid::regclass) / current_setting('block_size')::bigint, \
                 reltuples::bigint FROM pg_class WHERE oid = $1",
                &[&table.oid],
            )
            .await
            .map_err(|e| {
                self.conn
                    .error(&format!("cannot read the size of table `{}`", table.name), &e)
            })?;
        Ok((row.get(0), row.get(1)))
    }

    pub(crate) async fn sample(
        &self,
        columns: &[String],
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, Error> {
        let client = self.client().await?;
        if columns.len() == 1 && columns[0] == CTID {
            // Equal block ranges hold about equal rows: the host cuts them without a sample.
            let bounds = self.block_bounds(&client).await?;
            return Ok(KeySample {
                keys: Vec::new(),
                rows: bounds.rows,
            });
        }
        let names = columns.join(", ");
        let what = format!("the key ({names}) of {}", self.relation.what());
        let keys = self
            .relation
            .key_types(&client, &self.conn, columns)
            .await?;
        let mut filter: Vec<String> = columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", ident(c)))
            .collect();
        let cursor = self.cursor_filter(&client, cursor).await?;
        filter.push(format!("true{cursor}"));
        let filter = filter.join(" AND ");
        let rows = self.count(&client, &filter, &what).await?;
        if count == 0 || rows == 0 {
            return Ok(KeySample {
                keys: Vec::new(),
                rows,
            });
        }
        let sampled = self.sampled_from(&client, rows, count).await?;
        let inner: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} AS etlhost_k{i}", ident(c)))
            .collect();
        let outer: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| types::select_expr(&format!("s.etlhost_k{i}"), &k.ty))
            .collect();
        let order: Vec<String> = (0..columns.len())
            .map(|i| format!("s.etlhost_k{i}"))
            .collect();
        let sql = format!(
            "SELECT {} FROM (SELECT {} FROM {sampled} WHERE {filter}) AS s ORDER BY {}",
            outer.join(", "),
            inner.join(", "),
            order.join(", ")
        );
        let found = client
            .query(&sql, &[])
            .await
            .map_err(|e| self.conn.error(&format!("cannot sample {what}"), &e))?;
        Ok(KeySample {
            keys: self.decode_keys(columns, &keys, &found)?,
            rows,
        })
    }

    /// What the sample reads FROM: the relation with a `TABLESAMPLE` clause drawing about
    /// `count` of its `rows` (a query's rows are drawn by `random()`, seeded).
    async fn sampled_from(&self, client: &Client, rows: u64, count: u64) -> Result<String, Error> {
        let from = &self.relation.from;
        let share = count as f64 / rows as f64;
        if share >= 1.0 {
            return Ok(from.clone());
        }
        let samplable = self
            .relation
            .table
            .as_ref()
            .is_some_and(|t| t.has_ctid || t.partitioned);
        if !samplable {
            client
                .execute(&format!("SELECT setseed({})", 1.0 / SEED as f64), &[])
                .await
                .map_err(|e| self.conn.error("cannot seed the sample", &e))?;
            return Ok(format!(
                "(SELECT * FROM {from} WHERE random() < {share:?}) AS etlhost_sampled"
            ));
        }
        let (blocks, _) = self.blocks(client).await?;
        let method = if blocks > ROW_SAMPLE_BLOCKS {
            "SYSTEM"
        } else {
            "BERNOULLI"
        };
        Ok(format!(
            "{from} TABLESAMPLE {method} ({:?}) REPEATABLE ({SEED})",
            share * 100.0
        ))
    }

    fn decode_keys(
        &self,
        columns: &[String],
        keys: &[KeyType],
        found: &[Row],
    ) -> Result<Vec<Value>, Error> {
        let plans: Vec<_> = columns
            .iter()
            .zip(keys)
            .map(|(c, k)| types::plan(c, &k.ty, &self.typing))
            .collect();
        let mut out = Vec::with_capacity(found.len());
        for row in found {
            let mut key = Vec::with_capacity(columns.len());
            for (i, plan) in plans.iter().enumerate() {
                key.push(value(row, i, &plan.decode, &columns[i])?);
            }
            out.push(match key.len() {
                1 => key.pop().expect("one column"),
                _ => Value::List(key),
            });
        }
        Ok(out)
    }
}
