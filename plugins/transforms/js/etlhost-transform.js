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
// members, JSON read as values) arrays and plain objects, a PostgreSQL interval or time with time
// zone its ISO 8601 text. A list or map passed on unchanged keeps its exact value; a changed one
// is written from its JS values (1.0 is 1, big integers round). A column keeps its type when its
// value keeps its JS type; a new column takes the type of its first non-null value (integral
// numbers are integers).
//
// One module serves both worlds of wit/transform.wit; build.mjs builds a module that calls
// `rowTransform` for `encoded-transform`, where a batch crosses as one buffer (the plugin SDK's
// "ETB2" format). There a row is a row object: a column is decoded when the function reads it,
// a row handed back without a value set passes on as the host's own bytes, and the values it
// did not set are copied as their bytes. Reading, setting and adding columns work as on a plain
// object; `Object.keys(row)` and `{...row}` list only the columns added to it, `row.toObject()`
// (and JSON.stringify) all of them; to leave a column out, return a new object without it. In
// the values world (`transform`) a row is a plain object of all its values.
//
// For full speed, export `init`, `process` and `finish` working on whole batches directly, as
// identity.js does (the encoded world: `process(bytes)` returns `{ verdicts, rows }`).

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

/**
 * Whether `x` is bytes. Not `instanceof Uint8Array`: the arrays componentize-js's bindings make
 * (a batch, a BLOB) fail that test inside the component.
 */
