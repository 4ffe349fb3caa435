//! Rows across the WASM boundary: the SDK's values to the WIT `value` variant and back. Nothing is
//! lost either way: scalars match one to one, and lists and maps (which WIT cannot nest) cross as
//! JSON text whose scalars are exactly the ones JSON has. A list or map holding anything else
//! (bytes, a date, a decimal, ...) or an unsigned integer JSON would bring back as a signed one
//! cannot cross: [`nested_texts`] refuses it rather than change it.
//!
//! WIT has no case for an interval or a time with an offset (PostgreSQL `interval`, `timetz`):
//! they cross as `text` in their ISO 8601 form (`P1Y2M3DT4H5M6.5S`, `12:30:00+05:30`, as
//! [`Value`]'s `Display` writes them), and their columns as `text` columns; what comes back is
//! that text, a string.
//!
//! Values go in borrowed ([`to_wit`] points into the host's rows: no copy of a string is made
//! before wasmtime copies it into the guest) and come back owned.

use etlhost_plugin_sdk::{Column, ColumnType, Point, Value};

use super::engine::wit::{
    ColumnParam as WitColumn, ColumnResult as WitColumnResult, ColumnType as WitType,
    Point as WitPoint, ValueParam as WitValue, ValueResult as WitValueResult,
};

/// A guest's row back as values, or why it cannot be read.
pub fn row_from_wit(row: Vec<WitValueResult>) -> Result<Vec<Value>, String> {
    row.into_iter().map(from_wit).collect()
}

/// Appends the JSON text of each list or map of `row` (and the ISO 8601 text of each interval or
/// zoned time), in order, for [`to_wit`]; or says why one cannot cross (then what it appended is
/// left for the caller to truncate).
pub fn nested_texts(row: &[Value], out: &mut Vec<String>) -> Result<(), String> {
    for v in row {
        match v {
            Value::List(_) | Value::Map(_) => {
                let mut text = String::new();
                nested_json(v, &mut text)?;
                out.push(text);
            }
            Value::Duration { .. } | Value::ZonedTime { .. } => out.push(v.to_string()),
            _ => {}
        }
    }
    Ok(())
}

/// `v` for the guest, borrowed; a list or map takes the next text of `nested` (made by
/// [`nested_texts`] for the same rows, in the same order).
pub fn to_wit<'a>(v: &'a Value, nested: &mut impl Iterator<Item = &'a String>) -> WitValue<'a> {
    match v {
        Value::Null => WitValue::Null,
        Value::Bool(b) => WitValue::Boolean(*b),
        Value::Int(i) => WitValue::Int(*i),
        Value::UInt(u) => WitValue::Uint(*u),
        Value::Float(f) => WitValue::Float(*f),
        Value::Decimal(s) => WitValue::Decimal(s),
        Value::String(s) => WitValue::Text(s),
        Value::Bytes(b) => WitValue::Bytes(b),
        Value::Date(d) => WitValue::Date(*d),
        Value::DateTime(t) => WitValue::Datetime(*t),
        Value::Time(t) => WitValue::Time(*t),
        Value::Timestamp(t) => WitValue::Timestamp(*t),
        Value::Point(p) => WitValue::Point(WitPoint {
            srid: p.srid,
            x: p.x,
            y: p.y,
            z: p.z,
        }),
        Value::List(_) | Value::Map(_) => WitValue::Nested(
            nested
                .next()
                .expect("nested_texts made one per list or map"),
        ),
        Value::Duration { .. } | Value::ZonedTime { .. } => WitValue::Text(
            nested
                .next()
                .expect("nested_texts made one per interval or zoned time"),
        ),
    }
}

/// Writes a list or map member as JSON, refusing what JSON would not give back as it is.
fn nested_json(v: &Value, out: &mut String) -> Result<(), String> {
    use std::fmt::Write;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => write!(out, "{b}").unwrap(),
        Value::Int(i) => write!(out, "{i}").unwrap(),
        Value::UInt(u) if *u > i64::MAX as u64 => write!(out, "{u}").unwrap(),
        Value::Float(f) if f.is_finite() => {
            out.push_str(&serde_json::Value::from(*f).to_string());
        }
        Value::String(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nested_json(item, out)?;
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::from(k.as_str()).to_string());
                out.push(':');
                nested_json(item, out)?;
            }
            out.push('}');
        }
        other => {
            return Err(format!(
                "a list or map holding {other:?} cannot be passed to a WASM transform                  (only JSON's null, booleans, integers, finite floats, strings, lists and maps)"
            ))
        }
    }
    Ok(())
}

/// A guest's value, or why it is not one (a `nested` value that is not JSON).
pub fn from_wit(v: WitValueResult) -> Result<Value, String> {
    Ok(match v {
        WitValueResult::Timestamp(t) => Value::Timestamp(t),
        WitValueResult::Point(p) => Value::Point(Point {
            srid: p.srid,
            x: p.x,
            y: p.y,
            z: p.z,
        }),
        WitValueResult::Nested(text) => {
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("returned a nested value that is not JSON: {e}"))?;
            match doc {
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => Value::from_json(doc),
                _ => {
                    return Err(format!(
                        "returned a nested value that is not a list or map: {text}"
                    ))
                }
            }
        }
        v => scalar_from_wit(v),
    })
}

