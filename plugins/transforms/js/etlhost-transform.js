// etlhost transform SDK for JavaScript guests, built into a WASM component by componentize-js.
//
// Write a row function and export the world's three functions:
//
//   import { rowTransform, RowError } from './etlhost-transform.js';
//   export const { init, process, finish } = rowTransform((config) => (row) => {
//     row.name = row.name.toUpperCase();
//     return row;              // or null to drop it, an array of objects to expand it,
//   });                        // or throw new RowError('why') to dead-letter it
//
// Values: NULL is null, integers are numbers (BigInt beyond 2^53), floats numbers, DECIMAL a
// string, text a string, bytes a Uint8Array, DATE and DATETIME a Date in UTC (a DATETIME passed on
// unchanged keeps its microseconds), TIMESTAMP a Date too (made with `timestamp(date)`, or any Date
// in a TIMESTAMP column), TIME a number of microseconds, a point a `Point`, lists and maps (SET
// members, JSON read as values) arrays and plain objects. A list or map passed on unchanged keeps
// its exact JSON; a changed one is written by JSON.stringify, so with JS numbers (1.0 is 1, big
// integers round). A column keeps its type when
// its value keeps its JS type; a new column takes the type of its first non-null value (integral
// numbers are integers).
//
// Converting to objects costs time (see README, "Transforms"). For full speed, export `init`,
// `process` and `finish` working on whole batches directly, as identity.js does.

export class RowError extends Error {}

const DAY_MS = 86_400_000;
const MICROS = Symbol('micros');
const ZONED = Symbol('zoned');
// The JSON text a parsed list or map came with, and how JSON.stringify writes it as parsed.
const NESTED = new WeakMap();

/** A point; srid 4326 has x = longitude, y = latitude. `z` is undefined for a 2D point. */
export class Point {
  constructor(srid, x, y, z) {
    this.srid = srid;
    this.x = x;
    this.y = y;
    this.z = z;
  }
}

/** Marks a Date as a TIMESTAMP (an instant in UTC) rather than a DATETIME. */
export function timestamp(d) {
  d[ZONED] = true;
  return d;
}

function plain(x) {
  if (Array.isArray(x)) return true;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function int(v) {
  return Number.isSafeInteger(Number(v)) ? Number(v) : v;
}

const TO_JS = {
  null: () => null,
  boolean: (v) => v,
  int,
  uint: int,
  float: (v) => v,
  decimal: (v) => v,
  text: (v) => v,
  bytes: (v) => v,
  date: (v) => new Date(v * DAY_MS),
  datetime: (v) => {
    const d = new Date(Number(v / 1000n));
    d[MICROS] = v;
    return d;
  },
  time: (v) => Number(v),
  timestamp: (v) => {
    const d = TO_JS.datetime(v);
    d[ZONED] = true;
    return d;
  },
  point: (v) => new Point(v.srid, v.x, v.y, v.z ?? undefined),
  nested: (v) => {
    const parsed = JSON.parse(v);
    NESTED.set(parsed, { text: v, js: JSON.stringify(parsed) });
    return parsed;
  },
};

/** A WIT value ({tag, val}) as a JS value. */
export function toJs(v) {
  return TO_JS[v.tag](v.val);
}

function micros(d) {
  const kept = d[MICROS];
  return kept !== undefined && Number(kept / 1000n) === d.getTime()
    ? kept
    : BigInt(d.getTime()) * 1000n;
}

/** The column type a JS value has on its own. */
function ownType(x) {
  if (x === null || x === undefined) return 'any';
  switch (typeof x) {
    case 'boolean':
      return 'boolean';
    case 'bigint':
      return x >= 2n ** 63n ? 'uint' : 'int';
    case 'number':
      return Number.isInteger(x) ? 'int' : 'float';
    case 'string':
      return 'text';
  }
  if (x instanceof Uint8Array) return 'bytes';
  if (x instanceof Date) return x[ZONED] ? 'timestamp' : 'datetime';
  if (x instanceof Point) return 'point';
  if (plain(x)) return 'nested';
  throw new RowError(`cannot pass a ${x?.constructor?.name ?? typeof x} on: ${String(x)}`);
}

/** A JS value as a WIT value of column type `ty` where it fits, else of its own type. */
export function toValue(x, ty) {
  const own = ownType(x);
  if (own === 'any') return { tag: 'null' };
  if (x instanceof Date) {
    if (ty === 'date') return { tag: 'date', val: Math.floor(x.getTime() / DAY_MS) };
    const zoned = ty === 'timestamp' || (own === 'timestamp' && ty !== 'datetime');
    return { tag: zoned ? 'timestamp' : 'datetime', val: micros(x) };
  }
  if (own === 'point') return { tag: 'point', val: { srid: x.srid, x: x.x, y: x.y, z: x.z } };
  if (own === 'nested') {
    const js = JSON.stringify(x);
    const kept = NESTED.get(x);
    return { tag: 'nested', val: kept !== undefined && kept.js === js ? kept.text : js };
  }
  const numeric = own === 'int' || own === 'uint' || own === 'float';
  if (numeric && ty === 'float') return { tag: 'float', val: Number(x) };
  if (numeric && ty === 'decimal') return { tag: 'decimal', val: String(x) };
  if (own === 'int' && ty === 'uint' && x >= 0) return { tag: 'uint', val: BigInt(x) };
  if (own === 'int' && ty === 'time') return { tag: 'time', val: BigInt(x) };
  if (own === 'text' && ty === 'decimal') return { tag: 'decimal', val: x };
  switch (own) {
    case 'int':
    case 'uint':
      return { tag: own, val: BigInt(x) };
    case 'float':
      return { tag: 'float', val: x };
    default:
      return { tag: own, val: x };
  }
}

// Lowering by column type: the value as that type when it is one, else as its own type.
const LOWER = {
  boolean: (x) => (typeof x === 'boolean' ? { tag: 'boolean', val: x } : toValue(x, 'boolean')),
  int: (x) =>
    Number.isSafeInteger(x) ? { tag: 'int', val: BigInt(x) } : toValue(x, 'int'),
  float: (x) => (typeof x === 'number' ? { tag: 'float', val: x } : toValue(x, 'float')),
  text: (x) => (typeof x === 'string' ? { tag: 'text', val: x } : toValue(x, 'text')),
};

function lowerer(ty) {
  return LOWER[ty] ?? ((x) => toValue(x, ty));
}

/** Columns and rows for objects: every key any of them has, in the order keys first appear. */
function toBatch(objects, types) {
  const names = [];
  const index = new Map();
  const tys = [];
  for (const o of objects) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) {
      const got = Array.isArray(o) ? 'an array' : String(o);
      throw new RowError(`expected an object for a row, got ${got}`);
    }
    // Most objects have the keys of the one before, in the same order: one comparison per key.
    let i = 0;
    for (const k in o) {
      if (names[i] !== k) {
        const at = index.get(k);
        if (at === undefined) {
          index.set(k, names.length);
          names.push(k);
          tys.push(types.get(k) ?? ownType(o[k]));
        } else if (tys[at] === 'any') {
          tys[at] = ownType(o[k]);
        }
      } else if (tys[i] === 'any') {
        tys[i] = ownType(o[k]);
      }
      i++;
    }
  }
  const lowers = tys.map(lowerer);
  const n = names.length;
  const rows = objects.map((o) => {
    const row = new Array(n);
    for (let i = 0; i < n; i++) row[i] = lowers[i](o[names[i]]);
    return row;
  });
  return { columns: names.map((name, i) => ({ name, ty: tys[i] })), rows };
}