function isBytes(x) {
  return ArrayBuffer.isView(x) && x.BYTES_PER_ELEMENT === 1 && !(x instanceof DataView);
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

/** A Date's microseconds: those it was read with while it still shows them, else its own. */
function micros(d) {
  const kept = d[MICROS];
  if (kept !== undefined) {
    const ms = typeof kept === 'bigint' ? Number(kept / 1000n) : Math.trunc(kept / 1000);
    if (ms === d.getTime()) return kept;
  }
  const us = d.getTime() * 1000;
  return Number.isSafeInteger(us) ? us : BigInt(d.getTime()) * 1000n;
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
  if (isBytes(x)) return 'bytes';
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
    return { tag: zoned ? 'timestamp' : 'datetime', val: BigInt(micros(x)) };
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
      // The world the component was built for decides what crosses: one buffer, or values.
      if (ArrayBuffer.isView(input)) return processEncoded(input, row);
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
        // Either world's answer: the buffer for the encoded world, carrying `columns` and `rows`
        // for the values world (this function cannot tell which world it was built for).
        const objects = held();
        const out = objects.length ? encodeHeld(objects) : new Uint8Array(0);
        const batch = toBatch(objects, new Map());
        out.columns = batch.columns;
        out.rows = batch.rows;
        return out;
      } catch (e) {
        throw describe(e);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The encoded world (`encoded-transform` in wit/transform.wit): a batch crosses as one buffer in
// the plugin SDK's format (magic "ETB2", the table in plugins/sdk/src/codec.rs). StarlingMonkey
// runs SpiderMonkey's interpreter without a JIT, so every JS operation counts: the buffer is read
// with one DataView and module-level cursors (no reader object, no closure per value), a row
// handed back with values it was given copies their bytes instead of encoding them again, and a
// row handed back whole is answered `keep`, so the host passes on the bytes it already has.

const UTF8_IN = new TextDecoder();
const UTF8_OUT = new TextEncoder();
const NO_ROWS = new Uint8Array(0);
const KEEP_V = { tag: 'keep' };
const DROP_V = { tag: 'drop' };
const EMIT_1 = { tag: 'emit', val: 1 };
const TWO_32 = 4294967296;

// The batch being read: its bytes, a view of them, and the read position.
let inB = NO_ROWS;
let inV = new DataView(inB.buffer);
let at = 0;

/** A PostgreSQL interval as the values world gives it: ISO 8601 text (`P1Y2M3DT4H`). */
function durationText(months, days, micros) {
  const years = Math.trunc(months / 12);
  const m = months % 12;
  let s = 'P';
  if (years !== 0) s += `${years}Y`;
  if (m !== 0) s += `${m}M`;
  if (days !== 0) s += `${days}D`;
  if (micros === 0) return years === 0 && m === 0 && days === 0 ? 'PT0S' : s;
  const sign = micros < 0 ? '-' : '';
  const abs = Math.abs(micros);
  const hours = Math.floor(abs / 3_600_000_000);
  const minutes = Math.floor(abs / 60_000_000) % 60;
  const secs = Math.floor(abs / 1_000_000) % 60;
  const us = abs % 1_000_000;
  s += 'T';
  if (hours !== 0) s += `${sign}${hours}H`;
  if (minutes !== 0) s += `${sign}${minutes}M`;
  if (us !== 0) s += `${sign}${secs}.${String(us).padStart(6, '0').replace(/0+$/, '')}S`;
  else if (secs !== 0) s += `${sign}${secs}S`;
  return s;
}

function two(n) {
  return n < 10 ? `0${n}` : `${n}`;
}

/** A time with a UTC offset as the values world gives it: `12:30:00+05:30`, `Z` for UTC. */
function zonedText(micros, offset) {
  const abs = Math.abs(micros);
  const secs = Math.floor(abs / 1_000_000);
  const us = abs % 1_000_000;
  let s = `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}`;
  if (us !== 0) s += `.${String(us).padStart(6, '0')}`;
  if (offset === 0) return `${s}Z`;
  const o = Math.abs(offset);
  s += `${offset < 0 ? '-' : '+'}${two(Math.floor(o / 3600))}:${two(Math.floor(o / 60) % 60)}`;
  return o % 60 !== 0 ? `${s}:${two(o % 60)}` : s;
}

/** The i64 at `at` as a number when it is a safe integer, else a BigInt. */
function readI64() {
  const n = inV.getInt32(at + 4, true) * TWO_32 + inV.getUint32(at, true);
  const v = n <= Number.MAX_SAFE_INTEGER && n >= -Number.MAX_SAFE_INTEGER ? n : inV.getBigInt64(at, true);
  at += 8;
  return v;
}

function readU64() {
  const n = inV.getUint32(at + 4, true) * TWO_32 + inV.getUint32(at, true);
  const v = n <= Number.MAX_SAFE_INTEGER ? n : inV.getBigUint64(at, true);
  at += 8;
  return v;
}

function readStr() {
  const n = inV.getUint32(at, true);
  at += 4;
  const s = UTF8_IN.decode(inB.subarray(at, at + n));
  at += n;
  return s;
}

/** A DATETIME or TIMESTAMP: a Date in UTC that remembers its microseconds. */
function readDateTime(zoned) {
  const micros = readI64();
  const ms = typeof micros === 'bigint' ? Number(micros / 1000n) : Math.trunc(micros / 1000);
  const d = new Date(ms);
  d[MICROS] = micros;
  if (zoned) d[ZONED] = true;
  return d;
}

/** The value at `at` whose tag is `tag` (already read), as the values world's JS value. */
function readValue(tag, depth) {
  switch (tag) {
    case 0:
      return null;
    case 1:
      return inB[at++] !== 0;
    case 2:
      return readI64();
    case 3:
      return readU64();
    case 4:
      at += 8;
      return inV.getFloat64(at - 8, true);
    case 5:
    case 6:
      return readStr();
    case 7: {
      const n = inV.getUint32(at, true);
      at += 4 + n;
      return inB.slice(at - n, at);
    }
    case 8:
      at += 4;
      return new Date(inV.getInt32(at - 4, true) * DAY_MS);
    case 9:
      return readDateTime(false);
    case 10:
      return Number(readI64());
    case 11:
      return readDateTime(true);
    case 12: {
      const srid = inV.getUint32(at, true);
      const x = inV.getFloat64(at + 4, true);
      const y = inV.getFloat64(at + 12, true);
      const hasZ = inB[at + 20] !== 0;
      at += 21;
      if (!hasZ) return new Point(srid, x, y, undefined);
      at += 8;
      return new Point(srid, x, y, inV.getFloat64(at - 8, true));
    }
    case 13:
    case 14:
      return readNested(tag, depth);
    case 15: {
      const months = Number(readI64());
      const days = Number(readI64());
      return durationText(months, days, Number(readI64()));
    }
    case 16: {
      const micros = Number(readI64());
      at += 4;
      return zonedText(micros, inV.getInt32(at - 4, true));
    }
  }
  throw `unknown value tag ${tag} at byte ${at - 1} of the batch`;
}

/** A list as an array, a map as a plain object, remembering how it was (see NESTED). */
function readNested(tag, depth) {
  const n = inV.getUint32(at, true);
  at += 4;
  let v;
  if (tag === 13) {
    v = new Array(n);
    for (let i = 0; i < n; i++) v[i] = readValue(inB[at++], depth + 1);
  } else {
    v = {};
    for (let i = 0; i < n; i++) {
      const k = readStr();
      v[k] = readValue(inB[at++], depth + 1);
    }
  }
  if (depth === 0) NESTED.set(v, { js: JSON.stringify(v) });
  return v;
}

// The buffer being written, a view of it and the write position.
let outB = new Uint8Array(1 << 16);
let outV = new DataView(outB.buffer);
let w = 0;

function room(n) {
  if (w + n <= outB.length) return;
  let size = outB.length * 2;
  while (size < w + n) size *= 2;
  const grown = new Uint8Array(size);
  grown.set(outB.subarray(0, w));
  outB = grown;
  outV = new DataView(outB.buffer);
}

function putStr(tag, s) {
  // UTF-16 units: at most 3 bytes of UTF-8 each.
  const len = s.length;
  room(5 + len * 3);
  if (tag >= 0) outB[w++] = tag;
  // Short ASCII text byte by byte: encodeInto allocates a view and a result object, and every
  // allocation costs the guest's garbage collector more than these few operations.
  if (len <= 32) {
    let p = w + 4;
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 128) break;
      outB[p++] = c;
    }
    if (i === len) {
      outV.setUint32(w, len, true);
      w = p;
      return;
    }
  }
  const n = UTF8_OUT.encodeInto(s, outB.subarray(w + 4)).written;
  outV.setUint32(w, n, true);
  w += 4 + n;
}

