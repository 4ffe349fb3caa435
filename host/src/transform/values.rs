//! Rows across the WASM boundary: the SDK's values to the WIT `value` variant and back. Nothing is
//! lost either way: scalars match one to one, and lists and maps (which WIT cannot nest) cross as
//! JSON text whose scalars are exactly the ones JSON has. A list or map holding anything else
//! (bytes, a date, a decimal, ...) or an unsigned integer JSON would bring back as a signed one
//! cannot cross: [`to_wit`] refuses it rather than change it.

use etlhost_plugin_sdk::{Column, ColumnType, Point, Value};

use super::engine::wit::{
    Column as WitColumn, ColumnType as WitType, Point as WitPoint, Value as WitValue,
};

/// A row's values for the guest, or why one of them cannot cross.
pub fn row_to_wit(row: &[Value]) -> Result<Vec<WitValue>, String> {
    row.iter().map(to_wit).collect()
}

/// A guest's row back as values, or why it cannot be read.
pub fn row_from_wit(row: Vec<WitValue>) -> Result<Vec<Value>, String> {
    row.into_iter().map(from_wit).collect()
}

pub fn to_wit(v: &Value) -> Result<WitValue, String> {
    Ok(match v {
        Value::Timestamp(t) => WitValue::Timestamp(*t),
        Value::Point(p) => WitValue::Point(WitPoint {
            srid: p.srid,
            x: p.x,
            y: p.y,
            z: p.z,
        }),
        Value::List(_) | Value::Map(_) => {
            let mut text = String::new();
            nested_json(v, &mut text)?;
            WitValue::Nested(text)
        }
        v => scalar_to_wit(v),
    })
}

fn scalar_to_wit(v: &Value) -> WitValue {
    match v {
        Value::Null => WitValue::Null,
        Value::Bool(b) => WitValue::Boolean(*b),
        Value::Int(i) => WitValue::Int(*i),
        Value::UInt(u) => WitValue::Uint(*u),
        Value::Float(f) => WitValue::Float(*f),
        Value::Decimal(s) => WitValue::Decimal(s.clone()),
        Value::String(s) => WitValue::Text(s.clone()),
        Value::Bytes(b) => WitValue::Bytes(b.clone()),
        Value::Date(d) => WitValue::Date(*d),
        Value::DateTime(t) => WitValue::Datetime(*t),
        Value::Time(t) => WitValue::Time(*t),
        Value::Timestamp(_) | Value::Point(_) | Value::List(_) | Value::Map(_) => {
            unreachable!("handled in to_wit")
        }
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
pub fn from_wit(v: WitValue) -> Result<Value, String> {
    Ok(match v {
        WitValue::Timestamp(t) => Value::Timestamp(t),
        WitValue::Point(p) => Value::Point(Point {
            srid: p.srid,
            x: p.x,
            y: p.y,
            z: p.z,
        }),
        WitValue::Nested(text) => {
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

fn scalar_from_wit(v: WitValue) -> Value {
    match v {
        WitValue::Null => Value::Null,
        WitValue::Boolean(b) => Value::Bool(b),
        WitValue::Int(i) => Value::Int(i),
        WitValue::Uint(u) => Value::UInt(u),
        WitValue::Float(f) => Value::Float(f),
        WitValue::Decimal(s) => Value::Decimal(s),
        WitValue::Text(s) => Value::String(s),
        WitValue::Bytes(b) => Value::Bytes(b),
        WitValue::Date(d) => Value::Date(d),
        WitValue::Datetime(t) => Value::DateTime(t),
        WitValue::Time(t) => Value::Time(t),
        WitValue::Timestamp(_) | WitValue::Point(_) | WitValue::Nested(_) => {
            unreachable!("handled in from_wit")
        }
    }
}

pub fn column_to_wit(c: &Column) -> WitColumn {
    WitColumn {
        name: c.name.clone(),
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
            ColumnType::Any => WitType::Any,
        },
    }
}

pub fn column_from_wit(c: WitColumn) -> Column {
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
            assert_eq!(from_wit(to_wit(&v).unwrap()).unwrap(), v);
        }
    }

    #[test]
    fn what_json_cannot_carry_is_refused() {
        for v in [
            Value::List(vec![Value::Bytes(vec![1])]),
            Value::List(vec![Value::UInt(5)]),
            Value::List(vec![Value::Float(f64::NAN)]),
        ] {
            assert!(to_wit(&v).is_err(), "{v:?}");
        }
        assert!(from_wit(WitValue::Nested("7".into())).is_err());
    }
}
