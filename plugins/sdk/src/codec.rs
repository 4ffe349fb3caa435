//! The batch wire format: how a [`Batch`] crosses the plugin boundary as one byte buffer.
//!
//! All integers are little-endian. A buffer is:
//!
//! ```text
//! magic     4 bytes  "ETB2" (version 2 added tags 11-14; "ETB1" had 0-10)
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
//! | 11  | Timestamp| i64 microseconds since 1970-01-01T00:00 UTC |
//! | 12  | Point    | u32 srid, f64 x, f64 y, u8 has_z (0 or 1), f64 z if has_z |
//! | 13  | List     | u32 count, then count values (tag and payload each) |
//! | 14  | Map      | u32 count, then count times: key (str), value |
//! | 15  | Duration | i64 months, i64 days, i64 microseconds   |
//! | 16  | ZonedTime| i64 microseconds since local midnight, i32 UTC offset in seconds (east positive) |
//!
//! Column type tags are the same numbers, with 0 meaning "any" (there is no Map column type: JSON
//! columns are "any"). Lists and maps nest at most [`MAX_DEPTH`] deep.
//!
//! Tags 15 and 16 were appended without a new magic: every older buffer reads as before, and an
//! older reader given one of them refuses it as an unknown tag instead of misreading it.
//!
//! Why a format of our own and not the Arrow C Data Interface: every connector we serve is
//! row-oriented at both ends (MySQL sends rows, a Bolt `UNWIND $batch` wants a list of maps), so a
//! columnar layout would be transposed twice per batch for nothing; Arrow would also tie every
//! third-party plugin to the host's arrow-rs version or to hand-written release callbacks. This
//! format is one contiguous buffer with one owner, so freeing it is a single call, it is defined
//! completely by the table above, and the same bytes can be copied into a WASM guest as they are.

use crate::value::{Batch, Column, ColumnType, Point, Schema, Value};

// The format's version: a reader that sees another refuses the buffer instead of misreading it.
// (The ABI version, bumped with it, already keeps host and plugin of different SDKs apart.)
const MAGIC: &[u8; 4] = b"ETB2";

/// How deep lists and maps may nest (MySQL allows JSON documents 100 levels deep).
pub const MAX_DEPTH: usize = 128;

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
        ColumnType::Timestamp => 11,
        ColumnType::Point => 12,
        ColumnType::List => 13,
        ColumnType::Duration => 15,
        ColumnType::ZonedTime => 16,
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
        11 => ColumnType::Timestamp,
        12 => ColumnType::Point,
        13 => ColumnType::List,
        15 => ColumnType::Duration,
        16 => ColumnType::ZonedTime,
        _ => return None,
    })
}

/// Encodes a batch into the wire format.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let mut b = Builder::new(
        &batch.schema,
        64 + batch.rows.len() * batch.schema.len() * 12,
    );
    for row in &batch.rows {
        b.push_row(row);
    }
    b.finish()
}

/// Builds one buffer row by row.
pub struct Builder {
    buf: Vec<u8>,
    /// Where the row count goes, once known.
    count_at: usize,
    rows: usize,
}

impl Builder {
    /// An empty buffer of `schema` with room for about `capacity` bytes.
    pub fn new(schema: &[Column], capacity: usize) -> Self {
        Builder::reusing(schema, Vec::with_capacity(capacity))
    }

    /// An empty buffer of `schema` written into `buf`, whose contents are dropped and whose memory
    /// is kept: for a source that gets its buffers back.
    pub fn reusing(schema: &[Column], mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(MAGIC);
        put_u32(&mut buf, schema.len() as u32);
        for c in schema {
            put_str(&mut buf, &c.name);
            buf.push(type_tag(c.ty));
        }
        let count_at = buf.len();
        put_u32(&mut buf, 0);
        Builder {
            buf,
            count_at,
            rows: 0,
        }
    }

    /// Appends one row: a value per column of the schema, in order.
    pub fn push_row(&mut self, row: &[Value]) {
        for v in row {
            put_value(&mut self.buf, v);
        }
        self.rows += 1;
    }