function putI64(tag, x) {
  room(9);
  outB[w] = tag;
  if (typeof x === 'bigint') {
    outV.setBigInt64(w + 1, x, true);
  } else {
    const hi = Math.floor(x / TWO_32);
    outV.setUint32(w + 1, x - hi * TWO_32, true);
    outV.setInt32(w + 5, hi, true);
  }
  w += 9;
}

function putF64(tag, x) {
  room(9);
  outB[w] = tag;
  outV.setFloat64(w + 1, x, true);
  w += 9;
}

/** A column's type tag for a JS value on its own (0: any, for null and maps). */
function ownTag(x) {
  switch (typeof x) {
    case 'boolean':
      return 1;
    case 'bigint':
      return x >= 2n ** 63n ? 3 : 2;
    case 'number':
      return Number.isInteger(x) ? 2 : 4;
    case 'string':
      return 6;
    case 'undefined':
      return 0;
  }
  if (x === null) return 0;
  if (isBytes(x)) return 7;
  if (x instanceof Date) return x[ZONED] ? 11 : 9;
  if (x instanceof Point) return 12;
  if (Array.isArray(x)) return 13;
  if (plain(x)) return 0;
  throw new RowError(`cannot pass a ${x?.constructor?.name ?? typeof x} on: ${String(x)}`);
}

/** Writes JS value `x` into a column of type tag `ty`: as that type where it fits, else its own. */
function putValue(x, ty, depth) {
  switch (typeof x) {
    case 'string':
      return putStr(ty === 5 ? 5 : 6, x);
    case 'number':
      if (ty === 4 || !Number.isInteger(x) || !Number.isSafeInteger(x)) {
        if (ty === 5) return putStr(5, String(x));
        return putF64(4, x);
      }
      if (ty === 5) return putStr(5, String(x));
      return putI64(ty === 3 && x >= 0 ? 3 : ty === 10 ? 10 : 2, x);
    case 'bigint':
      if (ty === 4) return putF64(4, Number(x));
      if (ty === 5) return putStr(5, String(x));
      if (x >= 2n ** 63n) return putI64(3, BigInt.asIntN(64, x));
      return putI64(ty === 3 && x >= 0n ? 3 : 2, x);
    case 'boolean':
      room(2);
      outB[w++] = 1;
      outB[w++] = x ? 1 : 0;
      return;
    case 'undefined':
      room(1);
      outB[w++] = 0;
      return;
  }
  putObject(x, ty, depth);
}

