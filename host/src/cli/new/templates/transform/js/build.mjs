// Builds src/{{name}}.js into the WASM component {{name}}.wasm: `npm run build`. Through
// componentize-js's JS API, as etlhost builds its own JS transforms; paths are resolved against
// this file's folder, so the build works from anywhere in the project.

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(here, 'src/{{name}}.js'),
  witPath: resolve(here, 'wit'),
  worldName: 'transform',
  // A transform has no business serving or fetching HTTP; stdio stays, so that a failing
  // transform's console.error output explains its trap.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(resolve(here, '{{name}}.wasm'), component);
console.log(`built {{name}}.wasm: ${component.length} bytes in ${Date.now() - started} ms`);
