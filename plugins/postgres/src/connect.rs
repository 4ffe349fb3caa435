//! Connecting: tokio-postgres's Config from the options, and TLS by rustls in libpq's modes.
//! SCRAM-SHA-256 and md5 are tokio-postgres's own.

use std::sync::Arc;
use std::time::Duration;

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{ConfigError, Error, OpenError};
use etlhost_tls::{CaFileError, Check, PresentedName, SetupError};
use rustls::RootCertStore;
use tokio_postgres::config::SslMode;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::options::{PgOptions, TlsMode};

/// What every connection needs: the server's address and credentials, the TLS connector, and
/// the secrets to keep out of messages.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    pub(crate) timeout: Duration,
    secrets: Vec<String>,
    /// `host:port/database`, for messages.
    pub(crate) target: String,
    /// Under `verify-ca`, a name the server's certificate was issued for when it is not the
    /// host in `url`: the replication session checks names, and connects by this one.
    pub(crate) certificate_name: Arc<PresentedName>,
}

impl Connector {
    pub(crate) fn new(o: &PgOptions) -> Result<Connector, OpenError> {
        let mut config: tokio_postgres::Config = o
            .url
            .parse()
            .map_err(|e| ConfigError::new("url", redact_secrets(&format!("{e}"), &[])))?;
        if let Some(u) = &o.user {
            config.user(u);
        }
        if let Some(p) = &o.password {
            config.password(p);
        }
        if config.get_user().is_none() {
            return Err(
                ConfigError::new("user", "missing (give `user`, or a user in `url`)").into(),
            );
        }
        let timeout = Duration::from_secs(o.connection_check_timeout_sec.max(1));
        config.connect_timeout(timeout);
        config.application_name("etlhost");
        config.ssl_mode(match o.tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let certificate_name = Arc::new(PresentedName::default());
        let tls = MakeRustlsConnect::new(tls_config(
            o.tls,
            o.trusted_ca.as_deref(),
            &certificate_name,
        )?);
        let mut secrets = vec![o.url.clone()];
        secrets.extend(o.password.clone());
        if let Some(p) = config.get_password() {
            secrets.push(String::from_utf8_lossy(p).into_owned());
        }
        let target = target(&config);
        Ok(Connector {
            config,
            tls,
            timeout,
            secrets,
            target,
            certificate_name,
        })
    }

    /// A new connection, its driver spawned on the plugin's runtime.
    pub(crate) async fn connect(&self) -> Result<Client, Error> {
        let connecting = self.config.connect(self.tls.clone());
        let (client, connection) = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.connect_error(e)),
            Err(_) => {
                return Err(Error::retryable(format!(
                    "cannot connect to PostgreSQL at {}: no connection within {} s \
                     (connection_check_timeout_sec)",
                    self.target,
                    self.timeout.as_secs()
                )))
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }

    fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        let detail = self.redact(&detail(&e));
        let (retryable, hint) = match e.code().map(|c| c.code()) {
            // invalid_password, invalid_authorization_specification
            Some("28P01") | Some("28000") => (
                false,
                "check `user` and `password`, and the server's pg_hba.conf",
            ),
            // invalid_catalog_name
            Some("3D000") => (false, "check the database in `url`"),
            // too_many_connections, cannot_connect_now
            Some("53300") | Some("57P03") => (true, "the server is busy or starting"),
            Some(_) => (false, ""),
            None if detail.contains("server does not support TLS") => (
                false,
                "the server has TLS off: turn `ssl` on there, or set `tls: prefer` or `disable`",
            ),
            // No SQLSTATE: the network or TLS (a certificate that does not check out).
            None if detail.contains("UnknownIssuer") => (
                false,
                "the server's certificate is not signed by an authority in `trusted_ca` (the \
                 system's when not given); give the CA that signed it, or `tls: require` to \
                 encrypt without checking",
            ),
            None if detail.contains("not valid for name") => (
                false,
                "`verify-full` checks the host in `url` against the certificate: connect by a \
                 name it was issued for, or use `verify-ca`",
            ),
            None if is_tls_error(&e) => (false, "check `tls` and `trusted_ca`"),
            None => (true, "check the host and port in `url`"),
        };
        let mut message = format!("cannot connect to PostgreSQL at {}: {detail}", self.target);
        if !hint.is_empty() {
            message.push_str(&format!(" ({hint})"));
        }
        Error { retryable, message }
    }

