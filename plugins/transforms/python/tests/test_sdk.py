"""The Python SDK's batch format and row semantics, run by native CPython outside a component
(`python3 test_sdk.py`; the e2e test `transform_python` runs it). The bindings componentize-py
would generate for the `encoded-transform` world are stood in for by the few classes the SDK
uses. Fixtures are written byte by byte from the table in `plugins/sdk/src/codec.rs`."""

import datetime
import decimal
import os
import struct
import sys
import types
import unittest
from dataclasses import dataclass
from typing import Optional


def _stub_bindings():
    cpt = types.ModuleType("componentize_py_types")

    class Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value

    cpt.Err = Err
    enc = types.ModuleType("wit_world.imports.encoded")
    for name in ("Verdict_Keep", "Verdict_Drop"):
        setattr(enc, name, dataclass(type(name, (), {})))
    enc.Verdict_Emit = dataclass(type("Verdict_Emit", (), {"__annotations__": {"value": int}}))
    enc.Verdict_Error = dataclass(type("Verdict_Error", (), {"__annotations__": {"value": str}}))
    enc.Output = dataclass(type("Output", (), {
        "__annotations__": {"verdicts": Optional[list], "rows": bytes}}))
    imports = types.ModuleType("wit_world.imports")
    imports.encoded = enc
    world = types.ModuleType("wit_world")
    world.imports = imports
    sys.modules.update({"componentize_py_types": cpt, "wit_world": world,
                        "wit_world.imports": imports, "wit_world.imports.encoded": enc})


_stub_bindings()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import etlhost_transform as et  # noqa: E402

w = sys.modules["wit_world.imports.encoded"]
Err = sys.modules["componentize_py_types"].Err


def s(text):
    b = text.encode()
    return struct.pack("<I", len(b)) + b


def buffer(columns, rows):
    """A batch buffer of `columns` ((name, type tag), ...) and rows of encoded values."""
    head = b"ETB2" + struct.pack("<I", len(columns))
    head += b"".join(s(n) + bytes([t]) for n, t in columns)
    return head + struct.pack("<I", len(rows)) + b"".join(b"".join(r) for r in rows)


UTC = datetime.timezone.utc
# Every tag: (column, type, its bytes, the Python value it decodes to).
EVERY = [
    ("n", 0, b"\x00", None),
    ("flag", 1, b"\x01\x01", True),
    ("i", 2, b"\x02" + struct.pack("<q", -2**63), -2**63),
    ("u", 3, b"\x03" + struct.pack("<Q", 2**64 - 1), 2**64 - 1),
    ("f", 4, b"\x04" + struct.pack("<d", -0.5), -0.5),
    ("dec", 5, b"\x05" + s("12345678901234567890.1230"),
     decimal.Decimal("12345678901234567890.1230")),
    ("t", 6, b"\x06" + s("中文 😀"), "中文 😀"),
    ("by", 7, b"\x07" + struct.pack("<I", 3) + b"\x00\xff\x07", b"\x00\xff\x07"),
    ("d", 8, b"\x08" + struct.pack("<i", -3), datetime.date(1969, 12, 29)),
    ("dt", 9, b"\x09" + struct.pack("<q", 1_700_000_000_000_001),
     datetime.datetime(2023, 11, 14, 22, 13, 20, 1)),
    ("tm", 10, b"\x0a" + struct.pack("<q", -1), datetime.timedelta(microseconds=-1)),
    ("ts", 11, b"\x0b" + struct.pack("<q", -1_000_001),
     datetime.datetime(1969, 12, 31, 23, 59, 58, 999999, tzinfo=UTC)),
    ("p", 12, b"\x0c" + struct.pack("<IddB", 4326, -0.1, 51.5, 0), et.Point(4326, -0.1, 51.5)),
    ("pz", 12, b"\x0c" + struct.pack("<IddBd", 0, 1.0, 2.0, 1, -3.5), et.Point(0, 1.0, 2.0, -3.5)),
    ("l", 13, b"\x0d" + struct.pack("<I", 3) + b"\x06" + s("a") + b"\x00"
     + b"\x05" + s("1.5"), ["a", None, decimal.Decimal("1.5")]),
    ("m", 0, b"\x0e" + struct.pack("<I", 2) + s("z") + b"\x0d" + struct.pack("<I", 1)
     + b"\x0e" + struct.pack("<I", 0) + s("a") + b"\x03" + struct.pack("<Q", 7),
     {"z": [{}], "a": et.UInt(7)}),
    ("iv", 15, b"\x0f" + struct.pack("<qqq", 14, 3, 3_723_500_000), "P1Y2M3DT1H2M3.5S"),
    ("zt", 16, b"\x10" + struct.pack("<qi", 45_000_000_000, 19_800), "12:30:00+05:30"),
]
COLUMNS = [(n, t) for n, t, _, _ in EVERY]


