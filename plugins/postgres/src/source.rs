//! The source: its relation, planning (key bounds, samples) and opening a split's reader.

use std::collections::HashSet;
use std::sync::Mutex;

use etlhost_plugin_sdk::runtime::block_on;
use etlhost_plugin_sdk::{ConfigError, Error, OpenError, Source, Split, StreamHead};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::connect::Connector;
use crate::options::{JsonAs, PgOptions};
use crate::reader::{copy_rows, spawn_reader, PgReader};
use crate::sql::ident;
use crate::{replication, types};

/// What every connection runs first: literals as the SQL standard reads them (bounds are
/// inlined in COPY), and times in UTC for any value read as text.
pub(crate) const SESSION_SETUP: &str =
    "SET standard_conforming_strings = on; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3";

pub struct PgSource {
    pub(crate) conn: Connector,
    /// `"schema"."table"`, or `(query) AS etlhost_query`: what `SELECT ... FROM` reads.
    pub(crate) relation: String,
    pub(crate) fetch_size: usize,
    pub(crate) typing: types::Typing,
    /// Warnings already logged (once per flow, not once per split).
    warned: Mutex<HashSet<String>>,
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

    fn warn_once(&self, warning: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(warning.to_string()) {
            tracing::warn!("{warning}");
        }
    }

    /// The SELECT that reads one split (all columns, as prepared; not yet cast for COPY).
    pub(crate) fn split_where(&self, split: &Split) -> Result<String, Error> {
        let _ = split;
        Ok(String::new())
    }
}

impl Source for PgSource {
    type Options = PgOptions;
    type Reader = PgReader;

    fn open(o: PgOptions) -> Result<Self, OpenError> {
        let conn = Connector::new(&o)?;
        let relation = match (&o.table, &o.query) {
            (Some(t), _) => {
                let parts = crate::sql::parse_name(t).map_err(|e| ConfigError::new("table", e))?;
                parts
                    .iter()
                    .map(|(p, _)| ident(p))
                    .collect::<Vec<_>>()
                    .join(".")
            }
            (None, Some(q)) => format!("({}) AS etlhost_query", q.trim().trim_end_matches(';')),
            (None, None) => unreachable!("checked in PgOptions::check"),
        };
        let source = PgSource {
            conn,
            relation,
            fetch_size: o.fetch_size,
            typing: types::Typing {
                json_value: o.json == JsonAs::Value,
            },
            warned: Mutex::new(HashSet::new()),
        };
        // Connect once now, so a wrong password or host fails before any work is planned.
        block_on(source.client())?;
        Ok(source)
    }

    const STREAMS: bool = true;

    fn stream_head(&self) -> Result<StreamHead, Error> {
        replication::stream_head(self)
    }

    fn open_split(&self, split: &Split) -> Result<PgReader, Error> {
        if let Some(req) = &split.stream {
            return replication::open_stream(self, split.id, req);
        }
        let filter = self.split_where(split)?;
        let select = format!("SELECT * FROM {}{filter}", self.relation);
        // Types come from preparing the SELECT; the COPY then selects each column in the form
        // its decoder reads.
        let prepared = block_on(async {
            let client = self.client().await?;
            client.prepare(&select).await.map_err(|e| {
                self.conn
                    .error(&format!("cannot read `{}`", self.relation), &e)
            })
        })?;
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
                self.warn_once(w);
            }
            plans.push(plan);
        }
        let copy = format!(
            "COPY (SELECT {} FROM {}{filter}) TO STDOUT (FORMAT binary)",
            exprs.join(", "),
            self.relation
        );
        tracing::debug!(split = split.id, sql = %copy, "reading split");
        let (tx, rx) = mpsc::channel(2);
        let tx_panic = tx.clone();
        let conn = self.conn.clone();
        let fetch_size = self.fetch_size;
        // The split gets a thread and a single-threaded runtime of its own: decoding rows is the
        // bound, and each split then has a core of its own with its connection beside it.
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
                        .batch_execute(SESSION_SETUP)
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
}
