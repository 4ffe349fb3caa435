//! MySQL column types and values to etlhost's typed values, without loss.

use etlhost_plugin_sdk::codec;
use etlhost_plugin_sdk::value::days_from_civil;
use etlhost_plugin_sdk::{Column, ColumnType, Point, Schema, Value};
use mysql_async::consts::{ColumnFlags, ColumnType as My};
use mysql_async::Value as MyValue;

/// The character set number MySQL gives binary strings (BLOB, BINARY, VARBINARY).
const BINARY_CHARSET: u16 = 63;

/// The source's options that choose how some MySQL types are read.
#[derive(Debug, Clone, Default)]
pub struct Typing {
    pub tinyint1_as_bool: bool,
    pub bit1_as_bool: bool,
    /// Parse columns of MySQL's JSON type into lists and maps.
    pub json_value: bool,
    /// Columns (by name) parsed as JSON whatever their type: MariaDB's JSON is a LONGTEXT, and
    /// its protocol does not say that a column holds JSON.
    pub json_columns: Vec<String>,
}

/// How a column's values are converted, beyond its [`ColumnType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    Typed(ColumnType),
    /// MySQL's internal geometry format: points become [`Value::Point`], other shapes stay bytes.
    Geometry,
    /// JSON text parsed into lists, maps and scalars.
    Json,
}

/// A result's schema and how to convert each column's values, whichever client read it.
pub fn schema(columns: &[mysql_async::Column], typing: &Typing) -> (Schema, Vec<Conv>) {
    let (columns, convs): (Vec<_>, Vec<_>) = columns.iter().map(|c| column(c, typing)).unzip();
    (columns.into(), convs)
}

/// A column of a result and how to convert its values.
pub fn column(c: &mysql_async::Column, typing: &Typing) -> (Column, Conv) {
    let name = c.name_str().into_owned();
    let json = typing.json_columns.contains(&name)
        || (typing.json_value && c.column_type() == My::MYSQL_TYPE_JSON);
    let conv = if json {
        Conv::Json
    } else if c.column_type() == My::MYSQL_TYPE_GEOMETRY {
        Conv::Geometry
    } else {
        Conv::Typed(column_type(c, typing))
    };
    let ty = match conv {
        Conv::Typed(ty) => ty,
        Conv::Geometry | Conv::Json => ColumnType::Any,
    };
    (Column { name, ty }, conv)
}

fn column_type(c: &mysql_async::Column, typing: &Typing) -> ColumnType {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    // Display width 1: TINYINT(1), which is what BOOLEAN is an alias of, and BIT(1).
    let width1 = c.column_length() == 1;
    match c.column_type() {
        My::MYSQL_TYPE_TINY if width1 && typing.tinyint1_as_bool => ColumnType::Bool,
        My::MYSQL_TYPE_BIT if width1 && typing.bit1_as_bool => ColumnType::Bool,
        _ if c.flags().contains(ColumnFlags::SET_FLAG) => ColumnType::List,
        My::MYSQL_TYPE_TIMESTAMP | My::MYSQL_TYPE_TIMESTAMP2 => ColumnType::Timestamp,
        My::MYSQL_TYPE_TINY | My::MYSQL_TYPE_SHORT | My::MYSQL_TYPE_INT24 | My::MYSQL_TYPE_LONG => {
            ColumnType::Int
        }
        My::MYSQL_TYPE_YEAR => ColumnType::Int,
        My::MYSQL_TYPE_LONGLONG if unsigned => ColumnType::UInt,
        My::MYSQL_TYPE_LONGLONG => ColumnType::Int,
        My::MYSQL_TYPE_FLOAT | My::MYSQL_TYPE_DOUBLE => ColumnType::Float,
        My::MYSQL_TYPE_DECIMAL | My::MYSQL_TYPE_NEWDECIMAL => ColumnType::Decimal,
        My::MYSQL_TYPE_DATE | My::MYSQL_TYPE_NEWDATE => ColumnType::Date,
        My::MYSQL_TYPE_DATETIME | My::MYSQL_TYPE_DATETIME2 => ColumnType::DateTime,
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
    }
}

