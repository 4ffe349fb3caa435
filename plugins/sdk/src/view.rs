//! The codec's bytes read in place: a value ([`ValueRef`]), a row ([`RowRef`]) and a change batch
//! ([`ChangeBatchView`]) that borrow the buffer they come from.
//!
//! For a sink that writes a format of its own straight from the bytes the host hands it (the bolt
//! sink's PackStream): decoding into [`Value`]s first builds a `String` per text cell and a `Vec`
//! per row only to drop them once written, which costs more than the writing. A view checks the
//! whole buffer as [`ChangeBatch::decode`] does (tags, lengths, UTF-8, nesting, no trailing bytes)
//! and builds nothing per cell.

use crate::change::{layout, parse_key, ChangeKind, RESERVED};
use crate::codec::{header, DecodeError, Reader};
use crate::value::{Point, Row, Schema, Value};

/// One value as the buffer holds it: text and bytes borrowed, numbers and times read out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Decimal(&'a str),
    String(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    DateTime(i64),
    Time(i64),
    Timestamp(i64),
    Point(Point),
    Duration {
        months: i64,
        days: i64,
        micros: i64,
    },
    ZonedTime {
        micros: i64,
        offset_seconds: i32,
    },
    /// A list or a map, as its bytes (tag included): [`ValueRef::to_value`] builds it.
    List(Nested<'a>),
    Map(Nested<'a>),
}

/// A list's or a map's bytes, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nested<'a> {
    bytes: &'a [u8],
}

impl Nested<'_> {
    pub fn to_value(&self) -> Value {
        Reader::new(self.bytes).value(0).expect("checked")
    }
}

impl ValueRef<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, ValueRef::Null)
    }

    /// The value, built: what [`crate::codec::decode`] gives for the same bytes.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::UInt(u) => Value::UInt(u),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Decimal(d) => Value::Decimal(d.to_string()),
            ValueRef::String(s) => Value::String(s.to_string()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
            ValueRef::Date(d) => Value::Date(d),
            ValueRef::DateTime(t) => Value::DateTime(t),
            ValueRef::Time(t) => Value::Time(t),
            ValueRef::Timestamp(t) => Value::Timestamp(t),
            ValueRef::Point(p) => Value::Point(p),
            ValueRef::Duration {
                months,
                days,
                micros,
            } => Value::Duration {
                months,
                days,
                micros,
            },
            ValueRef::ZonedTime {
                micros,
                offset_seconds,
            } => Value::ZonedTime {
                micros,
                offset_seconds,
            },
            ValueRef::List(n) | ValueRef::Map(n) => n.to_value(),
        }
    }
}