function putObject(x, ty, depth) {
  if (x === null) {
    room(1);
    outB[w++] = 0;
  } else if (x instanceof Date) {
    if (ty === 8) {
      room(5);
      outB[w] = 8;
      outV.setInt32(w + 1, Math.floor(x.getTime() / DAY_MS), true);
      w += 5;
    } else {
      const zoned = ty === 11 || (x[ZONED] === true && ty !== 9);
      putI64(zoned ? 11 : 9, micros(x));
    }
  } else if (isBytes(x)) {
    room(5 + x.length);
    outB[w] = 7;
    outV.setUint32(w + 1, x.length, true);
    outB.set(x, w + 5);
    w += 5 + x.length;
  } else if (x instanceof Point) {
    room(30);
    outB[w] = 12;
    outV.setUint32(w + 1, x.srid, true);
    outV.setFloat64(w + 5, x.x, true);
    outV.setFloat64(w + 13, x.y, true);
    const hasZ = x.z !== undefined && x.z !== null;
    outB[w + 21] = hasZ ? 1 : 0;
    w += 22;
    if (hasZ) {
      outV.setFloat64(w, x.z, true);
      w += 8;
    }
  } else if (Array.isArray(x)) {
    if (depth >= 128) throw new RowError('lists and maps nested deeper than 128');
    room(5);
    outB[w] = 13;
    outV.setUint32(w + 1, x.length, true);
    w += 5;
    for (const item of x) putValue(item, 0, depth + 1);
  } else if (plain(x)) {
    if (depth >= 128) throw new RowError('lists and maps nested deeper than 128');
    const keys = Object.keys(x);
    room(5);
    outB[w] = 14;
    outV.setUint32(w + 1, keys.length, true);
    w += 5;
    for (const k of keys) {
      putStr(-1, k);
      putValue(x[k], 0, depth + 1);
    }
  } else {
    ownTag(x); // throws the RowError naming what it is
  }
}

/** The columns of the batch at the head of `bytes`, leaving `at` at its first row. */
function readHeader(bytes) {
  inB = bytes;
  inV = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== 69 || bytes[1] !== 84 || bytes[2] !== 66 || bytes[3] !== 50) {
    throw 'the batch is not in the ETB2 format (host and SDK of different etlhost versions?)';
  }
  at = 4;
  const n = inV.getUint32(at, true);
  at += 4;
  const names = new Array(n);
  const tys = new Array(n);
  for (let i = 0; i < n; i++) {
    names[i] = readStr();
    tys[i] = inB[at++];
  }
  const rows = inV.getUint32(at, true);
  at += 4;
  return { names, tys, rows };
}

function writeHeader(names, tys, rows) {
  room(12);
  outB[w] = 69;
  outB[w + 1] = 84;
  outB[w + 2] = 66;
  outB[w + 3] = 50;
  outV.setUint32(w + 4, names.length, true);
  w += 8;
  for (let i = 0; i < names.length; i++) {
    putStr(-1, names[i]);
    room(1);
    outB[w++] = tys[i];
  }
  room(4);
  outV.setUint32(w, rows, true);
  w += 4;
}

/** Skips the value at `at` (tag included): how rows are found without decoding them. */
function skipValue() {
  const tag = inB[at++];
  switch (tag) {
    case 0:
      return;
    case 1:
      at += 1;
      return;
    case 8:
      at += 4;
      return;
    case 5:
    case 6:
    case 7:
      at += 4 + inV.getUint32(at, true);
      return;
    case 12:
      at += inB[at + 20] !== 0 ? 29 : 21;
      return;
    case 13: {
      const n = inV.getUint32(at, true);
      at += 4;
      for (let i = 0; i < n; i++) skipValue();
      return;
    }
    case 14: {
      const n = inV.getUint32(at, true);
      at += 4;
      for (let i = 0; i < n; i++) {
        at += 4 + inV.getUint32(at, true);
        skipValue();
      }
      return;
    }
    case 15:
      at += 24;
      return;
    case 16:
      at += 12;
      return;
    default:
      if (tag >= 2 && tag <= 11) {
        at += 8;
        return;
      }
  }
  throw `unknown value tag ${tag} at byte ${at - 1} of the batch`;
}