/// A column's type from information_schema (`DATA_TYPE`, `COLUMN_TYPE`), as [`column`] would
/// type its values when read.
pub fn declared(name: &str, data_type: &str, column_type: &str, typing: &Typing) -> ColumnType {
    let unsigned = column_type.contains("unsigned");
    if typing.json_columns.iter().any(|j| j == name) {
        return ColumnType::Any;
    }
    match data_type {
        "tinyint" if typing.tinyint1_as_bool && column_type.starts_with("tinyint(1)") => {
            ColumnType::Bool
        }
        "bit" if typing.bit1_as_bool && column_type == "bit(1)" => ColumnType::Bool,
        "set" => ColumnType::List,
        "timestamp" => ColumnType::Timestamp,
        // A point column holds points (or NULL); other geometries may hold any shape.
        "point" => ColumnType::Point,
        "geometry" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => ColumnType::Any,
        "json" if typing.json_value => ColumnType::Any,
        "bigint" if unsigned => ColumnType::UInt,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColumnType::Int
        }
        "float" | "double" | "real" => ColumnType::Float,
        "decimal" | "numeric" => ColumnType::Decimal,
        "date" => ColumnType::Date,
        "datetime" => ColumnType::DateTime,
        "time" => ColumnType::Time,
        "bit" | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            ColumnType::Bytes
        }
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

/// Converts one value of a column (its [`Conv`] from [`column`]). Fails only for a column read as
/// JSON whose text is not JSON.
pub fn convert(v: MyValue, conv: Conv) -> Result<Value, String> {
    match (conv, v) {
        (_, MyValue::NULL) => Ok(Value::Null),
        (Conv::Geometry, MyValue::Bytes(b)) => Ok(geometry(b)),
        (Conv::Json, MyValue::Bytes(b)) => {
            let doc: serde_json::Value =
                serde_json::from_slice(&b).map_err(|e| format!("not JSON: {e}"))?;
            Ok(Value::from_json(doc))
        }
        (Conv::Typed(ty), v) => Ok(value(v, ty)),
        (_, v) => Ok(value(v, ColumnType::Any)),
    }
}

/// MySQL's internal geometry format is a 4-byte little-endian SRID, then WKB. A point becomes a
/// [`Value::Point`] with its coordinates as stored (x first); any other shape, or bytes that are
/// not a well-formed point, stay the bytes they are, so nothing is lost.
pub fn geometry(b: Vec<u8>) -> Value {
    match wkb_point(&b) {
        Some(p) => Value::Point(p),
        None => Value::Bytes(b),
    }
}

/// The point in SRID + WKB bytes, if they hold exactly one 2D or 3D point (ISO WKB type 1 or 1001,
/// or EWKB's Z flag).
pub fn wkb_point(b: &[u8]) -> Option<Point> {
    let srid = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
    let wkb = &b[4..];
    let little = match *wkb.first()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let word = |at: usize| -> Option<[u8; 4]> { wkb.get(at..at + 4)?.try_into().ok() };
    let float = |at: usize| -> Option<f64> {
        let raw: [u8; 8] = wkb.get(at..at + 8)?.try_into().ok()?;
        Some(if little {
            f64::from_le_bytes(raw)
        } else {
            f64::from_be_bytes(raw)
        })
    };
    let kind = word(1)?;
    let kind = if little {
        u32::from_le_bytes(kind)
    } else {
        u32::from_be_bytes(kind)
    };
    let dims = match kind {
        1 => 2,
        1001 | 0x8000_0001 => 3,
        _ => return None,
    };
    if wkb.len() != 5 + 8 * dims {
        return None;
    }
    let (x, y) = (float(5)?, float(13)?);
    // WKB writes POINT EMPTY as NaN coordinates: no point to give.
    if x.is_nan() || y.is_nan() {
        return None;
    }
    let z = if dims == 3 { Some(float(21)?) } else { None };
    Some(Point { srid, x, y, z })
}