// The text of an error for the call's `err`: the host retries the rows apart down to the one at
// fault. componentize-js traps, explaining nothing, when a function whose result is
// `result<_, string>` throws anything but a string.
function describe(e) {
  if (typeof e === 'string') return e;
  if (e instanceof RowError) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * The world's exports, running `setup(config)` once per instance; it returns the row function,
 * or `{ row, finish }` for a transform that holds rows back until the end of the stream.
 */
export function rowTransform(setup) {
  let row;
  let held = () => [];
  return {
    init(config) {
      try {
        const made = setup(JSON.parse(config));
        if (typeof made === 'function') {
          row = made;
        } else {
          row = made.row;
          held = made.finish ?? held;
        }
      } catch (e) {
        throw describe(e);
      }
    },
    process(input) {
      const names = input.columns.map((c) => c.name);
      const types = new Map(input.columns.map((c) => [c.name, c.ty]));
      // Per input row: how many objects it gave (-1: one, replacing it), null, or its error.
      const shapes = [];
      const objects = [];
      for (const values of input.rows) {
        const o = {};
        for (let i = 0; i < names.length; i++) o[names[i]] = TO_JS[values[i].tag](values[i].val);
        let r;
        try {
          r = row(o);
        } catch (e) {
          if (!(e instanceof RowError)) throw describe(e);
          shapes.push(e);
          continue;
        }
        if (r === null || r === undefined) {
          shapes.push(null);
        } else if (Array.isArray(r)) {
          shapes.push(r.length);
          objects.push(...r);
        } else {
          shapes.push(-1);
          objects.push(r);
        }
      }
      let batch;
      try {
        batch = toBatch(objects, types);
      } catch (e) {
        throw describe(e);
      }
      const outcomes = [];
      let at = 0;
      for (const s of shapes) {
        if (s === null) {
          outcomes.push({ tag: 'drop' });
        } else if (s instanceof RowError) {
          outcomes.push({ tag: 'error', val: s.message });
        } else if (s === -1) {
          outcomes.push({ tag: 'replace', val: batch.rows[at++] });
        } else {
          outcomes.push({ tag: 'expand', val: batch.rows.slice(at, at + s) });
          at += s;
        }
      }
      return { columns: batch.columns, outcomes };
    },
    finish() {
      try {
        return toBatch(held(), new Map());
      } catch (e) {
        throw describe(e);
      }
    },
  };
}
