//! Following a slot: replication events into change batches, one table's consecutive changes
//! each, a transaction's last change marked `last` with its commit's position.
//!
//! Values decode with the snapshot's type plans (`crate::types`), from pgoutput's binary form,
//! straight into the change batches' codec (`emit`) unless a column must be read again.
//! Two kinds of column are read again from the table by key instead (one query per such change):
//! an unchanged TOASTed value (`u`: the update did not touch it and the log does not repeat it)
//! that the old row (REPLICA IDENTITY FULL) does not have either, so the graph's value is never
//! overwritten with NULL; and a column whose type has no binary decoder (the COPY casts it to
//! text, so the log's binary form is not read).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use etlhost_plugin_sdk::{
    Change, ChangeBatch, ChangeKind, Column, Error, Position, Row, StreamRequest, Value,
};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use tokio::sync::mpsc;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::emit::{self, Chunks, Layout};
use super::pgoutput::{self, Datum, Message};
use super::slot::{self, Names, Table};
use crate::connect::Connector;
use crate::reader::Sent;
use crate::source::PgSource;
use crate::sql::ident;
use crate::types::{self, ColumnPlan, Typing};

/// Seconds from 1970 to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH: i64 = 946_684_800;

/// A streamed relation as the log last described it.
struct Rel {
    table: String,
    relation: String,
    plans: Vec<ColumnPlan>,
    /// Columns read from the table rather than the log (their type has no binary decoder).
    cast: Vec<bool>,
    exprs: Vec<String>,
    key: Vec<usize>,
    key_types: Vec<Type>,
    /// Statements that read some columns by key, by the columns' indices.
    reads: HashMap<Vec<usize>, Statement>,
    layout: Layout,
    /// Which description of the table this is (a change batch holds rows of one).
    generation: u64,
}

pub(super) struct Context {
    client: Client,
    conn: Connector,
    typing: Typing,
    cfg: ReplicationConfig,
    tables: HashMap<u32, Table>,
    rels: HashMap<u32, Rel>,
    from: Position,
    max: u64,
    /// The furthest position handed on.
    marked: u64,
    /// Descriptions of tables read so far.
    described: u64,
}

impl Context {
    /// Connects for catalog reads and checks that the slot can resume at `req.from`.
    pub(super) async fn new(
        source: &PgSource,
        names: Names,
        cfg: ReplicationConfig,
        req: &StreamRequest,
        recorded: u64,
    ) -> Result<Context, Error> {
        let client = source.client().await?;
        let confirmed = slot::confirmed(&client, source, &names.slot).await?;
        let from = req.from.pos.saturating_sub(u64::from(req.from.skip > 0));
        match confirmed {
            None => {
                return Err(Error::permanent(format!(
                    "replication slot `{}` is gone (dropped?), so the changes after {} cannot be read: \
                     run with --fresh to start over with a new snapshot",
                    names.slot, req.from
                )))
            }
            Some(c) if from > 0 && c > from => {
                return Err(Error::permanent(format!(
                    "replication slot `{}` has confirmed {} but the stream resumes at {}: the slot it \
                     read is gone (dropped, and made again) or was moved by another client, so the \
                     changes in between cannot be read: run with --fresh to start over with a new \
                     snapshot",
                    names.slot,
                    Lsn::from_u64(c),
                    Lsn::from_u64(from)
                )))
            }
            Some(_) => {}
        }
        let tables = slot::tables(&client, source, &req.tables).await?;
        let cfg = cfg
            .with_start_lsn(Lsn::from_u64(req.from.pos))
            .with_ack_lsn(Lsn::from_u64(recorded));
        Ok(Context {
            client,
            conn: source.conn.clone(),
            typing: source.typing.clone(),
            cfg,
            tables: tables.into_iter().map(|t| (t.oid, t)).collect(),
            rels: HashMap::new(),
            from: req.from.clone(),
            max: req.max_transaction_changes,
            marked: 0,
            described: 0,
        })
    }
}

/// The transaction being read.
struct Txn {
    final_lsn: u64,
    ts: u32,
    /// Changes of it already handed on before a restart (`Position::skip`), dropped.
    skip: u64,
    /// Changes of streamed tables seen so far.
    seen: u64,
    /// Those not yet handed on, encoded.
    chunks: Chunks,
}

impl Txn {
    /// Counts the transaction's next change: whether it is to be handed on (not one a restart
    /// drops).
    fn admit(&mut self) -> bool {
        self.seen += 1;
        self.seen > self.skip
    }
}

