"""etlhost transform SDK for Python guests, built into a WASM component by componentize-py.

Write a row function and export it; every row arrives as a dict-like row of Python values:

    import etlhost_transform as et

    class Upper(et.RowTransform):
        def __init__(self, config):
            self.column = config.get("column", "name")

        def row(self, row):
            row[self.column] = row[self.column].upper()
            return row              # or None to drop it, a list of rows or dicts to expand it,
                                    # or raise et.RowError("why") to dead-letter it

    WitWorld = et.export(Upper)

Values: NULL is None, integers int, floats float, DECIMAL decimal.Decimal, text str, bytes bytes,
DATE datetime.date, DATETIME datetime.datetime (no time zone), TIMESTAMP datetime.datetime in UTC
(tzinfo=datetime.timezone.utc; any aware datetime becomes a TIMESTAMP, except in a DATETIME
column, where it is passed on in UTC without a zone; a naive one in a TIMESTAMP column is taken
as UTC), TIME datetime.timedelta, points
etlhost_transform.Point(srid, x, y, z) (z None for 2D), lists and maps (SET members, JSON read as
values) Python lists and dicts, an interval (PostgreSQL `interval`) an `Interval` and a time with
an offset (`timetz`) a `ZonedTime`: both are `str`s holding the ISO 8601 text
(`P1Y2M3DT4H5M6.5S`, `12:30:00+05:30`) that pass on as the value they were. A column keeps its
type when its value keeps its Python type; a new column takes the type of its first non-None
value.

The same module builds for either world of `wit/transform.wit`; `export` picks the one the
component was built for:

- `--world encoded-transform` (the fast one): the batch crosses as one buffer in the batch format
  (`plugins/sdk/src/codec.rs`). A row is decoded only as far as it is read, a value when it is
  read; a row returned with the columns it came with is passed on as its own bytes (`keep`), and
  a changed row is written back from its unread columns' bytes plus the values set. Lists and maps
  hold any value (a Decimal, a date, bytes, ...).
- `--world transform` (components built before): rows cross value by value and become dicts.
  Lists and maps cross as JSON, so they hold None, bool, int, float and str only.
"""

import datetime
import decimal
import json
import struct
import traceback
from typing import NamedTuple, Optional

from componentize_py_types import Err

try:
    from wit_world.imports import encoded as _wit
    _t = None
except ImportError:  # a component of the `transform` world (values one by one)
    from wit_world.imports import types as _t
    _wit = None

_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_UTC = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_EPOCH_DAY = datetime.date(1970, 1, 1)
_UTC = datetime.timezone.utc


class RowError(Exception):
    """This row cannot be transformed: it goes to the dead-letter file with this reason."""


class RowTransform:
    """Subclass with `__init__(self, config: dict)` and `row(self, row)`."""

    def __init__(self, config):
        pass

    def row(self, row):
        raise NotImplementedError

    def finish(self):
        """Rows held back until the end of the stream, as dicts (or rows)."""
        return []


def describe(e):
    """An exception as the call's `err` text, with where it was raised: the host retries the
    rows apart down to the one at fault and dead-letters it with this reason."""
    if isinstance(e, RowError):
        return str(e)
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return f"{type(e).__name__}: {e}"
    # Where the transform's code raised it, not the SDK's row that it asked (a missing key).
    ours = [f for f in frames if not f.filename.endswith("etlhost_transform.py")]
    frame = (ours or frames)[-1]
    file = frame.filename.rsplit("/", 1)[-1]
    return f"{type(e).__name__}: {e} ({file}, line {frame.lineno})"


def _micros(d):
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def export(cls):
    """The `WitWorld` class componentize-py exports, running `cls` row by row, for the world the
    component is built for."""
    return _encoded_world(cls) if _wit is not None else _values_world(cls)


# ---------------------------------------------------------------------------------------------
# The encoded world: the batch format, decoded lazily.
#
# A buffer: "ETB2", u32 column count, per column a str name and a u8 type tag, u32 row count,
# then every value row by row as a u8 tag and its payload (little-endian; str = u32 length and
# UTF-8). Tags: 0 null, 1 bool (u8), 2 int (i64), 3 uint (u64), 4 float (f64), 5 decimal (str),
# 6 text (str), 7 bytes (u32 length, bytes), 8 date (i32 days), 9 datetime (i64 us), 10 time
# (i64 us), 11 timestamp (i64 us, UTC), 12 point (u32 srid, f64 x, f64 y, u8 has_z, f64 z if
# has_z), 13 list (u32 count, values), 14 map (u32 count, then str key and value each), 15
# duration (i64 months, i64 days, i64 us), 16 zoned time (i64 us, i32 offset seconds). A column
# type is a value tag, 0 meaning any.
# ---------------------------------------------------------------------------------------------

_MAGIC = b"ETB2"
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_TAG_LEN = struct.Struct("<BI").pack
_TAG_I64 = struct.Struct("<Bq").pack
_TAG_U64 = struct.Struct("<BQ").pack
_TAG_F64 = struct.Struct("<Bd").pack
_TAG_I32 = struct.Struct("<Bi").pack
_POINT = struct.Struct("<IddB")
_DURATION = struct.Struct("<qqq")
_ZONED = struct.Struct("<qi")

