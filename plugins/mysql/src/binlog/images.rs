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

/// Each row's (before, after) images, as a rows event has them.
pub(super) type Images = Vec<(Option<Image>, Option<Image>)>;

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
    pub(super) fn rows(&self, rows: &RowsEventData<'_>) -> Option<Images> {
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
            // mysql_common reads a MEDIUMINT zero-extended whatever its sign (its `LeI24` does
            // not extend the sign: -1 arrives as 16777215), and this reads the same values, so
            // that the two readers can be compared; `TableShape::row_in` extends it for both.
            if unsigned || bytes == 3 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use mysql_async::binlog::events::EventData;
    use mysql_async::prelude::Queryable;
    use mysql_async::{BinlogStreamRequest, Conn, OptsBuilder};

    /// Against the real server (`cargo xtask services`): rows events of every column kind read
    /// here, extremes and NULLs included, read the same way as mysql_common reads them; a table
    /// with another kind of column is left to mysql_common.
    #[test]
    fn images_read_in_place_are_mysql_common_s() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let opts = OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(3306)
                .user(Some("etl"))
                .pass(Some("etl"));
            let mut conn = Conn::new(opts.clone()).await.unwrap();
            conn.query_drop(
                "CREATE DATABASE IF NOT EXISTS etlhost_images_test; USE etlhost_images_test;
                 DROP TABLE IF EXISTS plain, other;
                 CREATE TABLE plain (id INT PRIMARY KEY, t TINYINT, tu TINYINT UNSIGNED,
                   s SMALLINT, su SMALLINT UNSIGNED, m MEDIUMINT, mu MEDIUMINT UNSIGNED,
                   i INT UNSIGNED, b BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE,
                   v VARCHAR(10), w VARCHAR(300), x VARBINARY(4));
                 CREATE TABLE other (id INT PRIMARY KEY, at DATETIME(6));",
            )
            .await
            .unwrap();
            let head: (String, u64) = conn
                .query_first("SHOW MASTER STATUS")
                .await
                .unwrap()
                .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
                .unwrap();
            conn.query_drop(
                "INSERT INTO plain VALUES
                   (1, -128, 255, -32768, 65535, -8388608, 16777215, 4294967295,
                    -9223372036854775808, 18446744073709551615, -1.5, 2.25e300, 'é', REPEAT('w', 300), x'00ff'),
                   (2, 127, 0, 32767, 0, 8388607, 0, 0, 9223372036854775807, 9223372036854775808,
                    0, -0.0, '', '', ''),
                   (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
                 UPDATE plain SET v = 'x', w = NULL, m = -1 WHERE id < 3;
                 DELETE FROM plain WHERE id = 2;
                 INSERT INTO other VALUES (1, '2026-12-08 01:02:03.000004');",
            )
            .await
            .unwrap();
            let mut reader = Conn::new(opts).await.unwrap();
            reader
                .query_drop("SET @mariadb_slave_capability = 4")
                .await
                .unwrap();
            let request = BinlogStreamRequest::new(2_000_000 + std::process::id() % 1_000_000)
                .with_filename(head.0.as_bytes())
                .with_pos(head.1);
            let mut stream = reader.get_binlog_stream(request).await.unwrap();
            let (mut plain, mut other) = (0, 0);
            // Other tests write to the server meanwhile: only this test's database counts, and
            // the read ends once its rows are all in.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
            while (plain, other) < (3 + 2 + 1, 1) {
                let event = tokio::time::timeout_at(deadline, stream.next())
                    .await
                    .expect("the test's rows events within two minutes")
                    .unwrap()
                    .unwrap();
                let Some(EventData::RowsEvent(rows)) = event.read_data().unwrap() else {
                    continue;
                };
                let tme = stream.get_tme(rows.table_id()).unwrap();
                if tme.database_name() != "etlhost_images_test" {
                    continue;
                }
                let slow: Images = rows
                    .rows(tme)
                    .map(|r| r.unwrap())
                    .map(|(b, a)| (b.map(|r| r.unwrap()), a.map(|r| r.unwrap())))
                    .collect();
                if tme.table_name() == "plain" {
                    let fast = Plan::of(tme).unwrap().rows(&rows).unwrap();
                    assert_eq!(fast, slow);
                    plain += fast.len();
                } else {
                    assert!(Plan::of(tme).is_none(), "DATETIME is mysql_common's");
                    other += slow.len();
                }
            }
            assert_eq!((plain, other), (3 + 2 + 1, 1));
        });
    }
}
