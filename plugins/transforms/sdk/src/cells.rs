//! Rows of the encoded world read as rows: where each value of each row lies in the batch's
//! buffer, found by skipping over the values (the table in the plugin SDK's `codec`), without
//! decoding one. A transform reads the few values it needs ([`Row::text`], [`Row::get`]) and
//! passes the others on as the bytes they are ([`crate::encoded::RowWriter::copy`]): what the
//! values world costs per value (a lowering into the guest, a lifting back, a decoding and an
//! encoding in the host) is paid only for the values read and written.

use etlhost_plugin_sdk::codec;
use etlhost_plugin_sdk::{Column, ColumnType, Value};

/// Tags of the batch format whose payload is a `str` (u32 length, UTF-8).
const DECIMAL: u8 = 5;
const STRING: u8 = 6;
const INT: u8 = 2;

/// Where every value of a batch lies: `at[r * ncols + c]` is the start of row `r`'s value of
/// column `c`, and the last entry the end of the last row.
pub struct Cells<'a> {
    bytes: &'a [u8],
    ncols: usize,
    at: Vec<usize>,
}

impl<'a> Cells<'a> {
    /// The values of `bytes`, a buffer the host checked before sending it. A malformed one would
    /// panic here (a trap: the host retries the rows apart), never be misread.
    pub(crate) fn of(bytes: &'a [u8], ncols: usize, nrows: usize) -> Cells<'a> {
        let mut pos = header_len(bytes, ncols);
        let mut at = Vec::with_capacity(ncols * nrows + 1);
        for _ in 0..ncols * nrows {
            at.push(pos);
            pos = skip(bytes, pos);
        }
        at.push(pos);
        Cells { bytes, ncols, at }
    }

    pub fn len(&self) -> usize {
        (self.at.len() - 1) / self.ncols.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` (from 0).
    #[inline]
    pub fn row(&self, i: usize) -> Row<'_> {
        Row { cells: self, i }
    }

    /// The size of all rows' values in the batch format (for [`crate::encoded::Output::reserve`]).
    pub fn byte_len(&self) -> usize {
        self.at[self.at.len() - 1] - self.at[0]
    }

    /// Every row, in order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.len()).map(|i| self.row(i))
    }
}

/// One row of [`Cells`]: its values read one at a time, each only when asked for.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    cells: &'a Cells<'a>,
    i: usize,
}

impl<'a> Row<'a> {
    /// Where the row's value of column `col` lies in the buffer.
    #[inline]
    fn span(&self, col: usize) -> (usize, usize) {
        assert!(col < self.cells.ncols, "no column {col} in a row");
        let k = self.i * self.cells.ncols + col;
        (self.cells.at[k], self.cells.at[k + 1])
    }

    /// The value of column `col` as its bytes in the batch format (tag and payload).
    #[inline]
    pub fn raw(&self, col: usize) -> &'a [u8] {
        let (a, b) = self.span(col);
        &self.cells.bytes[a..b]
    }

    /// The text of column `col` when it holds text (or a decimal, as its text), borrowed from
    /// the buffer; `None` for any other value.
    pub fn text(&self, col: usize) -> Option<&'a str> {
        self.text_bytes(col)
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// As [`Row::text`], its UTF-8 bytes unchecked (the host checked them): to copy into a value
    /// written with [`crate::encoded::RowWriter::text_bytes`], which the host checks again.
    #[inline]
    pub fn text_bytes(&self, col: usize) -> Option<&'a [u8]> {
        let raw = self.raw(col);
        matches!(raw[0], DECIMAL | STRING).then(|| &raw[5..])
    }

    /// The size of the row's values in the batch format.
    pub fn byte_len(&self) -> usize {
        let first = self.i * self.cells.ncols;
        self.cells.at[first + self.cells.ncols] - self.cells.at[first]
    }

    /// The integer of column `col` when it holds a signed integer.
    #[inline]
    pub fn int(&self, col: usize) -> Option<i64> {
        let raw = self.raw(col);
        (raw[0] == INT).then(|| i64::from_le_bytes(raw[1..9].try_into().expect("8 bytes")))
    }

    /// Whether column `col` is NULL in this row.
    #[inline]
    pub fn is_null(&self, col: usize) -> bool {
        self.raw(col)[0] == 0
    }

    /// The value of column `col`, decoded.
    pub fn get(&self, col: usize) -> Value {
        decode_one(self.raw(col))
    }
}

/// One value's bytes decoded, through a one-column, one-row buffer of the batch format.
fn decode_one(raw: &[u8]) -> Value {
    let column = Column {
        name: String::new(),
        ty: ColumnType::Any,
    };
    let mut buf = codec::Builder::new(&[column], raw.len() + 16).finish();
    let count_at = buf.len() - 4;
    buf[count_at..].copy_from_slice(&1u32.to_le_bytes());
    buf.extend_from_slice(raw);
    let mut batch = codec::decode(&buf).expect("a value of a checked buffer");
    batch
        .rows
        .pop()
        .and_then(|r| r.into_iter().next())
        .expect("one value")
}

#[inline]
fn u32_at(b: &[u8], pos: usize) -> usize {
    u32::from_le_bytes(b[pos..pos + 4].try_into().expect("4 bytes")) as usize
}

/// The length of the header: magic, column count, each column's name and type, row count.
fn header_len(b: &[u8], ncols: usize) -> usize {
    let mut pos = 8;
    for _ in 0..ncols {
        pos += 4 + u32_at(b, pos) + 1;
    }
    pos + 4
}

/// Where the value starting at `pos` ends.
#[inline]
fn skip(b: &[u8], pos: usize) -> usize {
    let p = pos + 1;
    match b[pos] {
        0 => p,
        1 => p + 1,
        2 | 3 | 4 | 9 | 10 | 11 => p + 8,
        5..=7 => p + 4 + u32_at(b, p),
        8 => p + 4,
        12 => {
            // srid, x, y, has_z, z when has_z
            let z = b[p + 20] == 1;
            p + 21 + if z { 8 } else { 0 }
        }
        13 => (0..u32_at(b, p)).fold(p + 4, |q, _| skip(b, q)),
        14 => (0..u32_at(b, p)).fold(p + 4, |q, _| skip(b, q + 4 + u32_at(b, q))),
        15 => p + 24,
        16 => p + 12,
        tag => panic!("tag {tag} in a checked buffer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::{Batch, Point};

    #[test]
    fn every_value_is_found_where_it_lies() {
        let columns: Vec<Column> = ["a", "b", "c"]
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                ty: ColumnType::Any,
            })
            .collect();
        let rows = vec![
            vec![
                Value::Int(7),
                Value::String("héllo".into()),
                Value::List(vec![
                    Value::Int(1),
                    Value::Map(vec![("k".into(), Value::Null)]),
                ]),
            ],
            vec![
                Value::Point(Point {
                    srid: 4326,
                    x: 1.0,
                    y: 2.0,
                    z: Some(3.0),
                }),
                Value::Decimal("1.50".into()),
                Value::Duration {
                    months: 1,
                    days: 2,
                    micros: 3,
                },
            ],
        ];
        let batch = Batch {
            schema: columns.into(),
            rows: rows.clone(),
        };
        let bytes = codec::encode(&batch);
        let cells = Cells::of(&bytes, 3, 2);
        assert_eq!(cells.len(), 2);
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert_eq!(&cells.row(r).get(c), v, "row {r} column {c}");
            }
        }
        assert_eq!(cells.row(0).text(1), Some("héllo"));
        assert_eq!(cells.row(1).text(1), Some("1.50"));
        assert_eq!(cells.row(0).int(0), Some(7));
        assert_eq!(cells.row(0).text(0), None);
    }
}
