//! Following the binlog event by event: a transaction's rows are collected and handed on at its
//! commit, in batches of one table of one shape.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::{
    Change, ChangeBatch, ChangeKind, Error, Position, Schema, StreamRequest, Value,
};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::BinlogStream;
use tokio::sync::mpsc;

use super::shape::{shape, TableShape};
use super::statements::rowless_tables;
use super::{classify, err, wanted, Follow, Sent, MARIADB_GTID_EVENT};

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

/// `Break` when the host stopped reading: the follower ends without an error.
pub(super) type Flow = ControlFlow<()>;

/// The follower's place in the log and what it holds between events.
pub(super) struct Follower<'a> {
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
    pub(super) fn new(f: &'a Follow, req: &StreamRequest, tx: &'a mpsc::Sender<Sent>) -> Self {
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
    pub(super) async fn next_event(
        &mut self,
        stream: &mut BinlogStream,
    ) -> Result<Option<Event>, Error> {
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
    pub(super) async fn event(
        &mut self,
        stream: &BinlogStream,
        event: Event,
    ) -> Result<Flow, Error> {
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
                        skip: 0,
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
            skip: 0,
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
                add(change(ChangeKind::Delete, b.clone(), None));
                add(change(ChangeKind::Insert, a, Some(b)));
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
