"""etlhost transform SDK for Python guests, built into a WASM component by componentize-py.

Write a row function and export it; every row arrives as a dict of Python values:

    import etlhost_transform as et

    class Upper(et.RowTransform):
        def __init__(self, config):
            self.column = config.get("column", "name")

        def row(self, row):
            row[self.column] = row[self.column].upper()
            return row              # or None to drop it, a list of dicts to expand it,
                                    # or raise et.RowError("why") to dead-letter it

    WitWorld = et.export(Upper)

Values: NULL is None, integers int, floats float, DECIMAL decimal.Decimal, text str, bytes bytes,
DATE datetime.date, DATETIME datetime.datetime (no time zone), TIMESTAMP datetime.datetime in UTC
(tzinfo=datetime.timezone.utc; any aware datetime becomes a TIMESTAMP, except in a DATETIME
column, where it is passed on in UTC without a zone; a naive one in a TIMESTAMP column is taken
as UTC), TIME datetime.timedelta, points
etlhost_transform.Point(srid, x, y, z) (z None for 2D), lists and maps (SET members, JSON read as
values) Python lists and dicts of None, bool, int, float and str. A column keeps its type when its
value keeps its Python type; a new column takes the type of its first non-None value.

Converting to dicts costs time (see README, "Transforms"). For full speed, implement the
`wit_world.WitWorld` protocol directly on whole batches, as `identity.py` does.
"""

import datetime
import decimal
import json
import traceback

from componentize_py_types import Err
from wit_world.imports import types as t

_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_UTC = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_EPOCH_DAY = datetime.date(1970, 1, 1)

# A point: `Point(srid, x, y, z)`, z None for a 2D point; srid 4326 has x = longitude.
Point = t.Point


class RowError(Exception):
    """This row cannot be transformed: it goes to the dead-letter file with this reason."""


class RowTransform:
    """Subclass with `__init__(self, config: dict)` and `row(self, row: dict)`."""

    def __init__(self, config):
        pass

    def row(self, row):
        raise NotImplementedError

    def finish(self):
        """Rows held back until the end of the stream, as dicts."""
        return []


def _value(v):
    return v.value


# Dispatch on the exact type: one dict lookup per value, not a chain of isinstance checks.
_TO_PYTHON = {
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


def to_python(v):
    """A WIT value as a Python value."""
    return _TO_PYTHON[type(v)](v)


def _micros(d):
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _value_type(x):
    """The WIT value and column type for a Python value."""
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
    if isinstance(x, datetime.datetime):
        if ty == t.ColumnType.DATETIME and x.tzinfo is not None:
            x = x.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        elif ty == t.ColumnType.TIMESTAMP and x.tzinfo is None:
            x = x.replace(tzinfo=datetime.timezone.utc)  # a naive time in a TIMESTAMP column is UTC
    v, _ = _value_type(x)
    if ty == t.ColumnType.UINT and isinstance(v, t.Value_Int) and x >= 0:
        return t.Value_Uint(x)
    return v


# Lowering by column type, fast for a value of that type; anything else by its own type.
_LOWER = {
    t.ColumnType.INT: lambda x: (
        t.Value_Int(x)
        if type(x) is int and -(2**63) <= x < 2**63
        else _to_value(x, t.ColumnType.INT)
    ),
    t.ColumnType.TEXT: lambda x: (
        t.Value_Text(x) if type(x) is str else _to_value(x, t.ColumnType.TEXT)
    ),
    t.ColumnType.FLOAT: lambda x: (
        t.Value_Float(x) if type(x) is float else _to_value(x, t.ColumnType.FLOAT)
    ),
    t.ColumnType.DATETIME: lambda x: (
        t.Value_Datetime(_micros(x - _EPOCH))
        if type(x) is datetime.datetime and x.tzinfo is None
        else _to_value(x, t.ColumnType.DATETIME)
    ),
}


def _lowerer(ty):
    return _LOWER.get(ty) or (lambda x: _to_value(x, ty))


def _batch(dicts, types):
    """Output columns and rows for dicts: every key any of them has, in the order keys first
    appear. A key that was an input column keeps that column's type; a new one takes the type
    of its first non-None value. A key a row lacks is NULL in that row."""
    index = {}  # name -> column type
    known = ()
    for d in dicts:
        if not isinstance(d, dict):
            raise RowError(f"expected a dict for a row, got {type(d).__name__}")
        keys = tuple(d)
        # Most dicts have the keys of the one before: one tuple comparison, unless a column's
        # type is still open (all its values so far None).
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


def describe(e):
    """An exception as the call's `err` text, with where it was raised: the host retries the
    rows apart down to the one at fault and dead-letters it with this reason."""
    if isinstance(e, RowError):
        return str(e)
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return f"{type(e).__name__}: {e}"
    file = frames[-1].filename.rsplit("/", 1)[-1]
    return f"{type(e).__name__}: {e} ({file}, line {frames[-1].lineno})"


def export(cls):
    """The `WitWorld` class componentize-py exports, running `cls` row by row."""

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
            row, convert = Exported.instance.row, _TO_PYTHON
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
                columns, rows = _batch(dicts, types)
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
                columns, rows = _batch(Exported.instance.finish(), {})
            except Exception as e:
                raise Err(describe(e))
            return t.Batch(columns, rows)

    return Exported