// A row of the encoded world is an object of a class made for its batch's columns: each column
// is an accessor on the prototype that decodes the value when read (a row the function never
// reads costs no decoding) and records it when set, so the SDK knows which values changed without
// comparing them. Its state is under symbols, which `for...in` and `Object.keys` do not list:
// those list the columns a row function added, which the output needs to find.
const BATCH = Symbol('batch');
const INDEX = Symbol('index');
const SET = Symbol('set');
const UNSET = Symbol('unset');

/** The rows of one call: their bytes and where each value starts (one more per row: its end). */
class Batch {
  constructor(bytes, view, ncols, starts) {
    this.bytes = bytes;
    this.view = view;
    this.ncols = ncols;
    this.starts = starts;
  }
}

function columnAccessor(Row, i, n) {
  Object.defineProperty(Row.prototype, Row.columns[i], {
    configurable: true,
    get() {
      const set = this[SET];
      if (set !== undefined && set[i] !== UNSET) return set[i];
      const batch = this[BATCH];
      const p = batch.starts[this[INDEX] * (batch.ncols + 1) + i];
      const bytes = batch.bytes;
      // Text and NULL, the common cells, decoded here without a call.
      const tag = bytes[p];
      if (tag === 6) return UTF8_IN.decode(bytes.subarray(p + 5, p + 5 + batch.view.getUint32(p + 1, true)));
      if (tag === 0) return null;
      inB = bytes;
      inV = batch.view;
      at = p + 1;
      const v = readValue(tag, 0);
      // An object read (a Date, a list) is kept, so that changing it in place changes the row.
      if (typeof v === 'object' && v !== null) this[SET] = remember(set, n, i, v);
      return v;
    },
    set(v) {
      this[SET] = remember(this[SET], n, i, v);
    },
  });
}

function remember(set, n, i, v) {
  if (set === undefined) {
    set = new Array(n);
    for (let k = 0; k < n; k++) set[k] = UNSET;
  }
  set[i] = v;
  return set;
}

// Row classes by their columns' names (one per schema a job has; usually one).
const ROW_CLASSES = new Map();

function rowClass(names, tys) {
  const key = `${names.join('\u0000')}\u0000${tys.join(',')}`;
  let Row = ROW_CLASSES.get(key);
  if (Row !== undefined) return Row;
  Row = function Row(batch, r) {
    this[BATCH] = batch;
    this[INDEX] = r;
  };
  Row.columns = names;
  Row.types = tys;
  for (let i = 0; i < names.length; i++) columnAccessor(Row, i, names.length);
  // JSON.stringify(row) and a copy with `row.toObject()` show every column, the added ones too.
  Object.defineProperty(Row.prototype, 'toObject', {
    value() {
      const o = {};
      for (const name of names) o[name] = this[name];
      for (const k in this) o[k] = this[k];
      return o;
    },
  });
  Object.defineProperty(Row.prototype, 'toJSON', {
    value() {
      return this.toObject();
    },
  });
  ROW_CLASSES.set(key, Row);
  return Row;
}

/** Where every value of the call's rows starts. */
function indexRows(ncols, nrows) {
  const starts = new Int32Array(nrows * (ncols + 1) + 1);
  let s = 0;
  for (let r = 0; r < nrows; r++) {
    for (let c = 0; c < ncols; c++) {
      starts[s++] = at;
      // The common cells (NULL, 8-byte numbers and times, text) without a call.
      const tag = inB[at];
      if (tag === 6 || tag === 5) at += 5 + inV.getUint32(at + 1, true);
      else if (tag === 2 || tag === 9 || tag === 4 || tag === 11 || tag === 3 || tag === 10) at += 9;
      else if (tag === 0) at += 1;
      else skipValue();
    }
    starts[s++] = at;
  }
  return starts;
}

