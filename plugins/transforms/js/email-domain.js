// `js-email-domain`: a row-by-row JavaScript transform.
//
// Adds the lower-cased domain of an e-mail column, drops rows whose domain is excluded, and
// dead-letters rows whose address has no `@`.
//
//   transforms:
//     - name: domains
//       component: ../target/transforms/js-email-domain.wasm
//       config: {column: email, into: email_domain, exclude: [example.org]}

import { rowTransform, RowError } from './etlhost-transform.js';

export const { init, process, finish } = rowTransform((config) => {
  const unknown = Object.keys(config).filter((k) => !['column', 'into', 'exclude'].includes(k));
  if (unknown.length) throw `unknown config keys: ${unknown.sort().join(', ')}`;
  const column = config.column ?? 'email';
  const into = config.into ?? 'email_domain';
  const exclude = new Set((config.exclude ?? []).map((d) => d.toLowerCase()));
  return (row) => {
    const email = row[column];
    const at = typeof email === 'string' ? email.lastIndexOf('@') : -1;
    if (at < 0) throw new RowError(`${column} ${JSON.stringify(email)} has no @ (id ${row.id})`);
    const domain = email.slice(at + 1).toLowerCase();
    if (exclude.has(domain)) return null;
    row[into] = domain;
    return row;
  };
});
