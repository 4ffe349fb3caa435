//! `mode: stream`: check that the server can stream, say where its binlog is, and follow it.
//!
//! The binlog carries rows by column position; names and types come from a `SELECT * ... LIMIT 0`
//! probe (the same column metadata a snapshot read converts with, so both read a value alike) and
//! the primary key from information_schema, re-read after any DDL statement in the log. Changes are
//! handed on per transaction, once its commit (XID) arrives, each with the position just after that
//! commit; a transaction with more changes than the request's `max_transaction_changes` goes out in
//! parts as it is read, each ending at a position inside it (its start plus `skip`, the changes
//! handed on so far), so the host records how far into it the graph is.
//!
//! Here: the server checks, the connection as a replica and the task that runs the follower;
//! `follower` reads events, `shape` maps a table's columns, `statements` finds the statements
//! that change rows without row events.

use std::collections::HashSet;

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{Error, Position, StreamHead, StreamRequest};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, OptsBuilder, Pool};
use tokio::sync::mpsc;

use crate::types::Typing;

mod alter;
mod follower;
mod guards;
mod images;
mod layout;
mod shape;
mod statements;

use follower::Follower;

/// MariaDB's own event types, which mysql_common leaves undecoded.
pub(super) const MARIADB_GTID_EVENT: u8 = 162;

/// What the stream task needs, cloned from the source.
#[derive(Clone)]
pub struct Follow {
    pub opts: OptsBuilder,
    pub pool: Pool,
    pub database: String,
    pub fetch_size: usize,
    pub typing: Typing,
    pub secrets: Vec<String>,
}

fn err(secrets: &[String], context: &str, e: impl std::fmt::Display) -> Error {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    Error::permanent(redact_secrets(&format!("{context}: {e}"), &secrets))
}

/// Lost connections (a server restart) are worth another try; everything else is not.
fn classify(secrets: &[String], context: &str, e: mysql_async::Error) -> Error {
    let retryable = matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
        || matches!(&e, mysql_async::Error::Server(s) if matches!(s.code, 1053 | 2013 | 1927));
    let purged = matches!(&e, mysql_async::Error::Server(s) if s.code == 1236);
    let mut error = err(secrets, context, e);
    error.retryable = retryable && !purged;
    error
}

/// Checks the server's settings and the user's privileges, then answers the binlog's head.
pub async fn head(conn: &mut Conn, secrets: &[String]) -> Result<StreamHead, Error> {
    let fail = |e| err(secrets, "cannot check the binary log settings", e);
    let (log_bin, format, image): (i64, String, String) = conn
        .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
        .await
        .map_err(fail)?
        .ok_or_else(|| Error::permanent("the server answered no binlog settings"))?;
    let restart =
        "--log-bin=<dir>/binlog --binlog-format=ROW --binlog-row-image=FULL --server-id=1";
    if log_bin == 0 {
        return Err(Error::permanent(format!(
            "the server's binary log is off (log_bin = OFF), and streaming reads it: restart the server with {restart}"
        )));
    }
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(Error::permanent(format!(
            "binlog_format is {format}, streaming needs ROW: SET GLOBAL binlog_format = 'ROW' (and binlog-format=ROW in the server's configuration)"
        )));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(Error::permanent(format!(
            "binlog_row_image is {image}, streaming needs FULL: SET GLOBAL binlog_row_image = 'FULL' (and binlog-row-image=FULL in the server's configuration)"
        )));
    }
    guards::check_compression(conn).await?;
    check_privileges(conn, secrets).await?;
    guards::note_row_metadata(conn).await;
    let status: Option<mysql_async::Row> =
        conn.query_first("SHOW MASTER STATUS").await.map_err(fail)?;
    let status = status.ok_or_else(|| {
        Error::permanent("SHOW MASTER STATUS answered nothing: is the binary log on?")
    })?;
    let file: String = status.get(0).unwrap_or_default();
    let pos: u64 = status.get(1).unwrap_or_default();
    // MariaDB's GTID position; MySQL has none under this name, which is fine.
    let gtid: Option<String> = conn
        .query_first::<Option<String>, _>("SELECT @@gtid_binlog_pos")
        .await
        .ok()
        .flatten()
        .flatten()
        .filter(|g| !g.is_empty());
    Ok(StreamHead {
        position: Position {
            file,
            pos,
            gtid,
            skip: 0,
        },
        ..Default::default()
    })
}

