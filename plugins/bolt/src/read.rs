//! The bolt sink's read capability ([`etlhost_plugin_sdk::SinkQuery`]), for `etlhost verify`: a
//! read-only Cypher query in an auto-commit transaction, its records pulled `fetch_size` at a
//! time and handed back as batches of values.
//!
//! Bolt values become the SDK's as the sink wrote them: Date, LocalDateTime, LocalTime and
//! Duration back to dates, datetimes and times (a Duration with months or days to a duration,
//! a Time with an offset to a zoned time), zoned DateTimes to UTC timestamps, points to
//! points; a node or relationship to the map of its properties.

use etlhost_plugin_sdk::{
    Batch, Column, ColumnType, Error, OpenError, Point, QueryRequest, Schema, SinkQuery,
    SplitReader, Value,
};

use crate::encoding::{encode_value, Encoding};
use crate::options::BoltOptions;
use crate::sink::BoltSink;
use etlhost_bolt_client::packstream::{self as ps, Ps};
use etlhost_bolt_client::{BoltError, Connection};

const DEFAULT_FETCH: usize = 10_000;

pub struct BoltRows {
    conn: Connection,
    schema: Schema,
    fetch: i64,
    more: bool,
    /// The first batch is returned even when empty: it names the query's columns.
    first: bool,
    secrets: Vec<String>,
}

impl SinkQuery for BoltSink {
    type Rows = BoltRows;

    fn query(mut options: BoltOptions, request: &QueryRequest) -> Result<BoltRows, OpenError> {
        // The write query is not the one run here: no EXPLAIN of it, no setup statements.
        options.check_query = false;
        let mut sink = BoltSink::start(options, false)?;
        let mut conn = sink.conn.take().expect("start connects");
        let o = &sink.options;
        let enc = Encoding::new(o.temporal, o.decimal, conn.version());
        let fields = conn
            .run_read(o.database.as_deref(), &request.query, |m| {
                ps::map_header(m, request.params.len());
                for (k, v) in &request.params {
                    ps::string(m, k);
                    encode_value(m, v, &enc);
                }
            })
            .map_err(|e| sink.error("the graph query failed", e))?;
        let schema: Schema = fields
            .into_iter()
            .map(|name| Column {
                name,
                ty: ColumnType::Any,
            })
            .collect::<Vec<_>>()
            .into();
        let fetch = match request.fetch_size {
            0 => DEFAULT_FETCH,
            n => n,
        };
        Ok(BoltRows {
            conn,
            schema,
            fetch: fetch as i64,
            more: true,
            first: true,
            secrets: vec![sink.options.password.clone()],
        })
    }
}

impl SplitReader for BoltRows {
    fn next_batch(&mut self) -> Result<Option<Batch>, Error> {
        if !self.more {
            return Ok(None);
        }
        let (records, more) = self.conn.pull(self.fetch).map_err(|e| self.error(e))?;
        self.more = more;
        if records.is_empty() && !more && !std::mem::take(&mut self.first) {
            return Ok(None);
        }
        self.first = false;
        let mut batch = Batch::new(self.schema.clone());
        batch.rows = records
            .into_iter()
            .map(|r| r.into_iter().map(value).collect())
            .collect();
        Ok(Some(batch))
    }
}

impl BoltRows {
    fn error(&self, e: BoltError) -> Error {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let text = etlhost_plugin_sdk::redact::redact_secrets(
            &format!("reading the graph failed: {e}"),
            &secrets,
        );
        if e.is_retryable() {
            Error::retryable(text)
        } else {
            Error::permanent(text)
        }
    }
}

const MICROS: i64 = 1_000_000;

fn int(p: &Ps) -> i64 {
    match p {
        Ps::Int(i) => *i,
        _ => 0,
    }
}

fn float(p: &Ps) -> f64 {
    match p {
        Ps::Float(f) => *f,
        Ps::Int(i) => *i as f64,
        _ => f64::NAN,
    }
}

