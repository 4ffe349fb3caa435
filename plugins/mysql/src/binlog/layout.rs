//! Which of a table's columns (as probed now) each value of a rows event belongs to.
//!
//! The binlog carries a row by column position, and the probe describes the table as it is now,
//! not as it was when the event was logged. When the stream is behind an `ALTER TABLE`, the two
//! differ: mapped by position, values would land under the wrong names without a sound. So the
//! table map event that precedes each rows event is checked against the probe:
//! - with `binlog_row_metadata = FULL`, the event names its columns: values are matched by name,
//!   a column dropped since is left out, one added since is NULL (what MySQL holds for it unless
//!   it was added with a default), and a type changed since, or a rename (names gone on one side
//!   and new on the other, which a drop and an add look the same as), stops the stream;
//! - without names, the event's column count and types must equal the probe's, position by
//!   position, or the stream stops. A rename keeps positions and types, so it passes, rightly.
//!
//! Stopping names the table, the binlog position and the fix; it never guesses.

use std::fmt::Display;

use etlhost_plugin_sdk::Error;
use mysql_async::binlog::events::{OptionalMetaExtractor, TableMapEvent};
use mysql_async::consts::{ColumnFlags, ColumnType as My};

use super::shape::{Layout, TableShape};
use crate::types;

/// Types that the binlog encodes alike, so that a value logged under one converts as the other;
/// a change between two of them is a real change of type (`INT` to `VARCHAR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Int,
    Float,
    Decimal,
    Date,
    DateTime,
    Timestamp,
    Time,
    /// Characters or bytes: CHAR, VARCHAR, BINARY, the TEXTs and BLOBs (MariaDB's JSON too).
    Text,
    Bit,
    Enum,
    Set,
    Json,
    Geometry,
    Other(u8),
}

fn family(t: My) -> Family {
    match t {
        My::MYSQL_TYPE_TINY
        | My::MYSQL_TYPE_SHORT
        | My::MYSQL_TYPE_INT24
        | My::MYSQL_TYPE_LONG
        | My::MYSQL_TYPE_LONGLONG
        | My::MYSQL_TYPE_YEAR => Family::Int,
        My::MYSQL_TYPE_FLOAT | My::MYSQL_TYPE_DOUBLE => Family::Float,
        My::MYSQL_TYPE_DECIMAL | My::MYSQL_TYPE_NEWDECIMAL => Family::Decimal,
        My::MYSQL_TYPE_DATE | My::MYSQL_TYPE_NEWDATE => Family::Date,
        My::MYSQL_TYPE_DATETIME | My::MYSQL_TYPE_DATETIME2 => Family::DateTime,
        My::MYSQL_TYPE_TIMESTAMP | My::MYSQL_TYPE_TIMESTAMP2 => Family::Timestamp,
        My::MYSQL_TYPE_TIME | My::MYSQL_TYPE_TIME2 => Family::Time,
        My::MYSQL_TYPE_VARCHAR
        | My::MYSQL_TYPE_VAR_STRING
        | My::MYSQL_TYPE_STRING
        | My::MYSQL_TYPE_TINY_BLOB
        | My::MYSQL_TYPE_MEDIUM_BLOB
        | My::MYSQL_TYPE_LONG_BLOB
        | My::MYSQL_TYPE_BLOB => Family::Text,
        My::MYSQL_TYPE_BIT => Family::Bit,
        My::MYSQL_TYPE_ENUM => Family::Enum,
        My::MYSQL_TYPE_SET => Family::Set,
        My::MYSQL_TYPE_JSON => Family::Json,
        My::MYSQL_TYPE_GEOMETRY => Family::Geometry,
        other => Family::Other(other as u8),
    }
}

/// A probed column's family: a result set reports ENUM and SET as CHAR with a flag.
pub(super) fn probed_family(c: &mysql_async::Column) -> Family {
    if c.flags().contains(ColumnFlags::ENUM_FLAG) {
        Family::Enum
    } else if c.flags().contains(ColumnFlags::SET_FLAG) {
        Family::Set
    } else {
        family(c.column_type())
    }
}

/// The family of a type as a statement declares it (`bigint unsigned`, `VARCHAR(20)`); `None`
/// for a name not known here. MySQL's JSON counts as text, as MariaDB's is.
pub(super) fn declared_family(ty: &str) -> Option<Family> {
    let name = ty.split('(').next().unwrap_or(ty).to_ascii_lowercase();
    Some(match name.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" | "bool"
        | "boolean" | "int1" | "int2" | "int3" | "int4" | "int8" => Family::Int,
        "float" | "double" | "real" => Family::Float,
        "decimal" | "numeric" | "dec" | "fixed" => Family::Decimal,
        "date" => Family::Date,
        "datetime" => Family::DateTime,
        "timestamp" => Family::Timestamp,
        "time" => Family::Time,
        "char" | "varchar" | "binary" | "varbinary" | "tinytext" | "text" | "mediumtext"
        | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "json" | "uuid"
        | "inet4" | "inet6" => Family::Text,
        "bit" => Family::Bit,
        "enum" => Family::Enum,
        "set" => Family::Set,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => Family::Geometry,
        _ => return None,
    })
}

/// A binlog column type by its SQL name, for messages.
fn type_name(t: My) -> String {
    types::declared_name(&mysql_async::Column::new(t))
}

/// Where a stop leaves the user: a new snapshot, and names in the binlog from now on.
const FRESH: &str =
    "the stream stops here rather than guess: run the flow again with --fresh for a new snapshot";
