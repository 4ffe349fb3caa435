// `js-roundtrip`: hands values back through JavaScript, for the tests of every value type
// crossing the SDK both ways (tests/e2e/transform_js.rs).
//
//   config: {columns: [id, ...], mode: copy, drop_id: 5, error_id: 4}
//
// Modes: `copy` (default) returns a new object holding each of `columns` and `touched: true`, so
// every value is decoded and encoded again; `set` sets each of `columns` on the row to the value
// it read; `same` returns the row as it came. Row `drop_id` is dropped, row `error_id`
// dead-lettered.

import { rowTransform, RowError } from './etlhost-transform.js';

export const { init, process, finish } = rowTransform((config) => {
  const columns = config.columns ?? [];
  const mode = config.mode ?? 'copy';
  if (!['copy', 'set', 'same'].includes(mode)) throw `unknown mode ${mode}: copy, set or same`;
  return (row) => {
    if (row.id === config.drop_id) return null;
    if (row.id === config.error_id) throw new RowError(`row ${row.id} refused on purpose`);
    if (mode === 'same') return row;
    if (mode === 'set') {
      for (const c of columns) row[c] = row[c];
      return row;
    }
    const out = {};
    for (const c of columns) out[c] = row[c];
    out.touched = true;
    return out;
  };
});
