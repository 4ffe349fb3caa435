//! The sink's options, and the checks that need no server.

use etlhost_bolt_client::{client_config, Target, Trust};
use etlhost_plugin_sdk::{ConfigError, Options};
use serde::Deserialize;

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
    pub(crate) fn target(&self) -> Result<Target, ConfigError> {
        Target::parse(&self.uri, self.trusted_ca.as_deref())
            .map_err(|e| ConfigError::new(e.key, e.message))
    }

    pub(crate) fn secrets(&self) -> [&str; 2] {
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
        check_params(self)?;
        if self.connect_timeout_secs == 0 {
            return Err(ConfigError::new(
                "connect_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `params_by_position` and `row_parameters` against the query (see `params.rs`).
pub(crate) fn check_params(o: &BoltOptions) -> Result<(), ConfigError> {
    let batch = o.query.contains("$batch");
    if o.row_parameters && batch {
        return Err(ConfigError::new(
            "query",
            "uses $batch, which is not sent with row_parameters: true (each row's fields are the parameters)",
        ));
    }
    if !o.row_parameters && !batch {
        return Err(ConfigError::new(
            "query",
            // The text existing specs' tests know; row_parameters is in README.
            "must use the parameter $batch (e.g. UNWIND $batch AS row CREATE ...)",
        ));
    }
    if let Some(p) = &o.params_by_position {
        if p.is_empty() {
            return Err(ConfigError::new(
                "params_by_position",
                "names no parameter (leave it out to use the column names)",
            ));
        }
        if let Some(name) = p.keys().find(|k| k.is_empty() || k.as_str() == "batch") {
            return Err(ConfigError::new(
                format!("params_by_position.{name}"),
                "is not a usable parameter name",
            ));
        }
    }
    Ok(())
}
