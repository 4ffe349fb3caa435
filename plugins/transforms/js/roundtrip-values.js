// `js-roundtrip-values`: `js-roundtrip` built for the values world (`transform`), where each
// value crosses as a WIT value: the SDK's row functions keep working there.
// world: transform

export { init, process, finish } from './roundtrip.js';
