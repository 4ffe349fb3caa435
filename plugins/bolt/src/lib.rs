//! The `bolt` sink: writes each batch to a Neo4j-compatible graph database in one transaction, with a
//! user's Cypher query that receives the batch as `$batch`, a list of maps keyed by column name:
//!
//! ```cypher
//! UNWIND $batch AS row MERGE (p:Person {id: row.id}) SET p.name = row.name
//! ```
//!
//! A NULL column is left out of its row's map, so the property is absent, as in Neo4j.

mod connection;
mod packstream;
mod params;

use std::time::Duration;

use etlhost_plugin_sdk::redact::redact_secrets;
use etlhost_plugin_sdk::{export_sink, Batch, ConfigError, Error, OpenError, Options, Sink, Value};
use serde::Deserialize;

pub use connection::{BoltError, Connection, Credentials};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoltOptions {
    /// `bolt://host:port` (or `neo4j://`, used without routing). Default port 7687.
    pub uri: String,
    #[serde(alias = "username")]
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// The database to write to. Name it: some servers (ArcadeDB) otherwise pick one silently.
    pub database: Option<String>,
    /// The Cypher run once per batch; it receives the rows as `$batch`.
    pub query: String,
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

impl Options for BoltOptions {
    fn check(&self) -> Result<(), ConfigError> {
        address(&self.uri)?;
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

/// `host:port` of a `bolt://` or `neo4j://` URI.
fn address(uri: &str) -> Result<String, ConfigError> {
    let rest = uri
        .strip_prefix("bolt://")
        .or_else(|| uri.strip_prefix("neo4j://"))
        .ok_or_else(|| {
            let msg = if uri.contains("+s://") || uri.contains("+ssc://") {
                "TLS (bolt+s, neo4j+s) is not supported yet; use bolt:// on a trusted network"
            } else {
                "must start with bolt:// or neo4j://"
            };
            ConfigError::new("uri", msg)
        })?;
    // Credentials belong in user/password; anything after the authority is ignored by Bolt.
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    if authority.is_empty() {
        return Err(ConfigError::new("uri", "has no host"));
    }
    Ok(
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:7687")
        },
    )
}

pub struct BoltSink {
    options: BoltOptions,
    addr: String,
    conn: Option<Connection>,
}

impl BoltSink {
    fn connect(&self) -> Result<Connection, Error> {
        let creds = Credentials {
            user: &self.options.user,
            password: &self.options.password,
        };
        Connection::connect(
            &self.addr,
            &creds,
            Duration::from_secs(self.options.connect_timeout_secs),
        )
        .map_err(|e| self.error(&format!("cannot connect to {}", self.options.uri), e))
    }

    fn error(&self, context: &str, e: BoltError) -> Error {
        let text = redact_secrets(&format!("{context}: {e}"), &[&self.options.password]);
        if e.is_retryable() {
            Error::retryable(text)
        } else {
            Error::permanent(text)
        }
    }
}

impl Sink for BoltSink {
    type Options = BoltOptions;

    fn open(options: BoltOptions) -> Result<Self, OpenError> {
        let addr = address(&options.uri)?;
        let mut sink = BoltSink {
            options,
            addr,
            conn: None,
        };
        // Connect now, so wrong credentials or an unreachable server fail the job before it reads.
        let mut conn = sink.connect()?;
        tracing::debug!(version = ?conn.version(), "connected to {}", sink.options.uri);
        let db = sink.options.database.as_deref();
        for stmt in &sink.options.setup {
            conn.run_autocommit(db, stmt)
                .map_err(|e| sink.error(&format!("setup statement `{stmt}` failed"), e))?;
        }
        sink.conn = Some(conn);
        Ok(sink)
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        params::fits(&self.options, batch)?;
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let o = &self.options;
        let enc = Encoding::new(o.temporal, o.decimal, conn.version());
        let result = conn.run_in_transaction(o.database.as_deref(), &o.query, |m| {
            params::encode(m, batch, o, &enc)
        });
        match result {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => {
                // After a network error the connection is dropped, and the next call reconnects.
                if !matches!(e, BoltError::Io(_)) {
                    self.conn = Some(conn);
                }
                Err(self.error("write failed", e))
            }
        }
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
    fn addresses() {
        assert_eq!(address("bolt://127.0.0.1:7687").unwrap(), "127.0.0.1:7687");
        assert_eq!(address("neo4j://graph.local").unwrap(), "graph.local:7687");
        assert_eq!(address("bolt://u:p@h:1/db").unwrap(), "h:1");
        assert_eq!(
            address("http://h").unwrap_err().to_string(),
            "uri: must start with bolt:// or neo4j://"
        );
    }
}