    /// Appends one value of the current row. Sources that hold their values in a form of their
    /// own (a driver's row) push them cell by cell with this and the typed pushes below, then end
    /// the row with [`Builder::end_row`], and build no [`Value`] for the common types.
    pub fn push_value(&mut self, v: &Value) {
        put_value(&mut self.buf, v);
    }

    pub fn push_null(&mut self) {
        self.buf.push(0);
    }

    pub fn push_int(&mut self, i: i64) {
        put_fixed(&mut self.buf, 2, i.to_le_bytes());
    }

    pub fn push_uint(&mut self, u: u64) {
        put_fixed(&mut self.buf, 3, u.to_le_bytes());
    }

    pub fn push_float(&mut self, x: f64) {
        put_fixed(&mut self.buf, 4, x.to_le_bytes());
    }

    pub fn push_string(&mut self, s: &str) {
        put_tagged_str(&mut self.buf, 6, s);
    }

    /// A string given as bytes, which are pushed only if they are UTF-8 (a source whose text
    /// arrives as bytes need not make a `&str` of it first).
    pub fn push_utf8(&mut self, b: &[u8]) -> Result<(), std::str::Utf8Error> {
        // `is_ascii` checks a word at a time with no set-up; most text is ASCII.
        if !b.is_ascii() {
            std::str::from_utf8(b)?;
        }
        put_tagged(&mut self.buf, 6, b);
        Ok(())
    }

    pub fn push_bytes(&mut self, b: &[u8]) {
        put_bytes(&mut self.buf, b);
    }

    /// Days since 1970-01-01.
    pub fn push_date(&mut self, days: i32) {
        put_fixed(&mut self.buf, 8, days.to_le_bytes());
    }

    /// Microseconds since 1970-01-01T00:00, no time zone.
    pub fn push_date_time(&mut self, micros: i64) {
        put_fixed(&mut self.buf, 9, micros.to_le_bytes());
    }

    /// Microseconds since 1970-01-01T00:00 UTC.
    pub fn push_timestamp(&mut self, micros: i64) {
        put_fixed(&mut self.buf, 11, micros.to_le_bytes());
    }