ANY, BOOL, INT, UINT, FLOAT, DECIMAL, TEXT, BYTES = 0, 1, 2, 3, 4, 5, 6, 7
DATE, DATETIME, TIME, TIMESTAMP, POINT, LIST, MAP, DURATION, ZONED_TIME = range(8, 17)

# A value's size by its tag, tag included: 0 for a length and bytes, -1 for the others (points,
# lists and maps, whose size is read from their contents).
_FIXED = [1, 2, 9, 9, 9, 0, 0, 0, 5, 9, 9, 9, -1, -1, -1, 25, 13]


class Point(NamedTuple):
    """A point; `srid` as the source gives it (4326: x = longitude, y = latitude)."""

    srid: int
    x: float
    y: float
    z: Optional[float] = None


if _t is not None:
    # The values world lowers its own record type.
    Point = _t.Point  # noqa: F811


class UInt(int):
    """An unsigned integer below 2^63 (MySQL's BIGINT UNSIGNED, in a list or a map or a column
    of any type): an int that passes on as unsigned."""


class Interval(str):
    """An interval (PostgreSQL `interval`): its ISO 8601 text, and the parts it came as."""

    def __new__(cls, months, days, microseconds):
        s = str.__new__(cls, _duration_text(months, days, microseconds))
        s.months, s.days, s.microseconds = months, days, microseconds
        return s


class ZonedTime(str):
    """A time of day with a UTC offset (PostgreSQL `timetz`): its ISO 8601 text and its parts."""

    def __new__(cls, microseconds, offset_seconds):
        s = str.__new__(cls, _clock(abs(microseconds)) + _offset(offset_seconds))
        s.microseconds, s.offset_seconds = microseconds, offset_seconds
        return s


def _trunc_divmod(n, d):
    """Division as the host's Rust does it: toward zero, the remainder taking n's sign."""
    q = abs(n) // d
    q = q if n >= 0 else -q
    return q, n - q * d


def _duration_text(months, days, micros):
    years, months = _trunc_divmod(months, 12)
    out = ["P"] + [f"{n}{u}" for n, u in ((years, "Y"), (months, "M"), (days, "D")) if n]
    if micros == 0:
        return "".join(out) if len(out) > 1 else "PT0S"
    sign = "-" if micros < 0 else ""
    a = abs(micros)
    hours, minutes, secs, us = a // 3_600_000_000, a // 60_000_000 % 60, a // 1_000_000 % 60, a % 1_000_000
    out.append("T")
    if hours:
        out.append(f"{sign}{hours}H")
    if minutes:
        out.append(f"{sign}{minutes}M")
    if us:
        out.append(f"{sign}{secs}.{us:06d}".rstrip("0") + "S")
    elif secs:
        out.append(f"{sign}{secs}S")
    return "".join(out)


def _clock(micros):
    secs, us = divmod(micros, 1_000_000)
    text = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    return f"{text}.{us:06d}" if us else text


def _offset(seconds):
    if seconds == 0:
        return "Z"
    a = abs(seconds)
    text = f"{'-' if seconds < 0 else '+'}{a // 3600:02d}:{a // 60 % 60:02d}"
    return f"{text}:{a % 60:02d}" if a % 60 else text


def _uint(u):
    return u if u >= 2**63 else UInt(u)


# Decoding: one function per tag, given the buffer and where the value starts and ends.
def _d_text(buf, a, b):
    return buf[a + 5 : b].decode()


def _d_date(buf, a, b):
    return _EPOCH_DAY + datetime.timedelta(days=_I32.unpack_from(buf, a + 1)[0])


def _d_datetime(buf, a, b):
    return _EPOCH + datetime.timedelta(microseconds=_I64.unpack_from(buf, a + 1)[0])


def _d_timestamp(buf, a, b):
    return _EPOCH_UTC + datetime.timedelta(microseconds=_I64.unpack_from(buf, a + 1)[0])


def _d_point(buf, a, b):
    srid, x, y, has_z = _POINT.unpack_from(buf, a + 1)
    return Point(srid, x, y, _F64.unpack_from(buf, a + 22)[0] if has_z else None)


def _d_list(buf, a, b):
    items, p = [], a + 5
    for _ in range(_U32.unpack_from(buf, a + 1)[0]):
        e = _skip(buf, p)
        items.append(_DECODE[buf[p]](buf, p, e))
        p = e
    return items


def _d_map(buf, a, b):
    entries, p = {}, a + 5
    for _ in range(_U32.unpack_from(buf, a + 1)[0]):
        n = _U32.unpack_from(buf, p)[0]
        key = buf[p + 4 : p + 4 + n].decode()
        p += 4 + n
        e = _skip(buf, p)
        entries[key] = _DECODE[buf[p]](buf, p, e)
        p = e
    return entries


_DECODE = [
    lambda buf, a, b: None,
    lambda buf, a, b: buf[a + 1] != 0,
    lambda buf, a, b: _I64.unpack_from(buf, a + 1)[0],
    lambda buf, a, b: _uint(_U64.unpack_from(buf, a + 1)[0]),
    lambda buf, a, b: _F64.unpack_from(buf, a + 1)[0],
    lambda buf, a, b: decimal.Decimal(buf[a + 5 : b].decode()),
    _d_text,
    lambda buf, a, b: buf[a + 5 : b],
    _d_date,
    _d_datetime,
    lambda buf, a, b: datetime.timedelta(microseconds=_I64.unpack_from(buf, a + 1)[0]),
    _d_timestamp,
    _d_point,
    _d_list,
    _d_map,
    lambda buf, a, b: Interval(*_DURATION.unpack_from(buf, a + 1)),
    lambda buf, a, b: ZonedTime(*_ZONED.unpack_from(buf, a + 1)),
]


