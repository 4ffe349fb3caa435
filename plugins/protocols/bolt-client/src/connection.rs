//! A Bolt connection that does one thing well: run a write query with a parameter map inside an
//! explicit transaction, in one network round trip.
//!
//! Why our own and not neo4rs: neo4rs (0.8 and 0.9 release candidates) writes through an 8 KB
//! buffered stream and never sets TCP_NODELAY, so every message over about 8 KB waits for the
//! server's delayed ACK, about 40 ms a batch (measured here: 19 k rows/s instead of 108 k rows/s).
//! It offers no way to reach its socket. Here every transaction (BEGIN, RUN, PULL, COMMIT) is encoded
//! into one buffer and sent with one `write_all` on a socket with TCP_NODELAY, then the four
//! responses are read. Over TLS the batch is one TLS write too. Bolt 5.1-5.4 (credentials in LOGON
//! after HELLO, as Neo4j 5.26 and 2025.x expect) are offered first, then 5.0 and 4.4-4.0
//! (credentials in HELLO).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::packstream::{self as ps, Ps};
use crate::tls::{self, Stream};
use crate::uri;

const MAGIC: [u8; 4] = [0x60, 0x60, 0xB0, 0x17];
// Proposals, each [0, range, minor, major]: 5.4 down to 5.0, then 4.4 down to 4.0.
const PROPOSALS: [[u8; 4]; 4] = [[0, 4, 4, 5], [0, 4, 4, 4], [0; 4], [0; 4]];

/// What [`Connection::explain`] puts before the query.
pub const EXPLAIN_PREFIX: &str = "EXPLAIN ";

const USER_AGENT: &str = concat!("etlhost/", env!("CARGO_PKG_VERSION"));

const HELLO: u8 = 0x01;
const LOGON: u8 = 0x6A;
const ROUTE: u8 = 0x66;
const RUN: u8 = 0x10;
const BEGIN: u8 = 0x11;
const COMMIT: u8 = 0x12;
const ROLLBACK: u8 = 0x13;
const RESET: u8 = 0x0F;
const PULL: u8 = 0x3F;

const SUCCESS: u8 = 0x70;
const RECORD: u8 = 0x71;
const IGNORED: u8 = 0x7E;
const FAILURE: u8 = 0x7F;

/// What went wrong, classified for the host's retry decision.
#[derive(Debug)]
pub enum BoltError {
    /// The network failed; the connection is unusable and a new one may succeed.
    Io(io::Error),
    /// The server refused the request with a Neo4j status code.
    Server { code: String, message: String },
    /// The server broke the protocol, or speaks something else.
    Protocol(String),
    /// The TLS handshake failed (a certificate, or no TLS on the other side).
    Tls(String),
}

impl BoltError {
    /// Connection problems and the server's `Neo.TransientError.*` (deadlocks, leader switches,
    /// memory pressure) may succeed when tried again; client errors will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            BoltError::Io(_) => true,
            BoltError::Server { code, .. } => code.starts_with("Neo.TransientError."),
            BoltError::Protocol(_) | BoltError::Tls(_) => false,
        }
    }
}

impl std::fmt::Display for BoltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoltError::Io(e) => write!(f, "connection error: {e}"),
            BoltError::Server { code, message } => write!(f, "{code}: {message}"),
            BoltError::Protocol(m) => write!(f, "Bolt protocol error: {m}"),
            BoltError::Tls(m) => f.write_str(m),
        }
    }
}

impl From<io::Error> for BoltError {
    fn from(e: io::Error) -> Self {
        BoltError::Io(e)
    }
}

pub struct Connection {
    stream: Stream,
    version: (u8, u8),
    /// The `host:port` connected to (routing compares it with the table's writers).
    address: String,
    out: Vec<u8>,
    msg: Vec<u8>,
    /// Bytes received and not yet read: a result of many records arrives in few reads, not two
    /// system calls per record.
    inbuf: Box<[u8]>,
    inlo: usize,
    inhi: usize,
}

/// How the client authenticates (`auth` in the options).
pub enum Auth<'a> {
    Basic { user: &'a str, password: &'a str },
    Bearer { token: &'a str },
    None,
}

/// What a connection needs besides the address.
pub struct Settings<'a> {
    pub auth: Auth<'a>,
    /// TLS configuration; `None` for plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `Some` for `neo4j://`: the routing context sent in HELLO (`address` is added).
    pub routing: Option<&'a BTreeMap<String, String>>,
    pub timeout: Duration,
}