    /// A query's error: the server's message with its context; retryable when the connection
    /// broke or the server asks to try again (serialization failure, deadlock).
    pub(crate) fn error(&self, context: &str, e: &tokio_postgres::Error) -> Error {
        let retryable = match e.code().map(|c| c.code()) {
            Some(code) => {
                matches!(
                    code,
                    "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
                ) || code.starts_with("08")
            }
            None => {
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
        };
        Error {
            retryable,
            message: self.redact(&format!("{context}: {}", detail(e))),
        }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        redact_secrets(text, &secrets)
    }
}

/// The server's message (with its detail and hint) or the client's, without tokio-postgres's
/// generic prefix ("db error: ").
pub(crate) fn detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = db.message().to_string();
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(&format!(": {text}"));
        }
        source = inner.source();
    }
    s
}

fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if inner.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                return true;
            }
        }
        source = inner.source();
    }
    e.to_string().contains("TLS") || e.to_string().contains("SSL")
}

fn target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("{host}:{port}/{db}")
}

/// The rustls configuration for a mode. libpq's `prefer` and `require` encrypt without checking
/// whom they talk to; given `trusted_ca`, they check the chain as `verify-ca` does.
fn tls_config(
    mode: TlsMode,
    trusted_ca: Option<&str>,
    seen: &Arc<PresentedName>,
) -> Result<rustls::ClientConfig, OpenError> {
    let roots = match trusted_ca {
        Some(path) => Some(load_ca(path)?),
        None if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) => Some(system_roots()?),
        None => None,
    };
    let check = match roots {
        None => Check::Nothing,
        Some(roots) if mode == TlsMode::VerifyFull => Check::ChainAndName(roots),
        Some(roots) => Check::Chain {
            roots,
            seen: Some(seen.clone()),
        },
    };
    etlhost_tls::client_config(check).map_err(|e| match e {
        SetupError::Roots(e) => {
            ConfigError::new("trusted_ca", format!("cannot use it: {e}")).into()
        }
        SetupError::Protocol(e) => Error::permanent(format!("cannot set up TLS: {e}")).into(),
    })
}

fn load_ca(path: &str) -> Result<RootCertStore, OpenError> {
    etlhost_tls::ca_file(std::path::Path::new(path)).map_err(|e| {
        let why = match e {
            CaFileError::Read(e) => format!("cannot read it: {e}"),
            CaFileError::NotPem(e) => format!("not a PEM certificate: {e}"),
            CaFileError::Unusable(e) => format!("not a usable CA certificate: {e}"),
            CaFileError::Empty => {
                "no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)".into()
            }
        };
        ConfigError::new("trusted_ca", format!("{path}: {why}")).into()
    })
}

fn system_roots() -> Result<RootCertStore, OpenError> {
    let (roots, _) = etlhost_tls::system_roots();
    if roots.is_empty() {
        return Err(ConfigError::new(
            "trusted_ca",
            "missing: no system certificate authorities found; give the server's CA as a PEM file",
        )
        .into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: serde_json::Value) -> PgOptions {
        let mut o = serde_json::json!({
            "url": "postgres://127.0.0.1:5432/etl",
            "user": "etl",
            "password": "s3cret",
            "query": "SELECT 1",
        });
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(o).unwrap()
    }

    fn config_error(r: Result<Connector, OpenError>) -> String {
        match r {
            Err(e) => format!("{e:?}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn every_tls_mode_builds_a_connector() {
        for mode in ["disable", "prefer", "require", "verify-full"] {
            let c = Connector::new(&options(serde_json::json!({ "tls": mode })));
            // verify-full without trusted_ca needs the system's authorities, which a test
            // machine may lack; it is then refused on `trusted_ca`.
            if let Err(e) = &c {
                assert!(format!("{e:?}").contains("trusted_ca"), "{mode}: {e:?}");
            }
        }
        let c = Connector::new(&options(serde_json::json!({}))).unwrap();
        assert_eq!(c.target, "127.0.0.1:5432/etl");
        assert_eq!(c.redact("password s3cret"), "password ***");
    }

    #[test]
    fn a_bad_trusted_ca_is_refused_on_its_key() {
        let dir = std::env::temp_dir().join(format!("etlhost-pg-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = config_error(Connector::new(&options(serde_json::json!({
            "tls": "verify-ca", "trusted_ca": not_pem,
        }))));
        assert!(
            e.contains("trusted_ca") && e.contains("no certificate in it"),
            "{e}"
        );
        let e = config_error(Connector::new(&options(serde_json::json!({
            "tls": "verify-ca", "trusted_ca": dir.join("absent.pem"),
        }))));
        assert!(e.contains("cannot read it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_user_is_required() {
        let mut o = options(serde_json::json!({}));
        o.user = None;
        let e = config_error(Connector::new(&o));
        assert!(e.contains("user"), "{e}");
    }
}