def _skip(buf, p):
    """Where the value at `p` ends."""
    tag = buf[p]
    w = _FIXED[tag]
    if w > 0:
        return p + w
    if w == 0:
        return p + 5 + _U32.unpack_from(buf, p + 1)[0]
    if tag == POINT:
        return p + (30 if buf[p + 21] else 22)
    n = _U32.unpack_from(buf, p + 1)[0]
    p += 5
    for _ in range(n):
        if tag == MAP:
            p += 4 + _U32.unpack_from(buf, p)[0]
        p = _skip(buf, p)
    return p


class _Batch:
    """One call's buffer: the columns, and where each value starts (`offs[row * ncols + col]`,
    one more at the end), found in one pass without decoding a value. A column is decoded for
    every row at once the first time a row reads it: rows read the same columns, and one loop
    over a column costs less than a call per value."""

    __slots__ = ("buf", "names", "types", "ix", "ncols", "nrows", "offs", "schema", "typed",
                 "cols", "nested", "deleted")

    def __init__(self, buf):
        if buf[:4] != _MAGIC:
            raise ValueError(f"not a batch buffer: starts with {bytes(buf[:4])!r}")
        ncols = _U32.unpack_from(buf, 4)[0]
        p, names, types = 8, [], []
        for _ in range(ncols):
            n = _U32.unpack_from(buf, p)[0]
            names.append(buf[p + 4 : p + 4 + n].decode())
            types.append(buf[p + 4 + n])
            p += 5 + n
        self.buf, self.ncols = buf, ncols
        self.names, self.types = tuple(names), tuple(types)
        self.ix = {n: i for i, n in enumerate(names)}
        self.schema = tuple(zip(names, types))
        self.typed = dict(self.schema)
        self.nrows = _U32.unpack_from(buf, p)[0]
        self.offs = _index(buf, p + 4, self.nrows * ncols)
        # Decoded columns by name; those holding lists or maps apart, since a row that reads
        # one keeps it (a change made in place must be passed on).
        self.cols, self.nested = {}, {}
        self.deleted = False  # whether a row of it had a column deleted

    def column(self, c):
        """Column `c` of every row, decoded."""
        buf, n = self.buf, self.nrows * self.ncols
        starts = self.offs[c:n:self.ncols]
        ends = self.offs[c + 1 : n + 1 : self.ncols]
        dec = _DECODE
        ty = self.types[c]
        if ty == TEXT:
            return [buf[a + 5 : e].decode() if buf[a] == TEXT else dec[buf[a]](buf, a, e)
                    for a, e in zip(starts, ends)]
        if ty == INT:
            i64 = _I64.unpack_from
            return [i64(buf, a + 1)[0] if buf[a] == INT else dec[buf[a]](buf, a, e)
                    for a, e in zip(starts, ends)]
        return [dec[buf[a]](buf, a, e) for a, e in zip(starts, ends)]

    def load(self, k, r):
        """Value `k` of row `r`, its column decoded; _MISSING if there is no such column."""
        col = self.nested.get(k)
        if col is None:
            c = self.ix.get(k)
            if c is None:
                return _MISSING
            col = self.column(c)
            if any(type(v) is list or type(v) is dict for v in col):
                self.nested[k] = col
            else:
                self.cols[k] = col
                return col[r]
        return col[r]


def _index(buf, p, nvalues):
    """The start of each of `nvalues` values from `p`, and where the last ends."""
    offs = [0] * (nvalues + 1)
    fixed, u32 = _FIXED, _U32.unpack_from
    for i in range(nvalues):
        offs[i] = p
        w = fixed[buf[p]]
        if w > 0:
            p += w
        elif w == 0:
            p += 5 + u32(buf, p + 1)[0]
        else:
            p = _skip(buf, p)
    offs[nvalues] = p
    if p != len(buf):
        raise ValueError(f"batch buffer of {len(buf)} bytes ends at byte {p}")
    return offs


_GONE = object()  # a column deleted from a row
_MISSING = object()


