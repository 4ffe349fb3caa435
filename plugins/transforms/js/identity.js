// `js-identity`: passes every row on unchanged. Built for the encoded world: the batch arrives
// as one buffer it never reads, and the answer "every row kept" lets the host pass on the bytes it
// already has. What a JavaScript transform costs at the least: the benchmark's JS row
// (`cargo xtask bench transforms`).
// world: encoded-transform

const ALL_KEPT = { verdicts: undefined, rows: new Uint8Array(0) };

export function init(_config) {}

export function process(_rows) {
  return ALL_KEPT;
}

export function finish() {
  return new Uint8Array(0);
}
