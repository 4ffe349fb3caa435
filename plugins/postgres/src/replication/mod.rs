//! `mode: stream`: changes from a logical replication slot, decoded from pgoutput.
//!
//! - `stream_start` (once, before the snapshot) checks the server (`slot`), makes the publication
//!   and the slot when absent, and answers the slot's consistent point; a slot made then exports
//!   its snapshot, which every split of this database imports (`snapshot_for`) until the stream
//!   starts, so the copy ends exactly where the stream begins.
//! - `open_stream` follows the slot from a position (`follow`), decoding rows (`pgoutput`) with
//!   the same type plans as the binary COPY (`crate::types`).
//! - `stream_ack` is the host saying what it recorded: only that is confirmed to the server (the
//!   slot's `confirmed_flush_lsn`), in the session's next standby status update.
//!
//! Positions are LSNs (`Position { file: "", pos }`): a transaction's commit is its commit
//! record's end; a part of a large transaction is its commit record's start with `skip`.

mod emit;
mod follow;
mod pgoutput;
mod slot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use etlhost_plugin_sdk::runtime::{block_on, runtime};
use etlhost_plugin_sdk::{Error, Position, StreamHead, StreamRequest};
use pgwire_replication::ReplicationClient;
use tokio::sync::mpsc;

use crate::reader::PgReader;
use crate::source::PgSource;

/// A slot's exported snapshot and the replication session that keeps it valid.
struct Exported {
    snapshot: String,
    _session: ReplicationClient,
}

/// Per server and database (`Connector::target`): the snapshot exported for the stream about to
/// start, and the position the host has recorded (what may be confirmed to the server).
#[derive(Default)]
struct Registry {
    exported: HashMap<String, Exported>,
    recorded: HashMap<String, Arc<AtomicU64>>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn key(source: &PgSource, slot: &str) -> String {
    format!("{}#{slot}", source.conn.target)
}

fn names(source: &PgSource) -> slot::Names {
    let db = source.conn.config.get_dbname().unwrap_or_default();
    let relation = source.relation.from.replace('"', "");
    slot::names(&source.options, db, &relation)
}

/// The snapshot a split of this database reads at, while a stream's exported snapshot waits for
/// its readers (`SET TRANSACTION SNAPSHOT`, in a REPEATABLE READ transaction).
pub(crate) fn snapshot_for(source: &PgSource) -> Option<String> {
    let prefix = format!("{}#", source.conn.target);
    let r = registry();
    r.exported
        .iter()
        .find(|(k, _)| k.starts_with(&prefix))
        .map(|(_, e)| e.snapshot.clone())
}

/// Checks that the server can stream changes and says where its WAL is now (cheap: asked once a
/// second for lag).
pub(crate) fn stream_head(source: &PgSource) -> Result<StreamHead, Error> {
    block_on(async {
        let c = source.client().await?;
        slot::check_server(&c, source).await?;
        let row = c
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| source.conn.error("cannot read the WAL position", &e))?;
        Ok(head(slot::parse_lsn(row.get(0))?, None))
    })
}

fn head(lsn: u64, snapshot: Option<String>) -> StreamHead {
    StreamHead {
        position: slot::position(lsn),
        snapshot,
        logs_cascades: true,
    }
}

/// Before the snapshot: the checks, the publication, the slot (with its exported snapshot when
/// made now), and where the stream starts.
pub(crate) fn stream_start(source: &PgSource, tables: &[String]) -> Result<StreamHead, Error> {
    let names = names(source);
    let o = &source.options;
    block_on(async {
        let c = source.client().await?;
        slot::check_server(&c, source).await?;
        let tables = slot::tables(&c, source, tables).await?;
        slot::publication(&c, source, &names, o.publication.is_some(), &tables).await?;
        if slot::confirmed(&c, source, &names.slot).await?.is_some() {
            // The slot is there (a resume, or one named in the spec): the copy, if any, is taken
            // after this position and the changes in between are applied again.
            let row = c
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await
                .map_err(|e| source.conn.error("cannot read the WAL position", &e))?;
            return Ok(head(slot::parse_lsn(row.get(0))?, None));
        }
        let cfg = slot::config(source, o, &names)?;
        let (session, lsn, snapshot) = slot::create_exported(source, cfg, &names.slot).await?;
        tracing::info!(slot = %names.slot, publication = %names.publication, position = lsn, "created the replication slot");
        registry().exported.insert(
            key(source, &names.slot),
            Exported {
                snapshot: snapshot.clone(),
                _session: session,
            },
        );
        Ok(head(lsn, Some(snapshot)))
    })
}

/// The host recorded every change up to `position`: the slot may confirm it. A part of a
/// transaction confirms only what is before that transaction.
pub(crate) fn stream_ack(source: &PgSource, position: &Position) -> Result<(), Error> {
    let lsn = if position.skip > 0 {
        position.pos.saturating_sub(1)
    } else {
        position.pos
    };
    let names = names(source);
    let cell = registry()
        .recorded
        .entry(key(source, &names.slot))
        .or_default()
        .clone();
    cell.fetch_max(lsn, Ordering::SeqCst);
    Ok(())
}

/// A stream split's reader: follows the slot from `req.from`.
pub(crate) fn open_stream(
    source: &PgSource,
    split: u32,
    req: &StreamRequest,
) -> Result<PgReader, Error> {
    let names = names(source);
    let k = key(source, &names.slot);
    // The snapshot's readers are done (the host follows only after the copy): its session ends.
    registry().exported.remove(&k);
    // Only what the host recorded is confirmed: a reconnect's `from` may be further on.
    let recorded = registry().recorded.entry(k).or_default().clone();
    let cfg = slot::config(source, &source.options, &names)?;
    let at = recorded.load(Ordering::SeqCst);
    let ctx = block_on(follow::Context::new(source, names, cfg, req, at))?;
    let (tx, rx) = mpsc::channel(4);
    let _ = split;
    runtime().spawn(follow::run(ctx, recorded, tx));
    Ok(PgReader { rx })
}
