"""`py-full-name`: a row-by-row Python transform.

Adds `full_name` ("First Last", each word capitalised) from two columns, drops rows marked
inactive, and dead-letters rows that have no last name.

    transforms:
      - name: names
        component: ../target/transforms/py-full-name.wasm
        config: {first: first_name, last: last_name, skip_when: inactive}
"""

import etlhost_transform as et


class FullName(et.RowTransform):
    def __init__(self, config):
        unknown = set(config) - {"first", "last", "into", "skip_when"}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        self.first = config.get("first", "first_name")
        self.last = config.get("last", "last_name")
        self.into = config.get("into", "full_name")
        self.skip_when = config.get("skip_when")

    def row(self, row):
        if self.skip_when and row.get(self.skip_when):
            return None
        last = row.get(self.last)
        if not last:
            raise et.RowError(f"no {self.last} for id {row.get('id')}")
        first = row.get(self.first) or ""
        row[self.into] = f"{first} {last}".strip().title()
        return row


WitWorld = et.export(FullName)