/// Reads the slot until the reader is dropped or the session fails (the error is the last
/// thing sent; the host reconnects from its last complete transaction).
pub(super) async fn run(mut ctx: Context, recorded: Arc<AtomicU64>, tx: mpsc::Sender<Sent>) {
    if let Err(e) = follow(&mut ctx, &recorded, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn follow(
    ctx: &mut Context,
    recorded: &AtomicU64,
    tx: &mpsc::Sender<Sent>,
) -> Result<(), Error> {
    let mut session = ReplicationClient::connect(ctx.cfg.clone())
        .await
        .map_err(|e| session_error(ctx, e))?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut txn: Option<Txn> = None;
    let mut idle = std::time::Instant::now();
    loop {
        let event = tokio::select! {
            ev = session.recv() => ev.map_err(|e| session_error(ctx, e))?,
            _ = tick.tick() => {
                session.update_applied_lsn(Lsn::from_u64(recorded.load(Ordering::SeqCst)));
                // While idle, a mark where the stream is now and then, so the host's reader is
                // never blocked for long (it checks for a stop between batches).
                if txn.is_none() && idle.elapsed() >= Duration::from_secs(1) {
                    idle = std::time::Instant::now();
                    let at = match ctx.marked {
                        0 => ctx.from.clone(),
                        m => slot::position(m),
                    };
                    send(Vec::new(), at, now(), tx).await?;
                }
                continue;
            }
            _ = tx.closed() => {
                session.stop();
                return Ok(());
            }
        };
        let Some(event) = event else {
            return Err(Error::retryable("the replication session ended"));
        };
        idle = std::time::Instant::now();
        on_event(ctx, event, &mut txn, tx).await?;
    }
}

/// One replication event: a transaction's start, a row message, its commit, a keepalive.
async fn on_event(
    ctx: &mut Context,
    event: ReplicationEvent,
    txn: &mut Option<Txn>,
    tx: &mpsc::Sender<Sent>,
) -> Result<(), Error> {
    match event {
        ReplicationEvent::Begin {
            final_lsn,
            commit_time_micros,
            ..
        } => {
            let final_lsn = final_lsn.as_u64();
            let skip = if ctx.from.skip > 0 && final_lsn == ctx.from.pos {
                ctx.from.skip
            } else {
                0
            };
            *txn = Some(Txn {
                final_lsn,
                ts: (commit_time_micros / 1_000_000 + PG_EPOCH).clamp(0, u32::MAX as i64) as u32,
                skip,
                seen: 0,
                chunks: Chunks::default(),
            });
        }
        ReplicationEvent::XLogData { data, .. } => {
            let Some(t) = txn.as_mut() else { return Ok(()) };
            let message = pgoutput::parse(&data).map_err(|e| {
                Error::permanent(format!("cannot read the replication stream: {e}"))
            })?;
            ctx.changes(message, t).await?;
            if ctx.max > 0 && t.chunks.len() as u64 >= ctx.max {
                let at = Position {
                    skip: t.seen,
                    ..slot::position(t.final_lsn)
                };
                send(t.chunks.take(&at), at, t.ts, tx).await?;
            }
        }
        // Between transactions, the server has sent every transaction that commits before
        // `wal_end`: a mark there moves the position (and so the slot) on while the
        // streamed tables are quiet, so the server need not keep WAL for them.
        ReplicationEvent::KeepAlive { wal_end, .. } if txn.is_none() => {
            let end = wal_end.as_u64();
            if end > ctx.from.pos && end > ctx.marked {
                ctx.marked = end;
                send(Vec::new(), slot::position(end), now(), tx).await?;
            }
        }
        ReplicationEvent::Commit { end_lsn, .. } => {
            let Some(mut t) = txn.take() else {
                return Ok(());
            };
            let end = end_lsn.as_u64();
            if end <= ctx.from.pos && ctx.from.skip == 0 {
                return Ok(());
            }
            ctx.marked = ctx.marked.max(end);
            let at = slot::position(end);
            send(t.chunks.take(&at), at, t.ts, tx).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Hands on a transaction's chunks (all of it, or a part), its last change marked with `at`;
/// none: a mark, so the position moves on.
async fn send(
    chunks: Vec<Vec<u8>>,
    at: Position,
    ts: u32,
    tx: &mpsc::Sender<Sent>,
) -> Result<(), Error> {
    let gone = |_| Error::permanent("the stream's reader is gone");
    if chunks.is_empty() {
        let mark = Change {
            kind: ChangeKind::Mark,
            row: Vec::new(),
            old: None,
            commit: at,
            last: true,
            timestamp: ts,
            no_fk_actions: false,
        };
        let b = ChangeBatch {
            table: String::new(),
            schema: Vec::<Column>::new().into(),
            key: Vec::new(),
            changes: vec![mark],
        };
        return tx.send(Ok(b.encode())).await.map_err(gone);
    }
    for c in chunks {
        tx.send(Ok(c)).await.map_err(gone)?;
    }
    Ok(())
}

impl Rel {
    /// Whether the log carries every column of a tuple that has one as the snapshot reads it:
    /// no unchanged TOASTed value, no value of a type read as text.
    fn logged_whole(&self, tuple: &[Datum<'_>]) -> bool {
        (0..self.plans.len()).all(|i| match tuple.get(i).copied().unwrap_or(Datum::Null) {
            Datum::Null => true,
            Datum::Unchanged => false,
            _ => !self.cast[i],
        })
    }
}

/// A change of `r` whose row is `tuple` as logged (a delete's NULLs and unread columns as NULL),
/// with no old row.
fn emit_logged(
    t: &mut Txn,
    rel: u32,
    r: &Rel,
    kind: ChangeKind,
    tuple: &[Datum<'_>],
) -> Result<(), Error> {
    if !t.admit() {
        return Ok(());
    }
    let out = t.chunks.start((rel, r.generation), &r.layout, kind, t.ts);
    emit::push_tuple(out, &r.table, &r.plans, &r.cast, tuple).map_err(Error::permanent)?;
    emit::push_nulls(out, r.layout.width());
    out.end_row();
    Ok(())
}

impl Context {
    /// One message's changes of streamed tables (an update of the key is a delete and an
    /// insert), encoded into the transaction's chunks: straight from the log when it carries
    /// the whole row (one lookup of the table, no value built), else through values.
    async fn changes(&mut self, m: Message<'_>, t: &mut Txn) -> Result<(), Error> {
        let (rel, kind, tuple) = match &m {
            Message::Insert { rel, new } => (*rel, ChangeKind::Insert, new),
            Message::Update {
                rel,
                old: None,
                new,
            } => (*rel, ChangeKind::Update, new),
            // A delete's columns outside the identity are NULL as logged, and never read again.
            Message::Delete { rel, old } => (*rel, ChangeKind::Delete, old),
            _ => return self.changes_through_values(m, t).await,
        };
        match self.rels.get(&rel) {
            Some(r) if kind == ChangeKind::Delete || r.logged_whole(tuple) => {
                emit_logged(t, rel, r, kind, tuple)
            }
            _ => self.changes_through_values(m, t).await,
        }
    }

    /// [`Context::changes`] of a message whose rows are built as values first: columns read
    /// again from the table, an update with its old row (a key change is a delete and an
    /// insert), a TRUNCATE, a new description of a table.
    async fn changes_through_values(&mut self, m: Message<'_>, t: &mut Txn) -> Result<(), Error> {
        match m {
            Message::Relation(r) if self.tables.contains_key(&r.oid) => {
                let rel = self.describe(&r).await?;
                self.rels.insert(r.oid, rel);
            }
            Message::Insert { rel, new } if self.rels.contains_key(&rel) => {
                let row = self.row(rel, &new, None).await?;
                self.emit_values(t, rel, ChangeKind::Insert, &row, None);
            }
            Message::Update { rel, old, new } if self.rels.contains_key(&rel) => {
                let old_row = match &old {
                    Some(o) => Some(self.row(rel, o, None).await?),
                    None => None,
                };
                let row = self.row(rel, &new, old.as_deref()).await?;
                let key = &self.rels[&rel].key;
                let moved = old_row
                    .as_ref()
                    .is_some_and(|o| key.iter().any(|&k| o[k] != row[k] && o[k] != Value::Null));
                match old_row {
                    Some(o) if moved => {
                        self.emit_values(t, rel, ChangeKind::Delete, &o, None);
                        self.emit_values(t, rel, ChangeKind::Insert, &row, Some(&o));
                    }
                    o => self.emit_values(t, rel, ChangeKind::Update, &row, o.as_ref()),
                }
            }
            Message::Truncate { rels } => {
                for r in rels.into_iter().filter(|r| self.tables.contains_key(r)) {
                    self.emit_truncate(t, r);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A change whose row (and old row) were built as values: one whose columns were read
    /// again, or an update with its old row.
    fn emit_values(&self, t: &mut Txn, rel: u32, kind: ChangeKind, row: &Row, old: Option<&Row>) {
        if !t.admit() {
            return;
        }
        let r = &self.rels[&rel];
        let n = r.layout.width();
        let out = t.chunks.start((rel, r.generation), &r.layout, kind, t.ts);
        for values in [Some(row), old] {
            for i in 0..n {
                match values.and_then(|v| v.get(i)) {
                    Some(v) => out.push_value(v),
                    None => out.push_null(),
                }
            }
        }
        out.end_row();
    }

    /// A TRUNCATE of `rel`: no row.
    fn emit_truncate(&self, t: &mut Txn, rel: u32) {
        if !t.admit() {
            return;
        }
        let undescribed;
        let (layout, generation) = match self.rels.get(&rel) {
            Some(r) => (&r.layout, r.generation),
            // Not described in this session: no columns (it has had no row change since).
            None => {
                let name = self.tables.get(&rel).map_or("", |t| t.name.as_str());
                undescribed = Layout::new(name, Vec::new(), &[]);
                (&undescribed, u64::MAX)
            }
        };
        let out = t
            .chunks
            .start((rel, generation), layout, ChangeKind::Truncate, t.ts);
        emit::push_nulls(out, 2 * layout.width());
        out.end_row();
    }

    /// A relation's plans: the column types as preparing a SELECT of it gives them (enums,
    /// domains and arrays resolved as for the snapshot), the key from its primary key (all
    /// columns with REPLICA IDENTITY FULL and no key).
    async fn describe(&mut self, r: &pgoutput::Relation) -> Result<Rel, Error> {
        let t = &self.tables[&r.oid];
        let fail = |e: tokio_postgres::Error| {
            self.conn
                .error(&format!("cannot read the columns of `{}`", t.name), &e)
        };
        let stmt = self
            .client
            .prepare(&format!("SELECT * FROM {} LIMIT 0", t.relation))
            .await
            .map_err(fail)?;
        let by_name: HashMap<&str, &Type> = stmt
            .columns()
            .iter()
            .map(|c| (c.name(), c.type_()))
            .collect();
        let pk: Vec<String> = self
            .client
            .query(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                 AND a.attnum = ANY (i.indkey) WHERE i.indrelid = $1 AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[&r.oid],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut rel = Rel {
            table: t.name.clone(),
            relation: t.relation.clone(),
            plans: Vec::new(),
            cast: Vec::new(),
            exprs: Vec::new(),
            key: Vec::new(),
            key_types: Vec::new(),
            reads: HashMap::new(),
            layout: Layout::new("", Vec::new(), &[]),
            generation: self.described,
        };
        self.described += 1;
        for (i, c) in r.columns.iter().enumerate() {
            let ty = by_name
                .get(c.name.as_str())
                .map(|t| (*t).clone())
                .or_else(|| Type::from_oid(c.type_oid))
                .unwrap_or(Type::TEXT);
            let quoted = ident(&c.name);
            let expr = types::select_expr(&quoted, &ty);
            rel.cast.push(expr != quoted);
            rel.exprs.push(expr);
            if pk.contains(&c.name) || (pk.is_empty() && r.replica_identity == b'f') {
                rel.key.push(i);
                rel.key_types.push(ty.clone());
            }
            let plan = types::plan(&c.name, &ty, &self.typing);
            if let Some(w) = &plan.warning {
                tracing::warn!("{w}");
            }
            rel.plans.push(plan);
        }
        // The key's columns in the key's order, so that rows of one key go to one writer.
        let order: Vec<usize> = pk
            .iter()
            .filter_map(|k| r.columns.iter().position(|c| &c.name == k))
            .collect();
        if !order.is_empty() {
            rel.key_types = order
                .iter()
                .map(|&i| {
                    by_name
                        .get(r.columns[i].name.as_str())
                        .map(|t| (*t).clone())
                        .unwrap_or(Type::TEXT)
                })
                .collect();
            rel.key = order;
        }
        let schema = rel.plans.iter().map(|p| p.column.clone()).collect();
        rel.layout = Layout::new(&rel.table, schema, &rel.key);
        Ok(rel)
    }

    /// A tuple as a row. `old`: the update's old tuple (`Some(&[])`: a delete, whose columns
    /// outside the identity are NULL as logged); columns the log does not carry are read again.
    async fn row(
        &mut self,
        rel: u32,
        tuple: &[Datum<'_>],
        old: Option<&[Datum<'_>]>,
    ) -> Result<Row, Error> {
        let is_delete = old.is_some_and(<[Datum]>::is_empty);
        let r = &self.rels[&rel];
        let mut row = Vec::with_capacity(r.plans.len());
        let mut missing = Vec::new();
        for (i, plan) in r.plans.iter().enumerate() {
            let mut d = tuple.get(i).unwrap_or(&Datum::Null);
            if *d == Datum::Unchanged {
                if let Some(o) = old
                    .and_then(|o| o.get(i))
                    .filter(|o| **o != Datum::Unchanged)
                {
                    d = o;
                }
            }
            let v = match d {
                Datum::Null => Value::Null,
                Datum::Unchanged => {
                    missing.push(i);
                    Value::Null
                }
                _ if r.cast[i] => {
                    if !is_delete {
                        missing.push(i);
                    }
                    Value::Null
                }
                Datum::Binary(b) => plan.decode.decode(Some(b)).map_err(|e| {
                    Error::permanent(format!(
                        "table `{}` column `{}`: {e}",
                        r.table, plan.column.name
                    ))
                })?,
                // A type the server sends as text even in binary mode (it has no send function).
                Datum::Text(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            };
            row.push(v);
        }
        if !missing.is_empty() && !is_delete {
            self.read_again(rel, &mut row, &missing, tuple).await?;
        }
        Ok(row)
    }

    /// Reads `columns` of the row whose key the tuple has from the table as it is now. A row
    /// gone since keeps NULLs there: its delete follows in the log.
    async fn read_again(
        &mut self,
        rel: u32,
        row: &mut Row,
        columns: &[usize],
        tuple: &[Datum<'_>],
    ) -> Result<(), Error> {
        let r = self.rels.get_mut(&rel).expect("described");
        let table = r.table.clone();
        let conn = &self.conn;
        let fail = |e: tokio_postgres::Error| {
            conn.error(&format!("cannot read unlogged columns of `{table}`"), &e)
        };
        if !r.reads.contains_key(columns) {
            let exprs: Vec<&str> = columns.iter().map(|&i| r.exprs[i].as_str()).collect();
            let cond: Vec<String> = r
                .key
                .iter()
                .enumerate()
                .map(|(n, &k)| format!("{} = ${}", ident(&r.plans[k].column.name), n + 1))
                .collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                exprs.join(", "),
                r.relation,
                cond.join(" AND ")
            );
            let stmt = self
                .client
                .prepare_typed(&sql, &r.key_types)
                .await
                .map_err(fail)?;
            r.reads.insert(columns.to_vec(), stmt);
        }
        let stmt = &r.reads[columns];
        let keys: Vec<Raw> = r
            .key
            .iter()
            .map(|&k| {
                Raw(match tuple.get(k) {
                    Some(Datum::Binary(b)) => Some(b.to_vec()),
                    _ => None,
                })
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            keys.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
        let Some(found) = self.client.query_opt(stmt, &params).await.map_err(fail)? else {
            return Ok(());
        };
        for (n, &i) in columns.iter().enumerate() {
            let raw: Raw = found.get(n);
            row[i] = r.plans[i].decode.decode(raw.0.as_deref()).map_err(|e| {
                Error::permanent(format!(
                    "table `{table}` column `{}`: {e}",
                    r.plans[i].column.name
                ))
            })?;
        }
        Ok(())
    }
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// A value in its binary send/recv form, passed through as the log or the server has it.
#[derive(Debug)]
struct Raw(Option<Vec<u8>>);

impl ToSql for Raw {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A replication session's error, with the fix where there is one.
fn session_error(ctx: &Context, e: pgwire_replication::PgWireError) -> Error {
    let text = ctx.conn.redact(&e.to_string());
    if text.contains("does not exist") && text.contains("slot") {
        return Error::permanent(format!(
            "replication slot `{}` is gone (dropped?), so the changes after {} cannot be read: \
             run with --fresh to start over with a new snapshot ({text})",
            ctx.cfg.slot, ctx.from
        ));
    }
    let retryable = matches!(
        e,
        pgwire_replication::PgWireError::Io(_) | pgwire_replication::PgWireError::Task(_)
    ) || text.contains("is active for PID")
        || text.contains("terminating connection")
        || text.contains("shutting down");
    Error {
        retryable,
        message: format!("reading the replication slot failed: {text}"),
    }
}
