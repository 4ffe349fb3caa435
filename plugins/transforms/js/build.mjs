// Builds the JavaScript transforms into WASM components with componentize-js's JS API (its
// command line fails here). Run by `cargo xtask build`: node build.mjs <wit dir> <out dir> <name>...
// Each <name>.js becomes <out dir>/js-<name>.wasm.
//
// The world a transform is built for: the one a `// world: <name>` line of its source names, else
// `encoded-transform` for one made by the SDK's `rowTransform` (it serves both worlds; the encoded
// one crosses a batch as one buffer), else `transform` (a module exporting the values world's
// functions itself, as transforms written before the encoded world do).

import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export function worldOf(source) {
  const named = /^\/\/ world: ([a-z-]+)\s*$/m.exec(source);
  if (named) return named[1];
  return /\browTransform\s*\(/.test(source) ? 'encoded-transform' : 'transform';
}

const [witPath, outDir, ...names] = process.argv.slice(2);
for (const name of names) {
  const started = Date.now();
  const sourcePath = resolve(import.meta.dirname, `${name}.js`);
  const worldName = worldOf(await readFile(sourcePath, 'utf8'));
  const { component } = await componentize({
    sourcePath,
    witPath: resolve(witPath),
    worldName,
    // A transform has no business serving or fetching HTTP; stdio stays so that a failing
    // transform's console.error output explains its trap.
    disableFeatures: ['http', 'fetch-event'],
  });
  const out = join(outDir, `js-${name}.wasm`);
  await writeFile(out, component);
  console.log(`built ${out} (${worldName}): ${component.length} bytes in ${Date.now() - started} ms`);
}
