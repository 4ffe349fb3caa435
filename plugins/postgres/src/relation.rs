//! What the source reads: a table (resolved in the catalog once, at open) or a query.

use etlhost_plugin_sdk::{ConfigError, Error, OpenError};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::connect::Connector;
use crate::sql::{ident, parse_name};

pub(crate) struct Relation {
    /// What `SELECT ... FROM` reads: `"schema"."table"`, or `(query) AS etlhost_query`.
    pub(crate) from: String,
    pub(crate) table: Option<Table>,
}

pub(crate) struct Table {
    pub(crate) oid: u32,
    /// `schema.table` as the catalog spells it, for messages.
    pub(crate) name: String,
    /// A partitioned parent: its rows are its partitions' (each read once, through it).
    pub(crate) partitioned: bool,
    /// A table or materialized view, which has a `ctid` (a view or foreign table has none).
    pub(crate) has_ctid: bool,
}

/// A key column's types: as prepared (for decoding) and as `format_type` names it (for casts).
#[derive(Clone)]
pub(crate) struct KeyType {
    pub(crate) ty: Type,
    pub(crate) sql: String,
}

impl Relation {
    pub(crate) fn query(sql: &str) -> Relation {
        Relation {
            from: format!("({}) AS etlhost_query", sql.trim().trim_end_matches(';')),
            table: None,
        }
    }

    /// Finds `name` as PostgreSQL would (the search path when no schema is given), except that
    /// an unquoted part is first taken as written, then folded to lower case: `table: Orders`
    /// finds a table created as `"Orders"` as well as one created as `Orders` (= `orders`).
    pub(crate) async fn table(
        client: &Client,
        conn: &Connector,
        name: &str,
    ) -> Result<Relation, OpenError> {
        let parts = parse_name(name).map_err(|e| ConfigError::new("table", e))?;
        let exact: Vec<String> = parts.iter().map(|(p, _)| ident(p)).collect();
        let folded: Vec<String> = parts
            .iter()
            .map(|(p, quoted)| ident(&if *quoted { p.clone() } else { p.to_lowercase() }))
            .collect();
        for candidate in [exact.join("."), folded.join(".")] {
            let row = client
                .query_opt(
                    "SELECT c.oid, n.nspname, c.relname, c.relkind::text \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = to_regclass($1)",
                    &[&candidate],
                )
                .await
                .map_err(|e| conn.error(&format!("cannot look up table `{name}`"), &e))?;
            if let Some(row) = row {
                let (schema, rel): (String, String) = (row.get(1), row.get(2));
                let kind: String = row.get(3);
                return Ok(Relation {
                    from: format!("{}.{}", ident(&schema), ident(&rel)),
                    table: Some(Table {
                        oid: row.get(0),
                        name: format!("{schema}.{rel}"),
                        partitioned: kind == "p",
                        has_ctid: kind == "r" || kind == "m",
                    }),
                });
            }
        }
        Err(ConfigError::new(
            "table",
            format!(
                "no table `{name}` in database {} that user can see (give `schema.name` for a \
                 schema outside the search path; quote a part with dots or spaces: \
                 `\"My Schema\".\"Orders\"`)",
                conn.target
            ),
        )
        .into())
    }

    /// What messages call the relation.
    pub(crate) fn what(&self) -> String {
        match &self.table {
            Some(t) => format!("table `{}`", t.name),
            None => "the query".to_string(),
        }
    }

    /// The types of `columns` (prepared without reading a row).
    pub(crate) async fn key_types(
        &self,
        client: &Client,
        conn: &Connector,
        columns: &[String],
    ) -> Result<Vec<KeyType>, Error> {
        let list: Vec<String> = columns.iter().map(|c| ident(c)).collect();
        let probe = format!("SELECT {} FROM {} LIMIT 0", list.join(", "), self.from);
        let fail = |e: &tokio_postgres::Error| {
            conn.error(
                &format!(
                    "cannot read the key ({}) of {}",
                    columns.join(", "),
                    self.what()
                ),
                e,
            )
        };
        let stmt = client.prepare(&probe).await.map_err(|e| fail(&e))?;
        let mut out = Vec::new();
        for col in stmt.columns() {
            let sql: String = client
                // typmod -1, not NULL: with NULL, `char(n)` is named `character`, which is `char(1)`
                // as a cast and cuts every bound to one character.
                .query_one("SELECT format_type($1, -1)", &[&col.type_().oid()])
                .await
                .map_err(|e| fail(&e))?
                .get(0);
            out.push(KeyType {
                ty: col.type_().clone(),
                sql,
            });
        }
        Ok(out)
    }
}
