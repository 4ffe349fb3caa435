//! SQL text the source's queries share.

use etlhost_plugin_sdk::{CursorRange, Value};

use crate::types;

/// What every connection runs first: TIMESTAMP values are read as UTC instants.
pub(crate) const SESSION_SETUP: &str = "SET time_zone = '+00:00'";

/// Quotes an identifier, `db.table` as two.
pub(crate) fn quote(ident: &str) -> String {
    ident
        .split('.')
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The condition (and its parameters) that keeps the rows of an incremental read.
pub(crate) fn cursor_sql(c: &CursorRange) -> (String, Vec<mysql_async::Value>) {
    let col = quote(&c.column);
    let mut conds = vec![format!("{col} IS NOT NULL")];
    let mut params = Vec::new();
    if let Some(f) = &c.from {
        conds.push(format!("{col} >= ?"));
        params.push(types::param(f));
    }
    if let Some(t) = &c.to {
        conds.push(format!("{col} <= ?"));
        params.push(types::param(t));
    }
    (format!("({})", conds.join(" AND ")), params)
}

/// `(c1, c2, ...) <op> (v1, v2, ...)` compared column by column, written out as
/// `c1 > v1 OR (c1 = v1 AND (c2 > v2 OR ...))`: MariaDB 10.11 scans the whole index for a row
/// constructor comparison but uses the key's range for this form. `op` is `>=`, `>` or `<`.
pub(crate) fn tuple_cmp(
    columns: &[String],
    values: &Value,
    op: &str,
    params: &mut Vec<mysql_async::Value>,
) -> String {
    let values: &[Value] = match values {
        Value::List(v) => v,
        one => std::slice::from_ref(one),
    };
    let strict = if op == "<" { "<" } else { ">" };
    let mut sql = String::new();
    let last = columns.len().min(values.len()) - 1;
    for (i, (c, v)) in columns.iter().zip(values).enumerate() {
        let c = quote(c);
        if i == last {
            sql.push_str(&format!("{c} {op} ?"));
            params.push(types::param(v));
        } else {
            sql.push_str(&format!("({c} {strict} ? OR ({c} = ? AND "));
            params.push(types::param(v));
            params.push(types::param(v));
        }
    }
    sql.push_str(&"))".repeat(last));
    sql
}
