// The wasm column of docs/hotpaths.md: loads the bench build of the server (feature
// `bench-exports`, `wasm-bindgen --target nodejs`, made by bench/hotpaths.py) and times each hot
// path in V8, the engine workerd runs the Worker in. Also times PBKDF2-SHA256 through WebCrypto
// exactly as src/runtime/crypto.rs asks the platform for it (the Worker never hashes passwords
// in wasm). Prints a table on stderr and {"ops": {name: [µs per run, …]}, …} on stdout.
//
//   node bench/hotpaths.mjs <wasm-bindgen out dir> [op …]

import { createRequire, registerHooks } from "node:module";
import path from "node:path";

const [dir, ...wanted] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node bench/hotpaths.mjs <wasm-bindgen out dir> [op …]");
  process.exit(2);
}
// The library's wasm also holds the Worker runtime (the `worker` crate), whose JS glue imports
// workerd's `cloudflare:sockets`. Nothing here calls into it, so an empty module stands in.
const STUB = "file:///matrix-edge-bench/cloudflare-stub.cjs";
registerHooks({
  resolve: (specifier, context, next) =>
    specifier.startsWith("cloudflare:") ? { url: STUB, format: "commonjs", shortCircuit: true } : next(specifier, context),
  load: (url, context, next) =>
    url === STUB ? { format: "commonjs", source: "module.exports = {};", shortCircuit: true } : next(url, context),
});
const wasm = createRequire(import.meta.url)(path.resolve(dir, "matrix_edge.js"));
const pick = (name) => wanted.length === 0 || wanted.includes(name);

const ops = {};
const described = JSON.parse(wasm.bench_hotpath_ops());
for (const [name] of described) {
  // The warm-up and the timing loop run inside wasm (src/hotpaths.rs `samples`).
  if (pick(name)) ops[name] = Array.from(wasm.bench_hotpath_samples(name));
}

// PBKDF2 the way runtime::crypto::pbkdf2_sha256 does it: importKey then deriveBits of 32 bytes
// with a 16-byte salt, at the default and the highest PASSWORD_ITERATIONS. Node runs deriveBits
// on its thread pool, so this is wall time per derivation, one at a time; the process CPU time
// over the same runs is reported alongside as a check.
const pbkdf2Cpu = {};
const { subtle } = globalThis.crypto;
const password = new TextEncoder().encode("correct horse battery staple");
const salt = crypto.getRandomValues(new Uint8Array(16));
async function derive(iterations) {
  const key = await subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
  await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, 256);
}
for (const iterations of [30_000, 100_000]) {
  const name = `pbkdf2_${iterations}`;
  if (!pick(name)) continue;
  for (let i = 0; i < 5; i++) await derive(iterations);
  const samples = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < 25; i++) {
    const t = performance.now();
    await derive(iterations);
    samples.push((performance.now() - t) * 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  pbkdf2Cpu[name] = (cpu.user + cpu.system) / samples.length;
  ops[name] = samples;
}

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => {
  const s = sorted(xs), n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const p90 = (xs) => sorted(xs)[Math.max(0, Math.ceil(0.9 * xs.length) - 1)];
console.error("operation            µs/op median      p90  samples");
for (const [name, xs] of Object.entries(ops)) {
  console.error(`${name.padEnd(20)} ${median(xs).toFixed(1).padStart(12)} ${p90(xs).toFixed(1).padStart(8)} ${String(xs.length).padStart(8)}`);
}
console.log(JSON.stringify({ ops, described: Object.fromEntries(described), pbkdf2_cpu_us: pbkdf2Cpu, node: process.version, v8: process.versions.v8 }));