class Row:
    """One input row, read like a dict: `row["x"]`, `row.get("x")`, `"x" in row`, `row["y"] = v`,
    `del row["x"]`, iteration over its column names, `keys()`, `items()`, `values()`, `len()`,
    `pop`, `setdefault`, `update`, `copy`. Values are decoded when read; `dict(row)` makes a
    plain dict of every value."""

    __slots__ = ("_b", "_r", "_set")

    def __init__(self, b, r, changes=None):
        self._b = b
        self._r = r  # its row number in the batch
        self._set = changes  # values set (or _GONE) since it was read, by column name

    def _load(self, k):
        v = self._b.load(k, self._r)
        if type(v) is list or type(v) is dict:
            if self._set is None:
                self._set = {}
            self._set[k] = v
        return v

    def __getitem__(self, k):
        s = self._set
        if s is not None and k in s:
            v = s[k]
            if v is _GONE:
                raise KeyError(k)
            return v
        try:
            return self._b.cols[k][self._r]
        except KeyError:
            v = self._load(k)
            if v is _MISSING:
                raise KeyError(k) from None
            return v

    def get(self, k, default=None):
        s = self._set
        if s is not None and k in s:
            v = s[k]
            return default if v is _GONE else v
        try:
            return self._b.cols[k][self._r]
        except KeyError:
            v = self._load(k)
            return default if v is _MISSING else v

    def __setitem__(self, k, v):
        if self._set is None:
            self._set = {k: v}
        else:
            self._set[k] = v

    def __delitem__(self, k):
        if k not in self:
            raise KeyError(k)
        if k in self._b.ix:
            if self._set is None:
                self._set = {}
            self._set[k] = _GONE
            self._b.deleted = True
        else:
            del self._set[k]

    def __contains__(self, k):
        s = self._set
        if s is not None and k in s:
            return s[k] is not _GONE
        return k in self._b.ix

    def keys(self):
        """The column names, in order: the input's (less those deleted), then those added."""
        s = self._set
        if not s:
            return list(self._b.names)
        ix = self._b.ix
        names = [n for n in self._b.names if s.get(n, _MISSING) is not _GONE]
        names.extend(k for k, v in s.items() if k not in ix and v is not _GONE)
        return names

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def values(self):
        return [self[k] for k in self.keys()]

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def pop(self, k, default=_MISSING):
        if k in self:
            v = self[k]
            del self[k]
            return v
        if default is _MISSING:
            raise KeyError(k)
        return default

    def setdefault(self, k, default=None):
        if k not in self:
            self[k] = default
        return self[k]

    def update(self, other=(), **kw):
        for k, v in dict(other, **kw).items():
            self[k] = v

    def copy(self):
        """A row of its own with the same values."""
        return Row(self._b, self._r, dict(self._set) if self._set else None)

    def __eq__(self, other):
        if isinstance(other, (Row, dict)):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self):
        return f"Row({dict(self.items())!r})"


# Encoding: a value by its Python type, in a column of type `ty`.
def _e_int(x, ty):
    if ty == UINT and 0 <= x < 2**64:
        return _TAG_U64(UINT, x)
    if -(2**63) <= x < 2**63:
        return _TAG_I64(INT, x)
    if 0 <= x < 2**64:
        return _TAG_U64(UINT, x)
    raise RowError(f"the integer {x} does not fit in 64 bits")


def _e_text(x, ty):
    b = x.encode()
    return _TAG_LEN(TEXT, len(b)) + b


def _e_decimal(x, ty):
    b = str(x).encode()
    return _TAG_LEN(DECIMAL, len(b)) + b


def _e_bytes(x, ty):
    return _TAG_LEN(BYTES, len(x)) + bytes(x)


def _e_datetime(x, ty):
    if x.tzinfo is None:
        if ty == TIMESTAMP:  # a naive time in a TIMESTAMP column is UTC
            return _TAG_I64(TIMESTAMP, _micros(x - _EPOCH))
        return _TAG_I64(DATETIME, _micros(x - _EPOCH))
    if ty == DATETIME:  # an aware time in a DATETIME column is passed on in UTC, without a zone
        return _TAG_I64(DATETIME, _micros(x - _EPOCH_UTC))
    return _TAG_I64(TIMESTAMP, _micros(x - _EPOCH_UTC))


def _e_point(x, ty):
    head = bytes([POINT]) + _POINT.pack(x.srid, x.x, x.y, x.z is not None)
    return head + (_F64.pack(x.z) if x.z is not None else b"")


def _e_list(x, ty):
    return b"".join([_TAG_LEN(LIST, len(x))] + [_enc(v, ANY) for v in x])


def _e_map(x, ty):
    parts = [_TAG_LEN(MAP, len(x))]
    for k, v in x.items():
        if not isinstance(k, str):
            raise RowError(f"a map's key must be text, not {k!r}")
        kb = k.encode()
        parts += [_U32.pack(len(kb)), kb, _enc(v, ANY)]
    return b"".join(parts)


_ENCODE = {
    type(None): lambda x, ty: b"\x00",
    bool: lambda x, ty: b"\x01\x01" if x else b"\x01\x00",
    int: _e_int,
    UInt: lambda x, ty: _TAG_U64(UINT, x),
    float: lambda x, ty: _TAG_F64(FLOAT, x),
    str: _e_text,
    decimal.Decimal: _e_decimal,
    bytes: _e_bytes,
    bytearray: _e_bytes,
    memoryview: _e_bytes,
    datetime.datetime: _e_datetime,
    datetime.date: lambda x, ty: _TAG_I32(DATE, (x - _EPOCH_DAY).days),
    datetime.timedelta: lambda x, ty: _TAG_I64(TIME, _micros(x)),
    Point: _e_point,
    list: _e_list,
    dict: _e_map,
    Interval: lambda x, ty: bytes([DURATION]) + _DURATION.pack(x.months, x.days, x.microseconds),
    ZonedTime: lambda x, ty: bytes([ZONED_TIME]) + _ZONED.pack(x.microseconds, x.offset_seconds),
}

