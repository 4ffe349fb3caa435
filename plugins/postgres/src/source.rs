//! The source: its relation, and opening a split's reader. Planning is in `plan`, the catalog
//! in `catalog`.

use std::collections::HashSet;
use std::sync::Mutex;

use etlhost_plugin_sdk::runtime::block_on;
use etlhost_plugin_sdk::{
    Catalog, CursorRange, Error, KeyBounds, KeySample, OpenError, Source, Split, StreamHead,
};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::connect::Connector;
use crate::options::{JsonAs, PgOptions};
use crate::reader::{copy_rows, spawn_reader, PgReader};
use crate::relation::Relation;
use crate::sql::{ident, split_filter, CTID};
use crate::types::ColumnPlan;
use crate::{replication, types};

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
    warned: Mutex<HashSet<String>>,
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
    async fn copy_sql(&self, split: &Split) -> Result<(String, Vec<ColumnPlan>), Error> {
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

impl Source for PgSource {
    type Options = PgOptions;
    type Reader = PgReader;
    const INCREMENTAL: bool = true;

    fn open(o: PgOptions) -> Result<Self, OpenError> {
        let conn = Connector::new(&o)?;
        // Connect once now, so a wrong password or host fails before any work is planned.
        let relation = block_on(async {
            let client = conn.connect().await?;
            match (&o.table, &o.query) {
                (Some(t), _) => Relation::table(&client, &conn, t).await,
                (None, Some(q)) => Ok(Relation::query(q)),
                (None, None) => unreachable!("checked in PgOptions::check"),
            }
        })?;
        Ok(PgSource {
            conn,
            relation,
            fetch_size: o.fetch_size,
            typing: types::Typing {
                json_value: o.json == JsonAs::Value,
            },
            warned: Mutex::new(HashSet::new()),
            options: o,
        })
    }

    fn open_split(&self, split: &Split) -> Result<PgReader, Error> {
        if let Some(req) = &split.stream {
            return replication::open_stream(self, split.id, req);
        }
        let (copy, plans) = block_on(self.copy_sql(split))?;
        tracing::debug!(split = split.id, sql = %copy, "reading split");
        let (tx, rx) = mpsc::channel(2);
        let tx_panic = tx.clone();
        let conn = self.conn.clone();
        let fetch_size = self.fetch_size;
        // While a stream's slot has just been made, its splits read at the slot's exported
        // snapshot, so the copy ends exactly where the stream begins (`replication`).
        let setup = match replication::snapshot_for(self) {
            Some(snapshot) => format!(
                "{SESSION_SETUP}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET TRANSACTION SNAPSHOT {}",
                crate::sql::string_lit(&snapshot)
            ),
            None => SESSION_SETUP.to_string(),
        };
        // The split gets a thread and a single-threaded runtime of its own, its connection
        // beside it: decoding rows is the bound, and each split then has a core of its own.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::retryable(format!("cannot start a runtime to read the split: {e}"))
            })?;
        let read = move || {
            runtime.block_on(async move {
                let result = async {
                    let client = conn.connect().await?;
                    client
                        .batch_execute(&setup)
                        .await
                        .map_err(|e| conn.error("cannot set up the session", &e))?;
                    let stream = client
                        .copy_out(&copy)
                        .await
                        .map_err(|e| conn.error("reading failed", &e))?;
                    copy_rows(stream, &plans, fetch_size, &tx)
                        .await
                        .map_err(|e| conn.error("reading failed", &e))
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(e)).await;
                }
            })
        };
        spawn_reader(split.id, rx, tx_panic, read)
    }

    fn key_bounds(&self, column: &str, cursor: Option<&CursorRange>) -> Result<KeyBounds, Error> {
        block_on(self.bounds(column, cursor))
    }

    fn key_sample(
        &self,
        columns: &[String],
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, Error> {
        block_on(self.sample(columns, cursor, count))
    }

    fn describe(&self) -> Result<Catalog, Error> {
        block_on(self.catalog())
    }

    const STREAMS: bool = true;

    fn stream_head(&self) -> Result<StreamHead, Error> {
        replication::stream_head(self)
    }

    fn stream_start(&self, tables: &[String]) -> Result<StreamHead, Error> {
        replication::stream_start(self, tables)
    }

    fn stream_ack(&self, position: &etlhost_plugin_sdk::Position) -> Result<(), Error> {
        replication::stream_ack(self, position)
    }
}