/** Calls `row` on every row; what each gave is in `shapes` (as in the values world). */
function callRows(Row, batch, nrows, row, shapes, objects) {
  let o = 0;
  for (let r = 0; r < nrows; r++) {
    let got;
    try {
      got = row(new Row(batch, r));
    } catch (e) {
      if (!(e instanceof RowError)) throw describe(e);
      shapes[r] = e;
      continue;
    }
    if (got === null || got === undefined) {
      shapes[r] = null;
    } else if (Array.isArray(got)) {
      shapes[r] = got.length;
      for (const g of got) objects[o++] = g;
    } else {
      shapes[r] = -1;
      objects[o++] = got;
    }
  }
}

/** The output columns: every column of `objects` in the order they first appear, and types. */
function outColumns(objects, inNames, inTys) {
  const names = [];
  const index = new Map();
  const tys = [];
  const add = (k, v, ty) => {
    const known = index.get(k);
    if (known === undefined) {
      index.set(k, names.length);
      names.push(k);
      tys.push(ty === undefined ? ownTag(v) : ty);
    } else if (tys[known] === 0 && ty === undefined) {
      tys[known] = ownTag(v);
    }
  };
  let prevRow = null;
  for (const o of objects) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) {
      const got = Array.isArray(o) ? 'an array' : String(o);
      throw new RowError(`expected an object for a row, got ${got}`);
    }
    const b = o[BATCH];
    if (b !== undefined && o.constructor !== prevRow) {
      // A row: its columns first (of their type when read, or as set), then those added.
      prevRow = o.constructor;
      const cols = prevRow.columns;
      for (let i = 0; i < cols.length; i++) add(cols[i], undefined, prevRow.types[i]);
    }
    // Most objects have the keys of the one before, in the same order: one comparison each.
    // (A row lists only the columns added to it.)
    let i = b === undefined ? 0 : prevRow.columns.length;
    for (const k in o) {
      if (names[i] !== k) add(k, o[k], inNames.includes(k) ? inTys[inNames.indexOf(k)] : undefined);
      else if (tys[i] === 0) tys[i] = ownTag(o[k]);
      i++;
    }
  }
  return { names, tys, prefixOf: null };
}

/** Whether the output columns begin with the columns of row class `Row` (remembered). */
function startsWith(cols, Row) {
  const own = Row.columns;
  for (let j = 0; j < own.length; j++) if (cols.names[j] !== own[j]) return false;
  cols.prefixOf = Row;
  return true;
}

// The call's input is copied to the start of the output buffer once, so that its values are
// copied to the output with copyWithin, which allocates nothing (a row of another call's input,
// held back, is copied through a view of its bytes).
let local = null;

function copyFrom(batch, a, b) {
  room(b - a);
  if (batch === local) outB.copyWithin(w, a, b);
  else outB.set(batch.bytes.subarray(a, b), w);
  w += b - a;
}

/** Whether nested value `v`, read from a row, is as it was read (then its bytes are copied). */
function nestedAsRead(v) {
  if (v instanceof Date || v instanceof Point || isBytes(v)) return false;
  const kept = NESTED.get(v);
  return kept !== undefined && kept.js === JSON.stringify(v);
}

/**
 * Writes `o` as a row of the output columns `cols`: the values of a row object it never set are
 * copied as their bytes, the others encoded. Returns whether it is its row unchanged.
 */
function putRow(o, cols) {
  const { names, tys } = cols;
  const batch = o[BATCH];
  if (batch === undefined) {
    for (let j = 0; j < names.length; j++) putValue(o[names[j]], tys[j], 0);
    return false;
  }
  const Row = o.constructor;
  const own = Row.columns;
  const set = o[SET];
  const starts = batch.starts;
  const s = o[INDEX] * (batch.ncols + 1);
  if (set === undefined && (cols.prefixOf === Row || startsWith(cols, Row))) {
    // Its columns untouched, and first: one copy of its bytes, then the columns it added.
    copyFrom(batch, starts[s], starts[s + own.length]);
    for (let j = own.length; j < names.length; j++) {
      const v = o[names[j]];
      if (typeof v === 'string' && tys[j] === 6) putStr(6, v);
      else putValue(v, tys[j], 0);
    }
    return names.length === own.length;
  }
  // The row's own columns first, in order (what a row function that adds columns gives).
  let j = 0;
  let a = starts[s];
  let b = a;
  let whole = names.length === own.length;
  for (; j < own.length && names[j] === own[j]; j++) {
    const v = set === undefined ? UNSET : set[j];
    if (v === UNSET || (typeof v === 'object' && v !== null && nestedAsRead(v))) {
      if (b !== starts[s + j]) {
        copyFrom(batch, a, b);
        a = starts[s + j];
      }
      b = starts[s + j + 1];
      continue;
    }
    whole = false;
    copyFrom(batch, a, b);
    a = b = starts[s + j + 1];
    putValue(v, tys[j], 0);
  }
  copyFrom(batch, a, b);
  for (; j < names.length; j++) {
    whole = false;
    putValue(o[names[j]], tys[j], 0);
  }
  return whole && j === own.length;
}

