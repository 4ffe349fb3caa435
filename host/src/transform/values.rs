//! Rows across the WASM boundary: the SDK's values to the WIT `value` variant and back. Nothing is
//! lost either way: the variants match one to one.

use etlhost_plugin_sdk::{Column, ColumnType, Value};

use super::engine::wit::{Column as WitColumn, ColumnType as WitType, Value as WitValue};

pub fn to_wit(v: &Value) -> WitValue {
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
    }
}

pub fn from_wit(v: WitValue) -> Value {
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
            WitType::Any => ColumnType::Any,
        },
    }
}
