//! `mode: stream`: check that the server can stream, say where its binlog is, and follow it.
//!
//! The binlog carries rows by column position; names and types come from a `SELECT * ... LIMIT 0`
//! probe (the same column metadata a snapshot read converts with, so both read a value alike) and
//! the primary key from information_schema, re-read after any DDL statement in the log. Changes are
//! handed on per transaction, once its commit (XID) arrives, each with the position just after that
//! commit, so the host never records a position inside a transaction.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{
    Change, ChangeBatch, ChangeKind, ColumnType, Error, Position, Schema, StreamHead,
    StreamRequest, Value,
};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType as My};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, OptsBuilder, Pool};
use tokio::sync::mpsc;

use crate::types::{self, Conv, Typing};

/// MariaDB's own event types, which mysql_common leaves undecoded.
const MARIADB_GTID_EVENT: u8 = 162;

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
    check_privileges(conn, secrets).await?;
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
        position: Position { file, pos, gtid },
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

/// A table's columns as the binlog's positions map to them.
struct TableShape {
    schema: Schema,
    convs: Vec<Conv>,
    /// Bits of an unsigned integer column: the binlog sends them signed unless the server logs
    /// column metadata, which MariaDB does not by default.
    unsigned_bits: Vec<Option<u32>>,
    /// ENUM and SET members: the binlog sends an ENUM's index (from 1) and a SET's bitmap.
    members: Vec<Option<(bool, Vec<String>)>>,
    key: Vec<usize>,
}

async fn shape(
    pool: &Pool,
    db: &str,
    table: &str,
    typing: &Typing,
) -> Result<TableShape, mysql_async::Error> {
    let mut c = pool.get_conn().await?;
    let relation = format!("`{}`.`{}`", db.replace('`', "``"), table.replace('`', "``"));
    let result = c
        .exec_iter(format!("SELECT * FROM {relation} LIMIT 0"), ())
        .await?;
    let columns = result.columns_ref().to_vec();
    result.drop_result().await?;
    let key_names: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    let declared: Vec<(String, String)> = c
        .exec(
            "SELECT DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    let members = (0..columns.len())
        .map(|i| match declared.get(i) {
            Some((t, full)) if t == "enum" || t == "set" => Some((t == "set", members(full))),
            _ => None,
        })
        .collect();
    let (cols, convs): (Vec<_>, Vec<_>) = columns.iter().map(|c| types::column(c, typing)).unzip();
    let unsigned_bits = columns
        .iter()
        .map(|c| {
            if !c.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
                return None;
            }
            match c.column_type() {
                My::MYSQL_TYPE_TINY => Some(8),
                My::MYSQL_TYPE_SHORT => Some(16),
                My::MYSQL_TYPE_INT24 => Some(24),
                My::MYSQL_TYPE_LONG => Some(32),
                My::MYSQL_TYPE_LONGLONG => Some(64),
                _ => None,
            }
        })
        .collect();
    let key = key_names
        .iter()
        .filter_map(|k| cols.iter().position(|c| &c.name == k))
        .collect();
    Ok(TableShape {
        schema: cols.into(),
        convs,
        unsigned_bits,
        members,
        key,
    })
}

/// The members of `enum('a','b')` / `set('a','b')`, quotes undone (`''` is one quote).
fn members(column_type: &str) -> Vec<String> {
    let inner = column_type
        .split_once('(')
        .map_or("", |(_, r)| r.strip_suffix(')').unwrap_or(r));
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars().peekable();
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (false, '\'') => quoted = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    out
}

