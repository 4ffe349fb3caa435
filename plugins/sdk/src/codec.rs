//! The batch wire format: how a [`Batch`] crosses the plugin boundary as one byte buffer.
//!
//! All integers are little-endian. A buffer is:
//!
//! ```text
//! magic     4 bytes  "ETB1"
//! ncols     u32
//! column    ncols times: name (str), type (u8, the ColumnType tag below)
//! nrows     u32
//! value     nrows * ncols times, row by row: tag (u8) then its payload
//!
//! str       u32 byte length, then UTF-8 bytes
//! ```
//!
//! | tag | value    | payload                                  |
//! |-----|----------|------------------------------------------|
//! | 0   | Null     | none                                     |
//! | 1   | Bool     | u8 (0 or 1)                              |
//! | 2   | Int      | i64                                      |
//! | 3   | UInt     | u64                                      |
//! | 4   | Float    | f64                                      |
//! | 5   | Decimal  | str                                      |
//! | 6   | String   | str                                      |
//! | 7   | Bytes    | u32 length, bytes                        |
//! | 8   | Date     | i32 days since 1970-01-01                |
//! | 9   | DateTime | i64 microseconds since 1970-01-01T00:00  |
//! | 10  | Time     | i64 microseconds                         |
//!
//! Column type tags are the same numbers, with 0 meaning "any".
//!
//! Why a format of our own and not the Arrow C Data Interface: every connector we serve is
//! row-oriented at both ends (MySQL sends rows, a Bolt `UNWIND $batch` wants a list of maps), so a
//! columnar layout would be transposed twice per batch for nothing; Arrow would also tie every
//! third-party plugin to the host's arrow-rs version or to hand-written release callbacks. This
//! format is one contiguous buffer with one owner, so freeing it is a single call, it is defined
//! completely by the table above, and the same bytes can be copied into a WASM guest as they are.

use crate::value::{Batch, Column, ColumnType, Value};

const MAGIC: &[u8; 4] = b"ETB1";

fn type_tag(ty: ColumnType) -> u8 {
    match ty {
        ColumnType::Any => 0,
        ColumnType::Bool => 1,
        ColumnType::Int => 2,
        ColumnType::UInt => 3,
        ColumnType::Float => 4,
        ColumnType::Decimal => 5,
        ColumnType::String => 6,
        ColumnType::Bytes => 7,
        ColumnType::Date => 8,
        ColumnType::DateTime => 9,
        ColumnType::Time => 10,
    }
}

fn tag_type(tag: u8) -> Option<ColumnType> {
    Some(match tag {
        0 => ColumnType::Any,
        1 => ColumnType::Bool,
        2 => ColumnType::Int,
        3 => ColumnType::UInt,
        4 => ColumnType::Float,
        5 => ColumnType::Decimal,
        6 => ColumnType::String,
        7 => ColumnType::Bytes,
        8 => ColumnType::Date,
        9 => ColumnType::DateTime,
        10 => ColumnType::Time,
        _ => return None,
    })
}

/// Encodes a batch into the wire format.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.rows.len() * batch.schema.len() * 12);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, batch.schema.len() as u32);
    for c in batch.schema.iter() {
        put_str(&mut out, &c.name);
        out.push(type_tag(c.ty));
    }
    put_u32(&mut out, batch.rows.len() as u32);
    for row in &batch.rows {
        for v in row {
            match v {
                Value::Null => out.push(0),
                Value::Bool(b) => {
                    out.push(1);
                    out.push(*b as u8);
                }
                Value::Int(i) => {
                    out.push(2);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Value::UInt(u) => {
                    out.push(3);
                    out.extend_from_slice(&u.to_le_bytes());
                }
                Value::Float(x) => {
                    out.push(4);
                    out.extend_from_slice(&x.to_le_bytes());
                }
                Value::Decimal(s) => {
                    out.push(5);
                    put_str(&mut out, s);
                }
                Value::String(s) => {
                    out.push(6);
                    put_str(&mut out, s);
                }
                Value::Bytes(b) => {
                    out.push(7);
                    put_u32(&mut out, b.len() as u32);
                    out.extend_from_slice(b);
                }
                Value::Date(d) => {
                    out.push(8);
                    out.extend_from_slice(&d.to_le_bytes());
                }
                Value::DateTime(t) => {
                    out.push(9);
                    out.extend_from_slice(&t.to_le_bytes());
                }
                Value::Time(t) => {
                    out.push(10);
                    out.extend_from_slice(&t.to_le_bytes());
                }
            }
        }
    }
    out
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// Why a buffer could not be decoded. Always a bug on one side of the boundary, never bad data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed batch buffer: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError(format!("invalid UTF-8 at byte {at}")))
    }
}

/// Decodes a buffer written by [`encode`].
pub fn decode(buf: &[u8]) -> Result<Batch, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err(DecodeError("bad magic (not an ETB1 batch)".into()));
    }
    let ncols = r.u32()? as usize;
    let mut schema = Vec::with_capacity(ncols.min(4096));
    for _ in 0..ncols {
        let name = r.str()?;
        let tag = r.u8()?;
        let ty =
            tag_type(tag).ok_or_else(|| DecodeError(format!("unknown column type tag {tag}")))?;
        schema.push(Column { name, ty });
    }
    let nrows = r.u32()? as usize;
    let mut rows = Vec::with_capacity(nrows.min(1 << 20));
    for _ in 0..nrows {
        let mut row = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let tag = r.u8()?;
            row.push(match tag {
                0 => Value::Null,
                1 => Value::Bool(r.u8()? != 0),
                2 => Value::Int(i64::from_le_bytes(r.arr()?)),
                3 => Value::UInt(u64::from_le_bytes(r.arr()?)),
                4 => Value::Float(f64::from_le_bytes(r.arr()?)),
                5 => Value::Decimal(r.str()?),
                6 => Value::String(r.str()?),
                7 => {
                    let n = r.u32()? as usize;
                    Value::Bytes(r.take(n)?.to_vec())
                }
                8 => Value::Date(i32::from_le_bytes(r.arr()?)),
                9 => Value::DateTime(i64::from_le_bytes(r.arr()?)),
                10 => Value::Time(i64::from_le_bytes(r.arr()?)),
                t => {
                    return Err(DecodeError(format!(
                        "unknown value tag {t} at byte {}",
                        r.pos - 1
                    )))
                }
            });
        }
        rows.push(row);
    }
    if r.pos != buf.len() {
        return Err(DecodeError(format!("{} trailing bytes", buf.len() - r.pos)));
    }
    Ok(Batch {
        schema: schema.into(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_type() {
        let schema: crate::Schema = vec![
            Column {
                name: "a".into(),
                ty: ColumnType::Any,
            },
            Column {
                name: "名前".into(),
                ty: ColumnType::String,
            },
        ]
        .into();
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(-0.5),
            Value::Decimal("12345678901234567890.123".into()),
            Value::String("中文 😀".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Date(-3),
            Value::DateTime(1_700_000_000_000_001),
            Value::Time(-1),
        ];
        let rows = values
            .iter()
            .map(|v| vec![v.clone(), Value::String("x".into())])
            .collect();
        let batch = Batch { schema, rows };
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
    }

    #[test]
    fn truncated_buffer_is_an_error_not_a_panic() {
        let batch = Batch {
            schema: vec![Column {
                name: "s".into(),
                ty: ColumnType::String,
            }]
            .into(),
            rows: vec![vec![Value::String("hello".into())]],
        };
        let buf = encode(&batch);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
