"""`py-roundtrip`: the tests' check of the Python SDK's batch format against the host's.

Every value of every row is read (decoded by the SDK), checked to be of the Python type the SDK
promises for its tag, encoded again by the SDK and compared with the bytes the host sent; the
row is then passed on written from those values, so what reaches the sink went through the
SDK's encoder. A mismatch dead-letters the row naming the column. Config, for the failure paths:
`error_on: ID` dead-letters row `id` ID with a RowError, `raise_on: ID` raises a KeyError there
(the host narrows the failed call down to that row).
"""

import datetime
import decimal

import etlhost_transform as et

# The Python types each tag decodes to (docs/transforms.md, "Python").
PYTHON_TYPES = {
    0: (type(None),), 1: (bool,), 2: (int,), 3: (int,), 4: (float,), 5: (decimal.Decimal,),
    6: (str,), 7: (bytes,), 8: (datetime.date,), 9: (datetime.datetime,),
    10: (datetime.timedelta,), 11: (datetime.datetime,), 12: (et.Point,), 13: (list,),
    14: (dict,), 15: (et.Interval,), 16: (et.ZonedTime,),
}


class Roundtrip(et.RowTransform):
    def __init__(self, config):
        self.error_on = config.get("error_on")
        self.raise_on = config.get("raise_on")

    def row(self, row):
        rid = row.get("id")
        if rid == self.error_on:
            raise et.RowError(f"told to refuse id {rid}")
        if rid == self.raise_on:
            return {}["no such key"]
        b, r = row._b, row._r
        for c, (name, ty) in enumerate(b.schema):
            at = r * b.ncols + c
            raw = b.buf[b.offs[at] : b.offs[at + 1]]
            v = row[name]
            if not isinstance(v, PYTHON_TYPES[raw[0]]):
                raise et.RowError(f"{name}: tag {raw[0]} decoded as a {type(v).__name__}")
            if raw[0] in (9, 11) and (v.tzinfo is None) != (raw[0] == 9):
                raise et.RowError(f"{name}: tag {raw[0]} decoded with tzinfo {v.tzinfo}")
            # An integer keeps its own tag here: the host's sources may give an Int in an
            # unsigned column, which the SDK writes back (as it read it in the values world) as
            # unsigned.
            again = et._enc(v, raw[0] if raw[0] in (et.INT, et.UINT) else ty)
            if again != raw:
                raise et.RowError(f"{name}: {raw.hex()} came back as {again.hex()}")
            row[name] = v
        return row


WitWorld = et.export(Roundtrip)
