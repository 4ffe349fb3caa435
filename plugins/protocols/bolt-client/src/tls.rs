//! TLS for Bolt through rustls (no OpenSSL), with the configurations and certificate checks of
//! `etlhost-tls` (ring as the crypto provider).
//!
//! Certificates are checked against the host name of the address connected to. The three kinds of
//! trust are those of [`Trust`]; `+ssc` accepts any certificate but still checks the handshake
//! signatures, so the session key belongs to whoever holds the certificate.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use etlhost_tls::{CaFileError, Check};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection};

use crate::uri::Trust;

/// A TLS client configuration for `trust`; the error says what is wrong with the trust setting.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let check = match trust {
        Trust::Any => Check::Nothing,
        Trust::System => {
            let (roots, why) = etlhost_tls::system_roots();
            if roots.is_empty() {
                let why = why.map(|e| format!(": {e}")).unwrap_or_default();
                return Err(format!(
                    "no system root certificates found{why} (install ca-certificates, or use \
                     bolt:// with trusted_ca)"
                ));
            }
            Check::ChainAndName(roots)
        }
        Trust::Ca(path) => {
            let shown = path.display();
            let roots = etlhost_tls::ca_file(path).map_err(|e| match e {
                CaFileError::Read(e) => format!("cannot read {shown}: {e}"),
                CaFileError::NotPem(e) => {
                    format!("{shown} is not a PEM certificate file: {}", pem_error(e))
                }
                CaFileError::Unusable(e) => {
                    format!("{shown} holds a certificate that cannot be a trust root: {e}")
                }
                CaFileError::Empty => {
                    format!("{shown} holds no certificate (expected -----BEGIN CERTIFICATE-----)")
                }
            })?;
            Check::ChainAndName(roots)
        }
    };
    let config = etlhost_tls::client_config(check).map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(Arc::new(config))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}

/// Runs the TLS handshake on `sock` for `host`; the error is a sentence naming the cause.
pub fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    mut sock: TcpStream,
) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a valid TLS server name"))?;
    let mut conn =
        ClientConnection::new(config, name).map_err(|e| format!("TLS setup failed: {e}"))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(explain(&e, host));
        }
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Turns a failed handshake into what a user can act on.
fn explain(e: &io::Error, host: &str) -> String {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => "the server's certificate is not trusted: no \
                 trusted root issued it (use trusted_ca with the CA's PEM file, or bolt+ssc:// / \
                 neo4j+ssc:// to accept it unverified)"
                .to_string(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for the host name `{host}` (it names \
                     other hosts; connect by a name the certificate lists)"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_string()
            }
            other => format!("the server's certificate is invalid: {other:?}"),
        },
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }) => {
            format!(
                "the server answered the TLS handshake with something else: {}",
                not_tls()
            )
        }
        Some(other) => format!("TLS handshake failed: {other}"),
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        ) =>
        {
            format!(
                "the server closed the connection during the TLS handshake: {}",
                not_tls()
            )
        }
        None => format!("TLS handshake failed: {e}"),
    }
}

fn not_tls() -> String {
    "it does not speak TLS on this port (use bolt:// or neo4j:// without +s/+ssc and without \
     trusted_ca)"
        .to_string()
}

/// A Bolt byte stream, plaintext or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
