// Runs a wasm32-wasip1 test binary under Node's WASI (cargo's target runner for
// `make test-core-wasm`). Any import outside wasi_snapshot_preview1 is refused before the
// module runs: the core crate must not depend on anything a proxy-wasm host lacks.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [, , wasmPath, ...args] = process.argv;
if (!wasmPath) {
  console.error('usage: wasi-runner.mjs <module.wasm> [args…]');
  process.exit(2);
}
const module = await WebAssembly.compile(await readFile(wasmPath));
const unknown = WebAssembly.Module.imports(module).filter(
  (i) => i.module !== 'wasi_snapshot_preview1',
);
if (unknown.length > 0) {
  console.error(`${wasmPath}: imports outside WASI preview1:`, unknown);
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [wasmPath, ...args], env: {}, returnOnExit: true });
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exit(wasi.start(instance));