/** The encoded world's `process`: the batch in `bytes` through row function `row`. */
function processEncoded(bytes, row) {
  const { names: inNames, tys: inTys, rows: nrows } = readHeader(bytes);
  const ncols = inNames.length;
  const batch = new Batch(bytes, inV, ncols, indexRows(ncols, nrows));
  const Row = rowClass(inNames, inTys);
  const shapes = new Array(nrows);
  const objects = [];
  callRows(Row, batch, nrows, row, shapes, objects);
  let cols;
  try {
    cols = outColumns(objects, inNames, inTys);
  } catch (e) {
    throw describe(e);
  }
  const keepable = sameColumns(cols, inNames, inTys);
  w = 0;
  room(bytes.length);
  outB.set(bytes, 0);
  local = batch;
  const start = (w = bytes.length);
  writeHeader(cols.names, cols.tys, 0);
  const header = w;
  const verdicts = new Array(nrows);
  let emitted = 0;
  let allKept = true;
  let o = 0;
  for (let r = 0; r < nrows; r++) {
    const shape = shapes[r];
    if (shape === null) {
      verdicts[r] = DROP_V;
      allKept = false;
      continue;
    }
    if (shape instanceof RowError) {
      verdicts[r] = { tag: 'error', val: shape.message };
      allKept = false;
      continue;
    }
    if (shape === -1 && keepable && untouched(objects[o], batch, r)) {
      // Handed back as it came: the host passes on its bytes.
      o++;
      verdicts[r] = KEEP_V;
      continue;
    }
    const before = w;
    const n = shape === -1 ? 1 : shape;
    const first = o;
    o += n;
    let whole = false;
    try {
      for (let k = first; k < o; k++) whole = putRow(objects[k], cols);
    } catch (e) {
      if (!(e instanceof RowError)) throw describe(e);
      w = before;
      verdicts[r] = { tag: 'error', val: e.message };
      allKept = false;
      continue;
    }
    if (shape === -1 && whole && keepable && objects[first][BATCH] === batch && objects[first][INDEX] === r) {
      w = before;
      verdicts[r] = KEEP_V;
      continue;
    }
    verdicts[r] = shape === -1 ? EMIT_1 : { tag: 'emit', val: shape };
    emitted += n;
    allKept = false;
  }
  if (allKept) return { verdicts: undefined, rows: NO_ROWS };
  if (emitted === 0) return { verdicts, rows: NO_ROWS };
  outV.setUint32(header - 4, emitted, true);
  return { verdicts, rows: outB.subarray(start, w) };
}

/** Whether `o` is input row `r` of `batch`, no value set and no column added. */
function untouched(o, batch, r) {
  if (o[BATCH] !== batch || o[INDEX] !== r || o[SET] !== undefined) return false;
  for (const _ in o) return false;
  return true;
}

function sameColumns(cols, inNames, inTys) {
  if (cols.names.length !== inNames.length) return false;
  for (let i = 0; i < inNames.length; i++) {
    if (cols.names[i] !== inNames[i] || cols.tys[i] !== inTys[i]) return false;
  }
  return true;
}

/** Rows held back to the end of the stream, encoded. */
function encodeHeld(objects) {
  const cols = outColumns(objects, [], []);
  local = null;
  w = 0;
  writeHeader(cols.names, cols.tys, objects.length);
  for (const o of objects) putRow(o, cols);
  return outB.slice(0, w);
}
