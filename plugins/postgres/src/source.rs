//! The source's state: its connection, relation and typing, and the COPY that reads a split.
//! What the host calls is in `plugin`; planning is in `plan`, the catalog in `catalog`.

use std::collections::HashSet;
use std::sync::Mutex;

use etlhost_plugin_sdk::{Error, Split};
use tokio_postgres::Client;

use crate::connect::Connector;
use crate::options::PgOptions;
use crate::relation::Relation;
use crate::sql::{ident, split_filter, CTID};
use crate::types::{self, ColumnPlan};

/// What every connection runs first: literals as the SQL standard reads them (bounds are
/// inlined in COPY), and the settings of any value read as its text.
pub(crate) const SESSION_SETUP: &str =
    "SET standard_conforming_strings = on; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3";

pub struct PgSource {
    pub(crate) conn: Connector,
    pub(crate) relation: Relation,
    pub(crate) fetch_size: usize,
    pub(crate) typing: types::Typing,
    /// Warnings already logged (once per flow, not once per split).
    pub(crate) warned: Mutex<HashSet<String>>,
    /// The options as given, for the stream (`replication`).
    pub(crate) options: PgOptions,
}

impl PgSource {
    /// A connection for planning, set up as every connection is.
    pub(crate) async fn client(&self) -> Result<Client, Error> {
        let client = self.conn.connect().await?;
        client
            .batch_execute(SESSION_SETUP)
            .await
            .map_err(|e| self.conn.error("cannot set up the session", &e))?;
        Ok(client)
    }

    pub(crate) fn warn_once(&self, warning: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(warning.to_string()) {
            tracing::warn!("{warning}");
        }
    }

    /// The COPY statement of a split and the plans of its columns, learned by preparing the
    /// SELECT (which reads no row).
    pub(crate) async fn copy_sql(&self, split: &Split) -> Result<(String, Vec<ColumnPlan>), Error> {
        let client = self.client().await?;
        let what = self.relation.what();
        let mut keys = Vec::new();
        if let Some(r) = &split.range {
            if r.column == CTID && r.columns.is_empty() {
                self.check_ctid()?;
            } else {
                keys = self
                    .relation
                    .key_types(&client, &self.conn, r.key_columns())
                    .await?;
            }
        }
        let cursor = match &split.cursor {
            Some(c) => {
                let t = self
                    .relation
                    .key_types(&client, &self.conn, std::slice::from_ref(&c.column))
                    .await?;
                t.into_iter().next().map(|t| t.sql)
            }
            None => None,
        };
        let keys: Vec<String> = keys.into_iter().map(|k| k.sql).collect();
        let (filter, order) = split_filter(split, &keys, cursor.as_deref())
            .map_err(|e| Error::permanent(format!("split {} of {what}: {e}", split.id)))?;
        let probe = format!("SELECT * FROM {} LIMIT 0", self.relation.from);
        let prepared = client
            .prepare(&probe)
            .await
            .map_err(|e| self.conn.error(&format!("cannot read {what}"), &e))?;
        let mut exprs = Vec::new();
        let mut plans = Vec::new();
        for col in prepared.columns() {
            let quoted = ident(col.name());
            let expr = types::select_expr(&quoted, col.type_());
            exprs.push(if expr == quoted {
                expr
            } else {
                format!("{expr} AS {quoted}")
            });
            let plan = types::plan(col.name(), col.type_(), &self.typing);
            if let Some(w) = &plan.warning {
                self.warn_once(&format!("{what}: {w}"));
            }
            plans.push(plan);
        }
        let copy = format!(
            "COPY (SELECT {} FROM {}{filter}{order}) TO STDOUT (FORMAT binary)",
            exprs.join(", "),
            self.relation.from
        );
        Ok((copy, plans))
    }

    /// A split by `ctid` (block ranges) needs a table's own blocks.
    pub(crate) fn check_ctid(&self) -> Result<(), Error> {
        match &self.relation.table {
            None => Err(Error::permanent(
                "partition_column `ctid` splits a table by its blocks; a query has none \
                 (partition on a column of the query)",
            )),
            Some(t) if t.partitioned => Err(Error::permanent(format!(
                "partition_column `ctid` cannot split the partitioned table `{}`: ctid is \
                 per partition (partition on a key column, or read each partition as a table)",
                t.name
            ))),
            Some(t) if !t.has_ctid => Err(Error::permanent(format!(
                "partition_column `ctid` cannot split `{}`: a view or foreign table has no \
                 ctid (partition on a key column)",
                t.name
            ))),
            Some(_) => Ok(()),
        }
    }
}
