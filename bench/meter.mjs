// Bench-only entry module: the built Worker (build/index.js) unchanged, with its D1 and Durable
// Object bindings wrapped to count what the platform bills: D1 queries, rows read and rows
// written (from D1's own result metadata), and requests to each Durable Object namespace.
// `GET /_bench/meter` answers the counts so far and resets them. `PUT /_bench/r2/` stores its
// body in the media bucket from plain JavaScript, none of our code, and `GET /_bench/r2/KEY`
// streams it back: the floor that local R2 (Miniflare's simulation) sets for an upload and a
// download, timed by bench/media.py. With an `Authorization` header the same routes also do
// what any Worker must for a media request, still in plain JavaScript: read the access token's
// row (one D1 statement) and, for an upload, write the media's row (one more, into a table of
// the bench's own). That is the least a local upload or download can cost on this runtime,
// whatever the Worker's code. Never deployed: only
// `make bench` serves it (`scripts/dev.sh bench/meter.mjs`). Counts are per isolate; local
// workerd runs the Worker and its Durable Objects in one, so they add up here.
import Worker, { RoomObject as Room, Notifier as Notif, Destination as Dest, AppServiceQueue as ASQueue, PushQueue as PQueue } from "../build/index.js";

let counts = fresh();
function fresh() {
  return { worker_requests: 0, d1_queries: 0, d1_batches: 0, d1_batched: 0, d1_round_trips: 0, rows_read: 0,
           rows_written: 0, unmetered_queries: 0, do_requests: {}, r2_class_a: 0, r2_class_b: 0,
           statements: {} };
}

// Per statement (its SQL, whitespace folded, cut short): how often it ran and the rows it read
// and wrote, to see where a path's queries and rows go.
const sqlOf = new WeakMap(); // statement (real or proxy) -> its SQL
function perStatement(stmt, result) {
  const sql = sqlOf.get(stmt) || "?";
  const key = sql.replace(/\s+/g, " ").trim().slice(0, 100);
  const entry = counts.statements[key] || (counts.statements[key] = { n: 0, rows_read: 0, rows_written: 0 });
  entry.n++;
  const meta = result && result.meta;
  if (meta) {
    entry.rows_read += meta.rows_read || 0;
    entry.rows_written += meta.rows_written || 0;
  }
}

function bound(target, prop) {
  const value = Reflect.get(target, prop);
  // Methods of runtime objects need their own `this`; the constructor stays as it is (workers-rs
  // checks bindings by its name).
  return typeof value === "function" && prop !== "constructor" ? value.bind(target) : value;
}

function metered(result) {
  const meta = result && result.meta;
  if (meta) {
    counts.rows_read += meta.rows_read || 0;
    counts.rows_written += meta.rows_written || 0;
  }
  return result;
}

const inner = new WeakMap(); // statement proxy -> the real statement

function statement(real, sql) {
  sqlOf.set(real, sql);
  const one = async (run) => {
    counts.d1_queries++;
    counts.d1_round_trips++;
    const result = metered(await run());
    perStatement(real, result);
    return result;
  };
  const proxy = new Proxy(real, {
    get(target, prop) {
      switch (prop) {
        case "bind": return (...args) => statement(target.bind(...args), sql);
        case "all": return () => one(() => target.all());
        case "run": return () => one(() => target.run());
        // first() returns no metadata: run the same statement with all() and pick the row.
        case "first": return async (column) => {
          const row = (await one(() => target.all())).results[0];
          if (row === undefined) return null;
          return column === undefined ? row : row[column];
        };
        case "raw": return async (options) => {
          counts.d1_queries++; counts.d1_round_trips++; counts.unmetered_queries++; return target.raw(options);
        };
        default: return bound(target, prop);
      }
    },
  });
  inner.set(proxy, real);
  return proxy;
}

function database(real) {
  return new Proxy(real, {
    get(target, prop) {
      switch (prop) {
        case "prepare": return (sql) => statement(target.prepare(sql), sql);
        case "batch": return async (statements) => {
          counts.d1_batches++;
          counts.d1_round_trips++;
          counts.d1_batched += statements.length;
          counts.d1_queries += statements.length;
          const real = statements.map((s) => inner.get(s) || s);
          const results = await target.batch(real);
          results.forEach((r, i) => { metered(r); perStatement(real[i], r); });
          return results;
        };
        case "exec": return async (sql) => {
          counts.d1_queries++; counts.d1_round_trips++; counts.unmetered_queries++; return target.exec(sql);
        };
        default: return bound(target, prop);
      }
    },
  });
}

