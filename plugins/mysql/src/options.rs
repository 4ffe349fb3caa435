//! The source's options, and the checks that need no server.

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{ConfigError, Options};
use mysql_async::Opts;
use serde::Deserialize;

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
