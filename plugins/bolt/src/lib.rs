//! The `bolt` sink: writes each batch to a Neo4j-compatible graph database in one transaction, with a
//! user's Cypher query that receives the batch as `$batch`, a list of maps keyed by column name:
//!
//! ```cypher
//! UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p.name = row.name
//! ```
//!
//! A NULL column is left out of its row's map, so the property is absent, as in Neo4j.

mod changes;
mod params;
mod progress;
mod read;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::redact::{redact_secrets, redact_urls};
use etlhost_plugin_sdk::{export_sink, Batch, ConfigError, Error, OpenError, Options, Sink, Value};
use serde::Deserialize;

use etlhost_bolt_client::{client_config, packstream, EXPLAIN_PREFIX};
pub use etlhost_bolt_client::{Auth, BoltError, Connection, RoutingTable, Settings, Target, Trust};

/// How dates and times are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporal {
    /// Bolt's own Date, LocalDateTime, LocalTime and Duration structures.
    #[default]
    Native,
    /// ISO 8601 text, for servers that do not accept the temporal structures.
    String,
}

/// How exact decimals are sent (Bolt has no decimal type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalAs {
    /// Their exact text, e.g. `"12.50"`: nothing is lost.
    #[default]
    String,
    /// A 64-bit float: convenient for arithmetic, rounds beyond 15-17 significant digits.
    Float,
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// `user` and `password`.
    #[default]
    Basic,
    /// A `token` (e.g. an SSO access token).
    Bearer,
    /// No authentication (servers with auth disabled).
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoltOptions {
    /// `bolt://host:port`, `bolt+s://` (TLS, system roots), `bolt+ssc://` (TLS, any certificate),
    /// and the same with `neo4j` to route. Default port 7687.
    pub uri: String,
    #[serde(default)]
    pub auth: AuthScheme,
    #[serde(default, alias = "username")]
    pub user: Option<String>,
    #[serde(default)]
    pub password: String,
    /// The token for `auth: bearer`; kept out of logs like the password.
    #[serde(default)]
    pub token: Option<String>,
    /// A PEM file of the CA(s) to trust instead of the system's; turns TLS on for `bolt://` and
    /// `neo4j://`.
    pub trusted_ca: Option<String>,
    /// The database to write to. Name it: some servers (ArcadeDB) otherwise pick one silently.
    pub database: Option<String>,
    /// The Cypher run once per batch; it receives the rows as `$batch`. In a streaming flow it
    /// writes inserts and updates (the rows as they are now).
    pub query: String,
    /// Streaming flows: the Cypher for deleted rows (`$batch` holds the rows as they were).
    pub delete_query: Option<String>,
    /// Streaming flows: the Cypher for updated rows, when it differs from `query`.
    pub update_query: Option<String>,
    /// Whether the server compiles `query` (`EXPLAIN`) at start, so a mistake stops the job before
    /// a row is read. Off only for servers without `EXPLAIN`.
    #[serde(default = "yes")]
    pub check_query: bool,
    /// Statements run once when the sink starts, each in its own transaction, e.g.
    /// `CREATE INDEX person_id IF NOT EXISTS FOR (p:Person) ON (p.id)` (MERGE without an index is
    /// many times slower).
    #[serde(default)]
    pub setup: Vec<String>,
    #[serde(default = "default_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default)]
    pub temporal: Temporal,
    #[serde(default)]
    pub decimal: DecimalAs,
    /// Parameter name -> the row's field position (from 0), SeaTunnel's `queryParamPosition`
    /// (see `params.rs`).
    pub params_by_position: Option<std::collections::BTreeMap<String, usize>>,
    /// One row's fields are the query's top-level parameters (needs `write_mode: one_by_one`).
    #[serde(default)]
    pub row_parameters: bool,
}

fn default_timeout() -> u64 {
    30
}

fn yes() -> bool {
    true
}

impl BoltOptions {
    fn target(&self) -> Result<Target, ConfigError> {
        Target::parse(&self.uri, self.trusted_ca.as_deref())
            .map_err(|e| ConfigError::new(e.key, e.message))
    }

    fn secrets(&self) -> [&str; 2] {
        [&self.password, self.token.as_deref().unwrap_or("")]
    }
}

