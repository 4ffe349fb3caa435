//! PostgreSQL column types into the SDK's values, from their binary send/recv form (the form of
//! COPY BINARY and of pgoutput with `binary 'true'`).
//!
//! Most types are decoded from their binary form. A few are selected as text instead (the cast
//! is added by [`select_expr`], and their plan decodes text): ranges and multiranges, whose text
//! form is PostgreSQL's own (`[1,10)`, `["2024-01-01 00:00:00",infinity)`), which a client could
//! only re-implement (the element's text form depends on the session's DateStyle and TimeZone);
//! and every type this module does not know (extension types such as pgvector's `vector`,
//! `xml`, `bit`, the geometric types of core PostgreSQL), with a warning naming the column.
//!
//! Decisions, each documented in the types table:
//! - `numeric` NaN and ±Infinity are kept as the decimals `NaN`, `Infinity`, `-Infinity` (the
//!   bolt sink writes decimals as text, or with `decimal: float` as the float they parse to);
//! - dates and timestamps `infinity` / `-infinity` are refused: no graph value means it;
//! - `money` is its amount with two decimals (the `lc_monetary` of nearly every server);
//! - arrays become lists: several dimensions nest, NULL elements stay NULL, lower bounds are
//!   dropped (a list starts at 0).

use std::fmt::Write;

use etlhost_plugin_sdk::{codec, Column, ColumnType, Point, Value};
use tokio_postgres::types::{Kind, Type};

/// Options that change how values are typed.
#[derive(Debug, Clone, Default)]
pub struct Typing {
    /// `json: value`: json and jsonb documents as maps and lists instead of their text.
    pub json_value: bool,
}

/// How one result column is selected and decoded.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub column: Column,
    pub decode: Decode,
    pub warning: Option<String>,
}

/// A column's decoder: one per binary form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode {
    Int2,
    Int4,
    Int8,
    /// `oid` and the other unsigned 32-bit identifiers.
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    Bool,
    /// UTF-8 text: text, varchar, char(n), name, enums, and everything selected `::text`.
    Text,
    /// The one-byte `"char"`.
    Char,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// json (text), or jsonb (a version byte, then text); `value`: parsed into maps and lists.
    Json {
        jsonb: bool,
        value: bool,
    },
    Inet,
    MacAddr,
    TsVector,
    /// PostGIS geometry and geography (EWKB).
    Geometry,
    Array(Box<Decode>),
}

/// For the SELECT list: `expr` is the quoted column (e.g. `"price"`); returns what to select,
/// adding a cast where the binary form is not decoded.
pub fn select_expr(expr: &str, ty: &Type) -> String {
    match cast(ty) {
        Some(to) => format!("{expr}::{to}"),
        None => expr.to_string(),
    }
}

/// The cast a column of type `ty` is selected with, if its binary form is not decoded.
fn cast(ty: &Type) -> Option<&'static str> {
    match ty.kind() {
        Kind::Domain(base) => cast(base),
        Kind::Array(elem) => cast(elem).map(|_| "text[]"),
        _ if known(ty).is_some() || matches!(*ty, Type::JSON | Type::JSONB) => None,
        _ => Some("text"),
    }
}

/// The decoder and column type of a type decoded from its binary form; `None`: selected as text.
fn known(ty: &Type) -> Option<(Decode, ColumnType)> {
    use ColumnType as C;
    Some(match *ty {
        Type::INT2 => (Decode::Int2, C::Int),
        Type::INT4 => (Decode::Int4, C::Int),
        Type::INT8 => (Decode::Int8, C::Int),
        Type::OID | Type::XID | Type::CID | Type::REGCLASS | Type::REGTYPE | Type::REGPROC => {
            (Decode::Oid, C::Int)
        }
        Type::FLOAT4 => (Decode::Float4, C::Float),
        Type::FLOAT8 => (Decode::Float8, C::Float),
        Type::NUMERIC => (Decode::Numeric, C::Decimal),
        Type::MONEY => (Decode::Money, C::Decimal),
        Type::BOOL => (Decode::Bool, C::Bool),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            (Decode::Text, C::String)
        }
        Type::CHAR => (Decode::Char, C::String),
        Type::BYTEA => (Decode::Bytea, C::Bytes),
        Type::DATE => (Decode::Date, C::Date),
        Type::TIME => (Decode::Time, C::Time),
        Type::TIMETZ => (Decode::TimeTz, C::ZonedTime),
        Type::TIMESTAMP => (Decode::Timestamp, C::DateTime),
        Type::TIMESTAMPTZ => (Decode::TimestampTz, C::Timestamp),
        Type::INTERVAL => (Decode::Interval, C::Duration),
        Type::UUID => (Decode::Uuid, C::String),
        Type::INET | Type::CIDR => (Decode::Inet, C::String),
        Type::MACADDR | Type::MACADDR8 => (Decode::MacAddr, C::String),
        Type::TS_VECTOR => (Decode::TsVector, C::String),
        _ => return extension(ty),
    })
}