impl TableShape {
    fn row(&self, values: Vec<BinlogValue<'static>>) -> Result<Vec<Value>, String> {
        let mut row = Vec::with_capacity(self.schema.len());
        for (i, v) in values.into_iter().enumerate() {
            let Some(col) = self.schema.get(i) else {
                // A column added after this event was logged is not in it; one dropped since
                // is not in the probe: drop its value.
                break;
            };
            let v = match v {
                BinlogValue::Value(v) => v,
                other => {
                    let v: Result<mysql_async::Value, _> = other.try_into();
                    v.map_err(|e| format!("column `{}`: {e}", col.name))?
                }
            };
            let v = match (v, self.unsigned_bits[i]) {
                (mysql_async::Value::Int(n), Some(bits)) if n < 0 => {
                    mysql_async::Value::UInt((n as u64) & u64::MAX >> (64 - bits))
                }
                (v, _) => v,
            };
            let value = match (&self.members[i], v) {
                (Some((false, names)), mysql_async::Value::Int(n)) => {
                    // 0 is the empty string MySQL stores for an invalid value.
                    let name = usize::try_from(n - 1).ok().and_then(|k| names.get(k));
                    row.push(Value::String(name.cloned().unwrap_or_default()));
                    continue;
                }
                (Some((true, names)), mysql_async::Value::Bytes(bits)) => {
                    let set = names
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| bits.get(k / 8).is_some_and(|b| b & (1 << (k % 8)) != 0))
                        .map(|(_, m)| Value::String(m.clone()))
                        .collect();
                    row.push(Value::List(set));
                    continue;
                }
                (_, v) => v,
            };
            let value = match (col.ty, value) {
                // TIMESTAMP arrives as seconds since 1970 (and a fraction) in the binlog.
                (ColumnType::Timestamp, mysql_async::Value::Bytes(b)) => timestamp(&b)
                    .ok_or_else(|| format!("column `{}`: not a binlog TIMESTAMP", col.name))?,
                (ColumnType::Timestamp, mysql_async::Value::Int(s)) => {
                    Value::Timestamp(s * 1_000_000)
                }
                (_, v) => types::convert(v, self.convs[i])
                    .map_err(|e| format!("column `{}`: {e}", col.name))?,
            };
            row.push(value);
        }
        row.resize(self.schema.len(), Value::Null);
        Ok(row)
    }
}

fn timestamp(b: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(b).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")[..6].parse().ok()?
    };
    Some(Value::Timestamp(secs * 1_000_000 + micros))
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

struct Out {
    batch: Option<ChangeBatch>,
    fetch_size: usize,
}

impl Out {
    /// Adds a transaction's changes; a batch holds one table of one shape.
    async fn push(
        &mut self,
        tx: &mpsc::Sender<Sent>,
        table: &str,
        schema: &Schema,
        key: &[usize],
        change: Change,
    ) -> Result<(), ()> {
        let same = self
            .batch
            .as_ref()
            .is_some_and(|b| b.table == table && Schema::ptr_eq(&b.schema, schema));
        if !same {
            self.flush(tx).await?;
            self.batch = Some(ChangeBatch {
                table: table.to_string(),
                schema: schema.clone(),
                key: key.to_vec(),
                changes: Vec::new(),
            });
        }
        let b = self.batch.as_mut().expect("set above");
        b.changes.push(change);
        if b.changes.len() >= self.fetch_size {
            self.flush(tx).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, tx: &mpsc::Sender<Sent>) -> Result<(), ()> {
        match self.batch.take() {
            Some(b) if !b.changes.is_empty() => tx
                .send(Ok(etlhost_plugin_sdk::codec::encode(&b.into_batch())))
                .await
                .map_err(|_| ()),
            _ => Ok(()),
        }
    }
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

/// `Break` when the host stopped reading: the follower ends without an error.
type Flow = ControlFlow<()>;

/// The follower's place in the log and what it holds between events.
struct Follower<'a> {
    f: &'a Follow,
    tx: &'a mpsc::Sender<Sent>,
    tables: HashSet<(String, String)>,
    shapes: HashMap<(String, String), TableShape>,
    file: String,
    gtid: Option<String>,
    /// The current transaction's changes, handed on at its commit.
    pending: Vec<(String, Schema, Vec<usize>, Change)>,
    out: Out,
    last_mark: Instant,
    /// Between transactions (not inside one), and where the log is then: when the stream goes
    /// quiet, the host is told it got this far, so its lag can reach 0.
    boundary: bool,
    here: Position,
    marked: Position,
}

impl<'a> Follower<'a> {
    fn new(f: &'a Follow, req: &StreamRequest, tx: &'a mpsc::Sender<Sent>) -> Self {
        Follower {
            f,
            tx,
            tables: wanted(f, req),
            shapes: HashMap::new(),
            file: req.from.file.clone(),
            gtid: req.from.gtid.clone(),
            pending: Vec::new(),
            out: Out {
                batch: None,
                fetch_size: f.fetch_size,
            },
            last_mark: Instant::now(),
            boundary: true,
            here: req.from.clone(),
            marked: req.from.clone(),
        }
    }

