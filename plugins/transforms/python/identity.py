"""`py-identity`: passes every row on unchanged, without reading a value.

What a Python transform costs at the least: the benchmark's Python row (`cargo xtask bench
transforms`). A `BatchTransform` whose `process` returns None keeps every row: the batch crosses
into the guest as one buffer and nothing comes back but that answer.
"""

import etlhost_transform as et


class Identity(et.BatchTransform):
    def process(self, rows):
        return None


WitWorld = et.export(Identity)
