"""`py-identity`: passes every row on unchanged, on whole batches without converting a value.

What a Python transform costs at the least: the benchmark's Python row (`cargo xtask bench
transforms`).
"""

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        pass

    def process(self, input: types.Batch) -> types.Output:
        return types.Output(input.columns, [types.Outcome_Keep()] * len(input.rows))

    def finish(self) -> types.Batch:
        return types.Batch([], [])
