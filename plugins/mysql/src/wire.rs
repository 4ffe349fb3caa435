//! A split read over MySQL's client/server protocol directly: one plain TCP connection of the
//! split's own, one prepared statement, and its binary rows parsed in place into the batch format.
//!
//! Why not mysql_async here: it hands each row over as a `Row` of owned values (a vector and an
//! allocation per text cell), which the source then copies into the batch and frees; on the source
//! path that was 2,170 of the 3,736 instructions per row (README, "Performance"). Here a row is a
//! slice of a reused buffer and each cell goes straight into the batch. The packets (handshake,
//! authentication, statements, column definitions, errors) are mysql_common's, the same code
//! mysql_async parses them with, and every cell that is not text is decoded by mysql_common's own
//! binary-value parser, so a value reads the same either way.
//!
//! Only what a split read needs is spoken: TCP without TLS or compression, and authentication by
//! `mysql_native_password` or the fast path of `caching_sha2_password`. For anything else (a URL
//! asking for TLS or a socket, another authentication plugin, a server that wants
//! `caching_sha2_password`'s full exchange) and for any failure before the first row, [`open`]
//! gives up and the split is read through mysql_async as before, whose errors the user knows.

use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{codec, Error, Schema};
use mysql_common::constants::{
    CapabilityFlags, ColumnType as My, Command, DEFAULT_MAX_ALLOWED_PACKET,
};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, Column, ComStmtExecuteRequestBuilder, ErrPacket,
    HandshakePacket, HandshakeResponse, StmtPacket,
};
use mysql_common::proto::MySerialize;
use mysql_common::value::{BinValue, ValueDeserializer};
use tokio::sync::mpsc;

use crate::types::{self, Conv};

/// The largest payload of one packet; a longer one continues in the next.
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// The most `max_allowed_packet` can be: a longer packet is a broken stream, not a row.
const MAX_PACKET_TOTAL: usize = 1 << 30;

/// Why a read over the wire stopped: the server or the connection failed (an error to report), or
/// the connection could not be made the way this module speaks (read through mysql_async instead).
enum Stop {
    Server {
        code: u16,
        state: String,
        message: String,
    },
    Io(std::io::Error),
    /// A value its column cannot take (as [`types::push`] words it).
    Value(String),
    Unsupported(String),
}

impl Stop {
    fn into_error(self, secrets: &[&str]) -> Error {
        match self {
            Stop::Value(e) => Error::permanent(e),
            e => Error {
                retryable: matches!(e, Stop::Io(_)),
                message: redact_secrets(&format!("reading failed: {e}"), secrets),
            },
        }
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // As mysql_async words them, so a failure reads the same on either path.
            Stop::Server {
                code,
                state,
                message,
            } => write!(f, "ERROR {code} ({state}): {message}"),
            Stop::Io(e) => write!(f, "Input/output error: {e}"),
            Stop::Value(why) | Stop::Unsupported(why) => f.write_str(why),
        }
    }
}

/// One connection, its packets framed by hand.
struct Conn {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
    seq: u8,
    caps: CapabilityFlags,
    /// The payload of the last packet read.
    packet: Vec<u8>,
    out: Vec<u8>,
}

impl Conn {
    fn read(&mut self) -> Result<(), Stop> {
        self.packet.clear();
        loop {
            let mut head = [0u8; 4];
            self.rd.read_exact(&mut head)?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
            self.seq = head[3].wrapping_add(1);
            let at = self.packet.len();
            if at + len > MAX_PACKET_TOTAL {
                return Err(malformed(
                    "a packet longer than MySQL's max_allowed_packet can be",
                ));
            }
            self.packet.resize(at + len, 0);
            self.rd.read_exact(&mut self.packet[at..])?;
            if len < MAX_PAYLOAD {
                return Ok(());
            }
        }
    }

    /// Sends `self.out` as the next packet(s) of the exchange: a payload of 16 MiB or more goes
    /// in pieces, ended by a shorter (maybe empty) one.
    fn send(&mut self) -> Result<(), Stop> {
        let mut framed = Vec::with_capacity(self.out.len() + 8);
        let mut rest = &self.out[..];
        loop {
            let n = rest.len().min(MAX_PAYLOAD);
            framed.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            framed.push(self.seq);
            self.seq = self.seq.wrapping_add(1);
            framed.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if n < MAX_PAYLOAD {
                break;
            }
        }
        self.wr.write_all(&framed)?;
        Ok(())
    }