/// Types known by name rather than by a fixed OID: enums, and PostGIS's (an extension's OIDs
/// differ from database to database).
fn extension(ty: &Type) -> Option<(Decode, ColumnType)> {
    match (ty.kind(), ty.name()) {
        (Kind::Enum(_), _) => Some((Decode::Text, ColumnType::String)),
        (Kind::Simple, "geometry" | "geography") => Some((Decode::Geometry, ColumnType::Any)),
        _ => None,
    }
}

/// The plan of the column `name` whose type (as prepared, before `select_expr`'s cast) is `ty`.
pub fn plan(name: &str, ty: &Type, typing: &Typing) -> ColumnPlan {
    let (decode, column_type, warning) = decoder(name, ty, typing);
    ColumnPlan {
        column: Column {
            name: name.to_string(),
            ty: column_type,
        },
        decode,
        warning,
    }
}

fn decoder(name: &str, ty: &Type, typing: &Typing) -> (Decode, ColumnType, Option<String>) {
    if let Kind::Domain(base) = ty.kind() {
        return decoder(name, base, typing);
    }
    if let Kind::Array(elem) = ty.kind() {
        let (inner, _, warning) = decoder(name, elem, typing);
        return (Decode::Array(Box::new(inner)), ColumnType::List, warning);
    }
    if let Type::JSON | Type::JSONB = *ty {
        let decode = Decode::Json {
            jsonb: *ty == Type::JSONB,
            value: typing.json_value,
        };
        let column_type = match typing.json_value {
            true => ColumnType::Any,
            false => ColumnType::String,
        };
        return (decode, column_type, None);
    }
    match known(ty) {
        Some((decode, column_type)) => (decode, column_type, None),
        None if matches!(ty.kind(), Kind::Range(_) | Kind::Multirange(_)) => {
            (Decode::Text, ColumnType::String, None)
        }
        None => (
            Decode::Text,
            ColumnType::String,
            Some(format!(
                "column `{name}`: type {} has no etlhost mapping; it is read as its text \
                 (cast it in a `query:` to choose another form)",
                ty.name()
            )),
        ),
    }
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = EPOCH_DAYS as i64 * 86_400_000_000;

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn be_i64(raw: &[u8]) -> Result<i64, String> {
    Ok(i64::from_be_bytes(fixed(raw)?))
}

fn text(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))
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
            Decode::Int8 => Value::Int(be_i64(raw)?),
            Decode::Oid => Value::Int(u32::from_be_bytes(fixed(raw)?).into()),
            Decode::Float4 => Value::Float(float4(f32::from_be_bytes(fixed(raw)?))),
            Decode::Float8 => Value::Float(f64::from_be_bytes(fixed(raw)?)),
            Decode::Numeric => Value::Decimal(numeric(raw)?),
            Decode::Money => Value::Decimal(money(be_i64(raw)?)),
            Decode::Bool => Value::Bool(fixed::<1>(raw)?[0] != 0),
            Decode::Text => Value::String(text(raw)?.to_string()),
            Decode::Char => Value::String(char::from(fixed::<1>(raw)?[0]).to_string()),
            Decode::Bytea => Value::Bytes(raw.to_vec()),
            Decode::Uuid => Value::String(uuid(fixed(raw)?)),
            Decode::Json { jsonb, value } => json(raw, *jsonb, *value)?,
            Decode::Inet => Value::String(inet(raw)?),
            Decode::MacAddr => Value::String(mac(raw)?),
            Decode::TsVector => Value::String(tsvector(raw)?),
            Decode::Geometry => geometry(raw)?,
            Decode::Array(elem) => array(raw, elem)?,
            temporal => temporal.temporal(raw)?,
        })
    }

    /// [`Decode::decode`] straight into a batch: the common types (integers, floats, text,
    /// bytea, dates and timestamps) are pushed from their bytes without building a [`Value`] (no
    /// allocation per text cell); the others are decoded, then pushed.
    pub fn push(&self, raw: Option<&[u8]>, out: &mut codec::Builder) -> Result<(), String> {
        let Some(b) = raw else {
            out.push_null();
            return Ok(());
        };
        match self {
            Decode::Int2 => out.push_int(i16::from_be_bytes(fixed(b)?).into()),
            Decode::Int4 => out.push_int(i32::from_be_bytes(fixed(b)?).into()),
            Decode::Int8 => out.push_int(be_i64(b)?),
            Decode::Float8 => out.push_float(f64::from_be_bytes(fixed(b)?)),
            Decode::Text => out.push_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?,
            Decode::Bytea => out.push_bytes(b),
            Decode::Timestamp => out.push_date_time(timestamp(b, "timestamp")?),
            Decode::TimestampTz => out.push_timestamp(timestamp(b, "timestamptz")?),
            other => out.push_value(&other.decode(raw)?),
        }
        Ok(())
    }

    fn temporal(&self, raw: &[u8]) -> Result<Value, String> {
        Ok(match self {
            Decode::Date => {
                match i32::from_be_bytes(fixed(raw)?) {
                    i32::MAX | i32::MIN => return Err(infinite("date")),
                    days => Value::Date(days.checked_add(EPOCH_DAYS).ok_or_else(|| {
                        format!("date {days} days from 2000-01-01 is out of range")
                    })?),
                }
            }
            Decode::Time => Value::Time(be_i64(raw)?),
            Decode::TimeTz => {
                let raw: [u8; 12] = fixed(raw)?;
                Value::ZonedTime {
                    micros: be_i64(&raw[..8])?,
                    // PostgreSQL keeps the zone as seconds west of UTC; an offset is east.
                    offset_seconds: -i32::from_be_bytes(fixed(&raw[8..])?),
                }
            }
            Decode::Timestamp => Value::DateTime(timestamp(raw, "timestamp")?),
            Decode::TimestampTz => Value::Timestamp(timestamp(raw, "timestamptz")?),
            Decode::Interval => {
                let raw: [u8; 16] = fixed(raw)?;
                Value::Duration {
                    micros: be_i64(&raw[..8])?,
                    days: i32::from_be_bytes(fixed(&raw[8..12])?).into(),
                    months: i32::from_be_bytes(fixed(&raw[12..])?).into(),
                }
            }
            other => unreachable!("{other:?} is not a date or time"),
        })
    }
}

