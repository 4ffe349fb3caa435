//! One canonical form for the values of both sides, so that a value compares equal to what the
//! sink wrote for it: what `etlhost verify` hashes and compares.
//!
//! A source value is mapped the way the bolt sink writes it (its `temporal` and `decimal`
//! options included); a graph value as the bolt sink reads it back. Then:
//! - NULL and an absent property are the same: [`Canon::Absent`];
//! - integers are 64-bit; an unsigned value beyond 2^63 is its digits as text (as written);
//! - DECIMAL is its exact text (or, with `decimal: float`, the float it was written as);
//! - a DATETIME and a TIMESTAMP are both microseconds of a date and time: ArcadeDB keeps a zoned
//!   DateTime as its local (UTC) date and time, so the zone cannot be compared;
//! - a TIME within a day and a longer one (a Duration in the graph) are both microseconds;
//! - an interval (Duration) is its months, days and microseconds; one of microseconds only is a
//!   TIME, as the graph's Duration of seconds only reads back;
//! - a time with an offset (PostgreSQL `timetz`, a Bolt Time) is its local time and offset: the
//!   graph keeps both, so `12:00+01:00` and `11:00Z` differ;
//! - points carry the graph's SRID (4326 and 4979 for WGS-84, 7203 and 9157 cartesian);
//! - a map's keys are sorted (the graph does not keep their order).

use etlhost_plugin_sdk::Value;

/// A value in the form both sides are compared in. Floats compare by their bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Canon {
    Absent,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Date(i32),
    DateTime(i64),
    Time(i64),
    Duration(i64, i64, i64),
    ZonedTime(i64, i32),
    Point(u32, u64, u64, Option<u64>),
    List(Vec<Canon>),
    Map(Vec<(String, Canon)>),
}

/// How the sink wrote values: from its options (`temporal`, `decimal`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mapping {
    pub temporal_text: bool,
    pub decimal_float: bool,
}

impl Mapping {
    pub fn from_sink_options(options: &serde_json::Map<String, serde_json::Value>) -> Mapping {
        let is = |k: &str, v: &str| options.get(k).and_then(|x| x.as_str()) == Some(v);
        Mapping {
            temporal_text: is("temporal", "string"),
            decimal_float: is("decimal", "float"),
        }
    }

    /// A source value as the sink wrote it.
    pub fn source(&self, v: Value) -> Canon {
        if self.temporal_text
            && matches!(
                v,
                Value::Date(_)
                    | Value::DateTime(_)
                    | Value::Time(_)
                    | Value::Timestamp(_)
                    | Value::Duration { .. }
                    | Value::ZonedTime { .. }
            )
        {
            return Canon::Str(v.to_string());
        }
        match v {
            Value::UInt(u) => match i64::try_from(u) {
                Ok(i) => Canon::Int(i),
                Err(_) => Canon::Str(u.to_string()),
            },
            Value::Decimal(d) if self.decimal_float => match d.parse::<f64>() {
                Ok(f) => Canon::Float(f.to_bits()),
                Err(_) => Canon::Str(d),
            },
            Value::Decimal(d) => Canon::Str(d),
            Value::List(items) => Canon::List(items.into_iter().map(|v| self.nested(v)).collect()),
            Value::Map(entries) => map(entries.into_iter().map(|(k, v)| (k, self.nested(v)))),
            other => common(other),
        }
    }

    /// Inside lists and maps a NULL stays a null (its position or key means something there).
    fn nested(&self, v: Value) -> Canon {
        match v {
            Value::Null => Canon::Str("\u{0}null".into()),
            v => self.source(v),
        }
    }
}

/// A value read from the graph.
pub fn graph(v: Value) -> Canon {
    match v {
        Value::List(items) => Canon::List(items.into_iter().map(graph_nested).collect()),
        Value::Map(entries) => map(entries.into_iter().map(|(k, v)| (k, graph_nested(v)))),
        other => common(other),
    }
}

fn graph_nested(v: Value) -> Canon {
    match v {
        Value::Null => Canon::Str("\u{0}null".into()),
        v => graph(v),
    }
}

fn map(entries: impl Iterator<Item = (String, Canon)>) -> Canon {
    let mut m: Vec<(String, Canon)> = entries.collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    Canon::Map(m)
}

/// What both sides map alike.
fn common(v: Value) -> Canon {
    match v {
        Value::Null => Canon::Absent,
        Value::Bool(b) => Canon::Bool(b),
        Value::Int(i) => Canon::Int(i),
        Value::UInt(u) => match i64::try_from(u) {
            Ok(i) => Canon::Int(i),
            Err(_) => Canon::Str(u.to_string()),
        },
        Value::Float(f) => Canon::Float(f.to_bits()),
        Value::Decimal(d) | Value::String(d) => Canon::Str(d),
        Value::Bytes(b) => Canon::Bytes(b),
        Value::Date(d) => Canon::Date(d),
        Value::DateTime(us) | Value::Timestamp(us) => Canon::DateTime(us),
        Value::Time(us)
        | Value::Duration {
            months: 0,
            days: 0,
            micros: us,
        } => Canon::Time(us),
        Value::Duration {
            months,
            days,
            micros,
        } => Canon::Duration(months, days, micros),
        Value::ZonedTime {
            micros,
            offset_seconds,
        } => Canon::ZonedTime(micros, offset_seconds),
        Value::Point(p) => {
            let srid = match (p.srid, p.z.is_some()) {
                (4326, false) => 4326,
                (4326 | 4979, true) => 4979,
                (7203, false) | (9157, true) => p.srid,
                (_, false) => 7203,
                (_, true) => 9157,
            };
            Canon::Point(srid, p.x.to_bits(), p.y.to_bits(), p.z.map(f64::to_bits))
        }
        Value::List(items) => Canon::List(items.into_iter().map(common).collect()),
        Value::Map(entries) => map(entries.into_iter().map(|(k, v)| (k, common(v)))),
    }
}

