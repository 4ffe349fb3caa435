// Builds the JavaScript transforms into WASM components with componentize-js's JS API (its
// command line fails here). Run by `cargo xtask build`: node build.mjs <wit dir> <out dir> <name>...
// Each <name>.js becomes <out dir>/js-<name>.wasm.

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

const [witPath, outDir, ...names] = process.argv.slice(2);
for (const name of names) {
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: resolve(import.meta.dirname, `${name}.js`),
    witPath: resolve(witPath),
    worldName: 'transform',
    // A transform has no business serving or fetching HTTP; stdio stays so that a failing
    // transform's console.error output explains its trap.
    disableFeatures: ['http', 'fetch-event'],
  });
  const out = join(outDir, `js-${name}.wasm`);
  await writeFile(out, component);
  console.log(`built ${out}: ${component.length} bytes in ${Date.now() - started} ms`);
}