/// The float a `real` shows, not its binary expansion: 0.1 stays 0.1 rather than
/// 0.10000000149011612 (PostgreSQL prints the shortest text that reads back as the same real).
fn float4(f: f32) -> f64 {
    match f.is_finite() {
        true => f.to_string().parse().unwrap_or(f as f64),
        false => f as f64,
    }
}

fn infinite(ty: &str) -> String {
    format!(
        "{ty} 'infinity' or '-infinity' has no counterpart in the graph: leave such rows out or \
         map them in a `query:` (e.g. `NULLIF(col, 'infinity')`)"
    )
}

fn timestamp(raw: &[u8], ty: &str) -> Result<i64, String> {
    match be_i64(raw)? {
        i64::MAX | i64::MIN => Err(infinite(ty)),
        us => us
            .checked_add(EPOCH_MICROS)
            .ok_or_else(|| format!("{ty} {us} µs from 2000-01-01 is out of range")),
    }
}

/// `numeric`'s binary form: digit count, weight (of the first digit, in powers of 10,000), sign,
/// display scale, then base-10,000 digits; as its canonical decimal text with `dscale` decimals.
fn numeric(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        Ok(u16::from_be_bytes(fixed(
            raw.get(i * 2..i * 2 + 2).unwrap_or_default(),
        )?))
    };
    let (ndigits, weight) = (word(0)? as usize, word(1)? as i16 as i32);
    let (sign, dscale) = (word(2)?, word(3)? as usize);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        s => return Err(format!("numeric with an unknown sign word {s:#06x}")),
    }
    if raw.len() != 8 + 2 * ndigits {
        return Err(format!(
            "numeric of {ndigits} digits in {} bytes",
            raw.len()
        ));
    }
    let digit = |i: i32| -> u16 {
        match usize::try_from(i) {
            Ok(i) if i < ndigits => word(4 + i).unwrap_or(0),
            _ => 0,
        }
    };
    let mut out = String::with_capacity(8 + 4 * ndigits);
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    }
    for i in 0..=weight {
        match i {
            0 => write!(out, "{}", digit(0)),
            _ => write!(out, "{:04}", digit(i)),
        }
        .expect("writing to a string");
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            write!(out, "{:04}", digit(i)).expect("writing to a string");
            i += 1;
        }
        out.truncate(start + dscale);
    }
    Ok(out)
}