    fn command(&mut self, cmd: Command, body: &[u8]) -> Result<(), Stop> {
        self.seq = 0;
        self.out.clear();
        self.out.push(cmd as u8);
        self.out.extend_from_slice(body);
        self.send()
    }

    /// The server's error, if the last packet is one.
    fn error(&self) -> Option<Stop> {
        if self.packet.first() != Some(&0xFF) {
            return None;
        }
        Some(
            match ParseBuf(&self.packet).parse::<ErrPacket<'_>>(self.caps) {
                Ok(ErrPacket::Error(e)) => Stop::Server {
                    code: e.error_code(),
                    state: e
                        .sql_state_ref()
                        .map_or_else(|| "HY000".into(), |s| s.as_str().into_owned()),
                    message: String::from_utf8_lossy(e.message_ref()).into_owned(),
                },
                _ => Stop::Unsupported("an error packet that does not parse".into()),
            },
        )
    }

    /// Reads an OK packet, or fails with the server's error.
    fn ok(&mut self) -> Result<(), Stop> {
        self.read()?;
        match self.error() {
            Some(e) => Err(e),
            None if self.packet.first() == Some(&0x00) => Ok(()),
            None => Err(Stop::Unsupported("no OK packet where one was due".into())),
        }
    }

    /// The packet after the last row (EOF, or OK with an EOF header): a binary row starts with
    /// 0x00.
    fn is_end(&self) -> bool {
        self.packet.first() == Some(&0xFE)
    }

    /// Column definitions, `n` of them, and the EOF after them on servers that send one.
    fn columns(&mut self, n: usize) -> Result<Vec<Column>, Stop> {
        let mut cols = Vec::with_capacity(n);
        for _ in 0..n {
            self.read()?;
            let c = ParseBuf(&self.packet)
                .parse::<Column>(())
                .map_err(|e| Stop::Unsupported(format!("a column definition: {e}")))?;
            cols.push(c);
        }
        if n > 0 && !self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            self.read()?;
        }
        Ok(cols)
    }
}

fn connect(opts: &mysql_async::Opts, timeout: Duration) -> Result<Conn, Stop> {
    if opts.ssl_opts().is_some() || opts.socket().is_some() || opts.compression().is_some() {
        return Err(Stop::Unsupported("TLS, a socket or compression".into()));
    }
    if !opts.init().is_empty() {
        return Err(Stop::Unsupported("init statements".into()));
    }
    let addr = (opts.ip_or_hostname(), opts.tcp_port())
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Stop::Unsupported("no address".into()))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    // A server that accepts but never answers must not hold the split: the handshake gets the
    // connection's timeout (the statement none: a large sort may take long to its first row).
    stream.set_read_timeout(Some(timeout))?;
    let mut c = Conn {
        wr: stream.try_clone()?,
        rd: BufReader::with_capacity(256 * 1024, stream),
        seq: 0,
        caps: CapabilityFlags::empty(),
        packet: Vec::new(),
        out: Vec::new(),
    };
    c.read()?;
    if let Some(e) = c.error() {
        return Err(e);
    }
    let hs = ParseBuf(&c.packet)
        .parse::<HandshakePacket<'_>>(())
        .map_err(|e| Stop::Unsupported(format!("the handshake: {e}")))?;
    let mut nonce = hs.scramble_1_ref().to_vec();
    nonce.extend_from_slice(hs.scramble_2_ref().unwrap_or_default());
    nonce.resize(20, 0);
    let wanted = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    c.caps = hs.capabilities() & wanted;
    if !c
        .caps
        .contains(CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_PLUGIN_AUTH)
    {
        return Err(Stop::Unsupported("an old server".into()));
    }
    let version = hs
        .maria_db_server_version_parsed()
        .or_else(|| hs.server_version_parsed())
        .unwrap_or((0, 0, 0));
    let plugin = hs
        .auth_plugin()
        .map(|p| p.into_owned())
        .unwrap_or(AuthPlugin::MysqlNativePassword);
    let pass = opts.pass().unwrap_or_default().as_bytes();
    let data = scramble(&plugin, &nonce, pass)?;
    let db = opts.db_name().filter(|d| !d.is_empty());
    if db.is_none() {
        c.caps.remove(CapabilityFlags::CLIENT_CONNECT_WITH_DB);
    }
    let response = HandshakeResponse::new(
        Some(data.as_slice()),
        version,
        opts.user().map(str::as_bytes),
        db.map(str::as_bytes),
        Some(plugin.clone()),
        c.caps,
        None,
        DEFAULT_MAX_ALLOWED_PACKET as u32,
    );
    c.out.clear();
    response.serialize(&mut c.out);
    c.send()?;
    authenticate(&mut c, plugin, pass)?;
    c.command(Command::COM_QUERY, crate::SESSION_SETUP.as_bytes())?;
    c.ok()?;
    c.wr.set_read_timeout(None)?;
    Ok(c)
}

