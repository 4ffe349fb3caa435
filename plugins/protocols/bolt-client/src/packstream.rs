//! PackStream, Bolt's value encoding: the subset a writer needs, encoding straight into the message
//! buffer and decoding server responses into [`Ps`]. The encoders are `#[inline]`: a writer calls
//! them per value, from another crate.

use std::collections::BTreeMap;

/// A decoded PackStream value.
#[derive(Debug, Clone, PartialEq)]
pub enum Ps {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    String(String),
    List(Vec<Ps>),
    Map(BTreeMap<String, Ps>),
    Struct(u8, Vec<Ps>),
}

impl Ps {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Ps::String(s) => Some(s),
            _ => None,
        }
    }
}

#[inline]
pub fn null(out: &mut Vec<u8>) {
    out.push(0xC0);
}

#[inline]
pub fn bool(out: &mut Vec<u8>, b: bool) {
    out.push(if b { 0xC3 } else { 0xC2 });
}

#[inline]
pub fn int(out: &mut Vec<u8>, i: i64) {
    if (-16..128).contains(&i) {
        out.push(i as i8 as u8);
    } else if i8::try_from(i).is_ok() {
        out.push(0xC8);
        out.push(i as i8 as u8);
    } else if let Ok(v) = i16::try_from(i) {
        out.push(0xC9);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(0xCA);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xCB);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

#[inline]
pub fn float(out: &mut Vec<u8>, f: f64) {
    out.push(0xC1);
    out.extend_from_slice(&f.to_be_bytes());
}

#[inline]
fn header(out: &mut Vec<u8>, len: usize, tiny: u8, m8: u8, m16: u8, m32: u8) {
    if len < 16 && tiny != 0 {
        out.push(tiny | len as u8);
    } else if len <= u8::MAX as usize && m8 != 0 {
        out.push(m8);
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(m16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

#[inline]
pub fn string(out: &mut Vec<u8>, s: &str) {
    header(out, s.len(), 0x80, 0xD0, 0xD1, 0xD2);
    out.extend_from_slice(s.as_bytes());
}

#[inline]
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    header(out, b.len(), 0, 0xCC, 0xCD, 0xCE);
    out.extend_from_slice(b);
}

#[inline]
pub fn list_header(out: &mut Vec<u8>, len: usize) {
    header(out, len, 0x90, 0xD4, 0xD5, 0xD6);
}

#[inline]
pub fn map_header(out: &mut Vec<u8>, len: usize) {
    header(out, len, 0xA0, 0xD8, 0xD9, 0xDA);
}

/// A structure of up to 15 `fields` (Bolt's messages, nodes, dates), which follow it.
#[inline]
pub fn struct_header(out: &mut Vec<u8>, fields: u8, tag: u8) {
    out.push(0xB0 | fields);
    out.push(tag);
}

/// Any decoded value back into its encoding (a writer's hot path uses the functions above, which
/// need no [`Ps`] built first).
pub fn encode(out: &mut Vec<u8>, v: &Ps) {
    match v {
        Ps::Null => null(out),
        Ps::Bool(b) => bool(out, *b),
        Ps::Int(i) => int(out, *i),
        Ps::Float(f) => float(out, *f),
        Ps::Bytes(b) => bytes(out, b),
        Ps::String(s) => string(out, s),
        Ps::List(items) => {
            list_header(out, items.len());
            items.iter().for_each(|i| encode(out, i));
        }
        Ps::Map(map) => {
            map_header(out, map.len());
            for (k, v) in map {
                string(out, k);
                encode(out, v);
            }
        }
        Ps::Struct(tag, fields) => {
            struct_header(out, fields.len() as u8, *tag);
            fields.iter().for_each(|f| encode(out, f));
        }
    }
}

/// Why bytes are not one PackStream value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Exactly one value, with no bytes after it.
pub fn decode(buf: &[u8]) -> Result<Ps, DecodeError> {
    let mut pos = 0;
    let v = value(buf, &mut pos)?;
    if pos != buf.len() {
        return Err(DecodeError(format!("{} trailing bytes", buf.len() - pos)));
    }
    Ok(v)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], DecodeError> {
    let end = pos
        .checked_add(n)
        .filter(|e| *e <= buf.len())
        .ok_or_else(|| DecodeError(format!("truncated at byte {pos}")))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

fn be(buf: &[u8], pos: &mut usize, n: usize) -> Result<u64, DecodeError> {
    Ok(take(buf, pos, n)?
        .iter()
        .fold(0u64, |acc, b| acc << 8 | *b as u64))
}

fn value(buf: &[u8], pos: &mut usize) -> Result<Ps, DecodeError> {
    let m = take(buf, pos, 1)?[0];
    Ok(match m {
        0x00..=0x7F => Ps::Int(m as i64),
        0xF0..=0xFF => Ps::Int(m as i8 as i64),
        0xC0 => Ps::Null,
        0xC1 => Ps::Float(f64::from_bits(be(buf, pos, 8)?)),
        0xC2 => Ps::Bool(false),
        0xC3 => Ps::Bool(true),
        0xC8 => Ps::Int(be(buf, pos, 1)? as u8 as i8 as i64),
        0xC9 => Ps::Int(be(buf, pos, 2)? as u16 as i16 as i64),
        0xCA => Ps::Int(be(buf, pos, 4)? as u32 as i32 as i64),
        0xCB => Ps::Int(be(buf, pos, 8)? as i64),
        0xCC..=0xCE => {
            let n = be(buf, pos, 1 << (m - 0xCC))? as usize;
            Ps::Bytes(take(buf, pos, n)?.to_vec())
        }
        0x80..=0x8F | 0xD0..=0xD2 => {
            let n = if m < 0x90 {
                (m & 0x0F) as usize
            } else {
                be(buf, pos, 1 << (m - 0xD0))? as usize
            };
            let s = take(buf, pos, n)?;
            Ps::String(String::from_utf8_lossy(s).into_owned())
        }
        0x90..=0x9F | 0xD4..=0xD6 => {
            let n = if m < 0xA0 {
                (m & 0x0F) as usize
            } else {
                be(buf, pos, 1 << (m - 0xD4))? as usize
            };
            let mut items = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                items.push(value(buf, pos)?);
            }
            Ps::List(items)
        }
        0xA0..=0xAF | 0xD8..=0xDA => {
            let n = if m < 0xB0 {
                (m & 0x0F) as usize
            } else {
                be(buf, pos, 1 << (m - 0xD8))? as usize
            };
            let mut map = BTreeMap::new();
            for _ in 0..n {
                let Ps::String(k) = value(buf, pos)? else {
                    return Err(DecodeError("map key is not a string".into()));
                };
                map.insert(k, value(buf, pos)?);
            }
            Ps::Map(map)
        }
        0xB0..=0xBF => {
            let n = (m & 0x0F) as usize;
            let tag = take(buf, pos, 1)?[0];
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                fields.push(value(buf, pos)?);
            }
            Ps::Struct(tag, fields)
        }
        other => return Err(DecodeError(format!("unknown marker 0x{other:02X}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        // Each integer width's edges: tiny, 8, 16, 32 and 64 bits.
        let ints = [
            0,
            -16,
            -17,
            127,
            128,
            -129,
            40_000,
            -3_000_000_000,
            i64::MIN,
        ];
        let mut out = Vec::new();
        list_header(&mut out, ints.len());
        for i in ints {
            int(&mut out, i);
        }
        let Ps::List(items) = decode(&out).unwrap() else {
            panic!()
        };
        assert_eq!(items, ints.map(Ps::Int));

        let long = "x".repeat(70_000);
        let mut out = Vec::new();
        map_header(&mut out, 3);
        string(&mut out, "s");
        string(&mut out, &long);
        string(&mut out, "b");
        bytes(&mut out, &[1, 2]);
        string(&mut out, "f");
        float(&mut out, 1.5);
        let Ps::Map(m) = decode(&out).unwrap() else {
            panic!()
        };
        assert_eq!(m["s"], Ps::String(long));
        assert_eq!(m["b"], Ps::Bytes(vec![1, 2]));
        assert_eq!(m["f"], Ps::Float(1.5));
    }
}