/// `REPLICATION SLAVE` (to read the binlog) and `REPLICATION CLIENT` (MariaDB 10.5+: `BINLOG
/// MONITOR`, to ask where it is), found in the user's grants on `*.*`.
async fn check_privileges(conn: &mut Conn, secrets: &[String]) -> Result<(), Error> {
    let fail = |e| err(secrets, "cannot read the user's grants", e);
    let user: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(fail)?
        .unwrap_or_default();
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(fail)?;
    let global: Vec<String> = grants
        .iter()
        .filter(|g| g.contains(" ON *.* "))
        .map(|g| g.to_uppercase())
        .collect();
    let has = |names: &[&str]| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || names.iter().any(|n| g.contains(n)))
    };
    let mut missing = Vec::new();
    if !has(&["REPLICATION SLAVE", "REPLICATION REPLICA"]) {
        missing.push("REPLICATION SLAVE");
    }
    if !has(&["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"]) {
        missing.push("REPLICATION CLIENT");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let (name, host) = user.rsplit_once('@').unwrap_or((&user, "%"));
    Err(Error::permanent(format!(
        "user {user} lacks the {} privilege{} that streaming needs: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{name}'@'{host}'",
        missing.join(" and "),
        if missing.len() > 1 { "s" } else { "" }
    )))
}

/// Change batches already encoded, like the snapshot's batches (see `MySqlReader`).
pub type Sent = Result<Vec<u8>, Error>;

/// Follows the binlog from `req.from`, sending change batches until the receiver is dropped or
/// an error is sent (the host reconnects from where it got).
pub async fn follow(f: Follow, req: StreamRequest, tx: mpsc::Sender<Sent>) {
    if let Err(e) = run(&f, &req, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

/// Tables by name below the source's database (`db.t` names another one).
fn wanted(f: &Follow, req: &StreamRequest) -> HashSet<(String, String)> {
    req.tables
        .iter()
        .map(|t| match t.split_once('.') {
            Some((d, t)) => (d.to_string(), t.to_string()),
            None => (f.database.clone(), t.clone()),
        })
        .collect()
}

async fn purged_check(conn: &mut Conn, from: &Position, secrets: &[String]) -> Result<(), Error> {
    let logs: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| classify(secrets, "cannot list the binary logs", e))?;
    let names: Vec<String> = logs.iter().filter_map(|r| r.get(0)).collect();
    if from.file.is_empty() || names.iter().any(|n| n == &from.file) {
        return Ok(());
    }
    Err(Error::permanent(format!(
        "the binlog position {from} is no longer on the server (purged; the oldest binary log is {}): run with --fresh to start over with a new snapshot",
        names.first().map_or("none", String::as_str)
    )))
}

async fn run(f: &Follow, req: &StreamRequest, tx: &mpsc::Sender<Sent>) -> Result<(), Error> {
    let mut stream = open_stream(f, req).await?;
    let mut follower = Follower::new(f, req, tx);
    while let Some(event) = follower.next_event(&mut stream).await? {
        if follower.event(&stream, event).await?.is_break() {
            break;
        }
    }
    Ok(())
}

/// Connects as a replica and asks for the binlog from `req.from`.
async fn open_stream(f: &Follow, req: &StreamRequest) -> Result<BinlogStream, Error> {
    let secrets = &f.secrets;
    let connect = |e| classify(secrets, "cannot connect to MySQL for its binlog", e);
    let mut conn = Conn::new(f.opts.clone()).await.map_err(connect)?;
    purged_check(&mut conn, &req.from, secrets).await?;
    // Announce MariaDB's capabilities: its GTID and annotate events then arrive as themselves,
    // not as dummy QUERY events.
    conn.query_drop("SET @mariadb_slave_capability = 4")
        .await
        .map_err(connect)?;
    // A replica id of our own, different from the server's and from other readers'.
    let server_id = 1_000_000 + (std::process::id() % 1_000_000) + rand_offset();
    let request = BinlogStreamRequest::new(server_id)
        .with_filename(req.from.file.as_bytes())
        .with_pos(req.from.pos);
    conn.get_binlog_stream(request)
        .await
        .map_err(|e| classify(secrets, "cannot start reading the binlog", e))
}

fn rand_offset() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (t % 1000) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed) % 1000
}
