//! A table's columns as the binlog's positions map to them, and one row event's values converted
//! to the snapshot's types.

use etlhost_plugin_sdk::{ColumnType, Schema, Value};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType as My};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Pool};

use crate::types::{self, Conv, Typing};

/// Where each of a rows event's columns goes among the probe's (see `layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) to: Vec<Option<usize>>,
}

impl Layout {
    pub(super) fn positional(n: usize) -> Layout {
        Layout {
            to: (0..n).map(Some).collect(),
        }
    }
}

/// A table's columns as the binlog's positions map to them.
pub(super) struct TableShape {
    pub(super) schema: Schema,
    pub(super) convs: Vec<Conv>,
    /// Bits of an unsigned integer column (`true`): the binlog sends them signed unless the
    /// server logs column metadata, which MariaDB does not by default. A signed MEDIUMINT is
    /// `(24, false)`: mysql_common reads its three bytes without extending the sign.
    pub(super) int_bits: Vec<Option<(u32, bool)>>,
    /// ENUM and SET members: the binlog sends an ENUM's index (from 1) and a SET's bitmap.
    pub(super) members: Vec<Option<(bool, Vec<String>)>>,
    pub(super) key: Vec<usize>,
    /// Each column's type as the probe found it, to check the binlog's against.
    pub(super) probed: Vec<mysql_async::Column>,
}

pub(super) async fn shape(
    pool: &Pool,
    db: &str,
    table: &str,
    typing: &Typing,
) -> Result<TableShape, mysql_async::Error> {
    let mut c = pool.get_conn().await?;
    let relation = format!("`{}`.`{}`", db.replace('`', "``"), table.replace('`', "``"));
    let result = c
        .exec_iter(format!("SELECT * FROM {relation} LIMIT 0"), ())
        .await?;
    let columns = result.columns_ref().to_vec();
    result.drop_result().await?;
    let key_names: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    let declared: Vec<(String, String)> = c
        .exec(
            "SELECT DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    let members = (0..columns.len())
        .map(|i| match declared.get(i) {
            Some((t, full)) if t == "enum" || t == "set" => Some((t == "set", members(full))),
            _ => None,
        })
        .collect();
    let (cols, convs): (Vec<_>, Vec<_>) = columns.iter().map(|c| types::column(c, typing)).unzip();
    let int_bits = columns
        .iter()
        .map(|c| {
            if !c.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
                return (c.column_type() == My::MYSQL_TYPE_INT24).then_some((24, false));
            }
            let bits = match c.column_type() {
                My::MYSQL_TYPE_TINY => Some(8),
                My::MYSQL_TYPE_SHORT => Some(16),
                My::MYSQL_TYPE_INT24 => Some(24),
                My::MYSQL_TYPE_LONG => Some(32),
                My::MYSQL_TYPE_LONGLONG => Some(64),
                _ => None,
            };
            bits.map(|b| (b, true))
        })
        .collect();
    let key = key_names
        .iter()
        .filter_map(|k| cols.iter().position(|c| &c.name == k))
        .collect();
    remember(db, table, &columns);
    Ok(TableShape {
        schema: cols.into(),
        convs,
        int_bits,
        members,
        key,
        probed: columns.to_vec(),
    })
}

/// Each table's columns as last probed, kept past the follower's forgetting of its shapes at
/// every DDL statement, so that an `ALTER TABLE ... MODIFY` can be compared with what came
/// before it (see `alter`).
static PROBED: std::sync::Mutex<Option<Probed>> = std::sync::Mutex::new(None);

type Probed = std::collections::HashMap<(String, String), Vec<Column>>;

fn remember(db: &str, table: &str, columns: &[Column]) {
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    let key = (db.to_string(), table.to_string());
    probed
        .get_or_insert_with(Default::default)
        .insert(key, columns.to_vec());
}

/// A table's columns as last probed in this process, if ever.
pub(super) fn last_probed(key: &(String, String)) -> Option<Vec<Column>> {
    let probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    probed.as_ref()?.get(key).cloned()
}

/// The members of `enum('a','b')` / `set('a','b')`, quotes undone (`''` is one quote).
fn members(column_type: &str) -> Vec<String> {
    let inner = column_type
        .split_once('(')
        .map_or("", |(_, r)| r.strip_suffix(')').unwrap_or(r));
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars().peekable();
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (false, '\'') => quoted = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    out
}

impl TableShape {
    /// One row image converted: the event's column `k` goes to the probe's column
    /// `layout.to[k]` (`None`: dropped since, its value ignored); columns the event lacks are
    /// NULL.
    pub(super) fn row_in(
        &self,
        layout: &Layout,
        values: Vec<BinlogValue<'static>>,
    ) -> Result<Vec<Value>, String> {
        let mut row = vec![Value::Null; self.schema.len()];
        for (k, v) in values.into_iter().enumerate() {
            let Some(i) = layout.to.get(k).copied().flatten() else {
                continue;
            };
            let col = &self.schema[i];
            let v = match v {
                BinlogValue::Value(v) => v,
                other => {
                    let v: Result<mysql_async::Value, _> = other.try_into();
                    v.map_err(|e| format!("column `{}`: {e}", col.name))?
                }
            };
            let v = match (v, self.int_bits[i]) {
                (mysql_async::Value::Int(n), Some((bits, true))) if n < 0 => {
                    mysql_async::Value::UInt((n as u64) & u64::MAX >> (64 - bits))
                }
                (mysql_async::Value::Int(n), Some((24, false))) if n >= 1 << 23 => {
                    mysql_async::Value::Int(n - (1 << 24))
                }
                (v, _) => v,
            };
            let value = match (&self.members[i], v) {
                (Some((false, names)), mysql_async::Value::Int(n)) => {
                    // 0 is the empty string MySQL stores for an invalid value.
                    let name = usize::try_from(n - 1).ok().and_then(|k| names.get(k));
                    row[i] = Value::String(name.cloned().unwrap_or_default());
                    continue;
                }
                (Some((true, names)), mysql_async::Value::Bytes(bits)) => {
                    let set = names
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| bits.get(k / 8).is_some_and(|b| b & (1 << (k % 8)) != 0))
                        .map(|(_, m)| Value::String(m.clone()))
                        .collect();
                    row[i] = Value::List(set);
                    continue;
                }
                (_, v) => v,
            };
            let value = match (col.ty, value) {
                // TIMESTAMP arrives as seconds since 1970 (and a fraction) in the binlog.
                (ColumnType::Timestamp, mysql_async::Value::Bytes(b)) => timestamp(&b)
                    .ok_or_else(|| format!("column `{}`: not a binlog TIMESTAMP", col.name))?,
                (ColumnType::Timestamp, mysql_async::Value::Int(s)) => {
                    Value::Timestamp(s * 1_000_000)
                }
                (_, v) => types::convert(v, self.convs[i])
                    .map_err(|e| format!("column `{}`: {e}", col.name))?,
            };
            row[i] = value;
        }
        Ok(row)
    }
}

fn timestamp(b: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(b).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")[..6].parse().ok()?
    };
    Some(Value::Timestamp(secs * 1_000_000 + micros))
}