/// `money` is an int8 of cents (`lc_monetary`'s fraction digits, two on nearly every server).
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn uuid(b: [u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        write!(s, "{byte:02x}").expect("writing to a string");
    }
    s
}

fn json(raw: &[u8], jsonb: bool, value: bool) -> Result<Value, String> {
    let body = match (jsonb, raw.split_first()) {
        (false, _) => raw,
        (true, Some((1, body))) => body,
        (true, Some((v, _))) => return Err(format!("jsonb binary format version {v} (known: 1)")),
        (true, None) => return Err("jsonb without its version byte".into()),
    };
    let text = text(body)?;
    if !value {
        return Ok(Value::String(text.to_string()));
    }
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    Ok(Value::from_json(doc))
}

/// inet and cidr: family (2 IPv4, 3 IPv6), prefix bits, is-cidr, address length, address; as
/// PostgreSQL prints them (an inet's `/bits` only when it is not a single host, a cidr's always).
fn inet(raw: &[u8]) -> Result<String, String> {
    let [family, bits, is_cidr, len] = fixed::<4>(raw.get(..4).unwrap_or_default())?;
    let addr = &raw[4..];
    if addr.len() != len as usize {
        return Err(format!(
            "inet address of {len} bytes in {} bytes",
            addr.len()
        ));
    }
    let (text, max) = match family {
        2 => (std::net::Ipv4Addr::from(fixed::<4>(addr)?).to_string(), 32),
        3 => (ipv6(fixed(addr)?), 128),
        f => return Err(format!("inet address family {f} (known: 2, 3)")),
    };
    Ok(match is_cidr != 0 || bits != max {
        true => format!("{text}/{bits}"),
        false => text,
    })
}

/// RFC 5952's form, except that PostgreSQL also writes an IPv4-compatible address (`::1.2.3.4`)
/// with its IPv4 part dotted, as it does an IPv4-mapped one (`::ffff:1.2.3.4`).
fn ipv6(b: [u8; 16]) -> String {
    let addr = std::net::Ipv6Addr::from(b);
    let words = addr.segments();
    if words[..6] == [0; 6] && words[6] != 0 {
        return format!("::{}", std::net::Ipv4Addr::new(b[12], b[13], b[14], b[15]));
    }
    addr.to_string()
}

fn mac(raw: &[u8]) -> Result<String, String> {
    if raw.len() != 6 && raw.len() != 8 {
        return Err(format!(
            "a MAC address of {} bytes (known: 6, 8)",
            raw.len()
        ));
    }
    let hex: Vec<String> = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex.join(":"))
}