fn scramble(plugin: &AuthPlugin<'_>, nonce: &[u8], pass: &[u8]) -> Result<Vec<u8>, Stop> {
    use mysql_common::scramble::{scramble_native, scramble_sha256};
    let data = match plugin {
        AuthPlugin::MysqlNativePassword => scramble_native(nonce, pass).map(|d| d.to_vec()),
        AuthPlugin::CachingSha2Password => scramble_sha256(nonce, pass).map(|d| d.to_vec()),
        other => {
            return Err(Stop::Unsupported(format!(
                "authentication by {}",
                String::from_utf8_lossy(other.as_bytes())
            )))
        }
    };
    Ok(data.unwrap_or_default())
}

/// After the handshake response: OK, a switch to another plugin, or caching_sha2_password's
/// verdict.
fn authenticate(c: &mut Conn, mut plugin: AuthPlugin<'static>, pass: &[u8]) -> Result<(), Stop> {
    loop {
        c.read()?;
        if let Some(e) = c.error() {
            return Err(e);
        }
        match c.packet.first() {
            Some(0x00) => return Ok(()),
            Some(0xFE) => {
                let switch = ParseBuf(&c.packet)
                    .parse::<AuthSwitchRequest<'_>>(())
                    .map_err(|e| Stop::Unsupported(format!("an auth switch: {e}")))?;
                plugin = switch.auth_plugin().into_owned();
                let mut nonce = switch.plugin_data().to_vec();
                // The nonce ends with a NUL that is not part of it.
                if nonce.last() == Some(&0) {
                    nonce.pop();
                }
                let data = scramble(&plugin, &nonce, pass)?;
                c.out.clear();
                c.out.extend_from_slice(&data);
                c.send()?;
            }
            // caching_sha2_password: 3 is "fast authentication succeeded", an OK follows; 4 asks
            // for the full exchange, which needs TLS or the server's RSA key.
            Some(0x01) if plugin == AuthPlugin::CachingSha2Password => {
                if c.packet.get(1) != Some(&0x03) {
                    return Err(Stop::Unsupported(
                        "caching_sha2_password's full authentication".into(),
                    ));
                }
            }
            _ => return Err(Stop::Unsupported("an unknown authentication step".into())),
        }
    }
}

/// A split's statement executed over its own connection, at its first row.
pub struct Started {
    conn: Conn,
    columns: Vec<Column>,
}

/// Connects and executes `sql` with `params`; `None` (and why, at info level: the old path is
/// slower, and a user should be able to tell why a job took it) when the split is better read
/// through mysql_async, which also reports any error there was.
pub fn open(
    opts: &mysql_async::Opts,
    timeout: Duration,
    sql: &str,
    params: &[mysql_async::Value],
) -> Option<Started> {
    let start = || -> Result<Started, Stop> {
        let mut conn = connect(opts, timeout)?;
        conn.command(Command::COM_STMT_PREPARE, sql.as_bytes())?;
        conn.read()?;
        if let Some(e) = conn.error() {
            return Err(e);
        }
        let stmt = ParseBuf(&conn.packet)
            .parse::<StmtPacket>(())
            .map_err(|e| Stop::Unsupported(format!("a prepared statement: {e}")))?;
        conn.columns(stmt.num_params() as usize)?;
        conn.columns(stmt.num_columns() as usize)?;
        let (request, long_data) =
            ComStmtExecuteRequestBuilder::new(stmt.statement_id()).build(params);
        if long_data {
            return Err(Stop::Unsupported(
                "parameters too long for one packet".into(),
            ));
        }
        conn.seq = 0;
        conn.out.clear();
        request.serialize(&mut conn.out);
        conn.send()?;
        conn.read()?;
        if let Some(e) = conn.error() {
            return Err(e);
        }
        let n = ParseBuf(&conn.packet)
            .checked_eat_lenenc_int()
            .filter(|n| *n > 0)
            .ok_or_else(|| Stop::Unsupported("a statement that returns no rows".into()))?;
        let columns = conn.columns(n as usize)?;
        Ok(Started { conn, columns })
    };
    match start() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(
                "the built-in MySQL client cannot read this split ({e}): reading it through mysql_async"
            );
            None
        }
    }
}

