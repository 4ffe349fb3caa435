// `js-identity`: passes every row on unchanged, on whole batches without converting a value.
// What a JavaScript transform costs at the least: the benchmark's JS row (`cargo xtask bench
// transforms`).

const KEEP = { tag: 'keep' };

export function init(_config) {}

export function process(input) {
  return { columns: input.columns, outcomes: input.rows.map(() => KEEP) };
}

export function finish() {
  return { columns: [], rows: [] };
}
