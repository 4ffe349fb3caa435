//! Values into PackStream: the batch as the query's `$batch` parameter, a list of maps keyed by
//! column name, each value as the options and the connection's Bolt version say.

use etlhost_bolt_client::packstream as ps;
use etlhost_plugin_sdk::{Batch, Column, RowRef, Value, ValueRef};

use crate::options::{DecimalAs, Temporal};

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
    encode_rows(
        m,
        &batch.schema,
        &batch.rows,
        &Encoding::new(temporal, decimal, version),
    )
}

/// `{batch: [{column: value, ...}, ...]}`, a NULL column left out of its row's map.
pub(crate) fn encode_rows<R: AsRef<[Value]>>(
    m: &mut Vec<u8>,
    schema: &[Column],
    rows: &[R],
    enc: &Encoding,
) {
    ps::map_header(m, 1);
    ps::string(m, "batch");
    ps::list_header(m, rows.len());
    for row in rows {
        let row = row.as_ref();
        ps::map_header(m, row.iter().filter(|v| !v.is_null()).count());
        for (col, v) in schema.iter().zip(row) {
            if v.is_null() {
                continue;
            }
            ps::string(m, &col.name);
            encode_value(m, v, enc);
        }
    }
}

/// [`encode_rows`] of rows read in place from the host's bytes: the same PackStream, written
/// from the bytes with no value built for numbers, text and bytes.
pub(crate) fn encode_row_refs(
    m: &mut Vec<u8>,
    schema: &[Column],
    rows: &[RowRef<'_>],
    enc: &Encoding,
) {
    // Each column's name as PackStream once, not once per row.
    let mut names = Vec::new();
    let mut ends = Vec::with_capacity(schema.len());
    for c in schema {
        ps::string(&mut names, &c.name);
        ends.push(names.len());
    }
    ps::map_header(m, 1);
    ps::string(m, "batch");
    ps::list_header(m, rows.len());
    for row in rows {
        ps::map_header(m, row.non_null());
        let mut start = 0;
        for (&end, v) in ends.iter().zip(row.iter()) {
            let name = &names[start..end];
            start = end;
            if v.is_null() {
                continue;
            }
            m.extend_from_slice(name);
            encode_value_ref(m, &v, enc);
        }
    }
}

/// [`encode_value`] of a value read in place. Numbers, text and bytes are written from the
/// bytes; every other kind is built (none allocates but lists and maps, rare in a row) and takes
/// [`encode_value`], so both ways write each kind alike.
pub(crate) fn encode_value_ref(m: &mut Vec<u8>, v: &ValueRef<'_>, enc: &Encoding) {
    match *v {
        ValueRef::Null => ps::null(m),
        ValueRef::Bool(b) => ps::bool(m, b),
        ValueRef::Int(i) => ps::int(m, i),
        ValueRef::UInt(u) => match i64::try_from(u) {
            Ok(i) => ps::int(m, i),
            Err(_) => ps::string(m, &u.to_string()),
        },
        ValueRef::Float(f) => ps::float(m, f),
        ValueRef::Decimal(d) => match (enc.decimal, d.parse::<f64>()) {
            (DecimalAs::Float, Ok(f)) => ps::float(m, f),
            _ => ps::string(m, d),
        },
        ValueRef::String(s) => ps::string(m, s),
        ValueRef::Bytes(b) => ps::bytes(m, b),
        _ => encode_value(m, &v.to_value(), enc),
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How values are written: the options, and what the connection's Bolt version decides.
pub(crate) struct Encoding {
    temporal: Temporal,
    decimal: DecimalAs,
    /// Bolt 5's DateTime (`I`, seconds since the epoch in UTC) rather than 4.x's (`F`, seconds of
    /// the local time). With offset 0, as etlhost sends it, only the tag differs.
    utc_datetime: bool,
}

impl Encoding {
    pub(crate) fn new(temporal: Temporal, decimal: DecimalAs, version: (u8, u8)) -> Self {
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

pub(crate) fn encode_value(m: &mut Vec<u8>, v: &Value, enc: &Encoding) {
    if enc.temporal == Temporal::String
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
        Value::Date(_)
        | Value::DateTime(_)
        | Value::Time(_)
        | Value::Timestamp(_)
        | Value::Duration { .. }
        | Value::ZonedTime { .. } => temporal(m, v, enc),
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

/// Dates and times as Bolt's temporal structures.
fn temporal(m: &mut Vec<u8>, v: &Value, enc: &Encoding) {
    match v {
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
        // PostgreSQL interval: Bolt keeps months, days and seconds apart as PostgreSQL does.
        Value::Duration {
            months,
            days,
            micros,
        } => {
            ps::struct_header(m, 4, b'E');
            ps::int(m, *months);
            ps::int(m, *days);
            ps::int(m, micros.div_euclid(1_000_000));
            ps::int(m, micros.rem_euclid(1_000_000) * 1000);
        }
        Value::ZonedTime {
            micros,
            offset_seconds,
        } => {
            ps::struct_header(m, 2, b'T');
            ps::int(m, micros * 1000);
            ps::int(m, *offset_seconds as i64);
        }
        _ => unreachable!("encode_value passes temporal values only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use etlhost_bolt_client::packstream::{self, Ps};
    use etlhost_plugin_sdk::{Column, ColumnType, Point};

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
        let d = Value::Duration {
            months: 14,
            days: -3,
            micros: -1_500_000,
        };
        assert_eq!(
            encoded(d.clone(), native, (5, 4)),
            Ps::Struct(
                b'E',
                vec![Ps::Int(14), Ps::Int(-3), Ps::Int(-2), Ps::Int(500_000_000)]
            )
        );
        assert_eq!(
            encoded(d, Temporal::String, (5, 4)),
            Ps::String("P1Y2M-3DT-1.5S".into())
        );
        let t = Value::ZonedTime {
            micros: 3_723_000_456,
            offset_seconds: -18_000,
        };
        assert_eq!(
            encoded(t.clone(), native, (4, 4)),
            Ps::Struct(b'T', vec![Ps::Int(3_723_000_456_000), Ps::Int(-18_000)])
        );
        assert_eq!(
            encoded(t, Temporal::String, (5, 4)),
            Ps::String("01:02:03.000456-05:00".into())
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
}
