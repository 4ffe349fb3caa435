// A native stand-in for the JavaScript SDK (plugins/transforms/js/etlhost-transform.js): the
// same `rowTransform` and `RowError` a transform imports, but `init` only keeps the row function
// its setup returns, for native.mjs to call on plain objects.

export class RowError extends Error {}

let row = null;

export function currentRow() {
  return row;
}

export function rowTransform(setup) {
  return {
    init(config) {
      const made = setup(JSON.parse(config));
      row = typeof made === 'function' ? made : made.row;
    },
    process() {
      throw new Error('the native stand-in runs the row function, not process');
    },
    finish() {
      return { columns: [], rows: [] };
    },
  };
}