fn scalar_from_wit(v: WitValueResult) -> Value {
    match v {
        WitValueResult::Null => Value::Null,
        WitValueResult::Boolean(b) => Value::Bool(b),
        WitValueResult::Int(i) => Value::Int(i),
        WitValueResult::Uint(u) => Value::UInt(u),
        WitValueResult::Float(f) => Value::Float(f),
        WitValueResult::Decimal(s) => Value::Decimal(s),
        WitValueResult::Text(s) => Value::String(s),
        WitValueResult::Bytes(b) => Value::Bytes(b),
        WitValueResult::Date(d) => Value::Date(d),
        WitValueResult::Datetime(t) => Value::DateTime(t),
        WitValueResult::Time(t) => Value::Time(t),
        WitValueResult::Timestamp(_) | WitValueResult::Point(_) | WitValueResult::Nested(_) => {
            unreachable!("handled in from_wit")
        }
    }
}

pub fn column_to_wit(c: &Column) -> WitColumn<'_> {
    WitColumn {
        name: &c.name,
        ty: match c.ty {
            ColumnType::Bool => WitType::Boolean,
            ColumnType::Int => WitType::Int,
            ColumnType::UInt => WitType::Uint,
            ColumnType::Float => WitType::Float,
            ColumnType::Decimal => WitType::Decimal,
            ColumnType::String => WitType::Text,
            ColumnType::Bytes => WitType::Bytes,
            ColumnType::Date => WitType::Date,
            ColumnType::DateTime => WitType::Datetime,
            ColumnType::Time => WitType::Time,
            ColumnType::Timestamp => WitType::Timestamp,
            ColumnType::Point => WitType::Point,
            ColumnType::List => WitType::Nested,
            ColumnType::Duration | ColumnType::ZonedTime => WitType::Text,
            ColumnType::Any => WitType::Any,
        },
    }
}

pub fn column_from_wit(c: WitColumnResult) -> Column {
    Column {
        name: c.name,
        ty: match c.ty {
            WitType::Boolean => ColumnType::Bool,
            WitType::Int => ColumnType::Int,
            WitType::Uint => ColumnType::UInt,
            WitType::Float => ColumnType::Float,
            WitType::Decimal => ColumnType::Decimal,
            WitType::Text => ColumnType::String,
            WitType::Bytes => ColumnType::Bytes,
            WitType::Date => ColumnType::Date,
            WitType::Datetime => ColumnType::DateTime,
            WitType::Time => ColumnType::Time,
            WitType::Timestamp => ColumnType::Timestamp,
            WitType::Point => ColumnType::Point,
            WitType::Nested => ColumnType::List,
            WitType::Any => ColumnType::Any,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_values_cross_and_come_back_unchanged() {
        let values = [
            Value::Timestamp(-5),
            Value::Point(Point {
                srid: 4326,
                x: 13.4,
                y: 52.5,
                z: None,
            }),
            Value::List(vec![]),
            Value::List(vec![Value::String("a,\"b\"".into()), Value::Null]),
            Value::Map(vec![
                ("z".into(), Value::Float(1.0)),
                ("a".into(), Value::UInt(u64::MAX)),
                (
                    "m".into(),
                    Value::List(vec![Value::Int(-1), Value::Bool(true)]),
                ),
            ]),
        ];
        for v in values {
            let mut texts = Vec::new();
            nested_texts(std::slice::from_ref(&v), &mut texts).unwrap();
            let param = to_wit(&v, &mut texts.iter());
            assert_eq!(from_wit(owned(param)).unwrap(), v);
        }
    }

    #[test]
    fn intervals_and_zoned_times_cross_as_text() {
        let row = [
            Value::Duration {
                months: 1,
                days: 2,
                micros: 3_500_000,
            },
            Value::List(vec![Value::Int(1)]),
            Value::ZonedTime {
                micros: 45_000_000_000,
                offset_seconds: 19_800,
            },
        ];
        let mut texts = Vec::new();
        nested_texts(&row, &mut texts).unwrap();
        let mut it = texts.iter();
        let wit: Vec<_> = row.iter().map(|v| to_wit(v, &mut it)).collect();
        assert!(
            matches!(wit[0], WitValue::Text("P1M2DT3.5S")),
            "{:?}",
            wit[0]
        );
        assert!(matches!(wit[1], WitValue::Nested("[1]")), "{:?}", wit[1]);
        assert!(
            matches!(wit[2], WitValue::Text("12:30:00+05:30")),
            "{:?}",
            wit[2]
        );
        let col = Column {
            name: "d".into(),
            ty: ColumnType::Duration,
        };
        assert!(matches!(column_to_wit(&col).ty, WitType::Text));
    }

    #[test]
    fn what_json_cannot_carry_is_refused() {
        for v in [
            Value::List(vec![Value::Bytes(vec![1])]),
            Value::List(vec![Value::UInt(5)]),
            Value::List(vec![Value::Float(f64::NAN)]),
        ] {
            assert!(
                nested_texts(std::slice::from_ref(&v), &mut Vec::new()).is_err(),
                "{v:?}"
            );
        }
        assert!(from_wit(WitValueResult::Nested("7".into())).is_err());
    }

    /// What the guest would give back unchanged.
    fn owned(v: WitValue<'_>) -> WitValueResult {
        match v {
            WitValue::Timestamp(t) => WitValueResult::Timestamp(t),
            WitValue::Point(p) => WitValueResult::Point(p),
            WitValue::Nested(s) => WitValueResult::Nested(s.to_string()),
            other => panic!("not a value this test sends: {other:?}"),
        }
    }
}