impl Canon {
    /// Whether the first key column's values order the same way in MySQL and in Cypher (numbers,
    /// dates and datetimes), so that rows behind both sides' position are final.
    pub fn orders_alike(&self) -> bool {
        matches!(
            self,
            Canon::Int(_) | Canon::Date(_) | Canon::DateTime(_) | Canon::Time(_)
        )
    }

    /// For messages: numbers bare, text quoted.
    pub fn show(&self) -> String {
        match self {
            Canon::Absent => "NULL".into(),
            Canon::Bool(b) => b.to_string(),
            Canon::Int(i) => i.to_string(),
            Canon::Float(f) => f64::from_bits(*f).to_string(),
            Canon::Str(s) => format!("{s:?}"),
            Canon::Bytes(b) => Value::Bytes(b.clone()).to_string(),
            Canon::Date(d) => Value::Date(*d).to_string(),
            Canon::DateTime(us) => Value::DateTime(*us).to_string(),
            Canon::Time(us) => Value::Time(*us).to_string(),
            Canon::Duration(months, days, micros) => Value::Duration {
                months: *months,
                days: *days,
                micros: *micros,
            }
            .to_string(),
            Canon::ZonedTime(micros, offset_seconds) => Value::ZonedTime {
                micros: *micros,
                offset_seconds: *offset_seconds,
            }
            .to_string(),
            other => format!("{other:?}"),
        }
    }

    /// The value as a parameter of the graph query (`$lo`, `$hi`), typed as the sink wrote it.
    pub fn param(&self) -> Value {
        match self {
            Canon::Int(i) => Value::Int(*i),
            Canon::Str(s) => Value::String(s.clone()),
            Canon::Date(d) => Value::Date(*d),
            Canon::DateTime(us) => Value::DateTime(*us),
            Canon::Time(us) => Value::Time(*us),
            Canon::Float(f) => Value::Float(f64::from_bits(*f)),
            Canon::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::Point;

    #[test]
    fn source_values_meet_what_the_graph_returns() {
        let m = Mapping::default();
        assert_eq!(m.source(Value::UInt(5)), graph(Value::Int(5)));
        let big = u64::MAX;
        assert_eq!(
            m.source(Value::UInt(big)),
            graph(Value::String(big.to_string()))
        );
        assert_eq!(
            m.source(Value::Decimal("12.50".into())),
            graph(Value::String("12.50".into()))
        );
        assert_eq!(m.source(Value::Null), graph(Value::Null));
        assert_eq!(
            m.source(Value::Timestamp(7)),
            graph(Value::DateTime(7)),
            "ArcadeDB keeps a zoned datetime as a local one"
        );
        let p = |srid| {
            Value::Point(Point {
                srid,
                x: 1.0,
                y: 2.0,
                z: None,
            })
        };
        assert_eq!(m.source(p(0)), graph(p(7203)));
        assert_eq!(m.source(p(4326)), graph(p(4326)));
        let float = Mapping {
            decimal_float: true,
            temporal_text: true,
        };
        assert_eq!(
            float.source(Value::Decimal("12.50".into())),
            graph(Value::Float(12.5))
        );
        assert_eq!(
            float.source(Value::Date(0)),
            graph(Value::String("1970-01-01".into()))
        );
        assert_ne!(m.source(Value::Int(1)), graph(Value::String("1".into())));
    }

    #[test]
    fn intervals_and_zoned_times_meet_what_the_graph_returns() {
        let m = Mapping::default();
        let d = |months, days, micros| Value::Duration {
            months,
            days,
            micros,
        };
        assert_eq!(m.source(d(14, -3, 5)), graph(d(14, -3, 5)));
        assert_eq!(
            m.source(d(0, 0, 90_000_000_000)),
            graph(Value::Time(90_000_000_000)),
            "a Duration of seconds only reads back as a TIME"
        );
        assert_ne!(m.source(d(0, 1, 0)), graph(Value::Time(86_400_000_000)));
        let t = |micros, offset_seconds| Value::ZonedTime {
            micros,
            offset_seconds,
        };
        assert_eq!(m.source(t(7, 3600)), graph(t(7, 3600)));
        assert_ne!(m.source(t(3_600_000_000, 3600)), graph(t(0, 0)));
        let text = Mapping {
            temporal_text: true,
            decimal_float: false,
        };
        assert_eq!(
            text.source(d(1, 2, 0)),
            graph(Value::String("P1M2D".into()))
        );
        assert_eq!(
            text.source(t(0, -1800)),
            graph(Value::String("00:00:00-00:30".into()))
        );
        assert_eq!(m.source(t(0, 0)).show(), "00:00:00Z");
    }
}
