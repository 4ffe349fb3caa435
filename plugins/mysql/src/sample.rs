//! Key samples for planning: the host cuts splits of equal row counts from them.

use etlhost_plugin_sdk::runtime::block_on;
use etlhost_plugin_sdk::{CursorRange, Error, KeySample};
use mysql_async::prelude::Queryable;

use crate::{cursor_sql, quote, types, MySqlSource};

/// A fixed seed: the same table gives the same sample, so plans repeat.
const SEED: u32 = 20_261_201;

impl MySqlSource {
    pub(crate) fn sample(
        &self,
        column: &str,
        cursor: Option<&CursorRange>,
        count: u64,
    ) -> Result<KeySample, Error> {
        let mut conds = vec![format!("{} IS NOT NULL", quote(column))];
        let mut params = Vec::new();
        if let Some(c) = cursor {
            let (cond, p) = cursor_sql(c);
            conds.push(cond);
            params.extend(p);
        }
        let keys = format!(
            "(SELECT {} AS k FROM {} WHERE {}) AS etlhost_sample",
            quote(column),
            self.relation,
            conds.join(" AND ")
        );
        block_on(async {
            let mut c = self.conn().await?;
            let fail = |e| self.err(&format!("cannot sample the keys of `{column}`"), e);
            let rows: Option<u64> = c
                .exec_first(format!("SELECT COUNT(*) FROM {keys}"), params.clone())
                .await
                .map_err(fail)?;
            let rows = rows.unwrap_or(0);
            // RAND(seed) < p keeps about `count` rows in one scan of the key, where an exact
            // every-n-th-row pick would need a window over the whole table (10x slower here).
            let share = count as f64 / rows.max(1) as f64;
            let sql = if share >= 1.0 {
                format!("SELECT k FROM {keys} ORDER BY k")
            } else {
                params.push(share.into());
                format!("SELECT k FROM {keys} WHERE RAND({SEED}) < ? ORDER BY k")
            };
            let mut result = c.exec_iter(sql, params).await.map_err(fail)?;
            let ty = match result.columns_ref().first() {
                Some(col) => types::column(col, &self.typing).0.ty,
                None => return Err(Error::permanent("the sample query returned no column")),
            };
            let mut keys = Vec::new();
            while let Some(row) = result.next().await.map_err(fail)? {
                if let Some(v) = row.unwrap().into_iter().next() {
                    keys.push(types::value(v, ty));
                }
            }
            Ok(KeySample { keys, rows })
        })
    }
}
