// Module resolution for native.mjs: a transform's `./etlhost-transform.js` (the SDK, which needs
// the component's value types) resolves to the native stand-in next to this file.

const STAND_IN = new URL('./etlhost-transform.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === './etlhost-transform.js') return { url: STAND_IN, shortCircuit: true };
  return next(specifier, context);
}