# Subclasses of the types above, by the first base they have (bool before int, datetime before
# date: a bool is an int, a datetime a date).
_BASES = [bool, UInt, int, float, Interval, ZonedTime, str, decimal.Decimal, bytes, bytearray,
          datetime.datetime, datetime.date, datetime.timedelta, Point, list, dict]


def _enc(x, ty):
    f = _ENCODE.get(type(x))
    if f is None:
        if isinstance(x, Row):
            return _e_map(dict(x.items()), ty)
        base = next((b for b in _BASES if isinstance(x, b)), None)
        if base is None:
            raise RowError(f"cannot pass a {type(x).__name__} on: {x!r}")
        f = _ENCODE[base]
    return f(x, ty)


_TYPE_OF = {
    bool: BOOL, float: FLOAT, str: TEXT, decimal.Decimal: DECIMAL, bytes: BYTES,
    bytearray: BYTES, memoryview: BYTES, datetime.date: DATE, datetime.timedelta: TIME,
    Point: POINT, list: LIST, dict: ANY, Interval: DURATION, ZonedTime: ZONED_TIME,
}


def _type_of(x):
    """The column type a new column takes from its first non-None value."""
    if x is None:
        return ANY
    if isinstance(x, datetime.datetime):
        return TIMESTAMP if x.tzinfo is not None else DATETIME
    if isinstance(x, int) and not isinstance(x, bool):
        return UINT if x >= 2**63 or isinstance(x, UInt) else INT
    ty = _TYPE_OF.get(type(x))
    if ty is None:
        base = next((b for b in _BASES if isinstance(x, b)), None)
        ty = _TYPE_OF.get(base, ANY)
    return ty


def _sig(r):
    """What decides the columns of a returned row, and how its bytes are made: rows of one
    signature have the same. None for a row with a column deleted (looked at one by one)."""
    if type(r) is Row:
        s = r._set
        if not s:
            return r._b
        if _GONE in s.values():
            return None
        return (r._b, tuple(s))
    if type(r) is dict:
        return tuple(r)
    if isinstance(r, dict):
        return None
    raise RowError(f"expected a row or a dict, got {type(r).__name__}")


def _same_changes(rows):
    """The output columns and signatures of `rows` when every one is a row of one batch with the
    same columns set (and none deleted), found a pass over all rows at a time; else None."""
    if not rows or type(rows[0]) is not Row:
        return None
    b = rows[0]._b
    if b.deleted or [type(r) is Row and r._b for r in rows].count(b) != len(rows):
        return None
    sets = [r._set for r in rows]
    if None in sets:
        return None
    keys = list(map(tuple, sets))
    if keys.count(keys[0]) != len(keys):
        return None
    cols = list(b.schema)
    for k in keys[0]:
        if k not in b.ix:
            first = next((s[k] for s in sets if s[k] is not None), None)
            cols.append((k, _type_of(first)))
    return tuple(cols), [(b, keys[0])] * len(rows)


def _schema(rows, inputs):
    """The output columns of `rows`: every key any of them has, in the order keys first appear.
    A key that is a column of the row's input (of `inputs`, name -> type, for a dict) keeps that
    column's type; a new one takes the type of its first non-None value. Returns ((name, type),
    ...) and each row's signature (`_sig`)."""
    same = _same_changes(rows)
    if same is not None:
        return same
    types = {}  # name -> column type
    open_ = set()  # new columns whose values so far are all None
    seen, sigs = set(), []
    add = sigs.append
    for r in rows:
        # `_sig`, inline for rows of the input (most of them).
        if type(r) is Row:
            s = r._set
            if not s:
                sig = r._b
            elif _GONE in s.values():
                sig = None
            else:
                sig = (r._b, tuple(s))
        else:
            sig = _sig(r)
        add(sig)
        if sig is not None:
            if sig in seen and not open_:
                continue
            seen.add(sig)
        if type(r) is Row:
            keys, of_input = r.keys(), r._b.typed
        else:
            keys, of_input = r, inputs
            for k in keys:
                if not isinstance(k, str):
                    raise RowError(f"a column name must be text, not {k!r}")
        for k in keys:
            if k in types and k not in open_:
                continue
            ty = of_input.get(k)
            if ty is None:
                v = r[k]
                ty = _type_of(v)
                if v is None:
                    open_.add(k)
                else:
                    open_.discard(k)
            else:
                open_.discard(k)
            types[k] = ty
    return tuple(types.items()), sigs


def _general_bytes(r, schema):
    """Row `r` in the output columns `schema`, column by column: the bytes of its unchanged
    input values as they are, the others encoded."""
    if type(r) is not Row:
        return b"".join([_enc(r.get(n), ty) for n, ty in schema])
    b, s = r._b, r._set
    at, offs, ix, buf = r._r * b.ncols, b.offs, b.ix, b.buf
    parts = []
    for n, ty in schema:
        if s and n in s:
            v = s[n]
            parts.append(b"\x00" if v is _GONE else _enc(v, ty))
        else:
            c = ix.get(n)
            parts.append(b"\x00" if c is None else buf[offs[at + c] : offs[at + c + 1]])
    return b"".join(parts)