/// Converts one value of a column as [`convert`] does and pushes it onto the row being built.
/// The common types go straight from the driver's value into the buffer, with no [`Value`] made
/// (one fewer move and drop per cell on the source's hottest path); the others through [`convert`].
pub fn push(out: &mut codec::Builder, v: &MyValue, conv: Conv) -> Result<(), String> {
    if let MyValue::Bytes(b) = v {
        return push_bytes(out, b, conv);
    }
    let Conv::Typed(ty) = conv else {
        return convert(v.clone(), conv).map(|v| out.push_value(&v));
    };
    match (v, ty) {
        (MyValue::NULL, _) => out.push_null(),
        (MyValue::Int(i), ColumnType::Int) => out.push_int(*i),
        (MyValue::UInt(u), ColumnType::UInt) => out.push_uint(*u),
        (MyValue::Double(d), _) => out.push_float(*d),
        (MyValue::Date(y, mo, d, h, mi, s, us), _) if (*y, *mo, *d) != (0, 0, 0) => {
            let days = days_from_civil(*y as i64, *mo as u32, *d as u32);
            let secs = days * 86_400 + *h as i64 * 3600 + *mi as i64 * 60 + *s as i64;
            let micros = secs * 1_000_000 + *us as i64;
            match ty {
                ColumnType::Date => out.push_date(days as i32),
                // The session's time zone is UTC (see `open`), so this is the instant in UTC.
                ColumnType::Timestamp => out.push_timestamp(micros),
                _ => out.push_date_time(micros),
            }
        }
        (v, ty) => out.push_value(&value(v.clone(), ty)),
    }
    Ok(())
}

/// As [`push`] of `MyValue::Bytes(b)`, from bytes the value is not copied out of: text and
/// binary columns go straight into the buffer.
pub fn push_bytes(out: &mut codec::Builder, b: &[u8], conv: Conv) -> Result<(), String> {
    match conv {
        Conv::Typed(ColumnType::String) => {
            if out.push_utf8(b).is_err() {
                out.push_bytes(b);
            }
        }
        Conv::Typed(ColumnType::Bytes) => out.push_bytes(b),
        Conv::Typed(ty) => out.push_value(&value(MyValue::Bytes(b.to_vec()), ty)),
        conv => return convert(MyValue::Bytes(b.to_vec()), conv).map(|v| out.push_value(&v)),
    }
    Ok(())
}

