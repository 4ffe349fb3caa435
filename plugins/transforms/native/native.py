"""The native baseline of a Python transform: the same source file the component is built from,
run by this machine's CPython over rows already in memory, with the guest-only modules it imports
(`etlhost_transform`, `wit_world`) replaced by the plain-Python stand-ins of `fakes.py`.

    python3 native.py '{"source": ".../full_name.py", "entry": "row", "config": {...},
                        "rows": "target/bench/person_1m.tsv"}'

`rows` is a tab-separated dump with a header line (`mariadb -B`); reading and parsing it is not
timed. Two timings, printed as one JSON line:

- `function_seconds`: the transform over row objects built beforehand (dicts for `entry: row`,
  the `RowTransform.row` function; for `entry: batch`, `process` on batches of 1,000 rows: a
  `BatchTransform`'s on lists of dicts, a module's own `WitWorld` on lists of value lists);
- `with_objects_seconds`: building those objects from the parsed values, then the same.
"""

import datetime
import importlib.util
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakes  # noqa: E402

BATCH = 1000


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        names = f.readline().rstrip("\n").split("\t")
        convert = {"id": int, "created_at": datetime.datetime.fromisoformat}
        parse = [convert.get(n, str) for n in names]
        rows = []
        for line in f:
            fields = line.rstrip("\n").split("\t")
            rows.append(tuple(None if v == "NULL" else p(v) for p, v in zip(parse, fields)))
    return names, rows


def load(source):
    fakes.install()
    spec = importlib.util.spec_from_file_location("transform_under_test", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_rows(module, config, names, rows):
    transform = module.WitWorld.transform_class(config)
    row = transform.row
    dicts = [dict(zip(names, v)) for v in rows]
    start = time.perf_counter()
    out = [row(d) for d in dicts]
    function = time.perf_counter() - start
    start = time.perf_counter()
    out2 = [row(dict(zip(names, v))) for v in rows]
    with_objects = time.perf_counter() - start
    kept = sum(r is not None for r in out)
    sample = next((r for r in out2 if r is not None), None)
    return function, with_objects, kept, sample


def batch_api(module, config, names):
    """`process`, how to make its argument from a slice of value tuples, and how many rows its
    answer keeps: of the SDK's `BatchTransform` (a list of dicts; None keeps all), or of a
    module implementing the world itself (a `Batch` of value lists; an outcome a row)."""
    world = module.WitWorld
    if hasattr(world, "transform_class"):
        process = world.transform_class(config).process

        def make(chunk):
            return [dict(zip(names, v)) for v in chunk]

        def kept(answers, n):
            return n if answers is None else sum(a is not None for a in answers)

        return process, make, kept
    instance = world()
    instance.init(json.dumps(config))
    columns = [fakes.types.Column(n, None) for n in names]

    def make_batch(chunk):
        return fakes.types.Batch(columns, [list(v) for v in chunk])

    def kept_outcomes(out, n):
        return sum(isinstance(o, fakes.types.Outcome_Keep) for o in out.outcomes)

    return instance.process, make_batch, kept_outcomes


def time_batches(module, config, names, rows):
    process, make, kept_of = batch_api(module, config, names)
    chunks = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    batches = [make(c) for c in chunks]
    start = time.perf_counter()
    outs = [process(b) for b in batches]
    function = time.perf_counter() - start
    start = time.perf_counter()
    for c in chunks:
        process(make(c))
    with_objects = time.perf_counter() - start
    kept = sum(kept_of(o, len(c)) for o, c in zip(outs, chunks))
    return function, with_objects, kept, None


def main():
    a = json.loads(sys.argv[1])
    module = load(a["source"])
    names, rows = read_rows(a["rows"])
    timer = {"row": time_rows, "batch": time_batches}[a["entry"]]
    function, with_objects, kept, sample = timer(module, a["config"], names, rows)
    print(json.dumps({
        "rows": len(rows), "kept": kept, "function_seconds": function,
        "with_objects_seconds": with_objects, "sample": repr(sample),
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
