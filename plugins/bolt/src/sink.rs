//! The sink: connections (routing included), the query check, and one transaction per batch,
//! tried again on a new session or route when the error says that may help.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etlhost_bolt_client::{
    client_config, Auth, BoltError, Connection, RoutingTable, Settings, Target, EXPLAIN_PREFIX,
};
use etlhost_plugin_sdk::redact::{redact_secrets, redact_urls};
use etlhost_plugin_sdk::{Batch, ConfigError, Error, OpenError};

use crate::encoding::Encoding;
use crate::options::{AuthScheme, BoltOptions};
use crate::params;

pub struct BoltSink {
    pub(crate) options: BoltOptions,
    pub(crate) target: Target,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// `neo4j://` only: the last routing table.
    pub(crate) table: Option<RoutingTable>,
    pub(crate) conn: Option<Connection>,
}

impl BoltSink {
    /// Connects, checks the query (unless `check_query: false`) and, when `setup`, runs the
    /// setup statements.
    pub(crate) fn start(options: BoltOptions, setup: bool) -> Result<Self, OpenError> {
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
            sink.check_queries(&mut conn)?;
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
    pub(crate) fn connect(&mut self) -> Result<Connection, Error> {
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

    /// The server compiles the query, and the change stream's `delete_query` and
    /// `update_query` when set, at start.
    fn check_queries(&self, conn: &mut Connection) -> Result<(), OpenError> {
        let db = self.options.database.as_deref();
        for (key, q) in [
            ("query", Some(&self.options.query)),
            ("delete_query", self.options.delete_query.as_ref()),
            ("update_query", self.options.update_query.as_ref()),
        ] {
            let Some(q) = q else { continue };
            check_query(conn, db, q).map_err(|e| match e {
                Checked::Rejected(c) => OpenError::Config(ConfigError::new(key, c.message)),
                Checked::Failed(e) => OpenError::Other(self.error("query check failed", e)),
            })?;
        }
        Ok(())
    }

    pub(crate) fn error(&self, context: &str, e: BoltError) -> Error {
        let text = redact_secrets(&format!("{context}: {e}"), &self.options.secrets());
        if e.is_retryable() {
            Error::retryable(text)
        } else {
            Error::permanent(text)
        }
    }

    /// One attempt at a batch on the current (or a new) connection.
    pub(crate) fn try_batch(&mut self, batch: &Batch) -> Result<(), (Error, Option<BoltError>)> {
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
    pub(crate) fn settle(
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
pub(crate) fn needs_new_session(e: &BoltError) -> bool {
    matches!(e, BoltError::Server { code, .. }
        if code.starts_with("Neo.ClientError.Security.")
            || code.starts_with("Neo.DatabaseError.")
            || code == "Neo.ClientError.Request.Invalid")
}

/// Errors that mean "this server no longer takes writes here": ask for a new routing table.
pub(crate) fn needs_new_route(e: &BoltError) -> bool {
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

#[cfg(test)]
mod tests {
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