/// Converts one value of a column of type `ty` (from [`column`]).
pub fn value(v: MyValue, ty: ColumnType) -> Value {
    match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) if ty == ColumnType::Bool => Value::Bool(i != 0),
        MyValue::Int(i) => Value::Int(i),
        MyValue::UInt(u) if ty == ColumnType::UInt => Value::UInt(u),
        MyValue::UInt(u) => i64::try_from(u).map_or(Value::UInt(u), Value::Int),
        // Through its shortest decimal text, so FLOAT 0.1 arrives as 0.1, not 0.10000000149.
        MyValue::Float(f) => Value::Float(f.to_string().parse().unwrap_or(f as f64)),
        MyValue::Double(d) => Value::Float(d),
        MyValue::Bytes(b) => match ty {
            ColumnType::Decimal => Value::Decimal(String::from_utf8_lossy(&b).into_owned()),
            // BIT(1) arrives as one byte.
            ColumnType::Bool => Value::Bool(b.iter().any(|x| *x != 0)),
            // A SET's members, comma-separated (a member cannot contain a comma).
            ColumnType::List => Value::List(match String::from_utf8_lossy(&b) {
                s if s.is_empty() => Vec::new(),
                s => s.split(',').map(|m| Value::String(m.to_string())).collect(),
            }),
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
            let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + s as i64;
            let micros = secs * 1_000_000 + us as i64;
            match ty {
                ColumnType::Date => Value::Date(days as i32),
                // The session's time zone is UTC (see `open`), so this is the instant in UTC.
                ColumnType::Timestamp => Value::Timestamp(micros),
                _ => Value::DateTime(micros),
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
        // Without the `Z`, which MariaDB does not accept: the session's time zone is UTC.
        Value::Timestamp(us) => MyValue::Bytes(Value::DateTime(*us).to_string().into_bytes()),
        // A SET compares with its members' text.
        Value::List(items) => MyValue::Bytes(
            items
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes(),
        ),
        Value::Point(_) | Value::Map(_) | Value::Duration { .. } | Value::ZonedTime { .. } => {
            MyValue::Bytes(v.to_string().into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn pushed_cells_are_the_converted_values() {
        let values = [
            MyValue::NULL,
            MyValue::Int(-7),
            MyValue::Int(1),
            MyValue::UInt(u64::MAX),
            MyValue::UInt(7),
            MyValue::Float(0.1),
            MyValue::Double(2.5),
            MyValue::Bytes(b"caf\xc3\xa9".to_vec()),
            MyValue::Bytes(vec![0xff, 0xfe]),
            MyValue::Bytes(b"12.50".to_vec()),
            MyValue::Bytes(b"a,b".to_vec()),
            MyValue::Bytes(br#"{"a":[1,2]}"#.to_vec()),
            MyValue::Date(0, 0, 0, 0, 0, 0, 0),
            MyValue::Date(2024, 2, 29, 23, 59, 58, 123_456),
            MyValue::Date(1969, 12, 31, 0, 0, 0, 0),
            MyValue::Time(true, 1, 2, 3, 4, 5),
        ];
        let types = [
            ColumnType::Any,
            ColumnType::Bool,
            ColumnType::Int,
            ColumnType::UInt,
            ColumnType::Float,
            ColumnType::Decimal,
            ColumnType::String,
            ColumnType::Bytes,
            ColumnType::Date,
            ColumnType::DateTime,
            ColumnType::Time,
            ColumnType::Timestamp,
            ColumnType::List,
        ];
        let mut convs: Vec<Conv> = types.into_iter().map(Conv::Typed).collect();
        convs.extend([Conv::Geometry, Conv::Json]);
        let schema = [Column {
            name: "c".into(),
            ty: ColumnType::Any,
        }];
        for conv in convs {
            for v in &values {
                let mut pushed = codec::Builder::new(&schema, 0);
                let mut converted = codec::Builder::new(&schema, 0);
                let p = push(&mut pushed, v, conv);
                let c = convert(v.clone(), conv);
                assert_eq!(p.is_ok(), c.is_ok(), "{v:?} as {conv:?}");
                if let Ok(c) = c {
                    converted.push_row(&[c]);
                    pushed.end_row();
                    assert_eq!(pushed.finish(), converted.finish(), "{v:?} as {conv:?}");
                }
            }
        }
    }

    #[test]
    fn points_from_mysql_geometry() {
        // MariaDB's bytes for ST_GeomFromText('POINT(13.4 52.5)', 4326).
        let p = wkb_point(&hex("E61000000101000000CDCCCCCCCCCC2A400000000000404A40")).unwrap();
        assert_eq!(
            p,
            Point {
                srid: 4326,
                x: 13.4,
                y: 52.5,
                z: None
            }
        );
        // Big-endian WKB, SRID 0.
        let p = wkb_point(&hex("0000000000000000013FF00000000000004000000000000000")).unwrap();
        assert_eq!((p.srid, p.x, p.y, p.z), (0, 1.0, 2.0, None));
        // ISO WKB Point Z (type 1001).
        let p = wkb_point(&hex(
            "0000000001E9030000000000000000F03F00000000000000400000000000000840",
        ))
        .unwrap();
        assert_eq!(p.z, Some(3.0));
    }

    #[test]
    fn other_geometries_stay_bytes() {
        let line = hex(
            "0000000001020000000200000000000000000000000000000000000000000000000000F03F000000000000F03F",
        );
        assert_eq!(geometry(line.clone()), Value::Bytes(line));
        for bad in ["", "E6100000", "E610000001010000", "E61000000201000000"] {
            assert_eq!(geometry(hex(bad)), Value::Bytes(hex(bad)), "{bad}");
        }
        // POINT EMPTY: NaN coordinates.
        let empty = hex("000000000101000000000000000000F87F000000000000F87F");
        assert_eq!(geometry(empty.clone()), Value::Bytes(empty));
    }

    #[test]
    fn sets_and_json() {
        let set = |s: &str| value(MyValue::Bytes(s.into()), ColumnType::List);
        assert_eq!(set(""), Value::List(vec![]));
        assert_eq!(
            set("a,c"),
            Value::List(vec![Value::String("a".into()), Value::String("c".into())])
        );
        let doc = convert(
            MyValue::Bytes(br#"{"z":[1,18446744073709551615,2.5,null],"a":{"b":true}}"#.to_vec()),
            Conv::Json,
        )
        .unwrap();
        assert_eq!(
            doc,
            Value::Map(vec![
                (
                    "z".into(),
                    Value::List(vec![
                        Value::Int(1),
                        Value::UInt(u64::MAX),
                        Value::Float(2.5),
                        Value::Null
                    ])
                ),
                (
                    "a".into(),
                    Value::Map(vec![("b".into(), Value::Bool(true))])
                ),
            ])
        );
        assert_eq!(
            convert(MyValue::Bytes(b"{oops".to_vec()), Conv::Json).unwrap_err(),
            "not JSON: key must be a string at line 1 column 2"
        );
    }
}
