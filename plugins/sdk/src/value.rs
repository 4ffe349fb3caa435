//! Typed values, rows and batches: what a source produces and a sink consumes.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One typed value. The variants cover what relational sources produce without losing information:
/// unsigned 64-bit integers and decimals keep their full range and precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Exact decimal as its canonical text (e.g. `"-12.3400"`), so no precision is lost in transit.
    Decimal(String),
    String(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00, without a time zone (a wall-clock date and time).
    DateTime(i64),
    /// A signed duration in microseconds (MySQL `TIME` can exceed 24 h and be negative).
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00 UTC: an instant, not a wall-clock time (MySQL
    /// `TIMESTAMP`, read in UTC).
    Timestamp(i64),
    /// A point in a spatial reference system.
    Point(Point),
    /// A calendar duration in three parts that do not convert into each other (a month has no
    /// fixed number of days, nor a day of microseconds across a DST change): PostgreSQL's
    /// `interval`, Bolt's Duration. Each part carries its own sign, as PostgreSQL keeps them.
    Duration {
        months: i64,
        days: i64,
        micros: i64,
    },
    /// A time of day with a UTC offset (PostgreSQL `timetz`, Bolt's Time): `micros` since local
    /// midnight and the offset east of UTC in seconds (`+05:30` is 19800).
    ZonedTime {
        micros: i64,
        offset_seconds: i32,
    },
    /// An ordered list (MySQL `SET` members, JSON arrays).
    List(Vec<Value>),
    /// Keys and values in their source order (JSON objects). Keys are unique.
    Map(Vec<(String, Value)>),
}

/// A 2D or 3D point. `srid` is the source's spatial reference id as it gives it (EPSG numbers:
/// 4326 is WGS-84 with `x` = longitude and `y` = latitude in degrees; 0 is a plane without units);
/// a sink maps it to what it supports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub srid: u32,
    pub x: f64,
    pub y: f64,
    pub z: Option<f64>,
}

impl Value {
    /// A JSON document as values: integers that fit 64 bits stay exact (`Int`, or `UInt` above
    /// i64::MAX), other numbers are floats, objects keep their key order.
    pub fn from_json(doc: serde_json::Value) -> Value {
        use serde_json::Value as J;
        match doc {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Value::Int(i),
                (None, Some(u)) => Value::UInt(u),
                _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s),
            J::Array(items) => Value::List(items.into_iter().map(Value::from_json).collect()),
            J::Object(m) => Value::Map(
                m.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A rough in-memory size, used by the host to bound batches by bytes.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::String(s) | Value::Decimal(s) => 8 + s.len(),
            Value::Bytes(b) => 8 + b.len(),
            Value::Point(_) => 33,
            Value::List(items) => 8 + items.iter().map(Value::approx_size).sum::<usize>(),
            Value::Map(entries) => {
                8 + entries
                    .iter()
                    .map(|(k, v)| 8 + k.len() + v.approx_size())
                    .sum::<usize>()
            }
            _ => 9,
        }
    }

    /// A JSON rendering for humans and for dead-letter files: dates as ISO 8601 text, bytes as hex,
    /// unsigned integers and decimals that JSON numbers cannot hold exactly as text.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Decimal(d) => J::String(d.clone()),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(hex(b)),
            Value::Date(_)
            | Value::DateTime(_)
            | Value::Time(_)
            | Value::Timestamp(_)
            | Value::Duration { .. }
            | Value::ZonedTime { .. } => J::String(self.to_string()),
            Value::Point(p) => {
                let mut m = serde_json::Map::new();
                m.insert("srid".into(), J::from(p.srid));
                m.insert("x".into(), J::from(p.x));
                m.insert("y".into(), J::from(p.y));
                if let Some(z) = p.z {
                    m.insert("z".into(), J::from(z));
                }
                J::Object(m)
            }
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Decimal(d) => f.write_str(d),
            Value::String(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&hex(b)),
            Value::Date(days) => {
                let (y, m, d) = civil_from_days(*days as i64);
                write!(f, "{y:04}-{m:02}-{d:02}")
            }
            Value::DateTime(micros) => date_time(f, *micros),
            // ISO 8601 with `Z`: the instant in UTC.
            Value::Timestamp(micros) => {
                date_time(f, *micros)?;
                f.write_str("Z")
            }
            // WKT, with the SRID in front as PostGIS's EWKT writes it.
            Value::Point(p) => {
                write!(f, "SRID={};POINT", p.srid)?;
                match p.z {
                    Some(z) => write!(f, " Z({} {} {z})", p.x, p.y),
                    None => write!(f, "({} {})", p.x, p.y),
                }
            }
            Value::List(_) | Value::Map(_) => json_text(f, self),
            Value::Time(micros) => {
                if *micros < 0 {
                    f.write_str("-")?;
                }
                clock(f, micros.unsigned_abs())
            }
            Value::Duration {
                months,
                days,
                micros,
            } => duration(f, *months, *days, *micros),
            // ISO 8601 as Neo4j prints a Time: `Z` for UTC, else `+HH:MM` (`:SS` if any).
            Value::ZonedTime {
                micros,
                offset_seconds,
            } => {
                clock(f, micros.unsigned_abs())?;
                offset(f, *offset_seconds)
            }
        }
    }
}

/// JSON text keeping a map's key order (serde_json's own map keeps it only with a feature).
fn json_text(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::List(items) => {
            f.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                json_text(f, item)?;
            }
            f.write_str("]")
        }
        Value::Map(entries) => {
            f.write_str("{")?;
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{}:", serde_json::Value::from(k.as_str()))?;
                json_text(f, item)?;
            }
            f.write_str("}")
        }
        other => write!(f, "{}", other.to_json()),
    }
}

