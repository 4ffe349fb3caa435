//! The `mysql` source: reads a table or a query from MySQL or MariaDB, one split (key range) at a
//! time, streaming rows in MySQL's binary protocol so every column keeps its type: by a client of
//! its own that parses them in place (`built_in`, over the crate `etlhost_mysql_wire`), or by
//! mysql_async where that one cannot connect.

mod binlog;
mod built_in;
mod sample;
mod types;

use std::time::Duration;

use etlhost_plugin_sdk::codec;
use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::runtime::{block_on, runtime};
use etlhost_plugin_sdk::{
    export_source, Batch, Catalog, ColumnInfo, ColumnType, ConfigError, CursorRange, Error,
    ForeignKey, KeyBounds, KeySample, OpenError, Options, Source, Split, SplitReader, StreamHead,
    TableInfo, Value,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool};
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlOptions {
    /// `mysql://host:port/database`. Credentials are better given as `user` and `password`.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The table to read (`name` or `database.name`). Exactly one of `table` and `query`.
    pub table: Option<String>,
    /// A SELECT whose rows are read; splits wrap it as a derived table.
    pub query: Option<String>,
    /// Rows per batch handed to the host (the host re-batches for the sink).
    #[serde(default = "default_fetch_size")]
    pub fetch_size: usize,
    /// Seconds to wait for a connection (SeaTunnel's `connection_check_timeout_sec`).
    #[serde(default = "default_timeout")]
    pub connection_check_timeout_sec: u64,
    /// Read `TINYINT(1)` (and `BOOLEAN`, its alias) as booleans: 0 is false, anything else true.
    /// Off by default, because a TINYINT(1) can hold -128..127 and the width is only a display
    /// hint: turning 2 into `true` would lose it.
    #[serde(default)]
    pub tinyint1_as_bool: bool,
    /// Read `BIT(1)` as booleans (on by default: one bit is a boolean, nothing is lost).
    #[serde(default = "yes")]
    pub bit1_as_bool: bool,
    /// `text` (default): JSON columns arrive as their text. `value`: parsed into lists, maps and
    /// scalars, so a query can destructure them (`row.doc.name`).
    #[serde(default)]
    pub json: JsonAs,
    /// Columns parsed as JSON whatever their declared type (MariaDB's JSON is a LONGTEXT that its
    /// protocol does not mark as JSON). A value there that is not JSON fails the read.
    #[serde(default)]
    pub json_columns: Vec<String>,
    /// Which client reads the splits' rows: `built_in` (default) parses them in place off the
    /// wire, and hands a split to mysql_async when the connection needs what it does not speak
    /// (TLS, a socket, compression, authentication other than `mysql_native_password` or
    /// `caching_sha2_password`'s fast path); `mysql_async` always uses mysql_async.
    #[serde(default)]
    pub client: Client,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    #[default]
    BuiltIn,
    MysqlAsync,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonAs {
    #[default]
    Text,
    Value,
}

fn yes() -> bool {
    true
}

fn default_fetch_size() -> usize {
    1000
}

fn default_timeout() -> u64 {
    30
}

impl Options for MySqlOptions {
    fn check(&self) -> Result<(), ConfigError> {
        if let Err(e) = Opts::from_url(&self.url) {
            let text = redact_secrets(&e.to_string(), &[]);
            return Err(ConfigError::new("url", format!("not a MySQL URL: {text}")));
        }
        match (&self.table, &self.query) {
            (None, None) => {
                return Err(ConfigError::new(
                    "table",
                    "missing (give `table` or `query`)",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "query",
                    "give either `table` or `query`, not both",
                ))
            }
            _ => {}
        }
        if self.fetch_size == 0 {
            return Err(ConfigError::new("fetch_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// What every connection runs first: TIMESTAMP values are read as UTC instants.
const SESSION_SETUP: &str = "SET time_zone = '+00:00'";

pub struct MySqlSource {
    pool: Pool,
    /// For the binlog connection, which is not a pooled one.
    opts: OptsBuilder,
    database: String,
    /// `SELECT * FROM <relation>` reads every row; splits add a WHERE clause.
    relation: String,
    fetch_size: usize,
    timeout: Duration,
    secrets: Vec<String>,
    typing: types::Typing,
    client: Client,
}

/// Quotes an identifier, `db.table` as two.
fn quote(ident: &str) -> String {
    ident
        .split('.')
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

impl MySqlSource {
    fn err(&self, context: &str, e: mysql_async::Error) -> Error {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let text = redact_secrets(&format!("{context}: {e}"), &secrets);
        // Lost connections, lock wait timeouts and deadlocks can succeed on another try.
        let retryable = match &e {
            mysql_async::Error::Io(_) => true,
            mysql_async::Error::Server(s) => matches!(s.code, 1205 | 1213),
            _ => false,
        };
        Error {
            retryable,
            message: text,
        }
    }

    async fn conn(&self) -> Result<mysql_async::Conn, Error> {
        match tokio::time::timeout(self.timeout, self.pool.get_conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.err("cannot connect to MySQL", e)),
            Err(_) => Err(Error::retryable(format!(
                "cannot connect to MySQL: no connection within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    /// The statement and parameters that read one split.
    fn split_sql(&self, split: &Split) -> (String, Vec<mysql_async::Value>) {
        let mut sql = format!("SELECT * FROM {}", self.relation);
        let mut params = Vec::new();
        let mut filters = Vec::new();
        if let Some(r) = &split.range {
            let cols = r.key_columns();
            let mut conds = Vec::new();
            if let Some(s) = &r.start {
                conds.push(sample::tuple_cmp(cols, s, ">=", &mut params));
            }
            if let Some(a) = &r.after {
                conds.push(sample::tuple_cmp(cols, a, ">", &mut params));
            }
            if let Some(e) = &r.end {
                conds.push(sample::tuple_cmp(cols, e, "<", &mut params));
            }
            let col = quote(&r.column);
            let range = if conds.is_empty() {
                format!("{col} IS NOT NULL")
            } else {
                conds.join(" AND ")
            };
            filters.push(if r.nulls {
                format!("(({range}) OR {col} IS NULL)")
            } else {
                format!("({range})")
            });
        }
        if let Some(c) = &split.cursor {
            let (cond, p) = cursor_sql(c);
            filters.push(cond);
            params.extend(p);
        }
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        if let Some(r) = &split.range {
            // Key order (NULLs first) lets the host record how far the split got.
            let order: Vec<String> = r.key_columns().iter().map(|c| quote(c)).collect();
            sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        (sql, params)
    }
}

/// The condition (and its parameters) that keeps the rows of an incremental read.
fn cursor_sql(c: &CursorRange) -> (String, Vec<mysql_async::Value>) {
    let col = quote(&c.column);
    let mut conds = vec![format!("{col} IS NOT NULL")];
    let mut params = Vec::new();
    if let Some(f) = &c.from {
        conds.push(format!("{col} >= ?"));
        params.push(types::param(f));
    }
    if let Some(t) = &c.to {
        conds.push(format!("{col} <= ?"));
        params.push(types::param(t));
    }
    (format!("({})", conds.join(" AND ")), params)
}

impl Source for MySqlSource {
    type Options = MySqlOptions;
    type Reader = MySqlReader;
    const INCREMENTAL: bool = true;

    fn open(o: MySqlOptions) -> Result<Self, OpenError> {
        let opts = Opts::from_url(&o.url).map_err(|e| ConfigError::new("url", e.to_string()))?;
        let database = opts.db_name().unwrap_or_default().to_string();
        let mut b = OptsBuilder::from_opts(opts);
        if let Some(u) = &o.user {
            b = b.user(Some(u));
        }
        if let Some(p) = &o.password {
            b = b.pass(Some(p));
        }
        // `setup` (not `init`) runs again after the pool resets a connection, which would
        // otherwise restore the server's time zone.
        b = b.setup(vec![SESSION_SETUP]);
        let relation = match (&o.table, &o.query) {
            (Some(t), _) => quote(t),
            (None, Some(q)) => format!("({}) AS etlhost_query", q.trim().trim_end_matches(';')),
            (None, None) => unreachable!("checked in MySqlOptions::check"),
        };
        let mut secrets = vec![o.url.clone()];
        secrets.extend(o.password.clone());
        // The pool needs the plugin's runtime to be current when it is created and dropped.
        let _guard = runtime().enter();
        let source = MySqlSource {
            opts: b.clone(),
            database,
            pool: Pool::new(b),
            relation,
            fetch_size: o.fetch_size,
            timeout: Duration::from_secs(o.connection_check_timeout_sec.max(1)),
            secrets,
            client: o.client,
            typing: types::Typing {
                tinyint1_as_bool: o.tinyint1_as_bool,
                bit1_as_bool: o.bit1_as_bool,
                json_value: o.json == JsonAs::Value,
                json_columns: o.json_columns.clone(),
            },
        };
        // Connect once now, so a wrong password or host fails before any work is planned.
        block_on(async {
            let mut c = source.conn().await?;
            c.ping()
                .await
                .map_err(|e| source.err("MySQL ping failed", e))
        })?;
        Ok(source)
    }

    const STREAMS: bool = true;

    fn stream_head(&self) -> Result<StreamHead, Error> {
        block_on(async {
            let mut c = self.conn().await?;
            binlog::head(&mut c, &self.secrets).await
        })
    }

    fn open_split(&self, split: &Split) -> Result<MySqlReader, Error> {
        if let Some(req) = &split.stream {
            let (tx, rx) = mpsc::channel(4);
            let follow = binlog::Follow {
                opts: self.opts.clone(),
                pool: self.pool.clone(),
                database: self.database.clone(),
                fetch_size: self.fetch_size,
                typing: self.typing.clone(),
                secrets: self.secrets.clone(),
            };
            runtime().spawn(binlog::follow(follow, req.clone(), tx));
            return Ok(MySqlReader { rx, spare: None });
        }
        let (sql, params) = self.split_sql(split);
        let (tx, rx) = mpsc::channel(2);
        let fetch_size = self.fetch_size;
        let secrets = self.secrets.clone();
        let typing = self.typing.clone();
        let tx_panic = tx.clone();
        let built_in = (self.client == Client::BuiltIn)
            .then(|| built_in::open(&self.opts.clone().into(), self.timeout, &sql, &params))
            .flatten();
        if let Some(started) = built_in {
            let (spare_tx, spare_rx) = std::sync::mpsc::channel();
            tracing::debug!(split = split.id, sql = %sql, client = "built_in", "reading split");
            let read = move || {
                let (schema, convs) = types::schema(started.columns(), &typing);
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                let out = built_in::Out {
                    tx: &tx,
                    spare: &spare_rx,
                };
                started.stream(&schema, &convs, fetch_size, out, &secrets);
            };
            let mut reader = spawn_reader(split.id, rx, tx_panic, read)?;
            reader.spare = Some(spare_tx);
            return Ok(reader);
        }
        tracing::debug!(split = split.id, sql = %sql, client = "mysql_async", "reading split");
        let conn = block_on(self.conn())?;
        // Rows stream into a small channel; `next_batch` takes from it. When the reader is dropped
        // the channel closes and the stream stops. The split gets a thread and a single-threaded
        // runtime of its own rather than a task on the plugin's shared runtime: parsing rows is
        // this path's bound, and on the work-stealing runtime the task moved between its workers
        // and woke them (1M rows: 0.46 -> 0.39 s, README "Performance"). The connection stays
        // the pool's, which keeps serving it from the shared runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::retryable(format!("cannot start a runtime to read the split: {e}"))
            })?;
        let read = move || {
            runtime.block_on(async move {
                if let Err(e) = stream_rows(conn, sql, params, fetch_size, &typing, &tx).await {
                    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    let retryable = matches!(e, mysql_async::Error::Io(_));
                    let message = redact_secrets(&format!("reading failed: {e}"), &secrets);
                    let _ = tx.send(Err(Error { retryable, message })).await;
                }
            })
        };
        spawn_reader(split.id, rx, tx_panic, read)
    }

    fn key_bounds(&self, column: &str, cursor: Option<&CursorRange>) -> Result<KeyBounds, Error> {
        // The key's declared type comes from a query that reads no row; MIN() and MAX() may report
        // a wider one.
        let probe = format!("SELECT {} FROM {} LIMIT 0", quote(column), self.relation);
        let (filter, params) = match cursor {
            Some(c) => {
                let (cond, params) = cursor_sql(c);
                (format!(" WHERE {cond}"), params)
            }
            None => (String::new(), Vec::new()),
        };
        let sql = format!(
            "SELECT MIN(k), MAX(k), COUNT(*) FROM (SELECT {} AS k FROM {}{filter}) AS etlhost_bounds",
            quote(column),
            self.relation
        );
        block_on(async {
            let mut c = self.conn().await?;
            let fail = |e| self.err(&format!("cannot query the bounds of `{column}`"), e);
            let result = c.exec_iter(probe, ()).await.map_err(fail)?;
            let key = result.columns_ref().first().cloned();
            result.drop_result().await.map_err(fail)?;
            let key = key.ok_or_else(|| {
                Error::permanent(format!("`{column}` is not a column of the source"))
            })?;
            let key_type = types::column(&key, &self.typing).0.ty;
            let row: Option<mysql_async::Row> = c.exec_first(sql, params).await.map_err(fail)?;
            let mut vals = row
                .ok_or_else(|| Error::permanent("the bounds query returned no row"))?
                .unwrap()
                .into_iter();
            let mut next = |ty| vals.next().map_or(Value::Null, |v| types::value(v, ty));
            let (min, max) = (next(key_type), next(key_type));
            let rows = match next(ColumnType::Int) {
                Value::Int(n) => n as u64,
                Value::UInt(n) => n,
                _ => 0,
            };
            Ok(KeyBounds {
                column: column.to_string(),
                declared_type: types::declared_name(&key),
                column_type: key_type,
                min,
                max,
                rows,
            })
        })
    }

    fn key_sample(
        &self,
        columns: &[String],
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, Error> {
        self.sample(columns, cursor, count)
    }

    fn describe(&self) -> Result<Catalog, Error> {
        block_on(async {
            let mut c = self.conn().await?;
            let fail = |e| self.err("cannot read information_schema", e);
            let tables: Vec<(String, Option<u64>)> = c
                .query(
                    "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' \
                     ORDER BY TABLE_NAME",
                )
                .await
                .map_err(fail)?;
            let columns: Vec<(String, String, String, String, String)> = c
                .query(
                    "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE \
                     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
                     ORDER BY TABLE_NAME, ORDINAL_POSITION",
                )
                .await
                .map_err(fail)?;
            // Foreign keys into other databases are left out: their tables are not in the catalog.
            let keys: Vec<KeyUsage> = c
                .query(
                    "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, t.CONSTRAINT_TYPE, k.COLUMN_NAME, \
                     k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME \
                     FROM information_schema.KEY_COLUMN_USAGE k \
                     JOIN information_schema.TABLE_CONSTRAINTS t \
                       ON t.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA \
                      AND t.TABLE_NAME = k.TABLE_NAME AND t.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
                     WHERE k.TABLE_SCHEMA = DATABASE() \
                       AND (t.CONSTRAINT_TYPE = 'PRIMARY KEY' \
                         OR (t.CONSTRAINT_TYPE = 'FOREIGN KEY' \
                             AND k.REFERENCED_TABLE_SCHEMA = DATABASE())) \
                     ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
                )
                .await
                .map_err(fail)?;
            let mut catalog = Catalog {
                tables: tables
                    .into_iter()
                    .map(|(name, rows)| TableInfo {
                        name,
                        columns: Vec::new(),
                        primary_key: Vec::new(),
                        foreign_keys: Vec::new(),
                        estimated_rows: rows.unwrap_or(0),
                    })
                    .collect(),
            };
            fn table<'a>(c: &'a mut Catalog, name: &str) -> Option<&'a mut TableInfo> {
                c.tables.iter_mut().find(|t| t.name == name)
            }
            for (t, name, data_type, column_type, nullable) in columns {
                if let Some(t) = table(&mut catalog, &t) {
                    t.columns.push(ColumnInfo {
                        column_type: types::declared(&name, &data_type, &column_type, &self.typing),
                        name,
                        declared_type: column_type,
                        nullable: nullable == "YES",
                    });
                }
            }
            for (t, constraint, kind, column, ref_table, ref_column) in keys {
                let Some(t) = table(&mut catalog, &t) else {
                    continue;
                };
                if kind == "PRIMARY KEY" {
                    t.primary_key.push(column);
                    continue;
                }
                let (Some(ref_table), Some(ref_column)) = (ref_table, ref_column) else {
                    continue;
                };
                match t.foreign_keys.iter_mut().find(|f| f.name == constraint) {
                    Some(f) => {
                        f.columns.push(column);
                        f.references.push(ref_column);
                    }
                    None => t.foreign_keys.push(ForeignKey {
                        name: constraint,
                        columns: vec![column],
                        table: ref_table,
                        references: vec![ref_column],
                    }),
                }
            }
            Ok(catalog)
        })
    }
}

/// A batch as it crosses the plugin boundary, encoded on the thread that read its rows, so the
/// driver's values are freed where they were allocated (cheaper than on the host's thread).
type Sent = Result<Vec<u8>, Error>;

/// A row of information_schema's key usage: table, constraint, its type, column, and the
/// referenced table and column of a foreign key.
type KeyUsage = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

async fn stream_rows(
    mut conn: mysql_async::Conn,
    sql: String,
    params: Vec<mysql_async::Value>,
    fetch_size: usize,
    typing: &types::Typing,
    tx: &mpsc::Sender<Sent>,
) -> Result<(), mysql_async::Error> {
    let params = if params.is_empty() {
        mysql_async::Params::Empty
    } else {
        mysql_async::Params::Positional(params)
    };
    let mut result = conn.exec_iter(sql, params).await?;
    let (schema, convs) = types::schema(result.columns_ref(), typing);
    // Each row is encoded as it arrives, cell by cell from the driver's values: one growing
    // buffer, no row of SDK values.
    let mut batch = codec::Builder::new(&schema, 0);
    while let Some(next) = result.next().await? {
        for (i, conv) in convs.iter().enumerate() {
            let v = next.as_ref(i).unwrap_or(&mysql_async::Value::NULL);
            if let Err(e) = types::push(&mut batch, v, *conv) {
                let e = Error::permanent(format!("column `{}`: {e}", schema[i].name));
                let _ = tx.send(Err(e)).await;
                return Ok(());
            }
        }
        batch.end_row();
        if batch.rows() == fetch_size {
            // The next batch is likely the size of this one: room for it at once.
            let size = batch.len();
            let full = std::mem::replace(&mut batch, codec::Builder::new(&schema, size));
            if tx.send(Ok(full.finish())).await.is_err() {
                return Ok(()); // the host stopped reading this split
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch.finish())).await;
    }
    Ok(())
}

/// Runs `read` on a thread of the split's own, whose batches arrive on `rx`.
fn spawn_reader(
    split: u32,
    rx: mpsc::Receiver<Sent>,
    report: mpsc::Sender<Sent>,
    read: impl FnOnce() + Send + 'static,
) -> Result<MySqlReader, Error> {
    std::thread::Builder::new()
        .name(format!("mysql-split-{split}"))
        .spawn(move || {
            // A closed channel reads as the split's end: a panic must say it failed instead.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).is_err() {
                let e = Error::permanent("reading failed: the reading thread panicked");
                let _ = report.blocking_send(Err(e));
            }
        })
        .map_err(|e| Error::retryable(format!("cannot start a thread to read the split: {e}")))?;
    Ok(MySqlReader { rx, spare: None })
}

pub struct MySqlReader {
    rx: mpsc::Receiver<Sent>,
    /// Where the built-in client's buffers go back to its thread, once copied. A buffer the host
    /// frees is freed on the host's thread, and the reading thread's allocator, which otherwise
    /// allocates almost nothing, was slow to take such memory back: peak RSS grew from 17 MiB for
    /// 1,000,000 rows to 25 MiB for 10,000,000. Each thread now frees only what it allocated.
    spare: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

impl SplitReader for MySqlReader {
    fn next_batch(&mut self) -> Result<Option<Batch>, Error> {
        self.next_encoded()?
            .map(|b| codec::decode(&b).map_err(|e| Error::permanent(e.to_string())))
            .transpose()
    }

    fn next_encoded(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let batch = self.rx.blocking_recv().transpose()?;
        Ok(match (batch, &self.spare) {
            (Some(b), Some(spare)) => {
                let copy = b.clone();
                let _ = spare.send(b);
                Some(copy)
            }
            (batch, _) => batch,
        })
    }
}

export_source!(MySqlSource, name = "mysql");

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (README, "Performance"). Memory crosses the boundary only back to its owner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
