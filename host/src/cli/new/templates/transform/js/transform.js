// `{{name}}`: upper-cases a text column and adds its length in characters as a new column
// `<column>_length`. A NULL stays NULL (its length too); a value that is not text sends its row to
// the dead-letter file.
//
//   config: {column: name}     # the default
//
// Each row arrives as an object of JS values (see etlhost-transform.js for the types). The row
// function returns the row, null to drop it, an array of objects to expand it, or throws a
// RowError to send it to the dead-letter file; any other exception fails the call, and etlhost
// narrows it down to the row that threw it.

import { rowTransform, RowError } from './etlhost-transform.js';

export const { init, process, finish } = rowTransform((config) => {
  const unknown = Object.keys(config).filter((k) => k !== 'column');
  if (unknown.length) throw `unknown config keys: ${unknown.sort().join(', ')} (known: column)`;
  const column = config.column ?? 'name';
  const length = `${column}_length`;
  return (row) => {
    const value = row[column];
    if (value === null || value === undefined) {
      row[length] = null;
    } else if (typeof value === 'string') {
      row[column] = value.toUpperCase();
      // Characters, not UTF-16 units: as Python's len and Rust's chars().count() count them.
      row[length] = [...value].length;
    } else {
      throw new RowError(`${column} is not text: ${String(value)}`);
    }
    return row;
  };
});
