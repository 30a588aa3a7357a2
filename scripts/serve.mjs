// `make dev`'s server (started by scripts/dev.sh, which builds and migrates first): the built
// Worker in local workerd with local D1, Durable Objects and R2, through Miniflare, the library
// `wrangler dev` itself runs. wrangler reads wrangler.toml into Miniflare's options, so the
// bindings, Durable Object classes and compatibility settings are the ones `wrangler deploy`
// uploads. Unlike `wrangler dev`, nothing stands between the client and workerd: wrangler dev
// puts a proxy worker in a second workerd process in front of every request (about 4 ms a
// request here, docs/benchmarks.md), which a deployed Worker never has.
//
// Over plain HTTP the port is the Worker's own socket in workerd (Miniflare's
// `unsafeDirectSockets`), not Miniflare's entry worker, which would run in front of every
// request (about 0.35 ms of workerd's CPU each, docs/benchmarks.md) to imitate the edge: it
// compresses JSON answers, adds `CF-Connecting-IP` (the Worker then rate-limits every local
// client as one, as it did before with 127.0.0.1) and checks the Host header. With TLS the
// entry worker serves the port (workerd's direct sockets speak plain HTTP only).
//
// workerd binds its sockets as it starts and accepts connections once every worker is loaded
// (Miniflare's own and ours), so an early client waits in the listen queue rather than being
// refused. Miniflare's `ready` resolves when workerd accepts: then `--ready-file` is written,
// which is how scripts/dev.sh and the benchmark know the server is up without sending it a
// request (the first request stays the Worker's first).
//
//   node scripts/serve.mjs --state DIR --port N [--tls-cert F --tls-key F] [--inspector-port N]
//                          [--ready-file F] [--var NAME:VALUE ...] [ENTRY]
//
// ENTRY: another entry module that imports the Worker from build/index.js (the benchmark's
// bench/meter.mjs). State lives where `wrangler dev --persist-to DIR` keeps it (DIR/v3), so
// `wrangler d1 migrations apply --local --persist-to DIR` and `wrangler d1 execute` see the same
// database. Console output of the Worker goes to stdout, warnings and errors to stderr. SIGINT
// and SIGTERM stop workerd before this process exits.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import * as nodeModule from "node:module";
import path from "node:path";

const root = process.cwd();
// Node keeps the compiled code of Miniflare (and wrangler) between starts: about half of their
// load time.
nodeModule.enableCompileCache?.(path.join(root, ".wrangler", "node-compile-cache"));
const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");

function parse(argv) {
  const out = { vars: {}, entry: "build/index.js" };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === "--state") out.state = value();
    else if (flag === "--port") out.port = Number(value());
    else if (flag === "--tls-cert") out.cert = value();
    else if (flag === "--tls-key") out.key = value();
    else if (flag === "--inspector-port") out.inspectorPort = Number(value());
    else if (flag === "--ready-file") out.readyFile = value();
    else if (flag === "--var") {
      const pair = value();
      const colon = pair.indexOf(":");
      if (colon < 1) throw new Error(`--var wants NAME:VALUE, got ${pair}`);
      out.vars[pair.slice(0, colon)] = pair.slice(colon + 1);
    } else if (flag.startsWith("--")) throw new Error(`unknown option ${flag}`);
    else out.entry = flag;
  }
  if (!out.state || !out.port) throw new Error("--state and --port are required");
  if (Boolean(out.cert) !== Boolean(out.key)) throw new Error("--tls-cert and --tls-key go together");
  return out;
}

/** wrangler.toml as Miniflare's options, by wrangler's own reader. Loading wrangler takes about
 * a second, so its answer is kept per wrangler.toml and wrangler version, and read back after. */
async function workerOptionsFromConfig() {
  const config = path.join(root, "wrangler.toml");
  const wranglerVersion = JSON.parse(readFileSync(path.join(root, "node_modules/wrangler/package.json"), "utf8")).version;
  const key = createHash("sha256").update(wranglerVersion).update("\0").update(readFileSync(config)).digest("hex");
  const dir = path.join(root, ".wrangler", "serve-options");
  const cached = path.join(dir, `${key.slice(0, 16)}.json`);
  try {
    return JSON.parse(readFileSync(cached, "utf8"));
  } catch {
    const { unstable_getMiniflareWorkerOptions } = await import("wrangler");
    const { workerOptions } = unstable_getMiniflareWorkerOptions(config);
    mkdirSync(dir, { recursive: true });
    // Written aside and renamed, so that instances starting together never read half a file.
    const part = `${cached}.${process.pid}`;
    writeFileSync(part, JSON.stringify(workerOptions));
    renameSync(part, cached);
    return workerOptions;
  }
}

const args = parse(process.argv.slice(2));
const workerOptions = await workerOptionsFromConfig();
// The entry first (the main module), then the Worker's own modules, by their paths from the
// repository root: an entry elsewhere imports the Worker as "../build/index.js".
const modules = [args.entry, "build/index.js"]
  .filter((file, i, all) => all.indexOf(file) === i)
  .map((file) => ({ type: "ESModule", path: path.join(root, file) }));
modules.push({ type: "CompiledWasm", path: path.join(root, "build/index_bg.wasm") });
delete workerOptions.scriptPath;
delete workerOptions.script;
// Plain HTTP: the Worker's own socket on the port; Miniflare's entry on a free loopback port
// (Miniflare needs one; nothing here uses it).
const direct = !args.cert;
const options = convertV4MiniflareOptions({
  host: "127.0.0.1",
  port: direct ? 0 : args.port,
  ...(args.inspectorPort ? { inspectorPort: args.inspectorPort } : {}),
  ...(args.cert
    ? { https: true, httpsCert: readFileSync(args.cert, "utf8"), httpsKey: readFileSync(args.key, "utf8") }
    : {}),
  workers: [{
    ...workerOptions,
    name: workerOptions.name ?? "matrix-edge",
    modulesRoot: root,
    modules,
    ...(direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: args.port }] } : {}),
    bindings: { ...workerOptions.bindings, ...args.vars },
  }],
});
options.resourcePersistencePath = path.join(path.resolve(args.state), "v3");
options.handleStructuredLogs = ({ level, message }) => {
  (level === "warn" || level === "error" ? process.stderr : process.stdout).write(`${message}\n`);
};

const mf = new Miniflare(options);
let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await mf.dispose();
  } finally {
    process.exit(code);
  }
}
process.on("SIGINT", () => stop(130));
process.on("SIGTERM", () => stop(143));
await mf.ready;
if (args.readyFile) writeFileSync(args.readyFile, `${args.port}\n`);
console.log(`[serve] workerd ready on ${args.cert ? "https" : "http"}://127.0.0.1:${args.port}`);