    /// The next event; `None` when the host stopped reading. While the stream is quiet, what is
    /// collected is handed on, and the position at a transaction boundary is marked.
    async fn next_event(&mut self, stream: &mut BinlogStream) -> Result<Option<Event>, Error> {
        let next = loop {
            if let Some(n) = stream.next().now_or_never() {
                break n;
            }
            // Also once a second while idle, so the host's reader is never blocked for long.
            let due =
                self.here != self.marked || self.last_mark.elapsed() >= Duration::from_secs(1);
            if self.boundary && due {
                self.marked = self.here.clone();
                self.last_mark = Instant::now();
                let mark = mark(self.here.clone(), 0);
                if self
                    .out
                    .push(self.tx, "", &Vec::new().into(), &[], mark)
                    .await
                    .is_err()
                {
                    return Ok(None);
                }
            }
            // Nothing more right now: hand on what is collected rather than wait for more.
            if self.out.flush(self.tx).await.is_err() {
                return Ok(None);
            }
            match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                Ok(n) => break n,
                Err(_) if self.tx.is_closed() => return Ok(None),
                Err(_) => continue,
            }
        };
        match next {
            None => Err(Error::retryable("the server ended the binlog stream")),
            Some(Err(e)) => Err(classify(&self.f.secrets, "reading the binlog failed", e)),
            Some(Ok(e)) => Ok(Some(e)),
        }
    }