    /// Ends a row pushed cell by cell: one value per column of the schema must have been pushed
    /// (the host's check of the buffer refuses it otherwise).
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn finish(mut self) -> Vec<u8> {
        let n = (self.rows as u32).to_le_bytes();
        self.buf[self.count_at..self.count_at + 4].copy_from_slice(&n);
        self.buf
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => put_fixed(out, 1, [*b as u8]),
        Value::Int(i) => put_fixed(out, 2, i.to_le_bytes()),
        Value::UInt(u) => put_fixed(out, 3, u.to_le_bytes()),
        Value::Float(x) => put_fixed(out, 4, x.to_le_bytes()),
        Value::Decimal(s) => put_tagged_str(out, 5, s),
        Value::String(s) => put_tagged_str(out, 6, s),
        Value::Bytes(b) => put_bytes(out, b),
        Value::Date(d) => put_fixed(out, 8, d.to_le_bytes()),
        Value::DateTime(t) => put_fixed(out, 9, t.to_le_bytes()),
        Value::Time(t) => put_fixed(out, 10, t.to_le_bytes()),
        Value::Timestamp(t) => put_fixed(out, 11, t.to_le_bytes()),
        Value::Point(p) => {
            out.push(12);
            put_u32(out, p.srid);
            out.extend_from_slice(&p.x.to_le_bytes());
            out.extend_from_slice(&p.y.to_le_bytes());
            match p.z {
                Some(z) => {
                    out.push(1);
                    out.extend_from_slice(&z.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        Value::Duration {
            months,
            days,
            micros,
        } => {
            out.push(15);
            out.extend_from_slice(&months.to_le_bytes());
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&micros.to_le_bytes());
        }
        Value::ZonedTime {
            micros,
            offset_seconds,
        } => {
            out.push(16);
            out.extend_from_slice(&micros.to_le_bytes());
            out.extend_from_slice(&offset_seconds.to_le_bytes());
        }
        Value::List(items) => {
            out.push(13);
            put_u32(out, items.len() as u32);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(entries) => {
            out.push(14);
            put_u32(out, entries.len() as u32);
            for (k, v) in entries {
                put_str(out, k);
                put_value(out, v);
            }
        }
    }
}

/// A tag and its fixed-width payload.
fn put_fixed<const N: usize>(out: &mut Vec<u8>, tag: u8, payload: [u8; N]) {
    out.push(tag);
    out.extend_from_slice(&payload);
}

/// A tag and its text (decimals and strings).
fn put_tagged_str(out: &mut Vec<u8>, tag: u8, s: &str) {
    put_tagged(out, tag, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_tagged(out, 7, b);
}

/// A tag, a length and that many bytes: text (checked by the caller) or bytes.
fn put_tagged(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
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

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The whole buffer being read.
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Fails unless every byte was read.
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError(format!("{n} trailing bytes"))),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.arr()?))
    }

    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let tag = self.u8()?;
        Ok(match tag {
            0 => Value::Null,
            1 => Value::Bool(self.u8()? != 0),
            2 => Value::Int(i64::from_le_bytes(self.arr()?)),
            3 => Value::UInt(u64::from_le_bytes(self.arr()?)),
            4 => Value::Float(self.f64()?),
            5 => Value::Decimal(self.str()?),
            6 => Value::String(self.str()?),
            7 => {
                let n = self.u32()? as usize;
                Value::Bytes(self.take(n)?.to_vec())
            }
            8 => Value::Date(i32::from_le_bytes(self.arr()?)),
            9 => Value::DateTime(i64::from_le_bytes(self.arr()?)),
            10 => Value::Time(i64::from_le_bytes(self.arr()?)),
            11 => Value::Timestamp(i64::from_le_bytes(self.arr()?)),
            12 => {
                let srid = self.u32()?;
                let (x, y) = (self.f64()?, self.f64()?);
                let z = match self.u8()? {
                    0 => None,
                    _ => Some(self.f64()?),
                };
                Value::Point(Point { srid, x, y, z })
            }
            15 => Value::Duration {
                months: i64::from_le_bytes(self.arr()?),
                days: i64::from_le_bytes(self.arr()?),
                micros: i64::from_le_bytes(self.arr()?),
            },
            16 => Value::ZonedTime {
                micros: i64::from_le_bytes(self.arr()?),
                offset_seconds: i32::from_le_bytes(self.arr()?),
            },
            13 | 14 if depth >= MAX_DEPTH => return Err(self.too_deep()),
            13 => {
                let n = self.u32()? as usize;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            14 => {
                let n = self.u32()? as usize;
                let mut entries = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let k = self.str()?;
                    entries.push((k, self.value(depth + 1)?));
                }
                Value::Map(entries)
            }
            t => return Err(self.unknown_tag(t)),
        })
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let b = self.take(n)?;
        // As in `check_str`: ASCII is checked a word at a time, where `from_utf8` costs more
        // than the short strings of a typical row.
        if b.is_ascii() {
            // SAFETY: ASCII is UTF-8.
            return Ok(unsafe { String::from_utf8_unchecked(b.to_vec()) });
        }
        String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError(format!("invalid UTF-8 at byte {at}")))
    }

    /// Checks the next value as [`Reader::value`] would read it (tags, lengths, UTF-8, nesting)
    /// without building it, and returns its [`Value::approx_size`].
    pub(crate) fn skip(&mut self, depth: usize) -> Result<usize, DecodeError> {
        let tag = self.u8()?;
        Ok(match tag {
            0 => 9,
            1 => {
                self.take(1)?;
                9
            }
            2 | 3 | 4 | 9 | 10 | 11 => {
                self.take(8)?;
                9
            }
            8 => {
                self.take(4)?;
                9
            }
            5 | 6 => 8 + self.check_str()?,
            7 => {
                let n = self.u32()? as usize;
                self.take(n)?;
                8 + n
            }
            12 => {
                self.take(4 + 16)?;
                if self.u8()? != 0 {
                    self.take(8)?;
                }
                33
            }
            15 => {
                self.take(24)?;
                9
            }
            16 => {
                self.take(12)?;
                9
            }
            13 | 14 if depth >= MAX_DEPTH => return Err(self.too_deep()),
            13 => {
                let n = self.u32()? as usize;
                let mut size = 8;
                for _ in 0..n {
                    size += self.skip(depth + 1)?;
                }
                size
            }
            14 => {
                let n = self.u32()? as usize;
                let mut size = 8;
                for _ in 0..n {
                    size += 8 + self.check_str()?;
                    size += self.skip(depth + 1)?;
                }
                size
            }
            t => return Err(self.unknown_tag(t)),
        })
    }

    /// [`Reader::skip`] of the common cells (NULL, booleans, numbers, dates and times, ASCII text) with
    /// one bounds check each and no call, or `None` for [`Reader::skip`] to take (or refuse):
    /// this runs for every cell a source sends, on the host's side of the boundary.
    #[inline(always)]
    pub(crate) fn skip_common(&mut self) -> Option<usize> {
        let rest = self.buf.get(self.pos..)?;
        let len = match *rest.first()? {
            0 => 1,
            1 => 2,
            8 => 5,
            2 | 3 | 4 | 9 | 10 | 11 => 9,
            6 => {
                let n = u32::from_le_bytes(rest.get(1..5)?.try_into().ok()?) as usize;
                let text = rest.get(5..5 + n)?;
                if !text.is_ascii() {
                    return None;
                }
                self.pos += 5 + n;
                return Some(8 + n);
            }
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        self.pos += len;
        Some(9)
    }

    /// Just after reading the tag of a list or map nested too deep.
    fn too_deep(&self) -> DecodeError {
        DecodeError(format!(
            "lists and maps nested deeper than {MAX_DEPTH} at byte {}",
            self.pos - 1
        ))
    }

    /// Just after reading tag `t`.
    fn unknown_tag(&self, t: u8) -> DecodeError {
        DecodeError(format!("unknown value tag {t} at byte {}", self.pos - 1))
    }

    /// Checks a string without copying it; returns its length in bytes.
    fn check_str(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let b = self.take(n)?;
        // Most text is ASCII, and `is_ascii` checks a word at a time with no set-up, where
        // `from_utf8` costs more than the short strings of a typical row.
        if !b.is_ascii() {
            std::str::from_utf8(b)
                .map_err(|_| DecodeError(format!("invalid UTF-8 at byte {at}")))?;
        }
        Ok(n)
    }
}

