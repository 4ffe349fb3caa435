//! A statement's binary result set, read one row packet at a time into the connection's buffer.

use mysql_common::constants::{ColumnType as My, Command};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{Column, ComStmtExecuteRequestBuilder, StmtPacket};
use mysql_common::proto::MySerialize;
use mysql_common::value::{BinValue, Value, ValueDeserializer};

use crate::conn::{malformed, Conn};
use crate::Error;

/// The rows of an executed statement; the connection is theirs until [`Rows::close`].
pub struct Rows {
    conn: Conn,
    columns: Vec<Column>,
    /// Bytes of a row's NULL bitmap: one bit per column, offset by two bits.
    bitmap: usize,
    done: bool,
}

/// One non-NULL or NULL cell, borrowed from the row packet where it can be.
#[derive(Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    /// Text, binary strings, DECIMAL, BIT, ENUM, SET, JSON and GEOMETRY: the bytes as sent.
    Bytes(&'a [u8]),
    /// Numbers, dates and times, as mysql_common decodes them (no allocation).
    Value(Value),
}

/// One row: its cells in column order (see [`Row::next`]).
pub struct Row<'a> {
    columns: std::slice::Iter<'a, Column>,
    nulls: &'a [u8],
    buf: ParseBuf<'a>,
    bit: usize,
}

impl Conn {
    /// Prepares `sql`, executes it with `params` and returns its result at the first row. The
    /// connection is the result's until [`Rows::close`].
    pub fn execute(mut self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.command(Command::COM_STMT_PREPARE, sql.as_bytes())?;
        self.read()?;
        if let Some(e) = self.error() {
            return Err(e);
        }
        let stmt = ParseBuf(&self.packet)
            .parse::<StmtPacket>(())
            .map_err(|e| Error::Unsupported(format!("a prepared statement: {e}")))?;
        self.columns(stmt.num_params() as usize)?;
        self.columns(stmt.num_columns() as usize)?;
        let (request, long_data) =
            ComStmtExecuteRequestBuilder::new(stmt.statement_id()).build(params);
        if long_data {
            return Err(Error::Unsupported(
                "parameters too long for one packet".into(),
            ));
        }
        self.seq = 0;
        self.out.clear();
        request.serialize(&mut self.out);
        self.send()?;
        self.read()?;
        if let Some(e) = self.error() {
            return Err(e);
        }
        let n = ParseBuf(&self.packet)
            .checked_eat_lenenc_int()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Unsupported("a statement that returns no rows".into()))?;
        let columns = self.columns(n as usize)?;
        Ok(Rows::new(self, columns))
    }
}

impl Rows {
    fn new(conn: Conn, columns: Vec<Column>) -> Rows {
        let bitmap = (columns.len() + 7 + 2) / 8;
        Rows {
            conn,
            columns,
            bitmap,
            done: false,
        }
    }

    /// The result's column definitions.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The next row, or `None` after the last one.
    #[inline]
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, Error> {
        if self.done {
            return Ok(None);
        }
        self.conn.read()?;
        if let Some(e) = self.conn.error() {
            return Err(e);
        }
        let row = &self.conn.packet;
        // The packet after the last row: EOF, or OK with an EOF header. A binary row starts with
        // 0x00.
        if row.first() == Some(&0xFE) {
            self.done = true;
            return Ok(None);
        }
        if row.len() < 1 + self.bitmap || row[0] != 0x00 {
            return Err(malformed("a row packet that is not a binary row"));
        }
        Ok(Some(Row {
            columns: self.columns.iter(),
            nulls: &row[1..1 + self.bitmap],
            buf: ParseBuf(&row[1 + self.bitmap..]),
            bit: 2,
        }))
    }

    /// Ends the connection (the rows not read are not waited for).
    pub fn close(mut self) {
        let _ = self.conn.command(Command::COM_QUIT, &[]);
    }
}

impl<'a> Iterator for Row<'a> {
    type Item = Result<Cell<'a>, Error>;

