//! MySQL column types and values to etlhost's typed values, without loss.

use etlhost_plugin_sdk::value::days_from_civil;
use etlhost_plugin_sdk::{Column, ColumnType, Value};
use mysql_async::consts::{ColumnFlags, ColumnType as My};
use mysql_async::Value as MyValue;

/// The character set number MySQL gives binary strings (BLOB, BINARY, VARBINARY).
const BINARY_CHARSET: u16 = 63;

pub fn column(c: &mysql_async::Column) -> Column {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let ty = match c.column_type() {
        My::MYSQL_TYPE_TINY | My::MYSQL_TYPE_SHORT | My::MYSQL_TYPE_INT24 | My::MYSQL_TYPE_LONG => {
            ColumnType::Int
        }
        My::MYSQL_TYPE_YEAR => ColumnType::Int,
        My::MYSQL_TYPE_LONGLONG if unsigned => ColumnType::UInt,
        My::MYSQL_TYPE_LONGLONG => ColumnType::Int,
        My::MYSQL_TYPE_FLOAT | My::MYSQL_TYPE_DOUBLE => ColumnType::Float,
        My::MYSQL_TYPE_DECIMAL | My::MYSQL_TYPE_NEWDECIMAL => ColumnType::Decimal,
        My::MYSQL_TYPE_DATE | My::MYSQL_TYPE_NEWDATE => ColumnType::Date,
        My::MYSQL_TYPE_DATETIME
        | My::MYSQL_TYPE_DATETIME2
        | My::MYSQL_TYPE_TIMESTAMP
        | My::MYSQL_TYPE_TIMESTAMP2 => ColumnType::DateTime,
        My::MYSQL_TYPE_TIME | My::MYSQL_TYPE_TIME2 => ColumnType::Time,
        My::MYSQL_TYPE_BIT | My::MYSQL_TYPE_GEOMETRY => ColumnType::Bytes,
        My::MYSQL_TYPE_TINY_BLOB
        | My::MYSQL_TYPE_MEDIUM_BLOB
        | My::MYSQL_TYPE_LONG_BLOB
        | My::MYSQL_TYPE_BLOB
        | My::MYSQL_TYPE_VARCHAR
        | My::MYSQL_TYPE_VAR_STRING
        | My::MYSQL_TYPE_STRING
            if c.character_set() == BINARY_CHARSET =>
        {
            ColumnType::Bytes
        }
        My::MYSQL_TYPE_NULL => ColumnType::Any,
        _ => ColumnType::String,
    };
    Column {
        name: c.name_str().into_owned(),
        ty,
    }
}

/// A column's type from information_schema (`DATA_TYPE`, `COLUMN_TYPE`), as [`column`] would
/// type its values when read.
pub fn declared(data_type: &str, column_type: &str) -> ColumnType {
    let unsigned = column_type.contains("unsigned");
    match data_type {
        "bigint" if unsigned => ColumnType::UInt,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColumnType::Int
        }
        "float" | "double" | "real" => ColumnType::Float,
        "decimal" | "numeric" => ColumnType::Decimal,
        "date" => ColumnType::Date,
        "datetime" | "timestamp" => ColumnType::DateTime,
        "time" => ColumnType::Time,
        "bit" | "geometry" | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" => ColumnType::Bytes,
        _ => ColumnType::String,
    }
}