impl Options for BoltOptions {
    fn check(&self) -> Result<(), ConfigError> {
        let target = self.target()?;
        if let Some(trust @ Trust::Ca(_)) = &target.tls {
            // A local file: checked offline, so a wrong path fails validation.
            client_config(trust).map_err(|e| ConfigError::new("trusted_ca", e))?;
        }
        match self.auth {
            AuthScheme::Basic if self.user.is_none() => {
                return Err(ConfigError::new(
                    "user",
                    "missing (auth: basic needs user and password)",
                ))
            }
            AuthScheme::Bearer if self.token.as_deref().unwrap_or("").is_empty() => {
                return Err(ConfigError::new(
                    "token",
                    "missing (auth: bearer needs a token)",
                ))
            }
            _ => {}
        }
        params::check(self)?;
        if self.connect_timeout_secs == 0 {
            return Err(ConfigError::new(
                "connect_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

pub struct BoltSink {
    options: BoltOptions,
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `neo4j://` only: the last routing table.
    table: Option<RoutingTable>,
    conn: Option<Connection>,
}

impl BoltSink {
    /// Connects, checks the query (unless `check_query: false`) and, when `setup`, runs the
    /// setup statements.
    fn start(options: BoltOptions, setup: bool) -> Result<Self, OpenError> {
        let target = options.target()?;
        let tls = match &target.tls {
            Some(trust) => Some(client_config(trust).map_err(|e| {
                Error::permanent(format!(
                    "cannot connect to {}: {e}",
                    redact_urls(&options.uri)
                ))
            })?),
            None => None,
        };
        let mut sink = BoltSink {
            options,
            target,
            tls,
            table: None,
            conn: None,
        };
        // Connect now, so wrong credentials or an unreachable server fail the job before it reads.
        let mut conn = sink.connect()?;
        tracing::debug!(version = ?conn.version(), "connected to {} ({})", redact_urls(&sink.options.uri), conn.address());
        let db = sink.options.database.as_deref();
        if sink.options.check_query {
            check_query(&mut conn, db, &sink.options.query).map_err(|e| match e {
                Checked::Rejected(c) => OpenError::Config(c),
                Checked::Failed(e) => OpenError::Other(sink.error("query check failed", e)),
            })?;
            changes::check_queries(&sink, &mut conn)?;
        }
        if setup {
            for stmt in &sink.options.setup {
                conn.run_autocommit(db, stmt)
                    .map_err(|e| sink.error(&format!("setup statement `{stmt}` failed"), e))?;
            }
        }
        sink.conn = Some(conn);
        Ok(sink)
    }

    fn settings(&self) -> Settings<'_> {
        let o = &self.options;
        Settings {
            auth: match o.auth {
                AuthScheme::Basic => Auth::Basic {
                    user: o.user.as_deref().unwrap_or(""),
                    password: &o.password,
                },
                AuthScheme::Bearer => Auth::Bearer {
                    token: o.token.as_deref().unwrap_or(""),
                },
                AuthScheme::None => Auth::None,
            },
            tls: self.tls.clone(),
            routing: self.target.routing.then_some(&self.target.context),
            timeout: Duration::from_secs(o.connect_timeout_secs),
        }
    }

    fn connect_error(&self, e: BoltError) -> Error {
        self.error(&format!("cannot connect to {}", self.options.uri), e)
    }

    /// A connection to the server to write to: the URI's, or for `neo4j://` a WRITE server of a
    /// routing table that has not expired.
    fn connect(&mut self) -> Result<Connection, Error> {
        if !self.target.routing {
            return Connection::connect(&self.target.address, &self.settings())
                .map_err(|e| self.connect_error(e));
        }
        let mut router_conn = None;
        if self
            .table
            .as_ref()
            .is_none_or(|t| Instant::now() >= t.expires)
        {
            router_conn = self.refresh_table()?;
        }
        let table = self.table.clone().expect("refreshed above");
        if let Some(c) = router_conn.filter(|c| table.writers.iter().any(|w| w == c.address())) {
            return Ok(c);
        }
        let mut failures = Vec::new();
        for w in &table.writers {
            match Connection::connect(w, &self.settings()) {
                Ok(c) => return Ok(c),
                Err(e) => failures.push(format!("{w}: {e}")),
            }
        }
        // The table is stale if none of its writers answers: the next call asks again.
        self.table = None;
        Err(self.error(
            &format!("cannot connect to {}", self.options.uri),
            BoltError::Io(std::io::Error::other(format!(
                "the routing table names WRITE server(s) {} and none is reachable ({})",
                table.writers.join(", "),
                failures.join("; ")
            ))),
        ))
    }

    /// Asks the table's routers, then the URI's server, for a routing table; returns the
    /// connection that answered, which may be reused to write.
    fn refresh_table(&mut self) -> Result<Option<Connection>, Error> {
        let mut routers: Vec<String> = self
            .table
            .as_ref()
            .map(|t| t.routers.clone())
            .unwrap_or_default();
        if !routers.contains(&self.target.address) {
            routers.push(self.target.address.clone());
        }
        let db = self.options.database.clone();
        let mut last = None;
        for r in &routers {
            let mut conn = match Connection::connect(r, &self.settings()) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match conn.route(&self.target.context, db.as_deref()) {
                Ok(Some(t)) if t.writers.is_empty() => {
                    return Err(self.connect_error(BoltError::Protocol(format!(
                        "the routing table from {r} names no WRITE server (routers: {})",
                        t.routers.join(", ")
                    ))))
                }
                Ok(Some(t)) => {
                    tracing::debug!(writers = ?t.writers, routers = ?t.routers, "routing table from {r}");
                    self.table = Some(t);
                    return Ok(Some(conn));
                }
                Ok(None) => {
                    // Bolt before 4.3 has no ROUTE: write to the server that was named.
                    tracing::warn!(
                        "{r} speaks Bolt {:?}, which has no ROUTE; writing to it directly",
                        conn.version()
                    );
                    self.table = Some(RoutingTable {
                        writers: vec![r.clone()],
                        routers: vec![r.clone()],
                        expires: Instant::now() + Duration::from_secs(300),
                    });
                    return Ok(Some(conn));
                }
                Err(e) if !e.is_retryable() => return Err(self.connect_error(e)),
                Err(e) => last = Some(e),
            }
        }
        Err(self.connect_error(last.expect("at least the URI's server was tried")))
    }

    fn error(&self, context: &str, e: BoltError) -> Error {
        let text = redact_secrets(&format!("{context}: {e}"), &self.options.secrets());
        if e.is_retryable() {
            Error::retryable(text)
        } else {
            Error::permanent(text)
        }
    }

    /// One attempt at a batch on the current (or a new) connection.
    fn try_batch(&mut self, batch: &Batch) -> Result<(), (Error, Option<BoltError>)> {
        if self.target.routing
            && self
                .table
                .as_ref()
                .is_some_and(|t| Instant::now() >= t.expires)
        {
            // The table's time is up: ask again, and move if this server no longer takes writes.
            self.table = None;
            self.conn = None;
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(|e| (e, None))?,
        };
        let o = &self.options;
        let enc = Encoding::new(o.temporal, o.decimal, conn.version());
        let result = conn.run_in_transaction(o.database.as_deref(), &o.query, |m| {
            params::encode(m, batch, o, &enc)
        });
        self.settle(conn, result)
    }

    /// After a write on `conn`: the connection is kept for the next write, unless a network
    /// error or an error that leaves the session unusable means the next call must reconnect.
    fn settle(
        &mut self,
        conn: Connection,
        result: Result<(), BoltError>,
    ) -> Result<(), (Error, Option<BoltError>)> {
        match result {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => {
                if !matches!(e, BoltError::Io(_)) && !needs_new_session(&e) {
                    self.conn = Some(conn);
                }
                Err((self.error("write failed", clone_error(&e)), Some(e)))
            }
        }
    }
}

/// Errors after which the session cannot go on: Bolt 5.1+ servers drop a session's login when
/// its credentials expire or change (ArcadeDB: `The credentials of this connection are no longer
/// valid`, Neo4j: `Neo.ClientError.Security.AuthorizationExpired`) and then refuse every request
/// until a new LOGON (`BEGIN not expected in state: AUTHENTICATION`). A new connection logs in
/// again. After a `Neo.DatabaseError.*` (the server failed, not the request) the session's state
/// cannot be trusted either: ArcadeDB leaves the failed transaction open on the connection (a
/// write to a read-only database, `Cannot execute command on a read only database`), and from
/// the fourth on every BEGIN fails with `Exceeded number of 3 nested transactions`, which hides
/// the real error.
fn needs_new_session(e: &BoltError) -> bool {
    matches!(e, BoltError::Server { code, .. }
        if code.starts_with("Neo.ClientError.Security.")
            || code.starts_with("Neo.DatabaseError.")
            || code == "Neo.ClientError.Request.Invalid")
}

/// Errors that mean "this server no longer takes writes here": ask for a new routing table.
fn needs_new_route(e: &BoltError) -> bool {
    match e {
        BoltError::Io(_) => true,
        BoltError::Server { code, .. } => {
            code == "Neo.ClientError.Cluster.NotALeader"
                || code == "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase"
        }
        _ => false,
    }
}

fn clone_error(e: &BoltError) -> BoltError {
    match e {
        BoltError::Io(io) => BoltError::Io(std::io::Error::new(io.kind(), io.to_string())),
        BoltError::Server { code, message } => BoltError::Server {
            code: code.clone(),
            message: message.clone(),
        },
        BoltError::Protocol(m) => BoltError::Protocol(m.clone()),
        BoltError::Tls(m) => BoltError::Tls(m.clone()),
    }
}

impl Sink for BoltSink {
    type Options = BoltOptions;

    fn open(options: BoltOptions) -> Result<Self, OpenError> {
        BoltSink::start(options, true)
    }

    /// Connects (routing included) and has the server compile the query; runs no `setup`.
    const CHECKS: bool = true;

    fn check(options: BoltOptions) -> Result<(), OpenError> {
        BoltSink::start(options, false).map(drop)
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        params::fits(&self.options, batch)?;
        match self.try_batch(batch) {
            Ok(()) => Ok(()),
            Err((e, Some(cause))) if needs_new_session(&cause) => {
                // Log in again on a new connection and try once more; wrong credentials fail again.
                tracing::warn!("{e}; logging in again on a new connection and retrying once");
                if self.target.routing {
                    self.table = None;
                }
                self.try_batch(batch).map_err(|(e, _)| e)
            }
            Err((e, Some(cause))) if self.target.routing && needs_new_route(&cause) => {
                // The leader moved or the server went away: a new table, and one more try.
                tracing::warn!("{e}; refreshing the routing table and retrying once");
                self.table = None;
                self.conn = None;
                self.try_batch(batch).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    const CHANGES: bool = true;

    fn check_changes(options: &BoltOptions) -> Result<(), ConfigError> {
        changes::check_options(options)
    }

    fn write_changes(&mut self, batch: &etlhost_plugin_sdk::ChangeBatch) -> Result<(), Error> {
        self.write_changes_retrying(batch)
    }
}

/// Positions on the query's first line in a server message (ArcadeDB `line 1:64`, Neo4j `line 1,
/// column 65 (offset: 64)`) counted the `EXPLAIN ` the check put in front: the user's query
/// starts `by` characters later.
fn unshift_columns(message: &str, by: usize) -> String {
    let mut out = message.to_string();
    for marker in ["line 1:", "line 1, column ", "(offset: "] {
        let mut from = 0;
        while let Some(i) = out[from..].find(marker) {
            let start = from + i + marker.len();
            let digits = out[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count();
            let end = start + digits;
            match out[start..end].parse::<usize>() {
                Ok(n) if n >= by => out.replace_range(start..end, &(n - by).to_string()),
                _ => {}
            }
            from = start;
        }
    }
    out
}

enum Checked {
    /// The server refuses the query itself: a mistake in the spec.
    Rejected(ConfigError),
    Failed(BoltError),
}

/// Has the server compile the query, so a syntax error stops the job before any row is read.
fn check_query(conn: &mut Connection, db: Option<&str>, query: &str) -> Result<(), Checked> {
    match conn.explain(db, query) {
        Ok(()) => Ok(()),
        Err(BoltError::Server { code, message })
            if code.starts_with("Neo.ClientError.Statement.") =>
        {
            let message = unshift_columns(&message, EXPLAIN_PREFIX.len());
            Err(Checked::Rejected(ConfigError::new(
                "query",
                format!("the server rejects the query: {message} ({code})"),
            )))
        }
        Err(e) => Err(Checked::Failed(e)),
    }
}

/// The parameter map `{batch: [{column: value, ...}, ...]}` for Bolt 5; public for the raw-limit
/// benchmark.
pub fn encode_params(m: &mut Vec<u8>, batch: &Batch, temporal: Temporal, decimal: DecimalAs) {
    encode_params_for(m, batch, temporal, decimal, (5, 0))
}

/// [`encode_params`] for the Bolt `version` the connection agreed on (it decides how a zoned
/// DateTime is written).
pub fn encode_params_for(
    m: &mut Vec<u8>,
    batch: &Batch,
    temporal: Temporal,
    decimal: DecimalAs,
    version: (u8, u8),
) {
    encode_rows(m, batch, &Encoding::new(temporal, decimal, version))
}

/// `{batch: [{column: value, ...}, ...]}`, a NULL column left out of its row's map.
fn encode_rows(m: &mut Vec<u8>, batch: &Batch, enc: &Encoding) {
    use packstream as ps;
    ps::map_header(m, 1);
    ps::string(m, "batch");
    ps::list_header(m, batch.rows.len());
    for row in &batch.rows {
        ps::map_header(m, row.iter().filter(|v| !v.is_null()).count());
        for (col, v) in batch.schema.iter().zip(row) {
            if v.is_null() {
                continue;
            }
            ps::string(m, &col.name);
            encode_value(m, v, enc);
        }
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How values are written: the options, and what the connection's Bolt version decides.
struct Encoding {
    temporal: Temporal,
    decimal: DecimalAs,
    /// Bolt 5's DateTime (`I`, seconds since the epoch in UTC) rather than 4.x's (`F`, seconds of
    /// the local time). With offset 0, as etlhost sends it, only the tag differs.
    utc_datetime: bool,
}

impl Encoding {
    fn new(temporal: Temporal, decimal: DecimalAs, version: (u8, u8)) -> Self {
        Encoding {
            temporal,
            decimal,
            utc_datetime: version.0 >= 5,
        }
    }
}

/// Neo4j's spatial reference ids: WGS-84 (longitude, latitude) for EPSG 4326 and its 3D form
/// 4979, cartesian for everything else (Neo4j knows no other system).
fn neo4j_srid(p: &etlhost_plugin_sdk::Point) -> i64 {
    match (p.srid, p.z.is_some()) {
        (4326, false) => 4326,
        (4326 | 4979, true) => 4979,
        (_, false) => 7203,
        (_, true) => 9157,
    }
}

fn encode_value(m: &mut Vec<u8>, v: &Value, enc: &Encoding) {
    use packstream as ps;
    if enc.temporal == Temporal::String
        && matches!(
            v,
            Value::Date(_) | Value::DateTime(_) | Value::Time(_) | Value::Timestamp(_)
        )
    {
        return ps::string(m, &v.to_string());
    }
    match v {
        Value::Null => ps::null(m),
        Value::Bool(b) => ps::bool(m, *b),
        Value::Int(i) => ps::int(m, *i),
        // Bolt integers are signed 64-bit; larger unsigned values keep their digits as text.
        Value::UInt(u) => match i64::try_from(*u) {
            Ok(i) => ps::int(m, i),
            Err(_) => ps::string(m, &u.to_string()),
        },
        Value::Float(f) => ps::float(m, *f),
        Value::Decimal(d) => match (enc.decimal, d.parse::<f64>()) {
            (DecimalAs::Float, Ok(f)) => ps::float(m, f),
            _ => ps::string(m, d),
        },
        Value::String(s) => ps::string(m, s),
        Value::Bytes(b) => ps::bytes(m, b),
        Value::Date(days) => {
            ps::struct_header(m, 1, b'D');
            ps::int(m, *days as i64);
        }
        Value::DateTime(us) => {
            ps::struct_header(m, 2, b'd');
            ps::int(m, us.div_euclid(1_000_000));
            ps::int(m, us.rem_euclid(1_000_000) * 1000);
        }
        Value::Time(us) if (0..MICROS_PER_DAY).contains(us) => {
            ps::struct_header(m, 1, b't');
            ps::int(m, us * 1000);
        }
        Value::Time(us) => {
            // Beyond a time of day (MySQL TIME spans +-838 h): a Duration.
            ps::struct_header(m, 4, b'E');
            ps::int(m, 0);
            ps::int(m, 0);
            ps::int(m, us.div_euclid(1_000_000));
            ps::int(m, us.rem_euclid(1_000_000) * 1000);
        }
        Value::Timestamp(us) => {
            ps::struct_header(m, 3, if enc.utc_datetime { b'I' } else { b'F' });
            ps::int(m, us.div_euclid(1_000_000));
            ps::int(m, us.rem_euclid(1_000_000) * 1000);
            ps::int(m, 0);
        }
        Value::Point(p) => {
            let srid = neo4j_srid(p);
            match p.z {
                None => {
                    ps::struct_header(m, 3, b'X');
                    ps::int(m, srid);
                }
                Some(_) => {
                    ps::struct_header(m, 4, b'Y');
                    ps::int(m, srid);
                }
            }
            ps::float(m, p.x);
            ps::float(m, p.y);
            if let Some(z) = p.z {
                ps::float(m, z);
            }
        }
        // Members that are NULL stay in lists and maps as nulls: their position or key means
        // something there.
        Value::List(items) => {
            ps::list_header(m, items.len());
            for item in items {
                encode_value(m, item, enc);
            }
        }
        Value::Map(entries) => {
            ps::map_header(m, entries.len());
            for (k, v) in entries {
                ps::string(m, k);
                encode_value(m, v, enc);
            }
        }
    }
}

export_sink!(BoltSink, name = "bolt");
// `etlhost verify` reads the graph through the sink (read.rs).
etlhost_plugin_sdk::export_sink_query!(BoltSink);
etlhost_plugin_sdk::export_sink_progress!(BoltSink);

// Per-row values are many small allocations; mimalloc makes each about half the instructions of
// glibc's malloc (README, "Performance"). Memory crosses the boundary only back to its owner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod tests {
    use super::*;

    use etlhost_plugin_sdk::{Column, ColumnType, Point};
    use packstream::Ps;

    fn encoded(v: Value, temporal: Temporal, version: (u8, u8)) -> Ps {
        let batch = Batch {
            schema: vec![Column {
                name: "v".into(),
                ty: ColumnType::Any,
            }]
            .into(),
            rows: vec![vec![v]],
        };
        let mut m = Vec::new();
        encode_params_for(&mut m, &batch, temporal, DecimalAs::String, version);
        let Ps::Map(mut top) = packstream::decode(&m).unwrap() else {
            panic!()
        };
        let Some(Ps::List(mut rows)) = top.remove("batch") else {
            panic!()
        };
        let Ps::Map(mut row) = rows.remove(0) else {
            panic!()
        };
        row.remove("v").unwrap()
    }

    #[test]
    fn new_values() {
        let native = Temporal::Native;
        let ts = Value::Timestamp(1_700_000_000_123_456);
        let fields = vec![Ps::Int(1_700_000_000), Ps::Int(123_456_000), Ps::Int(0)];
        assert_eq!(
            encoded(ts.clone(), native, (5, 4)),
            Ps::Struct(b'I', fields.clone())
        );
        assert_eq!(
            encoded(ts.clone(), native, (4, 4)),
            Ps::Struct(b'F', fields)
        );
        assert_eq!(
            encoded(ts, Temporal::String, (5, 4)),
            Ps::String("2023-11-14T22:13:20.123456Z".into())
        );
        let p = |srid, z| {
            Value::Point(Point {
                srid,
                x: 1.5,
                y: -2.0,
                z,
            })
        };
        assert_eq!(
            encoded(p(4326, None), native, (5, 4)),
            Ps::Struct(b'X', vec![Ps::Int(4326), Ps::Float(1.5), Ps::Float(-2.0)])
        );
        assert_eq!(
            encoded(p(0, None), Temporal::String, (5, 4)),
            Ps::Struct(b'X', vec![Ps::Int(7203), Ps::Float(1.5), Ps::Float(-2.0)])
        );
        assert_eq!(
            encoded(p(3857, Some(3.0)), native, (5, 4)),
            Ps::Struct(
                b'Y',
                vec![
                    Ps::Int(9157),
                    Ps::Float(1.5),
                    Ps::Float(-2.0),
                    Ps::Float(3.0)
                ]
            )
        );
        let doc = Value::Map(vec![
            ("tags".into(), Value::List(vec![Value::String("a".into())])),
            ("none".into(), Value::Null),
        ]);
        let Ps::Map(doc) = encoded(doc, native, (5, 4)) else {
            panic!()
        };
        assert_eq!(doc["tags"], Ps::List(vec![Ps::String("a".into())]));
        assert_eq!(doc["none"], Ps::Null);
    }

    #[test]
    fn positions_in_server_messages_count_from_the_users_query() {
        let f = |m: &str| super::unshift_columns(m, 8);
        assert_eq!(
            f("Syntax error at line 1:64 - extraneous input ')'"),
            "Syntax error at line 1:56 - extraneous input ')'"
        );
        assert_eq!(
            f("Invalid input ')' (line 1, column 65 (offset: 64))"),
            "Invalid input ')' (line 1, column 57 (offset: 56))"
        );
        assert_eq!(f("at line 2:3"), "at line 2:3");
    }
}