    /// One event: a transaction's rows are collected, and handed on at its commit.
    async fn event(&mut self, stream: &BinlogStream, event: Event) -> Result<Flow, Error> {
        let header = event.header();
        let timestamp = header.timestamp();
        let end = header.log_pos() as u64;
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let d = event.data();
            if d.len() >= 12 {
                let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                self.gtid = Some(format!("{domain}-{}-{seq}", header.server_id()));
            }
            self.boundary = false;
            return Ok(Flow::Continue(()));
        }
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Flow::Continue(())),
            Err(e) => return Err(err(&self.f.secrets, "cannot decode a binlog event", e)),
        };
        let committed = match data {
            EventData::RotateEvent(r) => {
                self.file = log_name(&r.name());
                if self.boundary {
                    self.here = Position {
                        file: self.file.clone(),
                        pos: r.position(),
                        gtid: self.gtid.clone(),
                    };
                }
                false
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let sql = sql.trim();
                if sql.eq_ignore_ascii_case("BEGIN") {
                    self.boundary = false;
                    false
                } else if sql.eq_ignore_ascii_case("COMMIT") {
                    true
                } else {
                    self.rowless_change(&q.schema(), sql, end)?;
                    // DDL: a table's columns may have changed; read them again when next used.
                    self.shapes.clear();
                    self.pending.is_empty()
                }
            }
            EventData::XidEvent(_) => true,
            EventData::TableMapEvent(_) => {
                self.boundary = false;
                false
            }
            EventData::RowsEvent(rows) => {
                self.boundary = false;
                self.rows(stream, rows, timestamp).await?;
                false
            }
            _ => {
                if self.boundary && end > 0 {
                    self.here.file = self.file.clone();
                    self.here.pos = end;
                }
                false
            }
        };
        if !committed {
            return Ok(Flow::Continue(()));
        }
        let at = Position {
            file: self.file.clone(),
            pos: end,
            gtid: self.gtid.clone(),
        };
        self.commit(at, timestamp).await
    }

    /// A statement that changes a streamed table's rows without row events (TRUNCATE, DROP,
    /// RENAME) stops the stream where it stands: passing over it would leave the target quietly
    /// different from MySQL, and stopping keeps the position before it, so a restart stops again
    /// until the flow is snapshotted afresh.
    fn rowless_change(&self, default_db: &str, sql: &str, end: u64) -> Result<(), Error> {
        let Some((what, tables)) = rowless_tables(sql) else {
            return Ok(());
        };
        let streamed = tables.into_iter().find_map(|(db, table)| {
            let key = (db.unwrap_or_else(|| default_db.to_string()), table);
            (self.tables.is_empty() || self.tables.contains(&key)).then_some(key)
        });
        let Some((db, table)) = streamed else {
            return Ok(());
        };
        let statement: String = sql.chars().take(200).collect();
        Err(Error::permanent(format!(
            "the binlog at {}:{end} has `{statement}`, which {what} the streamed table {db}.{table} without row events: the stream stops here rather than let the target drift from MySQL; run the flow again with --fresh for a new snapshot",
            self.file
        )))
    }

    /// A rows event of a wanted table, its changes added to the transaction's.
    async fn rows(
        &mut self,
        stream: &BinlogStream,
        rows: RowsEventData<'_>,
        timestamp: u32,
    ) -> Result<(), Error> {
        let secrets = &self.f.secrets;
        let Some(tme) = stream.get_tme(rows.table_id()) else {
            return Err(Error::permanent("a rows event without its table map"));
        };
        let key = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        if !self.tables.is_empty() && !self.tables.contains(&key) {
            return Ok(());
        }
        if !self.shapes.contains_key(&key) {
            let s = shape(&self.f.pool, &key.0, &key.1, &self.f.typing)
                .await
                .map_err(|e| classify(secrets, "cannot read a table's columns", e))?;
            self.shapes.insert(key.clone(), s);
        }
        let s = &self.shapes[&key];
        let kind = match &rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => {
                ChangeKind::Insert
            }
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => ChangeKind::Update,
            _ => ChangeKind::Delete,
        };
        let name = if key.0 == self.f.database {
            key.1.clone()
        } else {
            format!("{}.{}", key.0, key.1)
        };
        for r in rows.rows(tme) {
            let (before, after) = r.map_err(|e| err(secrets, "cannot decode a binlog row", e))?;
            let conv = |r: Option<mysql_async::binlog::row::BinlogRow>| {
                r.map(|r| s.row(r.unwrap()).map_err(Error::permanent))
                    .transpose()
            };
            let (before, after) = (conv(before)?, conv(after)?);
            let add = |c| {
                self.pending
                    .push((name.clone(), s.schema.clone(), s.key.clone(), c))
            };
            changes(kind, &s.key, before, after, timestamp, add);
        }
        Ok(())
    }

    /// A commit: the transaction's changes go out with its position; a transaction of other
    /// tables only moves the host's position on, now and then.
    async fn commit(&mut self, at: Position, timestamp: u32) -> Result<Flow, Error> {
        self.boundary = true;
        self.here = at.clone();
        if self.pending.is_empty() {
            if self.last_mark.elapsed() >= Duration::from_millis(200) {
                self.last_mark = Instant::now();
                let empty: Schema = Vec::new().into();
                let mark = mark(at, timestamp);
                if self.out.push(self.tx, "", &empty, &[], mark).await.is_err() {
                    return Ok(Flow::Break(()));
                }
            }
            return Ok(Flow::Continue(()));
        }
        let n = self.pending.len();
        let pending = std::mem::take(&mut self.pending);
        for (i, (table, schema, k, mut c)) in pending.into_iter().enumerate() {
            c.commit = at.clone();
            c.last = i + 1 == n;
            if self
                .out
                .push(self.tx, &table, &schema, &k, c)
                .await
                .is_err()
            {
                return Ok(Flow::Break(()));
            }
        }
        self.last_mark = Instant::now();
        Ok(Flow::Continue(()))
    }
}