const METADATA: &str = "and SET GLOBAL binlog_row_metadata = FULL (and binlog-row-metadata=FULL in the server's configuration) so that later schema changes are followed by column name";

impl TableShape {
    /// How the rows of the event mapped by `tme` fit this shape; an error (naming `table` and
    /// the binlog position `at`) when they cannot be placed without guessing.
    pub(crate) fn layout(
        &self,
        tme: &TableMapEvent<'_>,
        table: &str,
        at: &dyn Display,
    ) -> Result<Layout, Error> {
        let n = tme.columns_count() as usize;
        let mut types = Vec::with_capacity(n);
        for k in 0..n {
            let t = tme.get_column_type(k).ok().flatten().ok_or_else(|| {
                Error::permanent(format!(
                    "the binlog at {at} maps table {table} with an unknown type for its column {}",
                    k + 1
                ))
            })?;
            types.push(t);
        }
        match names(tme) {
            Some(names) => self.by_name(&names, &types, table, at),
            None => self.by_position(&types, table, at),
        }
    }

    fn by_position(&self, types: &[My], table: &str, at: &dyn Display) -> Result<Layout, Error> {
        if types.len() != self.probed.len() {
            return Err(Error::permanent(format!(
                "the binlog at {at} has rows of {table} with {} columns, but the table has {} now: its columns changed (ALTER TABLE) after these rows were logged, and the binlog does not name them, so their values cannot be placed safely; {FRESH}, {METADATA}",
                types.len(),
                self.probed.len()
            )));
        }
        for (k, (t, c)) in types.iter().zip(&self.probed).enumerate() {
            if family(*t) != probed_family(c) {
                return Err(Error::permanent(format!(
                    "the binlog at {at} has rows of {table} whose column {} is {}, but that column is `{}` {} now: the table changed (ALTER TABLE) after these rows were logged, and the binlog does not name its columns, so their values cannot be placed safely; {FRESH}, {METADATA}",
                    k + 1,
                    type_name(*t),
                    c.name_str(),
                    types::declared_name(c)
                )));
            }
        }
        Ok(Layout::positional(types.len()))
    }

    fn by_name(
        &self,
        names: &[String],
        types: &[My],
        table: &str,
        at: &dyn Display,
    ) -> Result<Layout, Error> {
        let find = |name: &str| self.probed.iter().position(|c| c.name_str() == name);
        let to: Vec<Option<usize>> = names.iter().map(|n| find(n)).collect();
        let gone: Vec<&str> = names
            .iter()
            .zip(&to)
            .filter(|(_, i)| i.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        let new: Vec<String> = self
            .probed
            .iter()
            .map(|c| c.name_str().into_owned())
            .filter(|p| !names.contains(p))
            .collect();
        if !gone.is_empty() && !new.is_empty() {
            return Err(Error::permanent(format!(
                "the binlog at {at} has rows of {table} with {} that the table no longer has, and the table has {} that these rows lack: a column was renamed (or dropped and another added) after they were logged, and which one cannot be told; {FRESH}",
                listed(gone.iter().copied()),
                listed(new.iter().map(String::as_str))
            )));
        }
        for ((name, t), i) in names.iter().zip(types).zip(&to) {
            let Some(c) = i.map(|i| &self.probed[i]) else {
                continue;
            };
            if family(*t) != probed_family(c) {
                return Err(Error::permanent(format!(
                    "the binlog at {at} has rows of {table} logged when its column `{name}` was {}; it is {} now (ALTER TABLE ... MODIFY or CHANGE since), and those values cannot be converted to the new type safely; {FRESH}",
                    type_name(*t),
                    types::declared_name(c)
                )));
            }
        }
        Ok(Layout { to })
    }
}

fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    let what = if names.len() == 1 {
        "column"
    } else {
        "columns"
    };
    format!("{what} {}", names.join(", "))
}

/// The event's column names, when the server logs them (`binlog_row_metadata = FULL`).
fn names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).ok()?;
    let names: Vec<String> = meta
        .iter_column_name()
        .map(|n| n.map(|n| n.name().into_owned()))
        .collect::<Result<_, _>>()
        .ok()?;
    (!names.is_empty() && names.len() == tme.columns_count() as usize).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_the_binlog_encodes_alike_are_one_family() {
        assert_eq!(family(My::MYSQL_TYPE_LONG), family(My::MYSQL_TYPE_LONGLONG));
        assert_eq!(
            family(My::MYSQL_TYPE_VARCHAR),
            family(My::MYSQL_TYPE_VAR_STRING)
        );
        assert_eq!(
            family(My::MYSQL_TYPE_DATETIME2),
            family(My::MYSQL_TYPE_DATETIME)
        );
        assert_ne!(family(My::MYSQL_TYPE_LONG), family(My::MYSQL_TYPE_VARCHAR));
        assert_ne!(
            family(My::MYSQL_TYPE_DATETIME),
            family(My::MYSQL_TYPE_TIMESTAMP)
        );
        let e = mysql_async::Column::new(My::MYSQL_TYPE_STRING).with_flags(ColumnFlags::ENUM_FLAG);
        assert_eq!(probed_family(&e), Family::Enum);
    }

    #[test]
    fn names_are_listed_with_their_count() {
        assert_eq!(listed(["a"].into_iter()), "column `a`");
        assert_eq!(listed(["a", "b"].into_iter()), "columns `a`, `b`");
    }
}
