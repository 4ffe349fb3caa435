//! What the host calls: the SDK's `Source` for `PgSource`, the stream's part delegated to
//! `replication`.

use std::collections::HashSet;
use std::sync::Mutex;

use etlhost_plugin_sdk::runtime::block_on;
use etlhost_plugin_sdk::{
    Catalog, CursorRange, Error, KeyBounds, KeySample, OpenError, Source, Split, StreamHead,
};
use tokio::sync::mpsc;

use crate::connect::Connector;
use crate::options::{JsonAs, PgOptions};
use crate::reader::{copy_rows, spawn_reader, PgReader};
use crate::relation::Relation;
use crate::source::{PgSource, SESSION_SETUP};
use crate::sql::CTID;
use crate::{replication, types};

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
        let what = self.relation.what();
        let by_block = split
            .range
            .as_ref()
            .is_some_and(|r| r.column == CTID && r.columns.is_empty());
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
                    let fail = |e: &tokio_postgres::Error| conn.error("reading failed", e);
                    copy_rows(stream, &plans, fetch_size, &tx, fail, &what).await
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(final_by_block(e, by_block))).await;
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

/// A split by `ctid` has rows without a key, so the host could only read it again from its
/// start, handing on its first rows twice: its errors are final. The job fails, and a run
/// resumed from a checkpoint reads the unfinished split again whole.
fn final_by_block(e: Error, by_block: bool) -> Error {
    if !(by_block && e.retryable) {
        return e;
    }
    Error::permanent(format!(
        "{}; a split by ctid is not read again mid-way (its rows have no key to go on after): \
         run the job again",
        e.message
    ))
}