/// The SQL name of a column's type, for messages: `bigint unsigned`, `varchar`, `datetime`.
pub fn declared_name(c: &mysql_async::Column) -> String {
    let binary = c.character_set() == BINARY_CHARSET;
    let name = match c.column_type() {
        My::MYSQL_TYPE_TINY => "tinyint",
        My::MYSQL_TYPE_SHORT => "smallint",
        My::MYSQL_TYPE_INT24 => "mediumint",
        My::MYSQL_TYPE_LONG => "int",
        My::MYSQL_TYPE_LONGLONG => "bigint",
        My::MYSQL_TYPE_YEAR => "year",
        My::MYSQL_TYPE_FLOAT => "float",
        My::MYSQL_TYPE_DOUBLE => "double",
        My::MYSQL_TYPE_DECIMAL | My::MYSQL_TYPE_NEWDECIMAL => "decimal",
        My::MYSQL_TYPE_DATE | My::MYSQL_TYPE_NEWDATE => "date",
        My::MYSQL_TYPE_DATETIME | My::MYSQL_TYPE_DATETIME2 => "datetime",
        My::MYSQL_TYPE_TIMESTAMP | My::MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        My::MYSQL_TYPE_TIME | My::MYSQL_TYPE_TIME2 => "time",
        My::MYSQL_TYPE_VARCHAR | My::MYSQL_TYPE_VAR_STRING if binary => "varbinary",
        My::MYSQL_TYPE_VARCHAR | My::MYSQL_TYPE_VAR_STRING => "varchar",
        My::MYSQL_TYPE_STRING if binary => "binary",
        My::MYSQL_TYPE_STRING => "char",
        My::MYSQL_TYPE_TINY_BLOB
        | My::MYSQL_TYPE_MEDIUM_BLOB
        | My::MYSQL_TYPE_LONG_BLOB
        | My::MYSQL_TYPE_BLOB
            if binary =>
        {
            "blob"
        }
        My::MYSQL_TYPE_TINY_BLOB
        | My::MYSQL_TYPE_MEDIUM_BLOB
        | My::MYSQL_TYPE_LONG_BLOB
        | My::MYSQL_TYPE_BLOB => "text",
        My::MYSQL_TYPE_JSON => "json",
        My::MYSQL_TYPE_BIT => "bit",
        My::MYSQL_TYPE_ENUM => "enum",
        My::MYSQL_TYPE_SET => "set",
        My::MYSQL_TYPE_GEOMETRY => "geometry",
        other => {
            return format!("{other:?}")
                .trim_start_matches("MYSQL_TYPE_")
                .to_lowercase()
        }
    };
    if c.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
        format!("{name} unsigned")
    } else {
        name.to_string()
    }
}

/// Converts one value of a column of type `ty` (from [`column`]).
pub fn value(v: MyValue, ty: ColumnType) -> Value {
    match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => Value::Int(i),
        MyValue::UInt(u) if ty == ColumnType::UInt => Value::UInt(u),
        MyValue::UInt(u) => i64::try_from(u).map_or(Value::UInt(u), Value::Int),
        // Through its shortest decimal text, so FLOAT 0.1 arrives as 0.1, not 0.10000000149.
        MyValue::Float(f) => Value::Float(f.to_string().parse().unwrap_or(f as f64)),
        MyValue::Double(d) => Value::Float(d),
        MyValue::Bytes(b) => match ty {
            ColumnType::Decimal => Value::Decimal(String::from_utf8_lossy(&b).into_owned()),
            ColumnType::Bytes => Value::Bytes(b),
            ColumnType::Int => parse_or_text(b, |s| s.parse().ok().map(Value::Int)),
            ColumnType::UInt => parse_or_text(b, |s| s.parse().ok().map(Value::UInt)),
            ColumnType::Float => parse_or_text(b, |s| s.parse().ok().map(Value::Float)),
            _ => match String::from_utf8(b) {
                Ok(s) => Value::String(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            },
        },
        // MySQL's zero date ('0000-00-00') means "no date".
        MyValue::Date(0, 0, 0, ..) => Value::Null,
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            let days = days_from_civil(y as i64, mo as u32, d as u32);
            if ty == ColumnType::Date {
                Value::Date(days as i32)
            } else {
                let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + s as i64;
                Value::DateTime(secs * 1_000_000 + us as i64)
            }
        }
        MyValue::Time(neg, d, h, mi, s, us) => {
            let secs = d as i64 * 86_400 + h as i64 * 3600 + mi as i64 * 60 + s as i64;
            let micros = secs * 1_000_000 + us as i64;
            Value::Time(if neg { -micros } else { micros })
        }
    }
}

// The text protocol sends numbers as text; keep the text if it is not a number.
fn parse_or_text(b: Vec<u8>, parse: impl FnOnce(&str) -> Option<Value>) -> Value {
    let s = String::from_utf8_lossy(&b).into_owned();
    parse(&s).unwrap_or(Value::String(s))
}

/// A host value as a statement parameter (split bounds).
pub fn param(v: &Value) -> MyValue {
    match v {
        Value::Null => MyValue::NULL,
        Value::Bool(b) => MyValue::Int(*b as i64),
        Value::Int(i) => MyValue::Int(*i),
        Value::UInt(u) => MyValue::UInt(*u),
        Value::Float(f) => MyValue::Double(*f),
        Value::Decimal(s) | Value::String(s) => MyValue::Bytes(s.clone().into_bytes()),
        Value::Bytes(b) => MyValue::Bytes(b.clone()),
        Value::Date(_) | Value::DateTime(_) | Value::Time(_) => {
            MyValue::Bytes(v.to_string().into_bytes())
        }
    }
}
