"""Plain-Python stand-ins for the modules a Python transform imports inside the component:
`etlhost_transform` (the SDK's row and batch APIs) and `wit_world` (the bindings componentize-py
generates). Only what a transform touches natively: the row function, or `process` on a batch
whose `rows` is a list of value lists."""

import sys
import types as _modules
from dataclasses import dataclass


class RowError(Exception):
    pass


class RowTransform:
    def __init__(self, config):
        pass

    def row(self, row):
        raise NotImplementedError

    def finish(self):
        return []


class BatchTransform:
    def __init__(self, config):
        pass

    def process(self, rows):
        raise NotImplementedError

    def finish(self):
        return []


def export(cls):
    """As the SDK's `export`, but the harness is given the class itself to call `row` on."""

    class Exported:
        transform_class = cls

    return Exported


@dataclass
class Column:
    name: str
    ty: object


@dataclass
class Batch:
    columns: list
    rows: list


@dataclass
class Output:
    columns: list
    outcomes: list


class Outcome_Keep:
    pass


class Outcome_Drop:
    pass


types = _modules.ModuleType("wit_world.imports.types")
for _c in (Column, Batch, Output, Outcome_Keep, Outcome_Drop):
    setattr(types, _c.__name__, _c)


class WitWorld:
    pass


def install():
    sdk = _modules.ModuleType("etlhost_transform")
    sdk.RowError, sdk.RowTransform, sdk.export = RowError, RowTransform, export
    sdk.BatchTransform = BatchTransform
    world = _modules.ModuleType("wit_world")
    world.WitWorld = WitWorld
    imports = _modules.ModuleType("wit_world.imports")
    imports.types = types
    world.imports = imports
    sys.modules.update({
        "etlhost_transform": sdk,
        "wit_world": world,
        "wit_world.imports": imports,
        "wit_world.imports.types": types,
    })
