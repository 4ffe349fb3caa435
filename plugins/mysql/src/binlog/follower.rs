//! Following the binlog event by event: a transaction's rows are collected and handed on at its
//! commit, in batches of one table of one shape. A transaction larger than the request's
//! `max_transaction_changes` is handed on in parts as it is read, each ending in a position
//! inside it (its start and how many of its changes are out), so memory stays bounded and a
//! restart resumes where the last written part ended.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{
    Change, ChangeBatch, ChangeKind, Error, Position, Schema, StreamRequest, Value,
};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{Event, EventData, QueryEvent, RowsEventData, TableMapEvent};
use mysql_async::binlog::RowsEventFlags;
use mysql_async::BinlogStream;
use tokio::sync::mpsc;

use super::images::{self, Image, Images};
use super::shape::{shape, TableShape};
use super::statements::{self, rowless_tables, Boundary, Rowless};
use super::{alter, guards};
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
            Some(b) if !b.changes.is_empty() => tx.send(Ok(b.encode())).await.map_err(|_| ()),
            _ => Ok(()),
        }
    }
}

/// A streamed table as its changes carry it, shared by the changes of one event (not copied
/// into each: a part holds tens of thousands of them).
struct Streamed {
    name: String,
    schema: Schema,
    key: Vec<usize>,
}

/// A change waiting to be handed on, with its table.
type Pending = (Arc<Streamed>, Change);

/// A part handed on before the commit, with the count of the transaction's changes it reaches to.
type Part<T> = (Vec<T>, u64);

/// At the commit: the last part and whether earlier ones went out, or the count still to drop.
type LastPart<T> = Result<(Vec<T>, bool), u64>;

/// The current transaction's changes, counted in log order so that a part handed on can name
/// how far into the transaction it reaches, and a restart can drop what was handed on before.
struct Txn<T> {
    /// Changes in a part (0: the whole transaction in one).
    max: usize,
    /// Changes of the first transaction read still to drop: a checkpoint's `skip`.
    drop: u64,
    /// This transaction's changes so far, dropped ones and handed-on ones included.
    seen: u64,
    pending: Vec<T>,
}

impl<T> Txn<T> {
    fn new(max: u64, skip: u64) -> Self {
        Txn {
            max: usize::try_from(max).unwrap_or(usize::MAX),
            drop: skip,
            seen: 0,
            pending: Vec::new(),
        }
    }

    /// Adds the transaction's next change. When the part collected so far is full it comes
    /// back, to be handed on before this change, with the count of changes it reaches to.
    fn add(&mut self, change: T) -> Option<Part<T>> {
        self.seen += 1;
        if self.drop > 0 {
            self.drop -= 1;
            return None;
        }
        let full = self.max > 0 && self.pending.len() >= self.max;
        let part = full.then(|| (std::mem::take(&mut self.pending), self.seen - 1));
        self.pending.push(change);
        part
    }