class _Emitter:
    """Writes returned rows in the output columns: a row that only adds columns to its input
    (the common case) as its input's bytes followed by the new values; any other column by
    column."""

    def __init__(self, schema):
        self.schema = schema
        self.plans = {}  # signature -> the added columns, or None: column by column
        self.parts = []

    def plan(self, r, sig):
        plan = None
        if type(r) is Row and sig is not None:
            b = r._b
            changed = sig[1] if type(sig) is tuple else ()
            if self.schema[: b.ncols] == b.schema and not any(k in b.ix for k in changed):
                plan = self.schema[b.ncols :]
        self.plans[sig] = plan
        return plan

    def add(self, r, sig):
        plan = self.plans[sig] if sig in self.plans else self.plan(r, sig)
        if plan is None:
            self.parts.append(_general_bytes(r, self.schema))
            return
        b = r._b
        at = r._r * b.ncols
        offs = b.offs
        whole = b.buf[offs[at] : offs[at + b.ncols]]
        if not plan:
            self.parts.append(whole)
            return
        s = r._set
        if len(plan) == 1:
            n, ty = plan[0]
            v = s.get(n) if s else None
            if type(v) is str:
                v = v.encode()
                self.parts.append(whole + _TAG_LEN(TEXT, len(v)) + v)
                return
            self.parts.append(whole + _enc(v, ty))
            return
        self.parts.append(whole + b"".join([_enc(s.get(n) if s else None, ty) for n, ty in plan]))


    def bulk(self, rows, sigs):
        """`add` of every row of `rows`, a column at a time when they share a signature."""
        sig = sigs[0] if sigs else None
        if sig is None or type(rows[0]) is not Row or sigs.count(sig) != len(sigs):
            for r, sg in zip(rows, sigs):
                self.add(r, sg)
            return
        plan = self.plans[sig] if sig in self.plans else self.plan(rows[0], sig)
        if plan is None:
            self.parts.extend(_general_bytes(r, self.schema) for r in rows)
            return
        b = rows[0]._b
        starts, buf = b.offs[:: b.ncols], b.buf
        wholes = [buf[starts[r._r] : starts[r._r + 1]] for r in rows]
        cols = []
        for n, ty in plan:
            if type(sig) is not tuple:  # rows unchanged, in columns some other row added
                cols.append([b"\x00"] * len(rows))
                continue
            vals = [r._set.get(n) for r in rows]
            if set(map(type, vals)) == {str}:
                cols.append([_TAG_LEN(TEXT, len(v)) + v for v in [v.encode() for v in vals]])
            else:
                cols.append([_enc(v, ty) for v in vals])
        if cols:
            self.parts.extend(map(b"".join, zip(wholes, *cols)))
        else:
            self.parts.extend(wholes)


def _header(schema, nrows):
    parts = [_MAGIC, _U32.pack(len(schema))]
    for name, ty in schema:
        nb = name.encode()
        parts += [_U32.pack(len(nb)), nb, bytes([ty])]
    parts.append(_U32.pack(nrows))
    return b"".join(parts)


def encode_rows(rows, inputs=None):
    """`rows` (rows or dicts) as a buffer in the batch format, and its columns."""
    schema, sigs = _schema(rows, inputs or {})
    if not rows:
        return b"", schema
    e = _Emitter(schema)
    for r, sig in zip(rows, sigs):
        e.add(r, sig)
    return _header(schema, len(rows)) + b"".join(e.parts), schema


class Rows:
    """The rows of one call, for a transform that works on whole batches (see `BatchTransform`):
    `columns` (names), `types` (column type tags), `len()`, `rows[i]` (a `Row`), iteration over
    the rows, and `column(name)`, every row's value of one column as a list. Nothing is read
    past the buffer's header until something asks for a row or a column."""

    def __init__(self, buf):
        self._buf = buf
        self._batch = None

    @property
    def _b(self):
        if self._batch is None:
            self._batch = _Batch(self._buf)
        return self._batch

    @property
    def columns(self):
        return self._b.names

    @property
    def types(self):
        return self._b.types

    def __len__(self):
        return self._b.nrows

    def __getitem__(self, i):
        if not -self._b.nrows <= i < self._b.nrows:
            raise IndexError(i)
        return Row(self._b, i % self._b.nrows)

    def __iter__(self):
        b = self._b
        return (Row(b, r) for r in range(b.nrows))

    def column(self, name):
        b = self._b
        c = b.ix.get(name)
        if c is None:
            raise KeyError(f"no column {name!r}; the columns are {', '.join(b.names)}")
        return b.column(c)


def _run_rows(b, row_fn):
    """Calls `row_fn` on every row of batch `b`. Per input row: what it gave (None: dropped,
    a RowError, or a list of rows), and every row given, in order."""
    shapes, given = [], []
    add_shape, add = shapes.append, given.append
    for r in range(b.nrows):
        row = Row(b, r)
        try:
            r = row_fn(row)
        except RowError as e:
            add_shape(e)
            continue
        except Exception as e:
            raise Err(describe(e))
        if r is None:
            add_shape(None)
        elif type(r) is list:
            add_shape(r)
            given.extend(r)
        else:
            # The input row itself, unchanged, may be kept as it is.
            add_shape(row if r is row and not row._set else 1)
            add(r)
    return shapes, given