/// A row event's images as changes, to `add`: an update that changes the key is a delete and an
/// insert.
fn changes(
    kind: ChangeKind,
    pk: &[usize],
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
    timestamp: u32,
    mut add: impl FnMut(Change),
) {
    let change = |kind, row, old| Change {
        kind,
        row,
        old,
        commit: Position::default(),
        last: false,
        timestamp,
    };
    match (kind, before, after) {
        (ChangeKind::Insert, _, Some(a)) => add(change(ChangeKind::Insert, a, None)),
        (ChangeKind::Delete, Some(b), _) => add(change(ChangeKind::Delete, b, None)),
        (ChangeKind::Update, Some(b), Some(a)) => {
            if pk.iter().any(|i| a.get(*i) != b.get(*i)) {
                // A new key is another row: delete the old, upsert the new.
                add(change(ChangeKind::Delete, b, None));
                add(change(ChangeKind::Insert, a, None));
            } else {
                add(change(ChangeKind::Update, a, Some(b)));
            }
        }
        _ => {}
    }
}

/// A rotate event's log name, without the checksum bytes mysql_common leaves after it. A name is
/// `<base>.<6 digits>` (the server pads the number to six), and the checksum's bytes may be digits
/// themselves (`binlog.000001` followed by `2...` was seen), so at most six digits are kept; a
/// server past binlog.999999 would get a wrong name and a clear "purged" error, never a silent one.
fn log_name(raw: &str) -> String {
    match raw.rfind('.') {
        Some(dot) => {
            let digits = raw[dot + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .take(6)
                .count();
            raw[..dot + 1 + digits].to_string()
        }
        None => raw.to_string(),
    }
}

fn mark(at: Position, timestamp: u32) -> Change {
    Change {
        kind: ChangeKind::Mark,
        row: Vec::new(),
        old: None,
        commit: at,
        last: true,
        timestamp,
    }
}

fn rand_offset() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (t % 1000) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed) % 1000
}

#[cfg(test)]
mod tests {
    use super::log_name;

    #[test]
    fn a_rotate_name_keeps_six_digits_whatever_the_checksum_bytes_are() {
        assert_eq!(log_name("binlog.000001"), "binlog.000001");
        assert_eq!(log_name("binlog.0000012\u{7f}x"), "binlog.000001");
        assert_eq!(log_name("binlog.000002\u{1}"), "binlog.000002");
        assert_eq!(log_name("my.host-bin.000003"), "my.host-bin.000003");
    }
}

/// The tables a statement empties, drops or renames without row events, with what it does to
/// them: `TRUNCATE [TABLE] t`, `DROP [TEMPORARY] TABLE [IF EXISTS] a, b`, `RENAME TABLE a TO b,
/// ...` and `ALTER TABLE a RENAME ...`. Names may be quoted and qualified by their database.
fn rowless_tables(sql: &str) -> Option<(&'static str, Vec<Named>)> {
    let words = sql_words(sql);
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let kw = |i: usize, k: &str| upper.get(i).is_some_and(|w| w == k);
    let mut names = Vec::new();
    let what = match upper.first().map(String::as_str) {
        Some("TRUNCATE") => {
            let at = if kw(1, "TABLE") { 2 } else { 1 };
            names.extend(words.get(at).cloned());
            "empties"
        }
        // `DROP TEMPORARY TABLE` touches no logged table.
        Some("DROP") if kw(1, "TABLE") => {
            let mut at = 2;
            if kw(at, "IF") && kw(at + 1, "EXISTS") {
                at += 2;
            }
            // `a , b , c` up to the end or a trailing `RESTRICT`/`CASCADE` or comment.
            while let Some(w) = words.get(at) {
                if w == "," {
                    at += 1;
                    continue;
                }
                if matches!(upper[at].as_str(), "RESTRICT" | "CASCADE") {
                    break;
                }
                names.push(w.clone());
                at += 1;
            }
            "drops"
        }
        Some("RENAME") if kw(1, "TABLE") => {
            // `a TO b , c TO d`: the names before each `TO`.
            for (i, w) in upper.iter().enumerate() {
                if w == "TO" && i > 0 {
                    names.push(words[i - 1].clone());
                }
            }
            "renames"
        }
        Some("ALTER") if kw(1, "TABLE") => {
            // `ALTER TABLE t RENAME [TO|AS] u`, but not `RENAME COLUMN`/`RENAME INDEX`/`KEY`.
            let at = upper.iter().position(|w| w == "RENAME")?;
            if matches!(
                upper.get(at + 1).map(String::as_str),
                Some("COLUMN" | "INDEX" | "KEY")
            ) {
                return None;
            }
            names.extend(words.get(2).cloned());
            "renames"
        }
        _ => return None,
    };
    let tables: Vec<_> = names.iter().map(|n| split_name(n)).collect();
    (!tables.is_empty()).then_some((what, tables))
}