impl<'a> Reader<'a> {
    /// The next value, borrowed: NULL, an integer and ASCII text (most cells) with one bounds
    /// check and no call, the rest as [`Reader::any_value_ref`] reads them.
    #[inline(always)]
    fn value_ref(&mut self) -> Result<ValueRef<'a>, DecodeError> {
        let rest = &self.buf()[self.pos.min(self.buf().len())..];
        match rest.first() {
            Some(0) => {
                self.pos += 1;
                return Ok(ValueRef::Null);
            }
            Some(2) if rest.len() >= 9 => {
                self.pos += 9;
                let n = i64::from_le_bytes(rest[1..9].try_into().expect("8 bytes"));
                return Ok(ValueRef::Int(n));
            }
            Some(6) if rest.len() >= 5 => {
                let n = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
                if let Some(text) = rest.get(5..5 + n).filter(|t| t.is_ascii()) {
                    self.pos += 5 + n;
                    // SAFETY: ASCII is UTF-8.
                    return Ok(ValueRef::String(unsafe {
                        std::str::from_utf8_unchecked(text)
                    }));
                }
            }
            _ => {}
        }
        self.any_value_ref()
    }

    /// The next value of any kind, borrowed.
    fn any_value_ref(&mut self) -> Result<ValueRef<'a>, DecodeError> {
        let start = self.pos;
        let tag = self.u8()?;
        Ok(match tag {
            0 => ValueRef::Null,
            1 => ValueRef::Bool(self.u8()? != 0),
            2 => ValueRef::Int(i64::from_le_bytes(self.arr()?)),
            3 => ValueRef::UInt(u64::from_le_bytes(self.arr()?)),
            4 => ValueRef::Float(self.f64()?),
            5 => ValueRef::Decimal(self.str_ref()?),
            6 => ValueRef::String(self.str_ref()?),
            7 => {
                let n = self.u32()? as usize;
                ValueRef::Bytes(self.take(n)?)
            }
            8 => ValueRef::Date(i32::from_le_bytes(self.arr()?)),
            9 => ValueRef::DateTime(i64::from_le_bytes(self.arr()?)),
            10 => ValueRef::Time(i64::from_le_bytes(self.arr()?)),
            11 => ValueRef::Timestamp(i64::from_le_bytes(self.arr()?)),
            12 | 15 | 16 => {
                self.pos = start;
                match self.value(0)? {
                    Value::Point(p) => ValueRef::Point(p),
                    Value::Duration {
                        months,
                        days,
                        micros,
                    } => ValueRef::Duration {
                        months,
                        days,
                        micros,
                    },
                    Value::ZonedTime {
                        micros,
                        offset_seconds,
                    } => ValueRef::ZonedTime {
                        micros,
                        offset_seconds,
                    },
                    _ => unreachable!("tags 12, 15 and 16 read as these"),
                }
            }
            13 | 14 => {
                self.pos = start;
                self.skip(0)?;
                let nested = Nested {
                    bytes: self.buf_of(start),
                };
                if tag == 13 {
                    ValueRef::List(nested)
                } else {
                    ValueRef::Map(nested)
                }
            }
            _ => {
                // `skip` says what is wrong with it.
                self.pos = start;
                self.skip(0)?;
                unreachable!("skip refuses an unknown tag")
            }
        })
    }

    /// The bytes from `start` to where the reader is.
    fn buf_of(&self, start: usize) -> &'a [u8] {
        &self.buf()[start..self.pos]
    }

    fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let b = self.take(n)?;
        if b.is_ascii() {
            // SAFETY: ASCII is UTF-8 (checked a word at a time, cheaper than `from_utf8`).
            return Ok(unsafe { std::str::from_utf8_unchecked(b) });
        }
        std::str::from_utf8(b).map_err(|_| DecodeError(format!("invalid UTF-8 at byte {at}")))
    }
}

/// One row's values as the buffer holds them, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    bytes: &'a [u8],
    len: usize,
    nulls: usize,
}

impl<'a> RowRef<'a> {
    /// Reads `len` values from `r`, checking them.
    fn read(r: &mut Reader<'a>, len: usize) -> Result<RowRef<'a>, DecodeError> {
        let start = r.pos;
        let mut nulls = 0;
        for _ in 0..len {
            if r.buf().get(r.pos) == Some(&0) {
                nulls += 1;
            }
            if r.skip_common().is_none() {
                r.skip(0)?;
            }
        }
        Ok(RowRef {
            bytes: r.buf_of(start),
            len,
            nulls,
        })
    }

    /// How many values (one per column).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many values are not NULL.
    pub fn non_null(&self) -> usize {
        self.len - self.nulls
    }

    /// The values in column order.
    pub fn iter(&self) -> impl Iterator<Item = ValueRef<'a>> + 'a {
        let mut r = Reader::new(self.bytes);
        (0..self.len).map(move |_| r.value_ref().expect("checked"))
    }

    /// Value `i`, or `None` past the row's end.
    pub fn get(&self, i: usize) -> Option<ValueRef<'a>> {
        let mut r = Reader::new(self.bytes);
        self.seek(&mut r, i)?;
        Some(r.value_ref().expect("checked"))
    }

    /// Value `i`'s bytes in the codec's format (its tag included): equal bytes, equal values.
    pub fn cell(&self, i: usize) -> Option<&'a [u8]> {
        let mut r = Reader::new(self.bytes);
        self.seek(&mut r, i)?;
        let start = r.pos;
        r.skip(0).expect("checked");
        Some(r.buf_of(start))
    }

    fn seek(&self, r: &mut Reader<'a>, i: usize) -> Option<()> {
        if i >= self.len {
            return None;
        }
        for _ in 0..i {
            if r.skip_common().is_none() {
                r.skip(0).expect("checked");
            }
        }
        Some(())
    }

    /// The values, built.
    pub fn to_row(&self) -> Row {
        self.iter().map(|v| v.to_value()).collect()
    }
}

