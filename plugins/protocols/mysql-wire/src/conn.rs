//! One connection, its packets framed by hand; the handshake and authentication.

use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use mysql_common::constants::{CapabilityFlags, Command, DEFAULT_MAX_ALLOWED_PACKET};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, Column, ErrPacket, HandshakePacket, HandshakeResponse,
};
use mysql_common::proto::MySerialize;

use crate::{Config, Error};

/// The largest payload of one packet; a longer one continues in the next.
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// The most `max_allowed_packet` can be: a longer packet is a broken stream, not a row.
const MAX_PACKET_TOTAL: usize = 1 << 30;

/// A connection to a MySQL or MariaDB server, logged in, with no statement running.
pub struct Conn {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
    pub(crate) seq: u8,
    caps: CapabilityFlags,
    /// The payload of the last packet read.
    pub(crate) packet: Vec<u8>,
    pub(crate) out: Vec<u8>,
}

impl Conn {
    /// Connects over TCP, logs in and runs [`Config::init`]. The connection phase is bounded by
    /// [`Config::timeout`]; statements are not (a large sort may take long to its first row).
    pub fn connect(config: &Config) -> Result<Conn, Error> {
        let addr = (config.host.as_str(), config.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Unsupported("no address".into()))?;
        let stream = TcpStream::connect_timeout(&addr, config.timeout)?;
        stream.set_nodelay(true)?;
        // A server that accepts but never answers must not hold the caller.
        stream.set_read_timeout(Some(config.timeout))?;
        let mut c = Conn {
            wr: stream.try_clone()?,
            rd: BufReader::with_capacity(256 * 1024, stream),
            seq: 0,
            caps: CapabilityFlags::empty(),
            packet: Vec::new(),
            out: Vec::new(),
        };
        c.handshake(config)?;
        for sql in &config.init {
            c.query(sql)?;
        }
        c.wr.set_read_timeout(None)?;
        Ok(c)
    }

    /// The server's greeting, the client's answer, and authentication.
    fn handshake(&mut self, config: &Config) -> Result<(), Error> {
        self.read()?;
        if let Some(e) = self.error() {
            return Err(e);
        }
        let hs = ParseBuf(&self.packet)
            .parse::<HandshakePacket<'_>>(())
            .map_err(|e| Error::Unsupported(format!("the handshake: {e}")))?;
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
        self.caps = hs.capabilities() & wanted;
        if !self
            .caps
            .contains(CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_PLUGIN_AUTH)
        {
            return Err(Error::Unsupported("an old server".into()));
        }
        let version = hs
            .maria_db_server_version_parsed()
            .or_else(|| hs.server_version_parsed())
            .unwrap_or((0, 0, 0));
        let plugin = hs
            .auth_plugin()
            .map(|p| p.into_owned())
            .unwrap_or(AuthPlugin::MysqlNativePassword);
        let pass = config.password.as_bytes();
        let data = scramble(&plugin, &nonce, pass)?;
        let db = config.database.as_deref().filter(|d| !d.is_empty());
        if db.is_none() {
            self.caps.remove(CapabilityFlags::CLIENT_CONNECT_WITH_DB);
        }
        let response = HandshakeResponse::new(
            Some(data.as_slice()),
            version,
            config.user.as_deref().map(str::as_bytes),
            db.map(str::as_bytes),
            Some(plugin.clone()),
            self.caps,
            None,
            DEFAULT_MAX_ALLOWED_PACKET as u32,
        );
        self.out.clear();
        response.serialize(&mut self.out);
        self.send()?;
        self.authenticate(plugin, pass)
    }

    /// After the handshake response: OK, a switch to another plugin, or caching_sha2_password's
    /// verdict.
    fn authenticate(&mut self, mut plugin: AuthPlugin<'static>, pass: &[u8]) -> Result<(), Error> {
        loop {
            self.read()?;
            if let Some(e) = self.error() {
                return Err(e);
            }
            match self.packet.first() {
                Some(0x00) => return Ok(()),
                Some(0xFE) => {
                    let switch = ParseBuf(&self.packet)
                        .parse::<AuthSwitchRequest<'_>>(())
                        .map_err(|e| Error::Unsupported(format!("an auth switch: {e}")))?;
                    plugin = switch.auth_plugin().into_owned();
                    let mut nonce = switch.plugin_data().to_vec();
                    // The nonce ends with a NUL that is not part of it.
                    if nonce.last() == Some(&0) {
                        nonce.pop();
                    }
                    let data = scramble(&plugin, &nonce, pass)?;
                    self.out.clear();
                    self.out.extend_from_slice(&data);
                    self.send()?;
                }
                // caching_sha2_password: 3 is "fast authentication succeeded", an OK follows; 4
                // asks for the full exchange, which needs TLS or the server's RSA key.
                Some(0x01) if plugin == AuthPlugin::CachingSha2Password => {
                    if self.packet.get(1) != Some(&0x03) {
                        return Err(Error::Unsupported(
                            "caching_sha2_password's full authentication".into(),
                        ));
                    }
                }
                _ => return Err(Error::Unsupported("an unknown authentication step".into())),
            }
        }
    }

    /// Runs a statement that returns no rows (`SET`, DDL, `INSERT`) in the text protocol.
    pub fn query(&mut self, sql: &str) -> Result<(), Error> {
        self.command(Command::COM_QUERY, sql.as_bytes())?;
        self.ok()
    }

    /// Says goodbye; the server's answer is not awaited.
    pub fn quit(mut self) {
        let _ = self.command(Command::COM_QUIT, &[]);
    }

