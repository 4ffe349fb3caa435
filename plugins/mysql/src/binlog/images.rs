//! A rows event's row images read without mysql_common's `BinlogRow`, which builds every
//! column's metadata (schema, table and column names, flags, character set: allocations and `Arc`
//! copies) again for every row: half of what a change cost this plugin (callgrind). A table whose
//! columns are all integers, floats or `VARCHAR`s is read here, value for value as mysql_common
//! reads it (in debug builds both are read and compared, so every stream test checks it); any
//! other column type, a partial JSON update or a buffer that does not add up takes mysql_common's
//! way, which reads it or says what is wrong.

use mysql_async::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;

/// A row's image: its values, one per column the event carries for it.
pub(super) type Image = Vec<BinlogValue<'static>>;

/// How one column is stored in a row image.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// A little-endian integer of `bytes` bytes.
    Int {
        bytes: usize,
        unsigned: bool,
    },
    Float,
    Double,
    /// A length of `len_bytes` bytes, then that many bytes.
    Text {
        len_bytes: usize,
    },
}

/// How to read every column of a table map, when each is of a kind read here.
#[derive(Debug)]
pub(super) struct Plan(Vec<Cell>);

impl Plan {
    pub(super) fn of(tme: &TableMapEvent<'_>) -> Option<Plan> {
        use ColumnType::*;
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).ok()?;
        // As mysql_common: one flag per numeric column, in order; none means signed.
        let mut unsigned = meta.iter_signedness();
        let n = usize::try_from(tme.columns_count()).ok()?;
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            let ty = tme.get_column_type(i).ok()??;
            let unsigned = ty.is_numeric_type() && unsigned.next().unwrap_or(false);
            let int = |bytes| Cell::Int { bytes, unsigned };
            cells.push(match ty {
                MYSQL_TYPE_TINY => int(1),
                MYSQL_TYPE_SHORT => int(2),
                MYSQL_TYPE_INT24 => int(3),
                MYSQL_TYPE_LONG => int(4),
                MYSQL_TYPE_LONGLONG => int(8),
                MYSQL_TYPE_FLOAT => Cell::Float,
                MYSQL_TYPE_DOUBLE => Cell::Double,
                MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                    let m = tme.get_column_metadata(i)?;
                    let max = u16::from_le_bytes([*m.first()?, *m.get(1)?]);
                    Cell::Text {
                        len_bytes: if max < 256 { 1 } else { 2 },
                    }
                }
                _ => return None,
            });
        }
        Some(Plan(cells))
    }

    /// Every row's (before, after) images, or `None` for mysql_common to read the event.
    pub(super) fn rows(
        &self,
        rows: &RowsEventData<'_>,
    ) -> Option<Vec<(Option<Image>, Option<Image>)>> {
        if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_))
            || rows.num_columns() != self.0.len() as u64
        {
            return None;
        }
        let before = rows.columns_before_image();
        let after = rows.columns_after_image();
        let before = before.map(|c| (c.count_ones(), move |i: usize| c.get(i).is_some_and(|b| *b)));
        let after = after.map(|c| (c.count_ones(), move |i: usize| c.get(i).is_some_and(|b| *b)));
        let data = rows.rows_data();
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < data.len() {
            let b = match &before {
                Some((n, has)) => Some(self.image(*n, has, data, &mut pos)?),
                None => None,
            };
            let a = match &after {
                Some((n, has)) => Some(self.image(*n, has, data, &mut pos)?),
                None => None,
            };
            out.push((b, a));
        }
        Some(out)
    }

    /// One image: the NULL bitmap of the `count` columns it has (`has`), then their values.
    fn image(
        &self,
        count: usize,
        has: &impl Fn(usize) -> bool,
        data: &[u8],
        pos: &mut usize,
    ) -> Option<Image> {
        let nulls = take(data, pos, count.div_ceil(8))?;
        let mut values = Vec::with_capacity(count);
        let mut k = 0;
        for (i, cell) in self.0.iter().enumerate() {
            if !has(i) {
                continue;
            }
            let null = nulls.get(k / 8).is_none_or(|b| b & (1 << (k % 8)) != 0);
            k += 1;
            values.push(BinlogValue::Value(if null {
                Value::NULL
            } else {
                read(*cell, data, pos)?
            }));
        }
        Some(values)
    }
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let b = data.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(b)
}

/// One value, as mysql_common's `BinlogValue` reads it.
fn read(cell: Cell, data: &[u8], pos: &mut usize) -> Option<Value> {
    Some(match cell {
        Cell::Int { bytes, unsigned } => {
            let b = take(data, pos, bytes)?;
            let mut le = [0u8; 8];
            le[..bytes].copy_from_slice(b);
            let u = u64::from_le_bytes(le);
            if unsigned {
                // mysql_common's Int for every unsigned value that fits, UInt above.
                i64::try_from(u).map_or(Value::UInt(u), Value::Int)
            } else {
                // Sign-extended from the stored width.
                let shift = 64 - 8 * bytes as u32;
                Value::Int(((u << shift) as i64) >> shift)
            }
        }
        Cell::Float => Value::Float(f32::from_le_bytes(take(data, pos, 4)?.try_into().ok()?)),
        Cell::Double => Value::Double(f64::from_le_bytes(take(data, pos, 8)?.try_into().ok()?)),
        Cell::Text { len_bytes } => {
            let l = take(data, pos, len_bytes)?;
            let n = if len_bytes == 1 {
                l[0] as usize
            } else {
                u16::from_le_bytes([l[0], l[1]]) as usize
            };
            Value::Bytes(take(data, pos, n)?.to_vec())
        }
    })
}