def every_buffer():
    return buffer(COLUMNS, [[e for _, _, e, _ in EVERY], [b"\x00"] * len(EVERY)])


def run(cls, buf, config="{}"):
    exported = et.export(cls)()
    exported.init(config)
    return exported.process(buf)


def decoded(out_rows):
    """A returned buffer as (columns, rows of Python values)."""
    rows = et.Rows(out_rows)
    return list(zip(rows.columns, rows.types)), [dict(r.items()) for r in rows]


class Same(et.RowTransform):
    def row(self, row):
        return row


class Touch(et.RowTransform):
    """Sets every value to itself: each is encoded again by the SDK."""

    def row(self, row):
        for k in list(row):
            row[k] = row[k]
        return row


class Codec(unittest.TestCase):
    def test_every_tag_decodes_to_its_python_value(self):
        rows = et.Rows(every_buffer())
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows.columns, tuple(n for n, _ in COLUMNS))
        row = rows[0]
        for name, _, _, want in EVERY:
            got = row[name]
            self.assertEqual(got, want, name)
            self.assertIs(type(got), type(want) if name not in ("iv", "zt") else type(got))
        self.assertIsInstance(row["iv"], et.Interval)
        self.assertEqual((row["iv"].months, row["iv"].days), (14, 3))
        self.assertIsInstance(row["zt"], et.ZonedTime)
        self.assertEqual(row["zt"].offset_seconds, 19_800)
        self.assertTrue(all(rows[1][n] is None for n, _ in COLUMNS))
        self.assertEqual(rows.column("i"), [-2**63, None])

    def test_every_value_encodes_to_the_bytes_it_came_as(self):
        for name, ty, raw, value in EVERY:
            row = et.Rows(every_buffer())[0]
            self.assertEqual(et._enc(row[name], ty), raw, name)
            if name not in ("iv", "zt"):
                self.assertEqual(et._enc(value, ty), raw, name)

    def test_interval_and_zoned_time_texts_are_the_hosts(self):
        cases = [((0, 0, 0), "PT0S"), ((-14, 0, 0), "P-1Y-2M"), ((0, 0, -1), "PT-0.000001S"),
                 ((1, -2, 3_600_000_000), "P1M-2DT1H"), ((0, 0, -61_000_000), "PT-1M-1S")]
        for parts, text in cases:
            self.assertEqual(et.Interval(*parts), text)
        self.assertEqual(et.ZonedTime(0, 0), "00:00:00Z")
        self.assertEqual(et.ZonedTime(1, -3600 - 61), "00:00:00.000001-01:01:01")

    def test_a_row_kept_whole_is_kept_without_its_bytes(self):
        out = run(Same, every_buffer())
        self.assertIsNone(out.verdicts)
        self.assertEqual(out.rows, b"")

    def test_every_value_set_again_comes_back_as_it_was(self):
        buf = every_buffer()
        out = run(Touch, buf)
        self.assertEqual(out.verdicts, [w.Verdict_Emit(1), w.Verdict_Emit(1)])
        self.assertEqual(out.rows, buf)


def people(n):
    cols = [("id", 2), ("name", 6), ("age", 2)]
    rows = []
    for i in range(1, n + 1):
        age = b"\x00" if i % 3 == 0 else b"\x02" + struct.pack("<q", 20 + i)
        rows.append([b"\x02" + struct.pack("<q", i), b"\x06" + s(f"p{i}"), age])
    return buffer(cols, rows)


