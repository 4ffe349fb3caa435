// The native baseline of a JavaScript transform: the same source file the component is built
// from, run by this machine's Node.js over rows already in memory, its `./etlhost-transform.js`
// import answered by the stand-in `etlhost-transform.mjs` (see hooks.mjs).
//
//   node native.mjs '{"source": ".../email-domain.js", "entry": "row", "config": {},
//                     "rows": "target/bench/person_1m.tsv"}'
//
// As native.py: `function_seconds` is the transform over objects built beforehand (one object a
// row for `entry: row`; for `entry: batch`, the module's own `process` on batches of 1,000
// objects), `with_objects_seconds` building them from the parsed values too. Reading and
// parsing the dump is not timed.

import { register } from 'node:module';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

register('./hooks.mjs', import.meta.url);
const { currentRow } = await import('./etlhost-transform.mjs');

const BATCH = 1000;

function readRows(path) {
  const lines = readFileSync(path, 'utf8').split('\n');
  const names = lines[0].split('\t');
  const parse = names.map((n) =>
    n === 'id' ? Number : n === 'created_at' ? (v) => new Date(`${v.replace(' ', 'T')}Z`) : String,
  );
  const rows = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i] === '') continue;
    const fields = lines[i].split('\t');
    rows.push(fields.map((v, j) => (v === 'NULL' ? null : parse[j](v))));
  }
  return { names, rows };
}

function object(names, values) {
  const o = {};
  for (let i = 0; i < names.length; i++) o[names[i]] = values[i];
  return o;
}

function timeRows(module, config, names, rows) {
  module.init(JSON.stringify(config));
  const row = currentRow();
  const objects = rows.map((v) => object(names, v));
  let start = performance.now();
  const out = new Array(objects.length);
  for (let i = 0; i < objects.length; i++) out[i] = row(objects[i]);
  const fn = (performance.now() - start) / 1000;
  start = performance.now();
  const out2 = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) out2[i] = row(object(names, rows[i]));
  const withObjects = (performance.now() - start) / 1000;
  const kept = out.filter((r) => r !== null && r !== undefined).length;
  return { fn, withObjects, kept, sample: out2.find((r) => r != null) };
}

// How many rows an answer of `process` keeps: the values world's outcomes, or the encoded
// world's verdicts (undefined: all kept).
function keptOf(out, n) {
  if (out.outcomes) return out.outcomes.filter((x) => x.tag === 'keep').length;
  if (out.verdicts === undefined) return n;
  return out.verdicts.filter((v) => v.tag === 'keep').length;
}

function timeBatches(module, config, names, rows) {
  module.init(JSON.stringify(config));
  const columns = names.map((name) => ({ name, ty: 'any' }));
  const make = (chunk) => ({ columns, rows: chunk.map((v) => object(names, v)) });
  const chunks = [];
  for (let i = 0; i < rows.length; i += BATCH) chunks.push(rows.slice(i, i + BATCH));
  const batches = chunks.map(make);
  let start = performance.now();
  const outs = batches.map((b) => module.process(b));
  const fn = (performance.now() - start) / 1000;
  start = performance.now();
  for (const c of chunks) module.process(make(c));
  const withObjects = (performance.now() - start) / 1000;
  let kept = 0;
  outs.forEach((o, i) => (kept += keptOf(o, chunks[i].length)));
  return { fn, withObjects, kept, sample: null };
}

const a = JSON.parse(process.argv[2]);
const module = await import(pathToFileURL(a.source).href);
const { names, rows } = readRows(a.rows);
const timer = { row: timeRows, batch: timeBatches }[a.entry];
const { fn, withObjects, kept, sample } = timer(module, a.config, names, rows);
console.log(
  JSON.stringify({
    rows: rows.length,
    kept,
    function_seconds: fn,
    with_objects_seconds: withObjects,
    sample: JSON.stringify(sample),
    node: process.version,
  }),
);