    /// The commit: the last part (maybe empty) and whether earlier parts went out (or were
    /// dropped as out before a restart). `Err` with the count still to drop when the
    /// transaction had fewer changes than a checkpoint said were written.
    fn commit(&mut self) -> LastPart<T> {
        let left = std::mem::take(&mut self.drop);
        let earlier = self.seen > self.pending.len() as u64;
        self.seen = 0;
        let part = std::mem::take(&mut self.pending);
        if left > 0 {
            return Err(left);
        }
        Ok((part, earlier))
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
    /// The current transaction's changes, handed on at its commit or in parts.
    txn: Txn<Pending>,
    /// Inside `BEGIN` ... `COMMIT`: a statement there (a `SAVEPOINT`) commits nothing.
    in_begin: bool,
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
            txn: Txn::new(req.max_transaction_changes, req.from.skip),
            in_begin: false,
            out: Out {
                batch: None,
                fetch_size: f.fetch_size,
            },
            last_mark: Instant::now(),
            // A position inside a transaction: no boundary until its commit.
            boundary: req.from.skip == 0,
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

    /// One event: a transaction's rows are collected, and handed on at its commit (or in parts).
    pub(super) async fn event(
        &mut self,
        stream: &BinlogStream,
        event: Event,
    ) -> Result<Flow, Error> {
        let header = event.header();
        let timestamp = header.timestamp();
        let end = header.log_pos() as u64;
        // A transaction handed on in parts may have no change pending at its PREPARE, and is of
        // concern all the same.
        let parted = (self.txn.pending.is_empty() && self.txn.seen > 0)
            .then_some("(its earlier changes already written in parts)");
        let streamed = self
            .txn
            .pending
            .iter()
            .map(|p| p.0.name.as_str())
            .chain(parted);
        guards::readable(header.event_type_raw(), streamed, &self.file, end)?;
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let d = event.data();
            if d.len() >= 12 {
                let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                self.gtid = Some(format!("{domain}-{}-{seq}", header.server_id()));
            }
            // MariaDB's GTID event stands for `BEGIN` unless flagged standalone (FL_STANDALONE,
            // bit 0 of its flags: a DDL statement that commits by itself).
            self.in_begin = d.get(12).is_some_and(|flags| flags & 1 == 0);
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
            EventData::QueryEvent(q) => match self.statement(&q, end, timestamp).await? {
                ControlFlow::Continue(committed) => committed,
                ControlFlow::Break(()) => return Ok(Flow::Break(())),
            },
            EventData::XidEvent(_) => true,
            EventData::TransactionPayloadEvent(_) => {
                return Err(Error::permanent(format!(
                    "the binlog at {}:{end} has a compressed transaction (binlog_transaction_compression was switched on after the stream started), which etlhost does not read: the stream stops here rather than pass over its changes; {}, then run the flow again with --fresh for a new snapshot",
                    self.file,
                    guards::PAYLOAD_FIX
                )));
            }
            EventData::GtidEvent(_) | EventData::AnonymousGtidEvent(_) => {
                // MySQL's GTID event opens a transaction: its start is before it.
                self.boundary = false;
                false
            }
            EventData::TableMapEvent(_) => {
                self.boundary = false;
                false
            }
            EventData::RowsEvent(rows) => {
                self.boundary = false;
                if self.rows(stream, rows, timestamp, end).await?.is_break() {
                    return Ok(Flow::Break(()));
                }
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

    /// An error about a statement, without the source's secrets (a statement may carry one).
    fn redacted(&self, mut e: Error) -> Error {
        let secrets: Vec<&str> = self.f.secrets.iter().map(String::as_str).collect();
        e.message = redact_secrets(&e.message, &secrets);
        e
    }

    /// A statement event: whether it commits (`COMMIT`, or DDL, which commits by itself).
    async fn statement(
        &mut self,
        q: &QueryEvent<'_>,
        end: u64,
        timestamp: u32,
    ) -> Result<ControlFlow<(), bool>, Error> {
        let sql = q.query();
        let sql = sql.trim();
        match statements::boundary(sql) {
            Boundary::Begin => {
                self.boundary = false;
                self.in_begin = true;
                return Ok(ControlFlow::Continue(false));
            }
            Boundary::Commit => return Ok(ControlFlow::Continue(true)),
            Boundary::Rollback if self.txn.seen > 0 => {
                // MySQL logs a rolled-back transaction only when it also changed a
                // non-transactional table; which of its changes stay cannot be told from here.
                return Err(Error::permanent(format!(
                    "the binlog at {}:{end} has a ROLLBACK of a transaction that changed a streamed table (MySQL logs one when it also changed a non-transactional table, whose changes stay while the others are undone): the stream stops here rather than apply undone changes or drop kept ones; run the flow again with --fresh for a new snapshot",
                    self.file
                )));
            }
            Boundary::Rollback => return Ok(ControlFlow::Continue(true)),
            Boundary::Inside => return Ok(ControlFlow::Continue(false)),
            Boundary::Other => {}
        }
        // Any other statement inside a transaction ends nothing; outside one (DDL) it commits
        // by itself.
        let alone = !self.in_begin;
        let streamed = |db: Option<String>, t: String| {
            let key = (db.unwrap_or_else(|| q.schema().into_owned()), t);
            (self.tables.is_empty() || self.tables.contains(&key)).then_some(key)
        };
        if let Some((db, table)) = statements::dml_tables(sql)
            .into_iter()
            .find_map(|(d, t)| streamed(d, t))
        {
            let statement = statements::quote(sql);
            return Err(self.redacted(Error::permanent(format!(
                "the binlog at {}:{end} has `{statement}`, a change of the streamed table {db}.{table} logged as a statement rather than as rows (binlog_format STATEMENT or MIXED in that session, or a MEMORY table emptied at a restart): the stream stops here rather than pass over it; keep binlog_format=ROW for every session, then run the flow again with --fresh for a new snapshot",
                self.file
            ))));
        }
        if self
            .rowless_change(&q.schema(), sql, end, timestamp)
            .await?
            .is_break()
        {
            return Ok(ControlFlow::Break(()));
        }
        let db = q.schema();
        alter::check(&db, sql, &self.tables, &self.shapes, &self.file, end)
            .map_err(|e| self.redacted(e))?;
        // DDL: a table's columns may have changed; read them again when next used.
        self.shapes.clear();
        Ok(ControlFlow::Continue(alone))
    }

    /// A statement that changes a streamed table's rows without row events. `TRUNCATE` becomes
    /// a change of its own, in order with the others. `DROP` and `RENAME` stop the stream where
    /// it stands: passing over them would leave the target quietly different from MySQL, and
    /// stopping keeps the position before it, so a restart stops again until the flow is
    /// snapshotted afresh.
    async fn rowless_change(
        &mut self,
        default_db: &str,
        sql: &str,
        end: u64,
        timestamp: u32,
    ) -> Result<Flow, Error> {
        let Some((what, tables)) = rowless_tables(sql) else {
            return Ok(Flow::Continue(()));
        };
        let streamed = tables.into_iter().find_map(|(db, table)| {
            let key = (db.unwrap_or_else(|| default_db.to_string()), table);
            (self.tables.is_empty() || self.tables.contains(&key)).then_some(key)
        });
        let Some((db, table)) = streamed else {
            return Ok(Flow::Continue(()));
        };
        if what == Rowless::Empties {
            let key = (db, table);
            self.known_shape(&key).await?;
            let table = self.streamed(&key);
            let truncate = change(ChangeKind::Truncate, Vec::new(), None, timestamp);
            return Ok(self.add(&table, truncate).await);
        }
        let statement = statements::quote(sql);
        Err(self.redacted(Error::permanent(format!(
            "the binlog at {}:{end} has `{statement}`, which {} the streamed table {db}.{table} without row events: the stream stops here rather than let the target drift from MySQL; run the flow again with --fresh for a new snapshot",
            self.file,
            what.verb()
        ))))
    }

    /// Reads a table's columns and key unless they are known since the last DDL statement.
    async fn known_shape(&mut self, key: &(String, String)) -> Result<(), Error> {
        if !self.shapes.contains_key(key) {
            let s = shape(&self.f.pool, &key.0, &key.1, &self.f.typing)
                .await
                .map_err(|e| classify(&self.f.secrets, "cannot read a table's columns", e))?;
            self.shapes.insert(key.clone(), s);
        }
        Ok(())
    }

    /// A table (its shape known) as its changes carry it: its name bare in the source's
    /// database, `db.t` otherwise.
    fn streamed(&self, key: &(String, String)) -> Arc<Streamed> {
        let s = &self.shapes[key];
        let name = if key.0 == self.f.database {
            key.1.clone()
        } else {
            format!("{}.{}", key.0, key.1)
        };
        Arc::new(Streamed {
            name,
            schema: s.schema.clone(),
            key: s.key.clone(),
        })
    }

    /// A rows event of a wanted table, its changes added to the transaction's.
    async fn rows(
        &mut self,
        stream: &BinlogStream,
        rows: RowsEventData<'_>,
        timestamp: u32,
        end: u64,
    ) -> Result<Flow, Error> {
        let Some(tme) = stream.get_tme(rows.table_id()) else {
            return Err(Error::permanent("a rows event without its table map"));
        };
        let key = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        if !self.tables.is_empty() && !self.tables.contains(&key) {
            guards::ignored_table(&key.0, &key.1);
            return Ok(Flow::Continue(()));
        }
        self.known_shape(&key).await?;
        let s = &self.shapes[&key];
        let table = format!("{}.{}", key.0, key.1);
        let layout = s.layout(tme, &table, &format_args!("{}:{end}", self.file))?;
        // Written with foreign_key_checks = 0: InnoDB took no ON DELETE/UPDATE action for it.
        let no_fk = rows.flags().contains(RowsEventFlags::NO_FOREIGN_KEY_CHECKS);
        let kind = match &rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => {
                ChangeKind::Insert
            }
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => ChangeKind::Update,
            _ => ChangeKind::Delete,
        };
        // A session may log partial images (`SET SESSION binlog_row_image`) whatever the global
        // setting the stream checked at start: their values are of the columns present only, and
        // read as whole rows they would land on the wrong columns.
        let n = rows.num_columns() as usize;
        let partial = |c: Option<usize>| c.is_some_and(|ones| ones != n);
        if partial(rows.columns_before_image().map(|c| c.count_ones()))
            || partial(rows.columns_after_image().map(|c| c.count_ones()))
        {
            return Err(Error::permanent(format!(
                "the binlog at {}:{end} holds a change of `{table}` without every column (a \
                 session set binlog_row_image to MINIMAL or NOBLOB), which the stream cannot \
                 map: keep binlog_row_image = FULL in every session that writes the tables it \
                 follows, then run again with --fresh (the events already logged stay partial)",
                self.file
            )));
        }
        // One event's rows (the server caps an event at about 8 KiB): bounded, whatever the
        // transaction's size.
        let mut event_changes = Vec::new();
        for (before, after) in self.images(&rows, tme)? {
            let conv = |r: Option<Image>| {
                r.map(|r| s.row_in(&layout, r).map_err(Error::permanent))
                    .transpose()
            };
            let (before, after) = (conv(before)?, conv(after)?);
            changes(kind, &s.key, before, after, timestamp, |mut c| {
                c.no_fk_actions = no_fk;
                event_changes.push(c)
            });
        }
        let table = self.streamed(&key);
        for c in event_changes {
            if self.add(&table, c).await.is_break() {
                return Ok(Flow::Break(()));
            }
        }
        Ok(Flow::Continue(()))
    }

    /// A rows event's (before, after) images: read in place when its table's columns allow
    /// ([`images`]), otherwise by mysql_common.
    fn images(&self, rows: &RowsEventData<'_>, tme: &TableMapEvent<'_>) -> Result<Images, Error> {
        let fast = match images::Plan::of(tme).and_then(|p| p.rows(rows)) {
            Some(fast) if !cfg!(debug_assertions) => return Ok(fast),
            other => other,
        };
        let slow = rows
            .rows(tme)
            .map(|r| r.map(|(b, a)| (b.map(|r| r.unwrap()), a.map(|r| r.unwrap()))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&self.f.secrets, "cannot decode a binlog row", e))?;
        // Debug builds (every test) check the fast way against mysql_common's.
        if let Some(fast) = fast {
            assert_eq!(
                fast, slow,
                "binlog row images read in place differ from mysql_common's"
            );
        }
        Ok(slow)
    }

    /// Adds a change to the transaction; when the part collected so far is full, it goes out
    /// first with the transaction's start and how many of its changes that part reaches to.
    async fn add(&mut self, table: &Arc<Streamed>, c: Change) -> Flow {
        let Some((part, skip)) = self.txn.add((table.clone(), c)) else {
            return Flow::Continue(());
        };
        let at = Position {
            skip,
            ..self.here.clone()
        };
        if self.hand_on(part, at).await.is_break() {
            return Flow::Break(());
        }
        // The part's last change is not held back with the next part's first ones: the host
        // can record the position as soon as the part is written.
        match self.out.flush(self.tx).await {
            Ok(()) => Flow::Continue(()),
            Err(()) => Flow::Break(()),
        }
    }

    /// Hands changes on, all with the position `at`, the last one marked `last`.
    async fn hand_on(&mut self, part: Vec<Pending>, at: Position) -> Flow {
        let n = part.len();
        for (i, (t, mut c)) in part.into_iter().enumerate() {
            c.commit = at.clone();
            c.last = i + 1 == n;
            if self
                .out
                .push(self.tx, &t.name, &t.schema, &t.key, c)
                .await
                .is_err()
            {
                return Flow::Break(());
            }
        }
        Flow::Continue(())
    }

    /// A commit: the transaction's changes (or its last part) go out with its position; a
    /// transaction of other tables only moves the host's position on, now and then.
    async fn commit(&mut self, at: Position, timestamp: u32) -> Result<Flow, Error> {
        let start = std::mem::replace(&mut self.here, at.clone());
        self.boundary = true;
        self.in_begin = false;
        let (part, earlier) = self.txn.commit().map_err(|left| {
            Error::permanent(format!(
                "the stream resumed at {start}, inside a transaction, but that transaction has {left} fewer changes of the streamed tables than were written before: was the job's list of tables changed since? run the flow again with --fresh for a new snapshot"
            ))
        })?;
        if part.is_empty() {
            // After parts, the commit is recorded at once; otherwise now and then.
            if earlier || self.last_mark.elapsed() >= Duration::from_millis(200) {
                self.last_mark = Instant::now();
                let empty: Schema = Vec::new().into();
                let mark = mark(at, timestamp);
                if self.out.push(self.tx, "", &empty, &[], mark).await.is_err() {
                    return Ok(Flow::Break(()));
                }
            }
            return Ok(Flow::Continue(()));
        }
        let n = part.len();
        if self.hand_on(part, at).await.is_break() {
            return Ok(Flow::Break(()));
        }
        self.last_mark = Instant::now();
        // When batches of this transaction went out already, its last change goes too: were the
        // stream to fail before the next flush, the host would read them again from its start.
        let held = self.out.batch.as_ref().map_or(0, |b| b.changes.len());
        if held < n && self.out.flush(self.tx).await.is_err() {
            return Ok(Flow::Break(()));
        }
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
    let change = |kind, row, old| change(kind, row, old, timestamp);
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

/// A change whose position is set when it is handed on.
fn change(kind: ChangeKind, row: Vec<Value>, old: Option<Vec<Value>>, timestamp: u32) -> Change {
    Change {
        kind,
        row,
        old,
        commit: Position::default(),
        last: false,
        timestamp,
        no_fk_actions: false,
    }
}

/// A rotate event's log name, without the checksum bytes mysql_common leaves after it. A name is
/// `<base>.<6 digits>` (the server pads the number to six). The checksum's four bytes may be
/// digits themselves (`binlog.000001` followed by `2...` was seen) or a dot, so the name ends six
/// digits after the last dot that has six digits after it (a dot among the checksum's bytes has
/// at most three); a server past binlog.999999 would get a wrong name and a clear "purged" error,
/// never a silent one.
fn log_name(raw: &str) -> String {
    let b = raw.as_bytes();
    let six_digits = |i: usize| {
        b.get(i + 1..i + 7)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    match (0..b.len()).rev().find(|&i| b[i] == b'.' && six_digits(i)) {
        Some(dot) => raw[..dot + 7].to_string(),
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
        no_fk_actions: false,
    }
}

#[cfg(test)]
mod tests {
    use super::{log_name, LastPart, Part, Txn};

    /// Hands a transaction of `n` changes through `txn`: the parts as (changes, skip) and what
    /// its commit returns.
    fn run(txn: &mut Txn<u32>, n: u32) -> (Vec<Part<u32>>, LastPart<u32>) {
        let parts = (1..=n).filter_map(|c| txn.add(c)).collect();
        (parts, txn.commit())
    }

    #[test]
    fn a_large_transaction_goes_out_in_parts_that_count_its_changes() {
        let mut txn = Txn::new(3, 0);
        let (parts, end) = run(&mut txn, 8);
        assert_eq!(parts, [(vec![1, 2, 3], 3), (vec![4, 5, 6], 6)]);
        assert_eq!(end, Ok((vec![7, 8], true)));
        // Exactly full parts: the last one goes out at the commit, never empty-handed.
        let (parts, end) = run(&mut txn, 6);
        assert_eq!(parts, [(vec![1, 2, 3], 3)]);
        assert_eq!(end, Ok((vec![4, 5, 6], true)));
        // A small one is whole at its commit; 0 means no parts at all.
        assert_eq!(run(&mut txn, 2), (vec![], Ok((vec![1, 2], false))));
        assert_eq!(
            run(&mut Txn::new(0, 0), 5),
            (vec![], Ok((vec![1, 2, 3, 4, 5], false)))
        );
    }

    #[test]
    fn resuming_drops_what_was_handed_on_and_counts_on_from_there() {
        // Written before a restart: the part up to 6 of a transaction of 8.
        let mut txn = Txn::new(3, 6);
        assert_eq!(run(&mut txn, 8), (vec![], Ok((vec![7, 8], true))));
        // Only the first transaction read is cut; the next is whole again.
        assert_eq!(run(&mut txn, 2), (vec![], Ok((vec![1, 2], false))));
        // Resumed after the first part of 10: the skip of later parts counts from the start.
        let mut txn = Txn::new(3, 3);
        let (parts, end) = run(&mut txn, 10);
        assert_eq!(parts, [(vec![4, 5, 6], 6), (vec![7, 8, 9], 9)]);
        assert_eq!(end, Ok((vec![10], true)));
        // Fewer changes than the checkpoint says were written: an error, not a silent pass.
        assert_eq!(run(&mut Txn::new(3, 6), 4).1, Err(2));
    }

    #[test]
    fn a_rotate_name_keeps_six_digits_whatever_the_checksum_bytes_are() {
        assert_eq!(log_name("binlog.000001"), "binlog.000001");
        assert_eq!(log_name("binlog.0000012\u{7f}x"), "binlog.000001");
        assert_eq!(log_name("binlog.000002\u{1}"), "binlog.000002");
        assert_eq!(log_name("my.host-bin.000003"), "my.host-bin.000003");
        assert_eq!(log_name("binlog.000009\u{1}.2"), "binlog.000009");
        assert_eq!(log_name("binlog.000009.\u{7f}\u{2}"), "binlog.000009");
    }
}