/// One change of a [`ChangeBatchView`]: its kind and rows. Its place in the log (commit position,
/// `last`, timestamp) is read only by [`crate::ChangeBatch::decode`]: a sink writing a batch has no
/// use for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeView<'a> {
    pub kind: ChangeKind,
    /// Insert and update: the row as it is now; delete: the row as it was; mark and truncate: all
    /// NULL.
    pub row: RowRef<'a>,
    /// The `_etl_old.` columns: the row before an update (or a key change's insert), else NULLs.
    pub old: RowRef<'a>,
}

/// A change batch in the codec's format ([`crate::ChangeBatch::encode`]) read in place: the same
/// table, schema, key and changes as [`crate::ChangeBatch::decode`] reads, its rows as views.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatchView<'a> {
    pub table: String,
    pub schema: Schema,
    pub key: Vec<usize>,
    pub changes: Vec<ChangeView<'a>>,
}

impl<'a> ChangeBatchView<'a> {
    /// Reads and checks `bytes`; an error says what is malformed, as [`crate::ChangeBatch::decode`]'s.
    pub fn read(bytes: &'a [u8]) -> Result<Self, String> {
        let e = |e: DecodeError| e.to_string();
        let mut r = Reader::new(bytes);
        let (cols, nrows) = header(&mut r).map_err(e)?;
        let (reserved, n) = layout(&cols)?;
        let schema: Schema = cols[reserved..reserved + n].to_vec().into();
        let (mut table, mut key) = (String::new(), Vec::new());
        let mut changes = Vec::with_capacity(nrows.min(bytes.len()));
        for i in 0..nrows {
            let kind = match r.value_ref().map_err(e)? {
                ValueRef::Int(t) => ChangeKind::from_tag(t),
                _ => None,
            }
            .ok_or_else(|| format!("change {i} has no valid kind"))?;
            if i == 0 {
                table = match r.value_ref().map_err(e)? {
                    ValueRef::String(s) => s.to_string(),
                    _ => String::new(),
                };
                key = parse_key(&r.value_ref().map_err(e)?.to_value())?;
            } else {
                RowRef::read(&mut r, 2).map_err(e)?;
            }
            RowRef::read(&mut r, reserved - 3).map_err(e)?;
            let row = RowRef::read(&mut r, n).map_err(e)?;
            let old = RowRef::read(&mut r, n).map_err(e)?;
            changes.push(ChangeView { kind, row, old });
        }
        r.end().map_err(e)?;
        debug_assert!(reserved <= RESERVED);
        Ok(ChangeBatchView {
            table,
            schema,
            key,
            changes,
        })
    }

