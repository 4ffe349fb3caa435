//! PostgreSQL column types into the SDK's values, from their binary send/recv form (the form of
//! COPY BINARY and of pgoutput with `binary 'true'`).
//!
//! SKELETON (helper A): only int2/int4/int8/text/varchar/bool are decoded; every other type is
//! selected as `::text`. Helper B owns this module and replaces the body; the interface stays.

use etlhost_plugin_sdk::{Column, ColumnType, Value};
use tokio_postgres::types::Type;

/// Options that change how values are typed.
#[derive(Debug, Clone, Default)]
pub struct Typing {
    pub json_value: bool,
}

/// How one result column is selected and decoded.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub column: Column,
    pub decode: Decode,
    pub warning: Option<String>,
}

/// A column's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Int2,
    Int4,
    Int8,
    Bool,
    Text,
}

/// For the SELECT list: `expr` is the quoted column (e.g. `"price"`); returns what to select,
/// adding a cast where the binary form is not decoded.
pub fn select_expr(expr: &str, ty: &Type) -> String {
    if decoded(ty).is_some() {
        expr.to_string()
    } else {
        format!("{expr}::text")
    }
}

fn decoded(ty: &Type) -> Option<(Decode, ColumnType)> {
    Some(match *ty {
        Type::INT2 => (Decode::Int2, ColumnType::Int),
        Type::INT4 => (Decode::Int4, ColumnType::Int),
        Type::INT8 => (Decode::Int8, ColumnType::Int),
        Type::BOOL => (Decode::Bool, ColumnType::Bool),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            (Decode::Text, ColumnType::String)
        }
        _ => return None,
    })
}

/// The plan of the column `name` whose type (as prepared, before `select_expr`'s cast) is `ty`.
pub fn plan(name: &str, ty: &Type, typing: &Typing) -> ColumnPlan {
    let _ = typing;
    let (decode, ty_out, warning) = match decoded(ty) {
        Some((d, t)) => (d, t, None),
        None => (
            Decode::Text,
            ColumnType::String,
            Some(format!(
                "column `{name}`: type {} is read as its text",
                ty.name()
            )),
        ),
    };
    ColumnPlan {
        column: Column {
            name: name.to_string(),
            ty: ty_out,
        },
        decode,
        warning,
    }
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

impl Decode {
    /// One value from its binary form; `None` is SQL NULL.
    pub fn decode(&self, raw: Option<&[u8]>) -> Result<Value, String> {
        let Some(raw) = raw else {
            return Ok(Value::Null);
        };
        Ok(match self {
            Decode::Int2 => Value::Int(i16::from_be_bytes(fixed(raw)?).into()),
            Decode::Int4 => Value::Int(i32::from_be_bytes(fixed(raw)?).into()),
            Decode::Int8 => Value::Int(i64::from_be_bytes(fixed(raw)?)),
            Decode::Bool => Value::Bool(fixed::<1>(raw)?[0] != 0),
            Decode::Text => Value::String(
                std::str::from_utf8(raw)
                    .map_err(|e| format!("not UTF-8: {e}"))?
                    .to_string(),
            ),
        })
    }
}
