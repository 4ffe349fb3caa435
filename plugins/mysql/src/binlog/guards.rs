//! MariaDB binlog features that the follower cannot follow exactly, refused out loud: at start
//! from the server's settings, and at the event when a setting was switched on since.
//!
//! - `log_bin_compress = ON` writes rows (and long statements) as compressed events, types
//!   165-171, which mysql_common does not decode: read as unknown events, they would be passed
//!   over, and the graph would quietly miss their changes.
//! - A two-phase XA transaction is logged at `XA PREPARE` (`XA START`, its rows, `XA END`, then an
//!   XA_PREPARE_LOG_EVENT), and decided later in a group of its own (`XA COMMIT` or `XA
//!   ROLLBACK`), with other transactions in between. Applied at the next commit, a rolled-back
//!   XA's rows would reach the graph; so a prepared XA that changes a streamed table stops the
//!   stream. `XA COMMIT ... ONE PHASE` is logged as an ordinary transaction and streams.
//! - Tables that no flow streams are ignored without a probe, and said once per table.

use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Mutex;

use etlhost_plugin_sdk::Error;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// MariaDB's QUERY_COMPRESSED_EVENT, then {WRITE,UPDATE,DELETE}_ROWS_COMPRESSED_EVENT_V1 and
/// {WRITE,UPDATE,DELETE}_ROWS_COMPRESSED_EVENT.
const COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;

/// The setting's fix, in the start refusal and in the stop at an event alike.
const COMPRESS_FIX: &str =
    "SET GLOBAL log_bin_compress = OFF (and log-bin-compress=OFF in the server's configuration)";

/// MySQL 8.0.20+'s `binlog_transaction_compression` fix, at start and at the event alike.
pub(super) const PAYLOAD_FIX: &str = "SET GLOBAL binlog_transaction_compression = OFF (and binlog-transaction-compression=OFF in the server's configuration)";

/// Refuses a server that compresses its binlog events (`log_bin_compress`, MariaDB 10.2+; MySQL
/// 8.0.20+'s `binlog_transaction_compression`, which wraps whole transactions in one payload
/// event); a server without the setting passes.
pub(super) async fn check_compression(conn: &mut Conn) -> Result<(), Error> {
    if setting_on(conn, "log_bin_compress").await {
        return Err(Error::permanent(format!(
            "log_bin_compress is ON: the server writes compressed binlog events, which etlhost cannot read: {COMPRESS_FIX}; events already written compressed cannot be streamed, so start with --fresh after switching it off"
        )));
    }
    if setting_on(conn, "binlog_transaction_compression").await {
        return Err(Error::permanent(format!(
            "binlog_transaction_compression is ON: the server writes each transaction as one compressed payload event, which etlhost does not read: {PAYLOAD_FIX}; transactions already written compressed cannot be streamed, so start with --fresh after switching it off"
        )));
    }
    Ok(())
}

/// Whether a numeric server setting is on; a server without it answers an error: off.
async fn setting_on(conn: &mut Conn, var: &str) -> bool {
    let v: Option<i64> = conn
        .query_first(format!("SELECT @@{var}"))
        .await
        .ok()
        .flatten();
    v.unwrap_or(0) != 0
}

/// Says once per process (the host asks for the head more than once), when the binlog does not
/// name its columns: schema changes made while the stream is behind can then only be checked by
/// column count and type.
pub(super) async fn note_row_metadata(conn: &mut Conn) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let meta: Option<String> = conn
        .query_first("SELECT @@binlog_row_metadata")
        .await
        .ok()
        .flatten();
    match meta {
        Some(m) if m.eq_ignore_ascii_case("FULL") => {}
        Some(m) => tracing::warn!(
            "binlog_row_metadata is {m}: the binlog does not name a row's columns, so a schema change made while the stream is behind is checked by column count and types only (and stops the stream when they differ); SET GLOBAL binlog_row_metadata = FULL (and binlog-row-metadata=FULL in the server's configuration) to follow such changes by name"
        ),
        // MySQL before 8.0.1, MariaDB before 10.5: no such setting, no names.
        None => tracing::warn!(
            "the server cannot log column names in its binlog (no binlog_row_metadata): a schema change made while the stream is behind is checked by column count and types only"
        ),
    }
}

/// XA_PREPARE_LOG_EVENT, in MariaDB as in MySQL.
const XA_PREPARE: u8 = 38;

/// Every event, before the follower reads it: a compressed one stops the stream at its
/// position, and so does the PREPARE of an XA transaction that changed `streamed` tables (the
/// follower's pending changes' tables).
pub(super) fn readable<'a>(
    event_type: u8,
    streamed: impl Iterator<Item = &'a str>,
    file: &str,
    end: u64,
) -> Result<(), Error> {
    let at = format_args!("{file}:{end}");
    if event_type == XA_PREPARE {
        return xa_prepared(streamed, &at);
    }
    if !COMPRESSED.contains(&event_type) {
        return Ok(());
    }
    Err(Error::permanent(format!(
        "the binlog at {at} has a compressed event (type {event_type}; log_bin_compress was switched on after the stream started), which etlhost cannot read: the stream stops here rather than pass over its changes; {COMPRESS_FIX}, then run the flow again with --fresh for a new snapshot"
    )))
}

/// At an XA_PREPARE_LOG_EVENT: `tables` are the streamed tables the prepared transaction
/// changed (the follower's pending changes); none, and the XA is of no concern.
fn xa_prepared<'a>(tables: impl Iterator<Item = &'a str>, at: &dyn Display) -> Result<(), Error> {
    let mut names: Vec<&str> = tables.collect();
    names.dedup();
    let Some(first) = names.first() else {
        return Ok(());
    };
    Err(Error::permanent(format!(
        "the binlog at {at} has a prepared XA transaction (XA PREPARE) that changes the streamed table {first}: its rows are logged at PREPARE and it may still be rolled back, so etlhost does not stream two-phase XA; the stream stops here rather than risk applying a rolled-back transaction. Commit such changes with XA COMMIT ... ONE PHASE or an ordinary transaction, then run the flow again with --fresh for a new snapshot"
    )))
}

/// Rows of a table that no flow streams: ignored, and said once per table and process at info
/// (the binlog repeats them for every change; a line each would drown the log).
pub(super) fn ignored_table(db: &str, table: &str) {
    static SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let key = (db.to_string(), table.to_string());
    if seen.get_or_insert_with(HashSet::new).insert(key) {
        tracing::info!(
            "the binlog has changes of {db}.{table}, which no flow streams: they are ignored (said once per table)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_events_stop_and_others_pass() {
        let none = || std::iter::empty();
        assert!(readable(30, none(), "binlog.000001", 4).is_ok());
        assert!(readable(164, none(), "binlog.000001", 4).is_ok());
        assert!(readable(38, none(), "binlog.000001", 4).is_ok());
        let e = readable(169, none(), "binlog.000001", 4).unwrap_err();
        assert!(
            e.message
                .starts_with("the binlog at binlog.000001:4 has a compressed event (type 169"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_prepared_xa_stops_only_when_it_changed_a_streamed_table() {
        assert!(xa_prepared(std::iter::empty(), &"b.000001:9").is_ok());
        let e = xa_prepared(["person", "person"].into_iter(), &"b.000001:9").unwrap_err();
        assert!(
            e.message.contains("changes the streamed table person:"),
            "{}",
            e.message
        );
    }
}
