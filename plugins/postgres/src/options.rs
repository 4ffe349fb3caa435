//! The source's options, and the checks that need no server.

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{ConfigError, Options};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgOptions {
    /// `postgres://host:port/database`. Credentials are better given as `user` and `password`.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The table to read (`name` or `schema.name`; a part in double quotes keeps its case and
    /// may hold dots). Exactly one of `table` and `query`.
    pub table: Option<String>,
    /// A SELECT whose rows are read; splits wrap it as a derived table.
    pub query: Option<String>,
    /// Rows per batch handed to the host (the host re-batches for the sink).
    #[serde(default = "default_fetch_size")]
    pub fetch_size: usize,
    /// Seconds to wait for a connection (SeaTunnel's `connection_check_timeout_sec`).
    #[serde(default = "default_timeout")]
    pub connection_check_timeout_sec: u64,
    /// TLS to the server: `disable`, `prefer` (default), `require`, `verify-ca`, `verify-full`.
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of the certificate authorities to trust (verify-ca, verify-full; also checked
    /// with `require` and `prefer` when given). Without it the web's root authorities are used.
    pub trusted_ca: Option<String>,
    /// `text` (default): json/jsonb columns arrive as their text. `value`: parsed into lists,
    /// maps and scalars.
    #[serde(default)]
    pub json: JsonAs,
    /// `mode: stream`: the logical replication slot to read (created when absent).
    pub slot: Option<String>,
    /// `mode: stream`: the publication the slot decodes (created for the table when absent).
    pub publication: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonAs {
    #[default]
    Text,
    Value,
}

/// libpq's `sslmode`, less `allow` (plain first, TLS only when the server insists: it would
/// send credentials in the clear to a server that accepts both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plain when it refuses it. The certificate is not checked
    /// (as libpq's `prefer`), unless `trusted_ca` is given.
    #[default]
    Prefer,
    /// TLS or no connection. The certificate is not checked (as libpq), unless `trusted_ca`.
    Require,
    /// TLS, the certificate chain checked against `trusted_ca`, but not the host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

fn default_fetch_size() -> usize {
    1000
}

fn default_timeout() -> u64 {
    30
}

impl Options for PgOptions {
    fn check(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.url.parse::<tokio_postgres::Config>() {
            let text = redact_secrets(&e.to_string(), &[]);
            return Err(ConfigError::new(
                "url",
                format!("not a PostgreSQL URL (postgres://host:port/database): {text}"),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<PgOptions, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn options_default_and_check() {
        let o = parse(serde_json::json!({"url": "postgres://h:5432/db", "table": "s.t"})).unwrap();
        assert_eq!((o.fetch_size, o.connection_check_timeout_sec), (1000, 30));
        assert_eq!(o.tls, TlsMode::Prefer);
        assert!(o.check().is_ok());
        let o = parse(serde_json::json!({"url": "postgres://h/db", "tls": "verify-ca"})).unwrap();
        assert_eq!(o.tls, TlsMode::VerifyCa);
        assert!(o.check().unwrap_err().to_string().contains("table"));
        let both = serde_json::json!({"url": "postgres://h/db", "table": "t", "query": "q"});
        assert!(parse(both)
            .unwrap()
            .check()
            .unwrap_err()
            .to_string()
            .contains("not both"));
        assert!(parse(serde_json::json!({"url": "u", "tls": "allow"})).is_err());
        assert!(parse(serde_json::json!({"url": "u", "table": "t", "tabel": 1})).is_err());
        let bad = parse(serde_json::json!({"url": "postgres://u:pw@h:notaport/db", "table": "t"}));
        let e = bad.unwrap().check().unwrap_err().to_string();
        assert!(
            e.contains("not a PostgreSQL URL") && !e.contains("pw"),
            "{e}"
        );
    }
}