/// A statement's words: backquoted names whole (with their database, `db`.`t` or db.t), commas on
/// their own, comments left out.
fn sql_words(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    let end_word = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                word.push('`');
                for q in chars.by_ref() {
                    word.push(q);
                    if q == '`' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                end_word(&mut word, &mut words);
                let mut last = ' ';
                for q in chars.by_ref() {
                    if last == '*' && q == '/' {
                        break;
                    }
                    last = q;
                }
            }
            ',' | ';' => {
                end_word(&mut word, &mut words);
                if c == ',' {
                    words.push(",".into());
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words),
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut words);
    words
}

/// A table's database (when the statement names it) and its name.
type Named = (Option<String>, String);

/// `db.t`, `` `db`.`t` `` or `t` into its database (if named) and table, unquoted.
fn split_name(name: &str) -> Named {
    let unquote = |s: &str| s.trim_matches('`').replace("``", "`");
    let mut in_quote = false;
    for (i, c) in name.char_indices() {
        match c {
            '`' => in_quote = !in_quote,
            '.' if !in_quote => {
                return (Some(unquote(&name[..i])), unquote(&name[i + 1..]));
            }
            _ => {}
        }
    }
    (None, unquote(name))
}

#[cfg(test)]
mod rowless_tests {
    use super::{rowless_tables, Named};

    fn tables(sql: &str) -> Option<(&'static str, Vec<Named>)> {
        rowless_tables(sql)
    }

    /// A table as a case names it: its database, if any, and its name.
    type Expected = (Option<&'static str>, &'static str);

    fn named(names: &[Expected]) -> Vec<Named> {
        names
            .iter()
            .map(|(d, t)| (d.map(String::from), t.to_string()))
            .collect()
    }

    #[test]
    fn statements_that_change_rows_without_row_events() {
        let cases: [(&str, &str, &[Expected]); 5] = [
            ("TRUNCATE TABLE big", "empties", &[(None, "big")]),
            ("truncate `s`.`big`", "empties", &[(Some("s"), "big")]),
            (
                "DROP TABLE IF EXISTS `a`,s.b /* generated by server */",
                "drops",
                &[(None, "a"), (Some("s"), "b")],
            ),
            (
                "RENAME TABLE a TO a_old, s.b TO s.b2",
                "renames",
                &[(None, "a"), (Some("s"), "b")],
            ),
            (
                "ALTER TABLE `my table` RENAME TO other",
                "renames",
                &[(None, "my table")],
            ),
        ];
        for (sql, what, names) in cases {
            assert_eq!(tables(sql), Some((what, named(names))), "{sql}");
        }
    }

    #[test]
    fn other_statements_pass() {
        for sql in [
            "ALTER TABLE t ADD COLUMN c INT",
            "ALTER TABLE t RENAME COLUMN a TO b",
            "DROP TEMPORARY TABLE IF EXISTS tmp",
            "DROP INDEX i ON t",
            "CREATE TABLE t (id INT)",
            "INSERT INTO t VALUES (1)",
        ] {
            assert_eq!(tables(sql), None, "{sql}");
        }
    }
}