/// The schema and row count at the head of a buffer, leaving `r` at the first value.
pub(crate) fn header(r: &mut Reader<'_>) -> Result<(Vec<Column>, usize), DecodeError> {
    if r.take(4)? != MAGIC {
        return Err(DecodeError(
            "bad magic (not an ETB2 batch: plugin and host built from different SDKs?)".into(),
        ));
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
    Ok((schema, nrows))
}

/// How many rows a buffer written by [`encode`] holds, read from its header without decoding a
/// value.
pub fn row_count(buf: &[u8]) -> Result<usize, DecodeError> {
    header(&mut Reader { buf, pos: 0 }).map(|(_, n)| n)
}

/// The columns and row count of a buffer written by [`encode`], read from its header without
/// looking at a value (for a reader that may never need the rows, as a WASM transform keeping them
/// all).
pub fn schema_and_rows(buf: &[u8]) -> Result<(Schema, usize), DecodeError> {
    header(&mut Reader { buf, pos: 0 }).map(|(schema, n)| (schema.into(), n))
}

/// Decodes a buffer written by [`encode`].
pub fn decode(buf: &[u8]) -> Result<Batch, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let (schema, nrows) = header(&mut r)?;
    let ncols = schema.len();
    let mut rows = Vec::with_capacity(nrows.min(1 << 20));
    for _ in 0..nrows {
        let mut row = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            row.push(r.value(0)?);
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

/// A buffer checked as completely as [`decode`] checks it (tags, lengths, UTF-8, nesting, no
/// trailing bytes) without building a value, with where its rows are: how the host carries a
/// source's rows to a sink when nothing needs their values.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    bytes: Vec<u8>,
    schema: Schema,
    /// Where each row's values start, then the buffer's end: one more than there are rows.
    offsets: Vec<usize>,
    /// Each row's size as [`Value::approx_size`] counts it, summed over its values.
    sizes: Vec<usize>,
}

impl Encoded {
    /// `batch` encoded, with where its rows are: for rows a host holds decoded that must go on
    /// encoded.
    pub fn of(batch: &Batch) -> Self {
        Encoded::check(encode(batch)).expect("encode writes what check reads")
    }

    /// Checks a buffer written by [`encode`] or a [`Builder`].
    pub fn check(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let mut e = Encoded {
            bytes,
            schema: Vec::new().into(),
            offsets: Vec::new(),
            sizes: Vec::new(),
        };
        e.index()?;
        Ok(e)
    }

    /// As [`Encoded::check`], of a copy of `bytes` made in this buffer's memory (its rows are
    /// replaced): a reader given back the buffers it made allocates none once they are large
    /// enough, so its memory stays what a few batches need however many it reads.
    pub fn check_into(mut self, bytes: &[u8]) -> Result<Self, DecodeError> {
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        self.index()?;
        Ok(self)
    }

    /// Reads the header and every row's offset and size, or says where the buffer is wrong.
    fn index(&mut self) -> Result<(), DecodeError> {
        let bytes = &self.bytes;
        let mut r = Reader { buf: bytes, pos: 0 };
        let (schema, nrows) = header(&mut r)?;
        self.offsets.clear();
        self.sizes.clear();
        // Bounded by the buffer, whatever its header claims: a value takes at least a byte.
        let cap = nrows.min(bytes.len()) + 1;
        self.offsets.reserve(cap);
        self.sizes.reserve(cap);
        for _ in 0..nrows {
            self.offsets.push(r.pos);
            let mut size = 0;
            for _ in 0..schema.len() {
                size += match r.skip_common() {
                    Some(n) => n,
                    None => r.skip(0)?,
                };
            }
            self.sizes.push(size);
        }
        self.offsets.push(r.pos);
        if r.pos != bytes.len() {
            return Err(DecodeError(format!(
                "{} trailing bytes",
                bytes.len() - r.pos
            )));
        }
        if self.schema[..] != schema[..] {
            self.schema = schema.into();
        }
        Ok(())
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn rows(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The whole buffer, as checked.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The summed [`Value::approx_size`] of `rows`.
    pub fn size(&self, rows: std::ops::Range<usize>) -> usize {
        self.sizes[rows].iter().sum()
    }

    /// Column `col` of every row, decoded; the other columns are not.
    pub fn column(&self, col: usize) -> Vec<Value> {
        self.offsets[..self.rows()]
            .iter()
            .map(|&pos| {
                let mut r = Reader {
                    buf: &self.bytes,
                    pos,
                };
                for _ in 0..col {
                    r.skip(0).expect("checked");
                }
                r.value(0).expect("checked")
            })
            .collect()
    }

    /// All rows, decoded.
    pub fn decode(&self) -> Batch {
        decode(&self.bytes).expect("checked")
    }

    /// An empty buffer of `schema` with room for about `capacity` bytes, to [`Encoded::extend`].
    pub fn empty(schema: Schema, capacity: usize) -> Encoded {
        let bytes = Builder::new(&schema, capacity).finish();
        Encoded {
            offsets: vec![bytes.len()],
            bytes,
            schema,
            sizes: Vec::new(),
        }
    }

    /// Appends `rows` of `from`, a buffer of the same schema, copying their bytes as they are.
    pub fn extend(&mut self, from: &Encoded, rows: std::ops::Range<usize>) {
        debug_assert_eq!(self.schema, from.schema, "rows of another schema");
        let (start, end) = (from.offsets[rows.start], from.offsets[rows.end]);
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&from.bytes[start..end]);
        self.offsets.pop();
        self.offsets.extend(
            from.offsets[rows.start..=rows.end]
                .iter()
                .map(|o| o - start + base),
        );
        self.sizes.extend_from_slice(&from.sizes[rows]);
        self.write_count();
    }

    /// Rows `at..` as a buffer of their own (their bytes copied); this one keeps the rows before.
    pub fn split_off(&mut self, at: usize) -> Encoded {
        let rest = self.slice(at..self.rows());
        self.bytes.truncate(self.offsets[at]);
        self.offsets.truncate(at + 1);
        self.sizes.truncate(at);
        self.write_count();
        rest
    }

    fn write_count(&mut self) {
        // The row count sits just before the first row.
        let at = self.offsets[0] - 4;
        let n = (self.sizes.len() as u32).to_le_bytes();
        self.bytes[at..at + 4].copy_from_slice(&n);
    }

    /// `rows` of this buffer as a buffer of their own.
    pub fn slice(&self, rows: std::ops::Range<usize>) -> Encoded {
        let mut out = Encoded::empty(self.schema.clone(), 0);
        out.extend(self, rows);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_pushed_one_by_one_are_the_rows_pushed_whole() {
        let rows = vec![
            vec![
                Value::Int(-3),
                Value::UInt(u64::MAX),
                Value::Float(0.5),
                Value::String("café".into()),
                Value::Bytes(vec![0, 255]),
                Value::Date(-1),
                Value::DateTime(1_700_000_000_000_000),
                Value::Timestamp(42),
                Value::Null,
                Value::Decimal("1.50".into()),
            ],
            vec![Value::Null; 10],
        ];
        let schema: Vec<Column> = (0..10)
            .map(|i| Column {
                name: format!("c{i}"),
                ty: ColumnType::Any,
            })
            .collect();
        let mut whole = Builder::new(&schema, 0);
        let mut cells = Builder::new(&schema, 0);
        for row in &rows {
            whole.push_row(row);
            for v in row {
                match v {
                    Value::Int(i) => cells.push_int(*i),
                    Value::UInt(u) => cells.push_uint(*u),
                    Value::Float(x) => cells.push_float(*x),
                    Value::String(s) => cells.push_string(s),
                    Value::Bytes(b) => cells.push_bytes(b),
                    Value::Date(d) => cells.push_date(*d),
                    Value::DateTime(t) => cells.push_date_time(*t),
                    Value::Timestamp(t) => cells.push_timestamp(*t),
                    Value::Null => cells.push_null(),
                    other => cells.push_value(other),
                }
            }
            cells.end_row();
        }
        let bytes = cells.finish();
        assert_eq!(bytes, whole.finish());
        assert_eq!(decode(&bytes).unwrap().rows, rows);
    }

    /// One value of every kind, some at the edges of their range.
    fn every_value() -> Vec<Value> {
        vec![
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
            Value::Timestamp(-1_000_001),
            Value::Duration {
                months: -14,
                days: 3,
                micros: i64::MIN,
            },
            Value::ZonedTime {
                micros: 86_399_999_999,
                offset_seconds: -50_400,
            },
            Value::Point(Point {
                srid: 4326,
                x: -0.1,
                y: 51.5,
                z: None,
            }),
            Value::Point(Point {
                srid: 0,
                x: 1.0,
                y: 2.0,
                z: Some(-3.5),
            }),
            Value::List(vec![]),
            Value::List(vec![Value::String("a".into()), Value::Null]),
            Value::Map(vec![
                ("z".into(), Value::List(vec![Value::Map(vec![])])),
                ("a".into(), Value::UInt(7)),
            ]),
        ]
    }

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
        let values = every_value();
        let rows = values
            .iter()
            .map(|v| vec![v.clone(), Value::String("x".into())])
            .collect();
        let batch = Batch { schema, rows };
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
        assert_eq!(row_count(&encode(&batch)), Ok(values.len()));

        // Checked without decoding: the same rows, sizes as the values count them.
        let checked = Encoded::check(encode(&batch)).unwrap();
        assert_eq!(checked.schema(), &batch.schema);
        assert_eq!(checked.rows(), batch.rows.len());
        assert_eq!(checked.decode(), batch);
        for (i, row) in batch.rows.iter().enumerate() {
            let size: usize = row.iter().map(Value::approx_size).sum();
            assert_eq!(checked.size(i..i + 1), size);
        }
        assert_eq!(checked.column(0), values.to_vec());

        // Rows put together from encoded ranges are the rows of the parts, in order.
        let (a, b) = (3, 11);
        let mut joined = Encoded::empty(batch.schema.clone(), 0);
        joined.extend(&checked, a..b);
        joined.extend(&checked, 0..1);
        let mut expected = batch.rows[a..b].to_vec();
        expected.push(batch.rows[0].clone());
        assert_eq!(joined.decode().rows, expected);
        assert_eq!(Encoded::check(joined.as_bytes().to_vec()).unwrap(), joined);
        let slice = checked.slice(a..b);
        assert_eq!(slice.decode().rows, batch.rows[a..b].to_vec());
        assert_eq!(slice.column(1).len(), b - a);
        assert_eq!(Encoded::check(slice.as_bytes().to_vec()).unwrap(), slice);

        // Split in two: each part is a buffer of its own holding its rows.
        let mut head = checked.clone();
        let tail = head.split_off(a);
        assert_eq!(head.decode().rows, batch.rows[..a].to_vec());
        assert_eq!(tail.decode().rows, batch.rows[a..].to_vec());
        for part in [&head, &tail] {
            assert_eq!(&Encoded::check(part.as_bytes().to_vec()).unwrap(), part);
        }
        let mut all = checked.clone();
        assert!(all.split_off(checked.rows()).is_empty());
        assert_eq!(all, checked);

        // Checked into another buffer's memory: the same as checked anew.
        let reused = tail.check_into(checked.as_bytes()).unwrap();
        assert_eq!(reused, checked);
        let e = head.check_into(&checked.as_bytes()[..10]).unwrap_err();
        assert_eq!(
            e,
            Encoded::check(checked.as_bytes()[..10].to_vec()).unwrap_err()
        );
    }

    #[test]
    fn appended_tags_have_fixed_layouts() {
        let mut out = Vec::new();
        put_value(
            &mut out,
            &Value::Duration {
                months: 1,
                days: -2,
                micros: 3,
            },
        );
        let mut want = vec![15];
        for n in [1i64, -2, 3] {
            want.extend_from_slice(&n.to_le_bytes());
        }
        assert_eq!(out, want);
        out.clear();
        put_value(
            &mut out,
            &Value::ZonedTime {
                micros: 5,
                offset_seconds: -3600,
            },
        );
        let mut want = vec![16];
        want.extend_from_slice(&5i64.to_le_bytes());
        want.extend_from_slice(&(-3600i32).to_le_bytes());
        assert_eq!(out, want);
        for tag in 0..=16 {
            if let Some(ty) = tag_type(tag) {
                assert_eq!(type_tag(ty), tag);
            }
        }
        assert_eq!(tag_type(15), Some(ColumnType::Duration));
        assert_eq!(tag_type(16), Some(ColumnType::ZonedTime));
        assert_eq!(tag_type(14), None, "no Map column type");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH {
            deep = Value::List(vec![deep]);
        }
        let batch = Batch {
            schema: vec![Column {
                name: "d".into(),
                ty: ColumnType::Any,
            }]
            .into(),
            rows: vec![vec![deep]],
        };
        let e = decode(&encode(&batch)).unwrap_err();
        assert!(
            e.0.starts_with("lists and maps nested deeper than 128"),
            "{e}"
        );
    }

    #[test]
    fn a_version_1_buffer_is_refused() {
        let mut buf = encode(&Batch::new(vec![].into()));
        buf[..4].copy_from_slice(b"ETB1");
        assert!(decode(&buf).unwrap_err().0.starts_with("bad magic"));
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
            assert!(Encoded::check(buf[..cut].to_vec()).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn check_refuses_what_decode_refuses() {
        let batch = Batch {
            schema: vec![Column {
                name: "s".into(),
                ty: ColumnType::String,
            }]
            .into(),
            rows: vec![vec![Value::String("hé".into())]],
        };
        let mut buf = encode(&batch);
        let last = buf.len() - 1;
        buf[last] = 0xff;
        assert_eq!(
            Encoded::check(buf.clone()).unwrap_err(),
            decode(&buf).unwrap_err()
        );
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH {
            deep = Value::Map(vec![("k".into(), deep)]);
        }
        let deep = encode(&Batch {
            schema: batch.schema.clone(),
            rows: vec![vec![deep]],
        });
        assert_eq!(
            Encoded::check(deep.clone()).unwrap_err(),
            decode(&deep).unwrap_err()
        );
        let mut trailing = encode(&batch);
        trailing.push(0);
        assert_eq!(
            Encoded::check(trailing.clone()).unwrap_err(),
            decode(&trailing).unwrap_err()
        );
    }
}