def _verdicts(b, shapes, given):
    """The call's output: a verdict per input row and the emitted rows' buffer."""
    w = _wit
    try:
        schema, sigs = _schema(given, b.typed)
        keep_ok = schema == b.schema
        e = _Emitter(schema)
        verdicts, at = [], 0
        keep, drop, one = w.Verdict_Keep(), w.Verdict_Drop(), w.Verdict_Emit(1)
        add_verdict, emit = verdicts.append, e.add
        if not keep_ok and len(given) == len(shapes) and shapes.count(1) == len(shapes):
            # Every row replaced by one (a column added or changed in each): in bulk.
            e.bulk(given, sigs)
            shapes = ()
            verdicts = [one] * len(given)
        for s in shapes:
            if s is None:
                add_verdict(drop)
            elif s == 1 or type(s) is Row:
                if keep_ok and type(s) is Row:
                    add_verdict(keep)
                else:
                    emit(given[at], sigs[at])
                    add_verdict(one)
                at += 1
            elif type(s) is list:
                for i in range(at, at + len(s)):
                    e.add(given[i], sigs[i])
                verdicts.append(w.Verdict_Emit(len(s)))
                at += len(s)
            else:
                verdicts.append(w.Verdict_Error(str(s)))
    except Exception as x:
        raise Err(describe(x))
    if not e.parts and all(v is keep for v in verdicts):
        return w.Output(None, b"")
    emitted = sum(v.value for v in verdicts if type(v) is w.Verdict_Emit)
    rows = _header(schema, emitted) + b"".join(e.parts) if emitted else b""
    return w.Output(verdicts, rows)


def _encoded_world(cls):
    class Exported:
        instance = None

        def init(self, config):
            try:
                Exported.instance = cls(json.loads(config))
            except Exception as e:
                raise Err(describe(e))

        def process(self, rows):
            t = Exported.instance
            if isinstance(t, BatchTransform):
                return _batch_call(t, rows)
            b = _Batch(rows)
            shapes, given = _run_rows(b, t.row)
            return _verdicts(b, shapes, given)

        def finish(self):
            try:
                return encode_rows(list(Exported.instance.finish()))[0]
            except Exception as e:
                raise Err(describe(e))

    return Exported


class BatchTransform:
    """A transform of whole batches (encoded world only): `process(self, rows)` gets `Rows`
    and returns a list of what became of each row, in order, with the same answers as
    `RowTransform.row` (a row or dict, None, a list, or a RowError instance); or `None` when
    every row is kept as it is (nothing is decoded or sent back)."""

    def __init__(self, config):
        pass

    def process(self, rows):
        raise NotImplementedError

    def finish(self):
        return []


def _batch_call(t, buf):
    rows = Rows(buf)
    try:
        answers = t.process(rows)
    except RowError as e:
        raise Err(str(e))
    except Exception as e:
        raise Err(describe(e))
    if answers is None:
        return _wit.Output(None, b"")
    if len(answers) != len(rows):
        raise Err(f"process answered {len(answers)} times for {len(rows)} rows")
    shapes, given = [], []
    b = rows._b if rows._batch is not None else None
    for i, r in enumerate(answers):
        if r is None or isinstance(r, RowError):
            shapes.append(r)
        elif type(r) is list:
            shapes.append(r)
            given.extend(r)
        else:
            keep = type(r) is Row and r._b is b and r._r == i and not r._set
            shapes.append(r if keep else 1)
            given.append(r)
    b = rows._b
    return _verdicts(b, shapes, given)


# ---------------------------------------------------------------------------------------------
# The values world (`--world transform`): rows as dicts of values lowered one by one.
# ---------------------------------------------------------------------------------------------


def _values_world(cls):
    t = _t

    def _value(v):
        return v.value

    # Dispatch on the exact type: one dict lookup per value, not a chain of isinstance checks.
    to_python = {
        t.Value_Null: lambda v: None,
        t.Value_Boolean: _value,
        t.Value_Int: _value,
        t.Value_Uint: _value,
        t.Value_Float: _value,
        t.Value_Decimal: lambda v: decimal.Decimal(v.value),
        t.Value_Text: _value,
        t.Value_Bytes: _value,
        t.Value_Date: lambda v: _EPOCH_DAY + datetime.timedelta(days=v.value),
        t.Value_Datetime: lambda v: _EPOCH + datetime.timedelta(microseconds=v.value),
        t.Value_Time: lambda v: datetime.timedelta(microseconds=v.value),
        t.Value_Timestamp: lambda v: _EPOCH_UTC + datetime.timedelta(microseconds=v.value),
        t.Value_Point: _value,
        t.Value_Nested: lambda v: json.loads(v.value),
    }

    class Exported:
        instance = None

        def init(self, config):
            try:
                Exported.instance = cls(json.loads(config))
            except Exception as e:
                raise Err(describe(e))

        def process(self, input):
            names = [c.name for c in input.columns]
            types = {c.name: c.ty for c in input.columns}
            row, convert = Exported.instance.row, to_python
            # Per input row: how many output dicts it gave (None: dropped), or its error.
            shapes, dicts = [], []
            for values in input.rows:
                try:
                    r = row({n: convert[type(v)](v) for n, v in zip(names, values)})
                except RowError as e:
                    shapes.append(e)
                    continue
                except Exception as e:
                    raise Err(describe(e))
                if r is None:
                    shapes.append(None)
                elif isinstance(r, list):
                    shapes.append(len(r))
                    dicts.extend(r)
                else:
                    shapes.append(-1)
                    dicts.append(r)
            try:
                columns, rows = _values_batch(dicts, types)
            except Exception as e:
                raise Err(describe(e))
            outcomes, at = [], 0
            for s in shapes:
                if s is None:
                    outcomes.append(t.Outcome_Drop())
                elif isinstance(s, RowError):
                    outcomes.append(t.Outcome_Error(str(s)))
                elif s == -1:
                    outcomes.append(t.Outcome_Replace(rows[at]))
                    at += 1
                else:
                    outcomes.append(t.Outcome_Expand(rows[at : at + s]))
                    at += s
            return t.Output(columns, outcomes)

        def finish(self):
            try:
                columns, rows = _values_batch(Exported.instance.finish(), {})
            except Exception as e:
                raise Err(describe(e))
            return t.Batch(columns, rows)

    return Exported