/// Writes one statement's parameter map.
pub type WriteParams<'a> = &'a dyn Fn(&mut Vec<u8>);

impl Connection {
    pub fn connect(address: &str, settings: &Settings<'_>) -> Result<Self, BoltError> {
        let timeout = settings.timeout;
        let mut last = None;
        let mut tcp = None;
        for a in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match tcp {
            Some(s) => s,
            None => {
                return Err(last
                    .unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{address} resolves to nothing"),
                        )
                    })
                    .into())
            }
        };
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let mut stream = match &settings.tls {
            None => Stream::Plain(tcp),
            Some(config) => Stream::Tls(Box::new(
                tls::handshake(config.clone(), uri::host_of(address), tcp)
                    .map_err(BoltError::Tls)?,
            )),
        };

        let mut hs = Vec::with_capacity(20);
        hs.extend_from_slice(&MAGIC);
        for p in PROPOSALS {
            hs.extend_from_slice(&p);
        }
        stream.write_all(&hs)?;
        stream.flush()?;
        let agreed = read_agreed(&mut stream, settings.tls.is_some())?;
        if agreed == [0; 4] {
            return Err(BoltError::Protocol(
                "the server supports none of Bolt 5.0-5.4 and 4.0-4.4".into(),
            ));
        }
        let version = (agreed[3], agreed[2]);

        let mut conn = Connection {
            stream,
            version,
            address: address.to_string(),
            out: Vec::new(),
            msg: Vec::new(),
            inbuf: vec![0; 1 << 16].into_boxed_slice(),
            inlo: 0,
            inhi: 0,
        };
        conn.hello(settings)?;
        // Queries may run for long; only the connection phase is bounded by the connect timeout.
        conn.stream.tcp().set_read_timeout(None)?;
        Ok(conn)
    }

    /// HELLO, and from Bolt 5.1 on LOGON, which carries the credentials instead. Both are sent in
    /// one write.
    fn hello(&mut self, settings: &Settings<'_>) -> Result<(), BoltError> {
        let logon = self.version >= (5, 1);
        let agent = self.version >= (5, 3);
        let routing = settings.routing.filter(|_| self.version >= (4, 1));
        let address = self.address.clone();
        let auth = |m: &mut Vec<u8>| match &settings.auth {
            Auth::Basic { user, password } => {
                ps::string(m, "scheme");
                ps::string(m, "basic");
                ps::string(m, "principal");
                ps::string(m, user);
                ps::string(m, "credentials");
                ps::string(m, password);
            }
            Auth::Bearer { token } => {
                ps::string(m, "scheme");
                ps::string(m, "bearer");
                ps::string(m, "credentials");
                ps::string(m, token);
            }
            Auth::None => {
                ps::string(m, "scheme");
                ps::string(m, "none");
            }
        };
        let auth_len = match settings.auth {
            Auth::Basic { .. } => 3,
            Auth::Bearer { .. } => 2,
            Auth::None => 1,
        };
        self.out.clear();
        self.message(|m| {
            ps::struct_header(m, 1, HELLO);
            let fields = 1
                + usize::from(routing.is_some())
                + usize::from(agent)
                + if logon { 0 } else { auth_len };
            ps::map_header(m, fields);
            ps::string(m, "user_agent");
            ps::string(m, USER_AGENT);
            if let Some(ctx) = routing {
                ps::string(m, "routing");
                routing_context(m, &address, ctx);
            }
            if agent {
                ps::string(m, "bolt_agent");
                ps::map_header(m, 3);
                ps::string(m, "product");
                ps::string(m, USER_AGENT);
                ps::string(m, "platform");
                ps::string(
                    m,
                    &format!("{}; {}", std::env::consts::OS, std::env::consts::ARCH),
                );
                ps::string(m, "language");
                ps::string(m, "Rust");
            }
            if !logon {
                auth(m);
            }
        });
        if logon {
            self.message(|m| {
                ps::struct_header(m, 1, LOGON);
                ps::map_header(m, auth_len);
                auth(m);
            });
        }
        self.flush()?;
        self.expect_success()?;
        if logon {
            self.expect_success()?;
        }
        Ok(())
    }

    /// Asks for the routing table of `database` (Bolt 4.3+); `None` when the server is older.
    pub fn route(
        &mut self,
        context: &BTreeMap<String, String>,
        database: Option<&str>,
    ) -> Result<Option<RoutingTable>, BoltError> {
        if self.version < (4, 3) {
            return Ok(None);
        }
        let address = self.address.clone();
        let extra_map = self.version >= (4, 4);
        self.out.clear();
        self.message(|m| {
            ps::struct_header(m, 3, ROUTE);
            routing_context(m, &address, context);
            ps::list_header(m, 0);
            match (extra_map, database) {
                (true, db) => db_map(m, db),
                (false, Some(db)) => ps::string(m, db),
                (false, None) => ps::null(m),
            }
        });
        self.flush()?;
        match self.summary()? {
            Summary::Success(meta) => RoutingTable::parse(&meta).map(Some),
            Summary::Failure { code, message } => {
                self.reset()?;
                Err(BoltError::Server { code, message })
            }
            Summary::Ignored => Err(BoltError::Protocol("ROUTE was ignored".into())),
        }
    }

    /// Has the server compile `query` without running it: `EXPLAIN` in an auto-commit
    /// transaction, with an empty `$batch`.
    pub fn explain(&mut self, database: Option<&str>, query: &str) -> Result<(), BoltError> {
        self.run_autocommit_with(database, &format!("{EXPLAIN_PREFIX}{query}"), |m| {
            ps::map_header(m, 1);
            ps::string(m, "batch");
            ps::list_header(m, 0);
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn version(&self) -> (u8, u8) {
        self.version
    }

    /// Encodes one message (with `body` filling in its PackStream structure) into the outgoing
    /// buffer, chunked as Bolt requires.
    fn message(&mut self, body: impl FnOnce(&mut Vec<u8>)) {
        self.msg.clear();
        body(&mut self.msg);
        for chunk in self.msg.chunks(u16::MAX as usize) {
            self.out
                .extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            self.out.extend_from_slice(chunk);
        }
        self.out.extend_from_slice(&[0, 0]);
    }

    fn flush(&mut self) -> Result<(), BoltError> {
        let r = self
            .stream
            .write_all(&self.out)
            .and_then(|()| self.stream.flush());
        self.out.clear();
        Ok(r?)
    }

    fn read_message(&mut self) -> Result<Ps, BoltError> {
        let mut msg = std::mem::take(&mut self.msg);
        msg.clear();
        let read = (|| loop {
            let mut len = [0u8; 2];
            self.read_in(&mut len)?;
            let len = u16::from_be_bytes(len) as usize;
            if len == 0 {
                if msg.is_empty() {
                    continue; // a NOOP keep-alive chunk
                }
                return Ok::<(), io::Error>(());
            }
            let at = msg.len();
            msg.resize(at + len, 0);
            self.read_in(&mut msg[at..])?;
        })();
        let decoded = read
            .map_err(BoltError::from)
            .and_then(|()| ps::decode(&msg).map_err(|e| BoltError::Protocol(e.0)));
        self.msg = msg;
        decoded
    }

    /// Fills `out` from the receive buffer, refilling it from the stream as needed.
    fn read_in(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            if self.inlo == self.inhi {
                let n = match self.stream.read(&mut self.inbuf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                (self.inlo, self.inhi) = (0, n);
            }
            let take = (self.inhi - self.inlo).min(out.len() - done);
            out[done..done + take].copy_from_slice(&self.inbuf[self.inlo..self.inlo + take]);
            self.inlo += take;
            done += take;
        }
        Ok(())
    }

    /// Reads responses up to the summary of one request: SUCCESS, FAILURE or IGNORED (records of a
    /// result are skipped: a writer has no use for them).
    fn summary(&mut self) -> Result<Summary, BoltError> {
        self.answer(&mut false)
    }

    /// [`Self::summary`], noting in `records` whether a record came before it.
    fn answer(&mut self, records: &mut bool) -> Result<Summary, BoltError> {
        loop {
            match self.read_message()? {
                Ps::Struct(RECORD, _) => *records = true,
                Ps::Struct(SUCCESS, mut f) => {
                    return Ok(Summary::Success(f.pop().unwrap_or(Ps::Null)))
                }
                Ps::Struct(IGNORED, _) => return Ok(Summary::Ignored),
                Ps::Struct(FAILURE, f) => {
                    let meta = match f.into_iter().next() {
                        Some(Ps::Map(m)) => m,
                        _ => Default::default(),
                    };
                    let get = |k: &str| meta.get(k).and_then(Ps::as_str).unwrap_or("").to_string();
                    return Ok(Summary::Failure {
                        code: get("code"),
                        message: get("message"),
                    });
                }
                other => {
                    return Err(BoltError::Protocol(format!(
                        "unexpected response {other:?}"
                    )))
                }
            }
        }
    }

    fn expect_success(&mut self) -> Result<(), BoltError> {
        match self.summary()? {
            Summary::Success(_) => Ok(()),
            Summary::Failure { code, message } => Err(BoltError::Server { code, message }),
            Summary::Ignored => Err(BoltError::Protocol("request ignored".into())),
        }
    }

    /// Runs `query` with parameters in one explicit transaction and commits it. `params` writes the
    /// parameter map's PackStream encoding. On failure the transaction is rolled back by the
    /// server and the connection is reset, ready for the next call.
    pub fn run_in_transaction(
        &mut self,
        database: Option<&str>,
        query: &str,
        params: impl Fn(&mut Vec<u8>),
    ) -> Result<(), BoltError> {
        self.run_all_in_transaction(database, &[(query, &params)])
    }

    /// Several statements, each with its parameters (see [`WriteParams`]), in one explicit transaction, pipelined into
    /// one write like [`Self::run_in_transaction`] (a stream's runs of inserts and deletes).
    pub fn run_all_in_transaction(
        &mut self,
        database: Option<&str>,
        statements: &[(&str, WriteParams<'_>)],
    ) -> Result<(), BoltError> {
        self.out.clear();
        self.queue_begin(database);
        self.queue_statements(statements);
        self.message(|m| ps::struct_header(m, 0, COMMIT));
        self.flush()?;
        // Every request was pipelined: the summaries of BEGIN, RUN and PULL per statement, COMMIT.
        self.summaries(2 + 2 * statements.len(), &mut false)
    }

    /// [`Self::run_all_in_transaction`], but only when `check`, run first in the same transaction,
    /// returns a record; otherwise the transaction is rolled back and the answer is `false`. One
    /// round trip more than a plain transaction (the check's answer decides what is sent next).
    pub fn run_all_if(
        &mut self,
        database: Option<&str>,
        check: (&str, WriteParams<'_>),
        statements: &[(&str, WriteParams<'_>)],
    ) -> Result<bool, BoltError> {
        self.out.clear();
        self.queue_begin(database);
        self.queue_statements(&[check]);
        self.flush()?;
        let mut found = false;
        self.summaries(3, &mut found)?;
        if found {
            self.queue_statements(statements);
        }
        self.message(|m| ps::struct_header(m, 0, if found { COMMIT } else { ROLLBACK }));
        self.flush()?;
        let answers = if found { 1 + 2 * statements.len() } else { 1 };
        self.summaries(answers, &mut false)?;
        Ok(found)
    }

    fn queue_begin(&mut self, database: Option<&str>) {
        self.message(|m| {
            ps::struct_header(m, 1, BEGIN);
            db_map(m, database);
        });
    }

    /// RUN and PULL of each statement, not yet sent.
    fn queue_statements(&mut self, statements: &[(&str, WriteParams<'_>)]) {
        for (query, params) in statements {
            self.message(|m| {
                ps::struct_header(m, 3, RUN);
                ps::string(m, query);
                params(m);
                ps::map_header(m, 0);
            });
            self.message(pull_all);
        }
    }

    /// Reads `n` summaries of pipelined requests (noting in `records` whether any record came)
    /// and fails with the first failure, after resetting the connection.
    fn summaries(&mut self, n: usize, records: &mut bool) -> Result<(), BoltError> {
        let mut failure = None;
        for _ in 0..n {
            match self.answer(records)? {
                Summary::Success(_) | Summary::Ignored => {}
                Summary::Failure { code, message } => {
                    failure.get_or_insert(BoltError::Server { code, message });
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                self.reset()?;
                Err(e)
            }
        }
    }

    /// Runs one statement in an auto-commit transaction (schema statements cannot share a
    /// transaction with writes).
    pub fn run_autocommit(&mut self, database: Option<&str>, query: &str) -> Result<(), BoltError> {
        self.run_autocommit_with(database, query, |m| ps::map_header(m, 0))
    }

    /// Starts a fresh request: RUN `query` in an auto-commit transaction, not yet sent.
    fn autocommit_run(
        &mut self,
        database: Option<&str>,
        query: &str,
        params: impl FnOnce(&mut Vec<u8>),
    ) {
        self.out.clear();
        self.message(|m| {
            ps::struct_header(m, 3, RUN);
            ps::string(m, query);
            params(m);
            db_map(m, database);
        });
    }

    /// [`Self::run_autocommit`] with parameters: `params` writes the parameter map.
    fn run_autocommit_with(
        &mut self,
        database: Option<&str>,
        query: &str,
        params: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), BoltError> {
        self.autocommit_run(database, query, params);
        self.message(pull_all);
        self.flush()?;
        let run = self.summary()?;
        let pull = self.summary()?;
        for s in [run, pull] {
            if let Summary::Failure { code, message } = s {
                self.reset()?;
                return Err(BoltError::Server { code, message });
            }
        }
        Ok(())
    }

    /// Starts a query in an auto-commit transaction and returns the names of its fields; its
    /// records are then read with [`Self::pull`]. For reading (`etlhost verify`).
    pub fn run_read(
        &mut self,
        database: Option<&str>,
        query: &str,
        params: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Vec<String>, BoltError> {
        self.autocommit_run(database, query, params);
        self.flush()?;
        match self.summary()? {
            Summary::Success(Ps::Map(meta)) => Ok(match meta.get("fields") {
                Some(Ps::List(f)) => f.iter().filter_map(Ps::as_str).map(String::from).collect(),
                _ => Vec::new(),
            }),
            Summary::Success(_) => Ok(Vec::new()),
            Summary::Failure { code, message } => {
                self.reset()?;
                Err(BoltError::Server { code, message })
            }
            Summary::Ignored => Err(BoltError::Protocol("RUN was ignored".into())),
        }
    }

    /// Up to `n` more records of the result [`Self::run_read`] started (`-1`: all), and whether
    /// more remain.
    pub fn pull(&mut self, n: i64) -> Result<(Vec<Vec<Ps>>, bool), BoltError> {
        self.out.clear();
        self.message(|m| {
            ps::struct_header(m, 1, PULL);
            ps::map_header(m, 1);
            ps::string(m, "n");
            ps::int(m, n);
        });
        self.flush()?;
        let mut records = Vec::new();
        loop {
            match self.read_message()? {
                Ps::Struct(RECORD, mut f) => match f.pop() {
                    Some(Ps::List(values)) => records.push(values),
                    _ => return Err(BoltError::Protocol("a RECORD without values".into())),
                },
                Ps::Struct(SUCCESS, mut f) => {
                    let more = matches!(f.pop(), Some(Ps::Map(m)) if m.get("has_more") == Some(&Ps::Bool(true)));
                    return Ok((records, more));
                }
                Ps::Struct(FAILURE, f) => {
                    let meta = match f.into_iter().next() {
                        Some(Ps::Map(m)) => m,
                        _ => Default::default(),
                    };
                    let get = |k: &str| meta.get(k).and_then(Ps::as_str).unwrap_or("").to_string();
                    let e = BoltError::Server {
                        code: get("code"),
                        message: get("message"),
                    };
                    self.reset()?;
                    return Err(e);
                }
                Ps::Struct(IGNORED, _) => {
                    return Err(BoltError::Protocol("PULL was ignored".into()))
                }
                other => {
                    return Err(BoltError::Protocol(format!(
                        "unexpected response {other:?}"
                    )))
                }
            }
        }
    }

    /// Clears a failed state so the connection can be used again.
    fn reset(&mut self) -> Result<(), BoltError> {
        self.out.clear();
        self.message(|m| ps::struct_header(m, 0, RESET));
        self.flush()?;
        self.expect_success()
    }
}

/// PULL {n: -1}: every record of the current result.
fn pull_all(m: &mut Vec<u8>) {
    ps::struct_header(m, 1, PULL);
    ps::map_header(m, 1);
    ps::string(m, "n");
    ps::int(m, -1);
}

/// `{db: name}`, or `{}` for the server's default database.
fn db_map(m: &mut Vec<u8>, database: Option<&str>) {
    match database {
        Some(db) => {
            ps::map_header(m, 1);
            ps::string(m, "db");
            ps::string(m, db);
        }
        None => ps::map_header(m, 0),
    }
}

enum Summary {
    Success(Ps),
    Failure { code: String, message: String },
    Ignored,
}

/// Reads the server's choice of version; bytes that are not a Bolt answer are explained.
fn read_agreed(stream: &mut Stream, tls: bool) -> Result<[u8; 4], BoltError> {
    let mut agreed = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match stream.read(&mut agreed[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if got == 0 && !tls && closed(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let expects_tls =
        "the server expects TLS: use bolt+s://, bolt+ssc:// or trusted_ca (neo4j+s://, \
                       neo4j+ssc:// to route)";
    if got == 0 {
        return Err(BoltError::Protocol(if tls {
            "the server closed the connection during the Bolt handshake".into()
        } else {
            // A server that is starting or stopping closes it too (it accepts before it answers).
            "the server closed the connection during the Bolt handshake (a server starting or \
             stopping does this; so does one that expects TLS: then use bolt+s://, bolt+ssc:// \
             or trusted_ca (neo4j+s://, neo4j+ssc:// to route))"
                .into()
        }));
    }
    // A TLS record (0x15 alert, 0x16 handshake) with version 3.x.
    if !tls && matches!(agreed[0], 0x15 | 0x16) && agreed[1] == 3 {
        return Err(BoltError::Protocol(format!(
            "the server answered in TLS: {expects_tls}"
        )));
    }
    if &agreed[..got.min(4)] == b"HTTP" {
        return Err(BoltError::Protocol(
            "the server answered in HTTP: this is not its Bolt port".into(),
        ));
    }
    if got < 4 || agreed[0] != 0 || agreed[1] != 0 {
        return Err(BoltError::Protocol(format!(
            "the server's answer {:02x?} is not a Bolt version",
            &agreed[..got]
        )));
    }
    Ok(agreed)
}

fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The routing context map: the URI's query parameters and the address dialled.
fn routing_context(m: &mut Vec<u8>, address: &str, ctx: &BTreeMap<String, String>) {
    let extra = usize::from(!ctx.contains_key("address"));
    ps::map_header(m, ctx.len() + extra);
    if extra == 1 {
        ps::string(m, "address");
        ps::string(m, address);
    }
    for (k, v) in ctx {
        ps::string(m, k);
        ps::string(m, v);
    }
}

/// The servers a routing table names, by role, and when it expires.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pub writers: Vec<String>,
    pub routers: Vec<String>,
    pub expires: Instant,
}

impl RoutingTable {
    fn parse(meta: &Ps) -> Result<RoutingTable, BoltError> {
        let bad = |what: &str| BoltError::Protocol(format!("malformed routing table: {what}"));
        let rt = match meta {
            Ps::Map(m) => m.get("rt").ok_or_else(|| bad("no `rt`"))?,
            _ => return Err(bad("no metadata")),
        };
        let Ps::Map(rt) = rt else {
            return Err(bad("`rt` is not a map"));
        };
        let ttl = match rt.get("ttl") {
            Some(Ps::Int(t)) => (*t).max(0) as u64,
            _ => return Err(bad("no `ttl`")),
        };
        let mut table = RoutingTable {
            writers: Vec::new(),
            routers: Vec::new(),
            // A TTL beyond a day is capped, so a lost leader is noticed eventually.
            expires: Instant::now() + Duration::from_secs(ttl.min(86_400)),
        };
        let Some(Ps::List(servers)) = rt.get("servers") else {
            return Err(bad("no `servers`"));
        };
        for s in servers {
            let Ps::Map(s) = s else { continue };
            let role = s.get("role").and_then(Ps::as_str).unwrap_or("");
            let Some(Ps::List(addresses)) = s.get("addresses") else {
                continue;
            };
            let addresses = addresses
                .iter()
                .filter_map(Ps::as_str)
                .filter_map(uri::with_default_port);
            match role {
                "WRITE" => table.writers.extend(addresses),
                "ROUTE" => table.routers.extend(addresses),
                _ => {}
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Ps {
        Ps::String(v.into())
    }

    #[test]
    fn routing_tables() {
        let server = |role: &str, addrs: &[&str]| {
            Ps::Map(BTreeMap::from([
                ("role".into(), s(role)),
                (
                    "addresses".into(),
                    Ps::List(addrs.iter().map(|a| s(a)).collect()),
                ),
            ]))
        };
        let rt = Ps::Map(BTreeMap::from([
            ("ttl".into(), Ps::Int(300)),
            ("db".into(), s("neo4j")),
            (
                "servers".into(),
                Ps::List(vec![
                    server("ROUTE", &["a:7687", "b:7687"]),
                    server("WRITE", &["a"]),
                    server("READ", &["b:7688"]),
                ]),
            ),
        ]));
        let meta = Ps::Map(BTreeMap::from([("rt".into(), rt)]));
        let t = RoutingTable::parse(&meta).unwrap();
        assert_eq!(t.writers, ["a:7687"]);
        assert_eq!(t.routers, ["a:7687", "b:7687"]);
        assert!(t.expires > Instant::now() + Duration::from_secs(290));
        let bad = RoutingTable::parse(&Ps::Map(BTreeMap::new())).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "Bolt protocol error: malformed routing table: no `rt`"
        );
    }
}