/// ISO 8601 (`P1Y2M3DT4H5M6.5S`, as Neo4j prints a Duration): zero parts left out, each part
/// with its own sign (`P-1M2D`), `PT0S` when all are zero.
fn duration(f: &mut fmt::Formatter<'_>, months: i64, days: i64, micros: i64) -> fmt::Result {
    f.write_str("P")?;
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, "Y"), (months, "M"), (days, "D")] {
        if n != 0 {
            write!(f, "{n}{unit}")?;
        }
    }
    if micros == 0 {
        if years == 0 && months == 0 && days == 0 {
            f.write_str("T0S")?;
        }
        return Ok(());
    }
    f.write_str("T")?;
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let (hours, minutes) = (abs / 3_600_000_000, abs / 60_000_000 % 60);
    let (secs, us) = (abs / 1_000_000 % 60, abs % 1_000_000);
    if hours != 0 {
        write!(f, "{sign}{hours}H")?;
    }
    if minutes != 0 {
        write!(f, "{sign}{minutes}M")?;
    }
    match (secs, us) {
        (0, 0) => Ok(()),
        (s, 0) => write!(f, "{sign}{s}S"),
        (s, us) => {
            let frac = format!("{us:06}");
            write!(f, "{sign}{s}.{}S", frac.trim_end_matches('0'))
        }
    }
}

/// A UTC offset: `Z`, `+05:30`, `-03:00`, with `:SS` only when there are seconds.
fn offset(f: &mut fmt::Formatter<'_>, seconds: i32) -> fmt::Result {
    if seconds == 0 {
        return f.write_str("Z");
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let abs = seconds.unsigned_abs();
    write!(f, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)?;
    if abs % 60 != 0 {
        write!(f, ":{:02}", abs % 60)?;
    }
    Ok(())
}

fn date_time(f: &mut fmt::Formatter<'_>, micros: i64) -> fmt::Result {
    let (y, m, d) = civil_from_days(micros.div_euclid(86_400_000_000));
    write!(f, "{y:04}-{m:02}-{d:02}T")?;
    clock(f, micros.rem_euclid(86_400_000_000).unsigned_abs())
}

/// `HH:MM:SS`, with `.ffffff` only when there are microseconds; hours may exceed 24.
fn clock(f: &mut fmt::Formatter<'_>, micros: u64) -> fmt::Result {
    let (secs, us) = (micros / 1_000_000, micros % 1_000_000);
    write!(
        f,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )?;
    if us != 0 {
        write!(f, ".{us:06}")?;
    }
    Ok(())
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The declared type of a column, as far as the source knows it. Values in a column are of this
/// type or `Null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    Bool,
    Int,
    UInt,
    Float,
    Decimal,
    String,
    Bytes,
    Date,
    DateTime,
    Time,
    Timestamp,
    Point,
    List,
    Duration,
    ZonedTime,
    /// Unknown or mixed; values carry their own type.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// The columns of a batch, shared between batches of the same split.
pub type Schema = Arc<[Column]>;

/// A row is one value per column of its batch's schema, in order.
pub type Row = Vec<Value>;

/// Rows with their schema: the unit a source returns and a sink writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub schema: Schema,
    pub rows: Vec<Row>,
}

impl Batch {
    pub fn new(schema: Schema) -> Self {
        Batch {
            schema,
            rows: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A row as a JSON object keyed by column name, for humans and dead-letter files.
    pub fn row_json(&self, row: &Row) -> serde_json::Value {
        let map = self
            .schema
            .iter()
            .zip(row)
            .map(|(c, v)| (c.name.clone(), v.to_json()))
            .collect();
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -719_468, -1, 0, 1, 18_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn display_temporal() {
        assert_eq!(Value::Date(0).to_string(), "1970-01-01");
        assert_eq!(
            Value::DateTime(days_from_civil(2024, 2, 29) * 86_400_000_000 + 3_723_000_004)
                .to_string(),
            "2024-02-29T01:02:03.000004"
        );
        assert_eq!(
            Value::Time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000).to_string(),
            "-838:59:59"
        );
        assert_eq!(
            Value::Timestamp(-1).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
        let p = Point {
            srid: 4326,
            x: 13.4,
            y: 52.5,
            z: None,
        };
        assert_eq!(Value::Point(p).to_string(), "SRID=4326;POINT(13.4 52.5)");
        let doc = Value::Map(vec![
            ("b".into(), Value::List(vec![Value::Int(1), Value::Null])),
            ("a".into(), Value::String("x".into())),
        ]);
        assert_eq!(doc.to_string(), r#"{"b":[1,null],"a":"x"}"#);
    }

    #[test]
    fn display_durations_and_zoned_times() {
        let d = |months, days, micros| {
            Value::Duration {
                months,
                days,
                micros,
            }
            .to_string()
        };
        assert_eq!(d(0, 0, 0), "PT0S");
        assert_eq!(d(14, 3, 3_723_456_000), "P1Y2M3DT1H2M3.456S");
        assert_eq!(d(-1, 2, 0), "P-1M2D");
        assert_eq!(d(0, 0, -90_000_001), "PT-1M-30.000001S");
        assert_eq!(d(24, 0, 3_600_000_000), "P2YT1H");
        let t = |micros, offset_seconds| {
            Value::ZonedTime {
                micros,
                offset_seconds,
            }
            .to_string()
        };
        assert_eq!(t(3_723_000_456, 19_800), "01:02:03.000456+05:30");
        assert_eq!(t(0, 0), "00:00:00Z");
        assert_eq!(t(86_399_000_000, -(3 * 3600 + 61)), "23:59:59-03:01:01");
        let json = Value::ZonedTime {
            micros: 0,
            offset_seconds: 3600,
        }
        .to_json();
        assert_eq!(json, serde_json::json!("00:00:00+01:00"));
    }
}