    /// Runs of consecutive changes of one kind, in order (as [`crate::change::runs`]).
    pub fn runs(&self) -> impl Iterator<Item = (ChangeKind, &[ChangeView<'a>])> {
        let mut rest = &self.changes[..];
        std::iter::from_fn(move || {
            let first = rest.first()?.kind;
            let n = rest.iter().take_while(|c| c.kind == first).count();
            let (run, tail) = rest.split_at(n);
            rest = tail;
            Some((first, run))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, ChangeBatch, Column, ColumnType, Position};

    fn batch() -> ChangeBatch {
        let values = vec![
            Value::Null,
            Value::Bool(false),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(-0.5),
            Value::Decimal("1.10".into()),
            Value::String("é".into()),
            Value::Bytes(vec![1, 2]),
            Value::Date(19_000),
            Value::DateTime(1),
            Value::Time(2),
            Value::Timestamp(3),
            Value::Point(Point {
                srid: 0,
                x: 1.0,
                y: 2.0,
                z: Some(3.0),
            }),
            Value::Duration {
                months: 1,
                days: 2,
                micros: 3,
            },
            Value::ZonedTime {
                micros: 4,
                offset_seconds: 3600,
            },
            Value::List(vec![Value::Map(vec![("a".into(), Value::Null)])]),
            Value::Map(vec![("b".into(), Value::List(Vec::new()))]),
        ];
        let schema: Vec<Column> = (0..values.len())
            .map(|i| Column {
                name: format!("c{i}"),
                ty: ColumnType::Any,
            })
            .collect();
        let change = |kind, row: Vec<Value>, old| Change {
            kind,
            row,
            old,
            commit: Position {
                file: "binlog.000002".into(),
                pos: 9,
                gtid: Some("0-1-2".into()),
                skip: 1,
            },
            last: true,
            timestamp: 5,
            no_fk_actions: true,
        };
        let mut rotated = values.clone();
        rotated.rotate_left(3);
        ChangeBatch {
            table: "db.t".into(),
            schema: schema.into(),
            key: vec![2, 6],
            changes: vec![
                change(ChangeKind::Insert, values.clone(), None),
                change(ChangeKind::Update, rotated.clone(), Some(values.clone())),
                change(ChangeKind::Mark, Vec::new(), None),
                change(ChangeKind::Delete, rotated, None),
            ],
        }
    }

    /// A view reads what `ChangeBatch::decode` reads: table, schema, key, kinds and rows.
    #[test]
    fn a_view_holds_what_decode_gives() {
        let b = batch();
        let bytes = b.encode();
        let decoded = ChangeBatch::decode(&bytes).unwrap();
        let view = ChangeBatchView::read(&bytes).unwrap();
        assert_eq!(view.table, decoded.table);
        assert_eq!(view.schema, decoded.schema);
        assert_eq!(view.key, decoded.key);
        assert_eq!(view.changes.len(), decoded.changes.len());
        for (v, d) in view.changes.iter().zip(&decoded.changes) {
            assert_eq!(v.kind, d.kind);
            if d.kind.has_row() {
                assert_eq!(v.row.to_row(), d.row);
                assert_eq!(
                    v.row.non_null(),
                    d.row.iter().filter(|x| !x.is_null()).count()
                );
                for (i, x) in d.row.iter().enumerate() {
                    assert_eq!(v.row.get(i).unwrap().to_value(), *x);
                }
                assert_eq!(v.row.get(d.row.len()), None);
            }
            if let Some(old) = &d.old {
                assert_eq!(&v.old.to_row(), old);
            }
        }
        let kinds: Vec<(ChangeKind, usize)> = view.runs().map(|(k, r)| (k, r.len())).collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Insert, 1),
                (ChangeKind::Update, 1),
                (ChangeKind::Mark, 1),
                (ChangeKind::Delete, 1)
            ]
        );
    }

    /// Equal values have equal cells; the cell is the value's bytes alone.
    #[test]
    fn cells_compare_as_values_do() {
        let bytes = batch().encode();
        let view = ChangeBatchView::read(&bytes).unwrap();
        let (insert, delete) = (&view.changes[0].row, &view.changes[3].row);
        assert_eq!(insert.cell(6), Some(&[6u8, 2, 0, 0, 0, 0xc3, 0xa9][..]));
        assert_eq!(insert.cell(3), delete.cell(0));
        assert_ne!(insert.cell(2), delete.cell(2));
    }

    /// A buffer cut short, with a stray byte, or with text that is not UTF-8 is refused, as
    /// decode refuses it.
    #[test]
    fn malformed_buffers_are_refused() {
        let bytes = batch().encode();
        for cut in [bytes.len() - 1, bytes.len() / 2, 10] {
            let e = ChangeBatchView::read(&bytes[..cut]).unwrap_err();
            assert_eq!(e, ChangeBatch::decode(&bytes[..cut]).unwrap_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            ChangeBatchView::read(&longer).unwrap_err(),
            "malformed batch buffer: 1 trailing bytes"
        );
        let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
        let mut bad = bytes.clone();
        bad[at + 1] = 0x28;
        assert!(ChangeBatchView::read(&bad)
            .unwrap_err()
            .contains("invalid UTF-8"));
        assert!(ChangeBatch::decode(&bad).is_err());
    }
}