class Answers(unittest.TestCase):
    def test_a_new_column_takes_the_type_of_its_first_value(self):
        class Label(et.RowTransform):
            def row(self, row):
                row["label"] = None if row["id"] == 1 else f"#{row['id']}"
                row["age"] = row["age"]
                return row

        out = run(Label, people(3))
        self.assertEqual(out.verdicts, [w.Verdict_Emit(1)] * 3)
        cols, rows = decoded(out.rows)
        self.assertEqual(cols, [("id", 2), ("name", 6), ("age", 2), ("label", 6)])
        self.assertEqual(rows[0], {"id": 1, "name": "p1", "age": 21, "label": None})
        self.assertEqual(rows[2], {"id": 3, "name": "p3", "age": None, "label": "#3"})

    def test_columns_added_to_every_row_go_in_bulk(self):
        class Add(et.RowTransform):
            def row(self, row):
                row["tag"] = f"t{row['id']}"
                row["n"] = row["id"] * 2 if row["id"] != 2 else None
                return row

        out = run(Add, people(3))
        self.assertEqual(out.verdicts, [w.Verdict_Emit(1)] * 3)
        cols, rows = decoded(out.rows)
        self.assertEqual(cols, [("id", 2), ("name", 6), ("age", 2), ("tag", 6), ("n", 2)])
        self.assertEqual(rows[1], {"id": 2, "name": "p2", "age": 22, "tag": "t2", "n": None})
        self.assertEqual(rows[2], {"id": 3, "name": "p3", "age": None, "tag": "t3", "n": 6})

    def test_drop_error_expand_delete_and_dicts(self):
        class Mixed(et.RowTransform):
            def row(self, row):
                i = row["id"]
                if i == 1:
                    return None
                if i == 2:
                    raise et.RowError("no two")
                if i == 3:
                    return [row, {"id": 30, "extra": 1.5}]
                del row["name"]
                return row

        out = run(Mixed, people(4))
        self.assertEqual(out.verdicts, [w.Verdict_Drop(), w.Verdict_Error("no two"),
                                        w.Verdict_Emit(2), w.Verdict_Emit(1)])
        cols, rows = decoded(out.rows)
        self.assertEqual(cols, [("id", 2), ("name", 6), ("age", 2), ("extra", 4)])
        self.assertEqual(rows, [
            {"id": 3, "name": "p3", "age": None, "extra": None},
            {"id": 30, "name": None, "age": None, "extra": 1.5},
            {"id": 4, "name": None, "age": 24, "extra": None},
        ])

    def test_a_row_reads_like_a_dict(self):
        row = et.Rows(people(1))[0]
        self.assertEqual(list(row), ["id", "name", "age"])
        self.assertEqual(dict(row.items()), {"id": 1, "name": "p1", "age": 21})
        self.assertEqual(row, {"id": 1, "name": "p1", "age": 21})
        self.assertIn("name", row)
        self.assertEqual(row.get("nope", 7), 7)
        with self.assertRaises(KeyError):
            row["nope"]
        row["x"] = 1
        self.assertEqual(row.pop("name"), "p1")
        self.assertNotIn("name", row)
        self.assertEqual(list(row.keys()), ["id", "age", "x"])
        self.assertEqual(len(row), 3)
        self.assertEqual(row.setdefault("y", 2), 2)
        row.update({"x": 5})
        self.assertEqual(dict(row.items()), {"id": 1, "age": 21, "x": 5, "y": 2})

    def test_a_list_changed_in_place_is_passed_on(self):
        buf = buffer([("tags", 13)], [[b"\x0d" + struct.pack("<I", 1) + b"\x06" + s("a")]])

        class Tag(et.RowTransform):
            def row(self, row):
                row["tags"].append(datetime.date(2024, 2, 29))
                return row

        _, rows = decoded(run(Tag, buf).rows)
        self.assertEqual(rows, [{"tags": ["a", datetime.date(2024, 2, 29)]}])

    def test_datetimes_follow_their_column(self):
        aware = datetime.datetime(2024, 1, 2, 5, 4, 5, tzinfo=datetime.timezone(
            datetime.timedelta(hours=2)))
        naive = datetime.datetime(2024, 1, 2, 3, 4, 5)
        micros = (19724 * 86400 + 3 * 3600 + 4 * 60 + 5) * 1_000_000
        self.assertEqual(et._enc(aware, 9), b"\x09" + struct.pack("<q", micros))
        self.assertEqual(et._enc(aware, 0), b"\x0b" + struct.pack("<q", micros))
        self.assertEqual(et._enc(naive, 11), b"\x0b" + struct.pack("<q", micros))
        self.assertEqual(et._enc(5, 3), b"\x03" + struct.pack("<Q", 5))

    def test_an_exception_fails_the_call_naming_where(self):
        class Oops(et.RowTransform):
            def row(self, row):
                return row["nope"]

        with self.assertRaises(Err) as e:
            run(Oops, people(1))
        self.assertRegex(e.exception.value, r"^KeyError: 'nope' \(test_sdk.py, line \d+\)$")

    def test_a_value_that_cannot_pass_fails_the_call(self):
        class Bad(et.RowTransform):
            def row(self, row):
                row["s"] = {1, 2}
                return row

        with self.assertRaises(Err) as e:
            run(Bad, people(1))
        self.assertEqual(e.exception.value, "cannot pass a set on: {1, 2}")

    def test_finish_returns_held_rows(self):
        class Hold(et.RowTransform):
            def __init__(self, config):
                self.held = []

            def row(self, row):
                self.held.append(row)
                return None

            def finish(self):
                return self.held + [{"id": 9}]

        exported = et.export(Hold)()
        exported.init("{}")
        exported.process(people(2))
        cols, rows = decoded(exported.finish())
        self.assertEqual(cols, [("id", 2), ("name", 6), ("age", 2)])
        self.assertEqual([r["id"] for r in rows], [1, 2, 9])

    def test_a_batch_transform_sees_columns(self):
        class Adults(et.BatchTransform):
            def process(self, rows):
                return [r if (a or 0) >= 22 else None for r, a in zip(rows, rows.column("age"))]

        out = run(Adults, people(3))
        self.assertEqual(out.verdicts, [w.Verdict_Drop(), w.Verdict_Keep(), w.Verdict_Drop()])


if __name__ == "__main__":
    unittest.main()