    /// The next cell; an error is a row packet that ends early or does not parse (a broken
    /// stream).
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let col = self.columns.next()?;
        let bit = self.bit;
        self.bit += 1;
        if self.nulls[bit / 8] & (1 << (bit % 8)) != 0 {
            return Some(Ok(Cell::Null));
        }
        Some(cell(&mut self.buf, col))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.columns.size_hint()
    }
}

#[inline(always)]
fn cell<'a>(buf: &mut ParseBuf<'a>, col: &Column) -> Result<Cell<'a>, Error> {
    match col.column_type() {
        My::MYSQL_TYPE_STRING
        | My::MYSQL_TYPE_VAR_STRING
        | My::MYSQL_TYPE_BLOB
        | My::MYSQL_TYPE_TINY_BLOB
        | My::MYSQL_TYPE_MEDIUM_BLOB
        | My::MYSQL_TYPE_LONG_BLOB
        | My::MYSQL_TYPE_SET
        | My::MYSQL_TYPE_ENUM
        | My::MYSQL_TYPE_DECIMAL
        | My::MYSQL_TYPE_VARCHAR
        | My::MYSQL_TYPE_BIT
        | My::MYSQL_TYPE_NEWDECIMAL
        | My::MYSQL_TYPE_GEOMETRY
        | My::MYSQL_TYPE_VECTOR
        | My::MYSQL_TYPE_JSON => buf
            .checked_eat_lenenc_str()
            .map(Cell::Bytes)
            .ok_or_else(|| malformed("a row packet that ends early")),
        ty => Ok(Cell::Value(
            buf.parse::<ValueDeserializer<BinValue>>((ty, col.flags()))?
                .0,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::constants::ColumnFlags;

    /// A binary row packet's body after its header byte: the NULL bitmap, then `values`.
    fn row<'a>(columns: &'a [Column], packet: &'a [u8]) -> Row<'a> {
        let bitmap = (columns.len() + 7 + 2) / 8;
        Row {
            columns: columns.iter(),
            nulls: &packet[..bitmap],
            buf: ParseBuf(&packet[bitmap..]),
            bit: 2,
        }
    }

    fn columns() -> Vec<Column> {
        vec![
            Column::new(My::MYSQL_TYPE_LONGLONG),
            Column::new(My::MYSQL_TYPE_VAR_STRING),
            Column::new(My::MYSQL_TYPE_LONG),
            Column::new(My::MYSQL_TYPE_DOUBLE),
            Column::new(My::MYSQL_TYPE_LONGLONG).with_flags(ColumnFlags::UNSIGNED_FLAG),
        ]
    }

    #[test]
    fn cells_in_column_order_with_nulls_from_the_bitmap() {
        let cols = columns();
        // Column 2 is NULL: bit 2 + 2 of the bitmap.
        let mut packet = vec![0b0001_0000];
        packet.extend_from_slice(&(-5i64).to_le_bytes());
        packet.extend_from_slice(&[3, b'a', b'b', b'c']);
        packet.extend_from_slice(&1.5f64.to_le_bytes());
        packet.extend_from_slice(&u64::MAX.to_le_bytes());
        let cells: Vec<Cell<'_>> = row(&cols, &packet).map(Result::unwrap).collect();
        assert_eq!(
            cells,
            [
                Cell::Value(Value::Int(-5)),
                Cell::Bytes(b"abc"),
                Cell::Null,
                Cell::Value(Value::Double(1.5)),
                Cell::Value(Value::UInt(u64::MAX)),
            ]
        );
    }

    #[test]
    fn a_row_that_ends_early_is_an_error() {
        let cols = columns();
        let mut packet = vec![0];
        packet.extend_from_slice(&7i64.to_le_bytes());
        packet.extend_from_slice(&[10, b'x']);
        let mut cells = row(&cols, &packet);
        assert_eq!(cells.next().unwrap().unwrap(), Cell::Value(Value::Int(7)));
        assert!(matches!(cells.next(), Some(Err(Error::Io(_)))));
    }
}