function namespace(real, name) {
  const stub = (s) => new Proxy(s, {
    get(target, prop) {
      if (prop === "fetch") return (...args) => { counts.do_requests[name] = (counts.do_requests[name] || 0) + 1; return target.fetch(...args); };
      return bound(target, prop);
    },
  });
  return new Proxy(real, {
    get(target, prop) {
      if (prop === "get") return (...args) => stub(target.get(...args));
      return bound(target, prop);
    },
  });
}

// R2 bills writes and lists as class A operations, reads as class B.
const R2_CLASS_A = new Set(["put", "delete", "list", "createMultipartUpload", "resumeMultipartUpload"]);
const R2_CLASS_B = new Set(["get", "head"]);

function bucket(real) {
  return new Proxy(real, {
    get(target, prop) {
      const value = bound(target, prop);
      if (typeof value !== "function") return value;
      if (R2_CLASS_A.has(prop)) return (...args) => { counts.r2_class_a++; return value(...args); };
      if (R2_CLASS_B.has(prop)) return (...args) => { counts.r2_class_b++; return value(...args); };
      return value;
    },
  });
}

function meterEnv(env) {
  return new Proxy(env, {
    get(target, prop) {
      if (prop === "DB") return database(target.DB);
      if (prop === "MEDIA") return bucket(target.MEDIA);
      if (["ROOMS", "NOTIFIER", "DESTINATIONS", "PUSHERS"].includes(prop)) return namespace(target[prop], prop);
      return Reflect.get(target, prop);
    },
  });
}

export class RoomObject {
  constructor(ctx, env) { return new Room(ctx, meterEnv(env)); }
}

export class Notifier {
  constructor(ctx, env) { return new Notif(ctx, meterEnv(env)); }
}

// Every Durable Object class the Worker declares must be exported here too.
export class Destination {
  constructor(ctx, env) { return new Dest(ctx, meterEnv(env)); }
}

export class AppServiceQueue {
  constructor(ctx, env) { return new ASQueue(ctx, meterEnv(env)); }
}

export class PushQueue {
  constructor(ctx, env) { return new PQueue(ctx, meterEnv(env)); }
}

// The access token's row, found the way the Worker finds it (by the token's SHA-256), or null.
async function tokenRow(env, request) {
  const token = (request.headers.get("authorization") || "").replace(/^Bearer /, "");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
  const hash = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return env.DB.prepare("SELECT user_id FROM access_tokens WHERE token_hash = ?1").bind(hash).first();
}

export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname === "/_bench/meter") {
      const body = JSON.stringify(counts);
      counts = fresh();
      return new Response(body, { headers: { "content-type": "application/json" } });
    }
    const floor = new URL(request.url).pathname.match(/^\/_bench\/r2\/([0-9a-f-]*)$/);
    const authorized = floor && request.headers.has("authorization") ? await tokenRow(env, request) : null;
    if (floor && request.headers.has("authorization") && !authorized) {
      return new Response("", { status: 401 });
    }
    if (floor && request.method === "PUT") {
      const id = crypto.randomUUID();
      // Left in the bench's throwaway state, like the uploads it is compared with.
      await env.MEDIA.put(`bench-floor/${id}`, request.body);
      if (authorized) {
        await env.DB.prepare("INSERT INTO bench_floor_media (id, user_id, size, created_ts) VALUES (?1, ?2, ?3, ?4)")
          .bind(id, authorized.user_id, Number(request.headers.get("content-length") || 0), Date.now()).run();
      }
      return new Response(JSON.stringify({ key: id }), { headers: { "content-type": "application/json" } });
    }
    if (floor && request.method === "GET") {
      const object = await env.MEDIA.get(`bench-floor/${floor[1]}`);
      return object ? new Response(object.body) : new Response("", { status: 404 });
    }
    if (new URL(request.url).pathname === "/_bench/r2-setup") {
      // The floor's own table, made before anything is timed.
      await env.DB.prepare("CREATE TABLE IF NOT EXISTS bench_floor_media (id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
                           + " size INTEGER NOT NULL, created_ts INTEGER NOT NULL)").run();
      return new Response("{}", { headers: { "content-type": "application/json" } });
    }
    counts.worker_requests++;
    return Worker.prototype.fetch.call({ env: meterEnv(env), ctx }, request);
  },
};