/// Where the batches go, and where their buffers come back once the reader has copied them.
pub struct Out<'a> {
    pub tx: &'a mpsc::Sender<Result<Vec<u8>, Error>>,
    pub spare: &'a std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Out<'_> {
    fn builder(&self, schema: &Schema) -> codec::Builder {
        codec::Builder::reusing(schema, self.spare.try_recv().unwrap_or_default())
    }
}

impl Started {
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Streams the rows into `tx` in batches of `fetch_size`, as the mysql_async path does, or
    /// the error that stopped them.
    pub fn stream(
        mut self,
        schema: &Schema,
        convs: &[Conv],
        fetch_size: usize,
        out: Out<'_>,
        secrets: &[&str],
    ) {
        match self.rows(schema, convs, fetch_size, &out) {
            Ok(()) => {
                let _ = self.conn.command(Command::COM_QUIT, &[]);
            }
            Err(e) => {
                let _ = out.tx.blocking_send(Err(e.into_error(secrets)));
            }
        }
    }

    fn rows(
        &mut self,
        schema: &Schema,
        convs: &[Conv],
        fetch_size: usize,
        out: &Out<'_>,
    ) -> Result<(), Stop> {
        let mut batch = out.builder(schema);
        // The binary row: 0x00, a NULL bitmap offset by two bits, then the non-NULL values.
        let bitmap = (self.columns.len() + 7 + 2) / 8;
        loop {
            self.conn.read()?;
            if let Some(e) = self.conn.error() {
                return Err(e);
            }
            if self.conn.is_end() {
                break;
            }
            let row = &self.conn.packet;
            if row.len() < 1 + bitmap || row[0] != 0x00 {
                return Err(malformed("a row packet that is not a binary row"));
            }
            let nulls = &row[1..1 + bitmap];
            let mut buf = ParseBuf(&row[1 + bitmap..]);
            for (i, col) in self.columns.iter().enumerate() {
                let bit = i + 2;
                if nulls[bit / 8] & (1 << (bit % 8)) != 0 {
                    batch.push_null();
                } else if let Err(e) = cell(&mut buf, col, convs[i], &mut batch)? {
                    return Err(Stop::Value(format!("column `{}`: {e}", schema[i].name)));
                }
            }
            batch.end_row();
            if batch.rows() == fetch_size {
                let full = std::mem::replace(&mut batch, out.builder(schema));
                if out.tx.blocking_send(Ok(full.finish())).is_err() {
                    return Ok(()); // the host stopped reading this split
                }
            }
        }
        if !batch.is_empty() {
            let _ = out.tx.blocking_send(Ok(batch.finish()));
        }
        Ok(())
    }
}

fn malformed(what: &str) -> Stop {
    Stop::Io(std::io::Error::other(what))
}

/// One non-NULL cell into the batch: text straight from the packet, anything else through
/// mysql_common's binary-value parser and [`types::push`], as mysql_async would have made it.
/// The outer error is a malformed packet, the inner one a value the column cannot take.
fn cell(
    buf: &mut ParseBuf<'_>,
    col: &Column,
    conv: Conv,
    out: &mut codec::Builder,
) -> std::io::Result<Result<(), String>> {
    let eof = || std::io::Error::other("a row packet that ends early");
    match col.column_type() {
        My::MYSQL_TYPE_STRING
        | My::MYSQL_TYPE_VAR_STRING
        | My::MYSQL_TYPE_BLOB
        | My::MYSQL_TYPE_TINY_BLOB
        | My::MYSQL_TYPE_MEDIUM_BLOB
        | My::MYSQL_TYPE_LONG_BLOB
        | My::MYSQL_TYPE_SET
        | My::MYSQL_TYPE_ENUM
        | My::MYSQL_TYPE_DECIMAL
        | My::MYSQL_TYPE_VARCHAR
        | My::MYSQL_TYPE_BIT
        | My::MYSQL_TYPE_NEWDECIMAL
        | My::MYSQL_TYPE_GEOMETRY
        | My::MYSQL_TYPE_VECTOR
        | My::MYSQL_TYPE_JSON => {
            let b = buf.checked_eat_lenenc_str().ok_or_else(eof)?;
            Ok(types::push_bytes(out, b, conv))
        }
        ty => {
            let v = buf
                .parse::<ValueDeserializer<BinValue>>((ty, col.flags()))?
                .0;
            Ok(types::push(out, &v, conv))
        }
    }
}
