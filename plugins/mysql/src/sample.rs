//! Key samples for planning: the host cuts splits of equal row counts from them.

use etlhost_plugin_sdk::runtime::block_on;
use etlhost_plugin_sdk::{CursorRange, Error, KeySample, Value};
use mysql_async::prelude::Queryable;

use crate::source::MySqlSource;
use crate::sql::{cursor_sql, quote};
use crate::types;

/// A fixed seed: the same table gives the same sample, so plans repeat.
const SEED: u32 = 20_261_201;

impl MySqlSource {
    pub(crate) fn sample(
        &self,
        columns: &[String],
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, Error> {
        let names = columns.join("`, `");
        let mut conds: Vec<String> = columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", quote(c)))
            .collect();
        let mut params = Vec::new();
        if let Some(c) = cursor {
            let (cond, p) = cursor_sql(c);
            conds.push(cond);
            params.extend(p);
        }
        let selected: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} AS k{i}", quote(c)))
            .collect();
        let order: Vec<String> = (0..columns.len()).map(|i| format!("k{i}")).collect();
        let keys = format!(
            "(SELECT {} FROM {} WHERE {}) AS etlhost_sample",
            selected.join(", "),
            self.relation,
            conds.join(" AND ")
        );
        block_on(async {
            let mut c = self.conn().await?;
            let fail = |e| self.err(&format!("cannot sample the keys `{names}`"), e);
            let rows: Option<u64> = c
                .exec_first(format!("SELECT COUNT(*) FROM {keys}"), params.clone())
                .await
                .map_err(fail)?;
            let rows = rows.unwrap_or(0);
            // RAND(seed) < p keeps about `count` rows in one scan of the key, where an exact
            // every-n-th-row pick would need a window over the whole table (10x slower here).
            let share = count as f64 / rows.max(1) as f64;
            let order = order.join(", ");
            let sql = if share >= 1.0 {
                format!("SELECT {order} FROM {keys} ORDER BY {order}")
            } else {
                params.push(share.into());
                format!("SELECT {order} FROM {keys} WHERE RAND({SEED}) < ? ORDER BY {order}")
            };
            let mut result = c.exec_iter(sql, params).await.map_err(fail)?;
            let types: Vec<_> = result
                .columns_ref()
                .iter()
                .map(|col| types::column(col, &self.typing).0.ty)
                .collect();
            let mut keys = Vec::new();
            while let Some(row) = result.next().await.map_err(fail)? {
                let mut key: Vec<Value> = row
                    .unwrap()
                    .into_iter()
                    .zip(&types)
                    .map(|(v, ty)| types::value(v, *ty))
                    .collect();
                keys.push(match key.len() {
                    1 => key.pop().expect("one column"),
                    _ => Value::List(key),
                });
            }
            Ok(KeySample { keys, rows })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::tuple_cmp;

    #[test]
    fn a_tuple_comparison_is_written_out_column_by_column() {
        let cols = ["a".to_string(), "b".to_string()];
        let mut params = Vec::new();
        let v = Value::List(vec![Value::Int(5), Value::String("k".into())]);
        assert_eq!(
            tuple_cmp(&cols, &v, ">=", &mut params),
            "(`a` > ? OR (`a` = ? AND `b` >= ?))"
        );
        assert_eq!(params.len(), 3);
        let one = ["a".to_string()];
        assert_eq!(tuple_cmp(&one, &Value::Int(1), "<", &mut params), "`a` < ?");
    }
}
