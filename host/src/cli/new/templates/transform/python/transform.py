"""`{{name}}`: upper-cases a text column and adds its length in characters as a new column
`<column>_length`. A NULL stays NULL (its length too); a value that is not text sends its row to
the dead-letter file.

    config: {column: name}     # the default

Each row arrives as a dict of Python values (see etlhost_transform.py for the types). `row`
returns the row, None to drop it, a list of dicts to expand it, or raises RowError to send it to
the dead-letter file; any other exception fails the call, and etlhost narrows it down to the row
that raised it.
"""

import etlhost_transform as et


class Upper(et.RowTransform):
    def __init__(self, config):
        unknown = set(config) - {"column"}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))} (known: column)")
        self.column = config.get("column", "name")
        self.length = f"{self.column}_length"

    def row(self, row):
        value = row[self.column]
        if value is None:
            row[self.length] = None
        elif isinstance(value, str):
            row[self.column] = value.upper()
            row[self.length] = len(value)
        else:
            raise et.RowError(f"{self.column} is not text: {value!r}")
        return row


# componentize-py exports the class named WitWorld of the module it is given.
WitWorld = et.export(Upper)