def _value_type(x):
    """The WIT value and column type for a Python value (values world)."""
    t = _t
    if x is None:
        return t.Value_Null(), t.ColumnType.ANY
    if isinstance(x, bool):
        return t.Value_Boolean(x), t.ColumnType.BOOLEAN
    if isinstance(x, int):
        if x >= 2**63:
            return t.Value_Uint(x), t.ColumnType.UINT
        return t.Value_Int(x), t.ColumnType.INT
    if isinstance(x, float):
        return t.Value_Float(x), t.ColumnType.FLOAT
    if isinstance(x, str):
        return t.Value_Text(x), t.ColumnType.TEXT
    if isinstance(x, decimal.Decimal):
        return t.Value_Decimal(str(x)), t.ColumnType.DECIMAL
    if isinstance(x, (bytes, bytearray)):
        return t.Value_Bytes(bytes(x)), t.ColumnType.BYTES
    # datetime before date: a datetime is also a date.
    if isinstance(x, datetime.datetime):
        if x.tzinfo is not None:
            return t.Value_Timestamp(_micros(x - _EPOCH_UTC)), t.ColumnType.TIMESTAMP
        return t.Value_Datetime(_micros(x - _EPOCH)), t.ColumnType.DATETIME
    if isinstance(x, datetime.date):
        return t.Value_Date((x - _EPOCH_DAY).days), t.ColumnType.DATE
    if isinstance(x, datetime.timedelta):
        return t.Value_Time(_micros(x)), t.ColumnType.TIME
    if isinstance(x, t.Point):
        return t.Value_Point(x), t.ColumnType.POINT
    if isinstance(x, (list, dict)):
        try:
            text = json.dumps(x, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise RowError(f"a list or map holds what JSON cannot: {e}")
        return t.Value_Nested(text), t.ColumnType.NESTED
    raise RowError(f"cannot pass a {type(x).__name__} on: {x!r}")


def _to_value(x, ty):
    t = _t
    if isinstance(x, datetime.datetime):
        if ty == t.ColumnType.DATETIME and x.tzinfo is not None:
            x = x.astimezone(_UTC).replace(tzinfo=None)
        elif ty == t.ColumnType.TIMESTAMP and x.tzinfo is None:
            x = x.replace(tzinfo=_UTC)  # a naive time in a TIMESTAMP column is UTC
    v, _ = _value_type(x)
    if ty == t.ColumnType.UINT and isinstance(v, t.Value_Int) and x >= 0:
        return t.Value_Uint(x)
    return v


def _lowerer(ty):
    """Lowering by column type, fast for a value of that type; anything else by its own type."""
    t = _t
    if ty == t.ColumnType.INT:
        return lambda x: (
            t.Value_Int(x) if type(x) is int and -(2**63) <= x < 2**63 else _to_value(x, ty)
        )
    if ty == t.ColumnType.TEXT:
        return lambda x: t.Value_Text(x) if type(x) is str else _to_value(x, ty)
    if ty == t.ColumnType.FLOAT:
        return lambda x: t.Value_Float(x) if type(x) is float else _to_value(x, ty)
    if ty == t.ColumnType.DATETIME:
        return lambda x: (
            t.Value_Datetime(_micros(x - _EPOCH))
            if type(x) is datetime.datetime and x.tzinfo is None
            else _to_value(x, ty)
        )
    return lambda x: _to_value(x, ty)


def _values_batch(dicts, types):
    """Output columns and rows for dicts: every key any of them has, in the order keys first
    appear. A key that was an input column keeps that column's type; a new one takes the type
    of its first non-None value. A key a row lacks is NULL in that row."""
    t = _t
    index = {}  # name -> column type
    known = ()
    for d in dicts:
        if not isinstance(d, dict):
            raise RowError(f"expected a dict for a row, got {type(d).__name__}")
        keys = tuple(d)
        if keys == known and t.ColumnType.ANY not in index.values():
            continue
        known = keys
        for k in keys:
            if not isinstance(k, str):
                raise RowError(f"a column name must be text, not {k!r}")
            if index.get(k, t.ColumnType.ANY) == t.ColumnType.ANY:
                index[k] = types[k] if k in types else _value_type(d[k])[1]
    columns = [t.Column(k, ty) for k, ty in index.items()]
    pairs = [(c.name, _lowerer(c.ty)) for c in columns]
    rows = [[lower(d.get(k)) for k, lower in pairs] for d in dicts]
    return columns, rows