/// tsvector: lexeme count, then each lexeme as NUL-terminated text, its position count and
/// positions (weight in the top two bits); as PostgreSQL prints it: `'fat':2A,4 'rat':3`.
fn tsvector(raw: &[u8]) -> Result<String, String> {
    let short = || "a truncated tsvector".to_string();
    let count = i32::from_be_bytes(fixed(raw.get(..4).ok_or_else(short)?)?);
    let (mut at, mut out) = (4, String::with_capacity(raw.len() * 2));
    for i in 0..count {
        let rest = raw.get(at..).ok_or_else(short)?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(short)?;
        if i > 0 {
            out.push(' ');
        }
        out.push('\'');
        for c in text(&rest[..end])?.chars() {
            if c == '\'' || c == '\\' {
                out.push(c);
            }
            out.push(c);
        }
        out.push('\'');
        at += end + 1;
        let npos = u16::from_be_bytes(fixed(raw.get(at..at + 2).ok_or_else(short)?)?);
        at += 2;
        for p in 0..npos {
            let pos = u16::from_be_bytes(fixed(raw.get(at..at + 2).ok_or_else(short)?)?);
            at += 2;
            out.push(if p == 0 { ':' } else { ',' });
            write!(out, "{}", pos & 0x3fff).expect("writing to a string");
            match pos >> 14 {
                3 => out.push('A'),
                2 => out.push('B'),
                1 => out.push('C'),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// PostGIS EWKB: a point is a [`Value::Point`] (its SRID, 0 when it has none); any other shape
/// is the bytes the mysql source gives for one: the SRID as four little-endian bytes, then the
/// WKB without EWKB's SRID flag and field.
fn geometry(raw: &[u8]) -> Result<Value, String> {
    let bad = || "not PostGIS EWKB".to_string();
    let little = match raw.first() {
        Some(1) => true,
        Some(0) => false,
        _ => return Err(bad()),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = raw.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let ty = u32_at(1).ok_or_else(bad)?;
    let has_srid = ty & 0x2000_0000 != 0;
    let srid = match has_srid {
        true => u32_at(5).ok_or_else(bad)?,
        false => 0,
    };
    let body = &raw[if has_srid { 9 } else { 5 }..];
    if let Some(p) = point(ty, body, little, srid) {
        return Ok(Value::Point(p));
    }
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&srid.to_le_bytes());
    out.push(raw[0]);
    let plain = ty & !0x2000_0000;
    out.extend_from_slice(&match little {
        true => plain.to_le_bytes(),
        false => plain.to_be_bytes(),
    });
    out.extend_from_slice(body);
    Ok(Value::Bytes(out))
}

/// A 2D point, or a 3D one (EWKB's Z flag without M); `None` for other shapes and `POINT EMPTY`
/// (NaN coordinates).
fn point(ty: u32, body: &[u8], little: bool, srid: u32) -> Option<Point> {
    let dims = match ty & !0x2000_0000 {
        1 => 2,
        0x8000_0001 => 3,
        _ => return None,
    };
    if body.len() != 8 * dims {
        return None;
    }
    let f = |i: usize| -> f64 {
        let b: [u8; 8] = body[i * 8..i * 8 + 8].try_into().expect("8 bytes");
        if little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        }
    };
    let (x, y) = (f(0), f(1));
    if x.is_nan() && y.is_nan() {
        return None;
    }
    Some(Point {
        srid,
        x,
        y,
        z: (dims == 3).then(|| f(2)),
    })
}

/// An array: dimension count, has-NULLs flag, element OID, (length, lower bound) per dimension,
/// then each element as a length (-1: NULL) and its binary form, last dimension fastest.
fn array(raw: &[u8], elem: &Decode) -> Result<Value, String> {
    let int = |at: usize| -> Result<i32, String> {
        let b = raw.get(at..at + 4).ok_or("a truncated array")?;
        Ok(i32::from_be_bytes(fixed(b)?))
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok(Value::List(Vec::new()));
    }
    let dims: Vec<usize> = (0..ndim as usize)
        .map(|d| int(12 + d * 8).map(|n| n.max(0) as usize))
        .collect::<Result<_, _>>()?;
    let mut at = 12 + dims.len() * 8;
    let total: usize = dims.iter().product();
    let mut flat = Vec::with_capacity(total);
    for _ in 0..total {
        let len = int(at)?;
        at += 4;
        let item = match usize::try_from(len) {
            Err(_) => None,
            Ok(n) => {
                let b = raw.get(at..at + n).ok_or("a truncated array element")?;
                at += n;
                Some(b)
            }
        };
        flat.push(
            elem.decode(item)
                .map_err(|e| format!("array element {}: {e}", flat.len() + 1))?,
        );
    }
    Ok(nest(&mut flat.into_iter(), &dims))
}

/// The flat elements as lists nested one level per dimension.
fn nest(items: &mut impl Iterator<Item = Value>, dims: &[usize]) -> Value {
    match dims {
        [] | [_] => Value::List(items.take(dims.first().copied().unwrap_or(0)).collect()),
        [n, rest @ ..] => Value::List((0..*n).map(|_| nest(items, rest)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn d(decode: Decode, raw: &str) -> Result<Value, String> {
        decode.decode(Some(&hex(raw)))
    }

    fn ok(decode: Decode, raw: &str) -> Value {
        d(decode, raw).unwrap()
    }

    #[test]
    fn integers_floats_and_bool() {
        assert_eq!(ok(Decode::Int2, "ff85"), Value::Int(-123));
        assert_eq!(ok(Decode::Int4, "7fffffff"), Value::Int(i32::MAX.into()));
        assert_eq!(ok(Decode::Int8, "8000000000000000"), Value::Int(i64::MIN));
        assert_eq!(ok(Decode::Oid, "ffffffff"), Value::Int(u32::MAX.into()));
        assert_eq!(ok(Decode::Float4, "3dcccccd"), Value::Float(0.1));
        assert_eq!(ok(Decode::Float8, "3ff8000000000000"), Value::Float(1.5));
        let Value::Float(nan) = ok(Decode::Float4, "7fc00000") else {
            panic!()
        };
        assert!(nan.is_nan());
        assert_eq!(
            ok(Decode::Float8, "fff0000000000000"),
            Value::Float(f64::NEG_INFINITY)
        );
        assert_eq!(ok(Decode::Float4, "7f800000"), Value::Float(f64::INFINITY));
        assert_eq!(ok(Decode::Bool, "01"), Value::Bool(true));
        assert_eq!(Decode::Int4.decode(None), Ok(Value::Null));
        assert_eq!(
            d(Decode::Int4, "0001").unwrap_err(),
            "expected 4 bytes, got 2"
        );
    }

    #[test]
    fn numerics_keep_every_digit_and_their_scale() {
        let n = |raw| ok(Decode::Numeric, raw);
        // 12345.678 (ndigits 3, weight 1, +, dscale 3): 1 2345 6780
        assert_eq!(
            n("0003 0001 0000 0003 0001 0929 1a7c"),
            Value::Decimal("12345.678".into())
        );
        // -0.0012 (ndigits 1, weight -1, -, dscale 4): 0012
        assert_eq!(
            n("0001 ffff 4000 0004 000c"),
            Value::Decimal("-0.0012".into())
        );
        // 0.00 (no digits, dscale 2)
        assert_eq!(n("0000 0000 0000 0002"), Value::Decimal("0.00".into()));
        // 1e8 = 1 0000 0000 trimmed to one digit with weight 2
        assert_eq!(
            n("0001 0002 0000 0000 0001"),
            Value::Decimal("100000000".into())
        );
        // 0.000001 (weight -2: the first group is 10^-8..10^-5)
        assert_eq!(
            n("0001 fffe 0000 0006 0064"),
            Value::Decimal("0.000001".into())
        );
        assert_eq!(n("0000 0000 c000 0000"), Value::Decimal("NaN".into()));
        assert_eq!(n("0000 0000 d000 0000"), Value::Decimal("Infinity".into()));
        assert_eq!(n("0000 0000 f000 0000"), Value::Decimal("-Infinity".into()));
        assert!(d(Decode::Numeric, "0002 0000 0000 0000 0001").is_err());
        assert_eq!(
            ok(Decode::Money, "fffffffffffffb2d"),
            Value::Decimal("-12.35".into())
        );
        assert_eq!(
            ok(Decode::Money, "0000000000000005"),
            Value::Decimal("0.05".into())
        );
    }

    #[test]
    fn text_bytes_uuid_and_json() {
        assert_eq!(ok(Decode::Text, "c3a9"), Value::String("é".into()));
        assert!(d(Decode::Text, "ff").unwrap_err().starts_with("not UTF-8"));
        assert_eq!(ok(Decode::Char, "41"), Value::String("A".into()));
        assert_eq!(ok(Decode::Bytea, "00ff"), Value::Bytes(vec![0, 255]));
        assert_eq!(
            ok(Decode::Uuid, "a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            Value::String("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
        let doc = hex("7b2262223a5b312c6e756c6c5d2c2261223a2278227d"); // {"b":[1,null],"a":"x"}
        let mut jsonb = vec![1];
        jsonb.extend_from_slice(&doc);
        let text = Decode::Json {
            jsonb: true,
            value: false,
        };
        assert_eq!(
            text.decode(Some(&jsonb)).unwrap(),
            Value::String(r#"{"b":[1,null],"a":"x"}"#.into())
        );
        let value = Decode::Json {
            jsonb: false,
            value: true,
        };
        assert_eq!(
            value.decode(Some(&doc)).unwrap(),
            Value::Map(vec![
                ("b".into(), Value::List(vec![Value::Int(1), Value::Null])),
                ("a".into(), Value::String("x".into())),
            ])
        );
        jsonb[0] = 2;
        assert_eq!(
            text.decode(Some(&jsonb)).unwrap_err(),
            "jsonb binary format version 2 (known: 1)"
        );
    }

    #[test]
    fn dates_times_and_intervals() {
        assert_eq!(ok(Decode::Date, "00000000"), Value::Date(10_957));
        assert_eq!(ok(Decode::Date, "ffffd46b"), Value::Date(-200));
        assert!(d(Decode::Date, "7fffffff")
            .unwrap_err()
            .starts_with("date 'infinity'"));
        assert!(d(Decode::Date, "80000000").is_err());
        assert_eq!(
            ok(Decode::Time, "00000000dde0a2c8"),
            Value::Time(3_722_486_472)
        );
        // 01:02:03.000456 at +05:30: the zone is sent as -19800 (seconds west).
        assert_eq!(
            ok(Decode::TimeTz, "00000000dde879c8 ffffb2a8"),
            Value::ZonedTime {
                micros: 3_723_000_264,
                offset_seconds: 19_800
            }
        );
        assert_eq!(
            ok(Decode::Timestamp, "0000000000000000"),
            Value::DateTime(EPOCH_MICROS)
        );
        assert_eq!(
            ok(Decode::TimestampTz, "ffffffffffffffff"),
            Value::Timestamp(EPOCH_MICROS - 1)
        );
        let inf = d(Decode::TimestampTz, "7fffffffffffffff").unwrap_err();
        assert!(inf.starts_with("timestamptz 'infinity'"), "{inf}");
        assert!(d(Decode::Timestamp, "8000000000000000").is_err());
        // 1 year 2 months 3 days -00:00:01.5
        assert_eq!(
            ok(Decode::Interval, "ffffffffffe91ca0 00000003 0000000e"),
            Value::Duration {
                months: 14,
                days: 3,
                micros: -1_500_000
            }
        );
    }

    #[test]
    fn network_addresses_and_text_search() {
        assert_eq!(
            ok(Decode::Inet, "02 20 00 04 c0a80001"),
            Value::String("192.168.0.1".into())
        );
        assert_eq!(
            ok(Decode::Inet, "02 18 00 04 c0a80001"),
            Value::String("192.168.0.1/24".into())
        );
        assert_eq!(
            ok(Decode::Inet, "02 18 01 04 c0a80000"),
            Value::String("192.168.0.0/24".into())
        );
        let v6 = "03 80 00 10 20010db8000000000000000000000001";
        assert_eq!(ok(Decode::Inet, v6), Value::String("2001:db8::1".into()));
        let compat = "03 80 00 10 00000000000000000000000001020304";
        assert_eq!(ok(Decode::Inet, compat), Value::String("::1.2.3.4".into()));
        let mapped = "03 80 00 10 00000000000000000000ffff01020304";
        assert_eq!(
            ok(Decode::Inet, mapped),
            Value::String("::ffff:1.2.3.4".into())
        );
        assert_eq!(
            ok(Decode::MacAddr, "08002b010203"),
            Value::String("08:00:2b:01:02:03".into())
        );
        assert_eq!(
            ok(Decode::MacAddr, "08002bfffe010203"),
            Value::String("08:00:2b:ff:fe:01:02:03".into())
        );
        // 'a':1A,3 'it''s' (the second lexeme without positions)
        let ts = "00000002 6100 0002 c001 0003 6974277300 0000";
        assert_eq!(
            ok(Decode::TsVector, ts),
            Value::String("'a':1A,3 'it''s'".into())
        );
        assert!(d(Decode::TsVector, "00000002 6100 0000").is_err());
    }

    #[test]
    fn arrays_nest_and_keep_nulls() {
        let elem = Box::new(Decode::Int4);
        // {{1,NULL},{3,4}}: 2 dims, has nulls, int4, (2, lower 1) x 2
        let raw = "00000002 00000001 00000017 00000002 00000001 00000002 00000001
                   00000004 00000001 ffffffff 00000004 00000003 00000004 00000004";
        let int = |i| Value::Int(i);
        assert_eq!(
            ok(Decode::Array(elem.clone()), raw),
            Value::List(vec![
                Value::List(vec![int(1), Value::Null]),
                Value::List(vec![int(3), int(4)]),
            ])
        );
        // '[0:1]={5,6}': the lower bound is dropped.
        let raw =
            "00000001 00000000 00000017 00000002 00000000 00000004 00000005 00000004 00000006";
        assert_eq!(
            ok(Decode::Array(elem.clone()), raw),
            Value::List(vec![int(5), int(6)])
        );
        assert_eq!(
            ok(Decode::Array(elem.clone()), "00000000 00000000 00000017"),
            Value::List(vec![])
        );
        let bad = "00000001 00000000 00000017 00000001 00000001 00000002 0001";
        assert_eq!(
            d(Decode::Array(elem), bad).unwrap_err(),
            "array element 1: expected 4 bytes, got 2"
        );
    }

    #[test]
    fn postgis_points_and_other_shapes() {
        // SRID=4326;POINT(13.4 52.5), little-endian EWKB
        let p = "01 01000020 e6100000 cdcccccccccc2a40 0000000000404a40";
        assert_eq!(
            ok(Decode::Geometry, p),
            Value::Point(Point {
                srid: 4326,
                x: 13.4,
                y: 52.5,
                z: None
            })
        );
        // POINT Z (1 2 3) without SRID, big-endian
        let p = "00 80000001 3ff0000000000000 4000000000000000 4008000000000000";
        assert_eq!(
            ok(Decode::Geometry, p),
            Value::Point(Point {
                srid: 0,
                x: 1.0,
                y: 2.0,
                z: Some(3.0)
            })
        );
        // SRID=3857;LINESTRING(0 0,1 1): SRID little-endian, then the WKB without the flag.
        let line = "01 02000020 110f0000 02000000 0000000000000000 0000000000000000
                    000000000000f03f 000000000000f03f";
        let want = hex(
            "110f0000 01 02000000 02000000 0000000000000000 0000000000000000
                        000000000000f03f 000000000000f03f",
        );
        assert_eq!(ok(Decode::Geometry, line), Value::Bytes(want));
        assert_eq!(d(Decode::Geometry, "02").unwrap_err(), "not PostGIS EWKB");
    }

    #[test]
    fn pushed_cells_are_the_decoded_values() {
        let cells = [
            (Decode::Int2, "ff85"),
            (Decode::Int4, "7fffffff"),
            (Decode::Int8, "8000000000000000"),
            (Decode::Float8, "3ff8000000000000"),
            (Decode::Float4, "3dcccccd"),
            (Decode::Text, "c3a9"),
            (Decode::Bytea, "00ff"),
            (Decode::Timestamp, "0000000000000001"),
            (Decode::TimestampTz, "ffffffffffffffff"),
            (Decode::Interval, "ffffffffffe91ca0 00000003 0000000e"),
            (Decode::Numeric, "0001 ffff 4000 0004 000c"),
        ];
        let schema: Vec<Column> = (0..cells.len())
            .map(|i| Column {
                name: format!("c{i}"),
                ty: ColumnType::Any,
            })
            .collect();
        let mut out = codec::Builder::new(&schema, 0);
        let mut want = Vec::new();
        for (decode, raw) in &cells {
            decode.push(Some(&hex(raw)), &mut out).unwrap();
            want.push(decode.decode(Some(&hex(raw))).unwrap());
        }
        out.end_row();
        for (decode, _) in &cells {
            decode.push(None, &mut out).unwrap();
        }
        out.end_row();
        let batch = codec::decode(&out.finish()).unwrap();
        assert_eq!(batch.rows, vec![want, vec![Value::Null; cells.len()]]);
        let mut out = codec::Builder::new(&schema, 0);
        let e = Decode::Text.push(Some(&[0xff]), &mut out).unwrap_err();
        assert!(e.starts_with("not UTF-8"), "{e}");
    }

    #[test]
    fn plans_name_the_column_of_an_unknown_type() {
        let typing = Typing::default();
        let p = plan("n", &Type::NUMERIC, &typing);
        assert_eq!(
            (p.decode, p.column.ty, p.warning),
            (Decode::Numeric, ColumnType::Decimal, None)
        );
        let p = plan("j", &Type::JSONB, &Typing { json_value: true });
        assert_eq!(p.column.ty, ColumnType::Any);
        assert_eq!(
            plan("a", &Type::INT4_ARRAY, &typing).decode,
            Decode::Array(Box::new(Decode::Int4))
        );
        assert_eq!(select_expr("\"a\"", &Type::INT4_ARRAY), "\"a\"");
        assert_eq!(select_expr("\"j\"", &Type::JSONB_ARRAY), "\"j\"");
        assert_eq!(select_expr("\"r\"", &Type::INT4_RANGE), "\"r\"::text");
        assert_eq!(plan("r", &Type::INT4_RANGE, &typing).warning, None);
        assert_eq!(select_expr("\"x\"", &Type::XML), "\"x\"::text");
        assert_eq!(select_expr("\"x\"", &Type::XML_ARRAY), "\"x\"::text[]");
        let vector = Type::new("vector".into(), 90_001, Kind::Simple, "public".into());
        assert_eq!(select_expr("\"v\"", &vector), "\"v\"::text");
        let p = plan("v", &vector, &typing);
        assert_eq!(p.decode, Decode::Text);
        assert_eq!(
            p.warning.as_deref(),
            Some("column `v`: type vector has no etlhost mapping; it is read as its text (cast it in a `query:` to choose another form)")
        );
        let positive = Type::new(
            "positive".into(),
            90_002,
            Kind::Domain(Type::INT8),
            "public".into(),
        );
        assert_eq!(plan("d", &positive, &typing).decode, Decode::Int8);
        assert_eq!(select_expr("\"d\"", &positive), "\"d\"");
        let mood = Type::new(
            "mood".into(),
            90_003,
            Kind::Enum(vec!["ok".into()]),
            "public".into(),
        );
        assert_eq!(plan("m", &mood, &typing).column.ty, ColumnType::String);
        let geom = Type::new("geometry".into(), 90_004, Kind::Simple, "public".into());
        assert_eq!(
            (plan("g", &geom, &typing).decode, select_expr("g", &geom)),
            (Decode::Geometry, "g".into())
        );
    }
}