/// Seconds and nanoseconds as microseconds.
fn micros(secs: &Ps, nanos: &Ps) -> i64 {
    int(secs) * MICROS + int(nanos) / 1000
}

/// A Bolt value as the SDK value the sink would have written for it.
pub(crate) fn value(p: Ps) -> Value {
    match p {
        Ps::Null => Value::Null,
        Ps::Bool(b) => Value::Bool(b),
        Ps::Int(i) => Value::Int(i),
        Ps::Float(f) => Value::Float(f),
        Ps::Bytes(b) => Value::Bytes(b),
        Ps::String(s) => Value::String(s),
        Ps::List(items) => Value::List(items.into_iter().map(value).collect()),
        Ps::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, value(v))).collect()),
        Ps::Struct(tag, f) => structure(tag, f),
    }
}

fn structure(tag: u8, f: Vec<Ps>) -> Value {
    let at = |i: usize| f.get(i).unwrap_or(&Ps::Null);
    match (tag, f.len()) {
        (b'D', 1) => Value::Date(int(at(0)) as i32),
        (b'd', 2) => Value::DateTime(micros(at(0), at(1))),
        (b't', 1) => Value::Time(int(at(0)) / 1000),
        (b'T', 2) => Value::ZonedTime {
            micros: int(at(0)) / 1000,
            offset_seconds: int(at(1)) as i32,
        },
        // Durations of seconds only: what a MySQL TIME beyond a day was written as.
        (b'E', 4) if int(at(0)) == 0 && int(at(1)) == 0 => Value::Time(micros(at(2), at(3))),
        (b'E', 4) => Value::Duration {
            months: int(at(0)),
            days: int(at(1)),
            micros: micros(at(2), at(3)),
        },
        // Bolt 5 DateTime: UTC seconds; Bolt 4 DateTime: local seconds with the offset.
        (b'I', 3) | (b'i', 3) => Value::Timestamp(micros(at(0), at(1))),
        (b'F', 3) => Value::Timestamp((int(at(0)) - int(at(2))) * MICROS + int(at(1)) / 1000),
        (b'X', 3) => Value::Point(Point {
            srid: int(at(0)) as u32,
            x: float(at(1)),
            y: float(at(2)),
            z: None,
        }),
        (b'Y', 4) => Value::Point(Point {
            srid: int(at(0)) as u32,
            x: float(at(1)),
            y: float(at(2)),
            z: Some(float(at(3))),
        }),
        // Node (id, labels, properties[, element id]) and relationship (id, start, end, type,
        // properties[, ...]): their properties.
        (b'N', 3..) => value(at(2).clone()),
        (b'R', 5..) => value(at(4).clone()),
        _ => Value::String(format!("{:?}", Ps::Struct(tag, f))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_values_read_back_as_written() {
        let s = |tag, f| value(Ps::Struct(tag, f));
        assert_eq!(s(b'D', vec![Ps::Int(19_724)]), Value::Date(19_724));
        assert_eq!(
            s(b'd', vec![Ps::Int(1), Ps::Int(2_000)]),
            Value::DateTime(1_000_002)
        );
        assert_eq!(s(b't', vec![Ps::Int(5_000)]), Value::Time(5));
        let long = vec![Ps::Int(0), Ps::Int(0), Ps::Int(90_000), Ps::Int(0)];
        assert_eq!(s(b'E', long), Value::Time(90_000 * MICROS));
        let interval = vec![Ps::Int(14), Ps::Int(-3), Ps::Int(-2), Ps::Int(500_000_000)];
        let d = Value::Duration {
            months: 14,
            days: -3,
            micros: -1_500_000,
        };
        assert_eq!(s(b'E', interval), d);
        let t = Value::ZonedTime {
            micros: 5,
            offset_seconds: -3_600,
        };
        assert_eq!(s(b'T', vec![Ps::Int(5_000), Ps::Int(-3_600)]), t);
        let zoned = vec![Ps::Int(7_200), Ps::Int(0), Ps::Int(3_600)];
        assert_eq!(s(b'F', zoned), Value::Timestamp(3_600 * MICROS));
    }
}