    /// Reads the next packet (joining one split over several) into `self.packet`.
    #[inline]
    pub(crate) fn read(&mut self) -> Result<(), Error> {
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
    pub(crate) fn send(&mut self) -> Result<(), Error> {
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

    pub(crate) fn command(&mut self, cmd: Command, body: &[u8]) -> Result<(), Error> {
        self.seq = 0;
        self.out.clear();
        self.out.push(cmd as u8);
        self.out.extend_from_slice(body);
        self.send()
    }

    /// The server's error, if the last packet is one.
    #[inline]
    pub(crate) fn error(&self) -> Option<Error> {
        if self.packet.first() != Some(&0xFF) {
            return None;
        }
        Some(
            match ParseBuf(&self.packet).parse::<ErrPacket<'_>>(self.caps) {
                Ok(ErrPacket::Error(e)) => Error::Server {
                    code: e.error_code(),
                    state: e
                        .sql_state_ref()
                        .map_or_else(|| "HY000".into(), |s| s.as_str().into_owned()),
                    message: String::from_utf8_lossy(e.message_ref()).into_owned(),
                },
                _ => Error::Unsupported("an error packet that does not parse".into()),
            },
        )
    }

    /// Reads an OK packet, or fails with the server's error.
    fn ok(&mut self) -> Result<(), Error> {
        self.read()?;
        match self.error() {
            Some(e) => Err(e),
            None if self.packet.first() == Some(&0x00) => Ok(()),
            None => Err(Error::Unsupported("no OK packet where one was due".into())),
        }
    }

    /// Column definitions, `n` of them, and the EOF after them on servers that send one.
    pub(crate) fn columns(&mut self, n: usize) -> Result<Vec<Column>, Error> {
        let mut cols = Vec::with_capacity(n);
        for _ in 0..n {
            self.read()?;
            let c = ParseBuf(&self.packet)
                .parse::<Column>(())
                .map_err(|e| Error::Unsupported(format!("a column definition: {e}")))?;
            cols.push(c);
        }
        if n > 0 && !self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            self.read()?;
        }
        Ok(cols)
    }
}

fn scramble(plugin: &AuthPlugin<'_>, nonce: &[u8], pass: &[u8]) -> Result<Vec<u8>, Error> {
    use mysql_common::scramble::{scramble_native, scramble_sha256};
    let data = match plugin {
        AuthPlugin::MysqlNativePassword => scramble_native(nonce, pass).map(|d| d.to_vec()),
        AuthPlugin::CachingSha2Password => scramble_sha256(nonce, pass).map(|d| d.to_vec()),
        other => {
            return Err(Error::Unsupported(format!(
                "authentication by {}",
                String::from_utf8_lossy(other.as_bytes())
            )))
        }
    };
    Ok(data.unwrap_or_default())
}

pub(crate) fn malformed(what: &str) -> Error {
    Error::Io(std::io::Error::other(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connection to a peer the test plays, past the handshake.
    fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let conn = Conn {
            wr: client.try_clone().unwrap(),
            rd: BufReader::new(client),
            seq: 0,
            caps: CapabilityFlags::CLIENT_PROTOCOL_41,
            packet: Vec::new(),
            out: Vec::new(),
        };
        (conn, server)
    }

    fn frame(payload: &[u8], seq: u8) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        f.push(seq);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_payload_of_16_mib_or_more_is_joined_from_its_packets() {
        let (mut conn, mut server) = pair();
        let long = vec![7u8; MAX_PAYLOAD];
        let writer = std::thread::spawn(move || {
            server.write_all(&frame(&long, 0)).unwrap();
            server.write_all(&frame(b"end", 1)).unwrap();
            server.write_all(&frame(&long, 2)).unwrap();
            server.write_all(&frame(b"", 3)).unwrap();
            server.write_all(&frame(b"\x00ok", 4)).unwrap();
            server
        });
        conn.read().unwrap();
        assert_eq!(conn.packet.len(), MAX_PAYLOAD + 3);
        assert!(conn.packet.ends_with(b"\x07end"));
        conn.read().unwrap();
        assert_eq!(conn.packet.len(), MAX_PAYLOAD);
        conn.read().unwrap();
        assert_eq!(conn.packet, b"\x00ok");
        assert_eq!(
            conn.seq, 5,
            "the next packet's sequence number follows the last read"
        );
        writer.join().unwrap();
    }

    #[test]
    fn a_long_payload_is_sent_in_pieces_ended_by_a_shorter_one() {
        let (mut conn, mut server) = pair();
        // Read while the client writes: 16 MiB do not fit in the socket's buffers.
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 4 + MAX_PAYLOAD + 4];
            server.read_exact(&mut got).unwrap();
            got
        });
        conn.out = vec![1u8; MAX_PAYLOAD];
        conn.send().unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got[..4], [0xFF, 0xFF, 0xFF, 0]);
        assert_eq!(got[4 + MAX_PAYLOAD..], [0, 0, 0, 1]);
    }

    #[test]
    fn a_server_error_packet_reads_as_mysql_async_words_it() {
        let (mut conn, mut server) = pair();
        let mut err = vec![0xFF];
        err.extend_from_slice(&1146u16.to_le_bytes());
        err.extend_from_slice(b"#42S02Table 't' doesn't exist");
        server.write_all(&frame(&err, 1)).unwrap();
        conn.read().unwrap();
        let e = conn.error().unwrap();
        assert_eq!(e.to_string(), "ERROR 1146 (42S02): Table 't' doesn't exist");
        assert!(!e.is_io());
    }
}
