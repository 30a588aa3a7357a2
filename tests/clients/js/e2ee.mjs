// End-to-end encryption through matrix-js-sdk with its Rust crypto (matrix-sdk-crypto-wasm).
//
//   node tests/clients/js/e2ee.mjs <baseUrl>
//
// Two users in an encrypted room decrypt each other's messages; alice bootstraps cross-signing
// and creates a key backup; a third device of alice restores the room keys from the backup and
// decrypts the history. Output: one JSON line per step ({"step", "ok", "ms"[, "error"]}); exits 1
// at the first failing step. E2EE_STEP_TIMEOUT_MS (default 30000) bounds each step;
// E2EE_SDK_LOG=debug lets the SDK's log through to stderr.

import { ClientEvent, createClient, MatrixEventEvent, RoomEvent, SyncState } from "matrix-js-sdk";
import { logger as globalSdkLogger } from "matrix-js-sdk/lib/logger.js";

const STEP_TIMEOUT_MS = Number(process.env.E2EE_STEP_TIMEOUT_MS ?? 30000);
const verbose = process.env.E2EE_SDK_LOG;
// The Rust crypto logs through the SDK's global logger, at debug level, to stdout: keep stdout for
// our JSON lines.
globalSdkLogger.methodFactory = () => (...msg) => {
  if (verbose) console.error("[sdk]", ...msg);
};
globalSdkLogger.setLevel(verbose ? "debug" : "silent");
globalSdkLogger.rebuild?.();
const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, getChild() { return quiet; } };
const sdkLogger = verbose ? undefined : quiet;

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node tests/clients/js/e2ee.mjs <baseUrl>");
  process.exit(2);
}
const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const PASSWORD = `pw-${suffix}`;
const clients = [];

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

async function step(name, fn) {
  const started = performance.now();
  let timer;
  try {
    const result = await Promise.race([
      fn(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS); }),
    ]);
    emit({ step: name, ok: true, ms: Math.round(performance.now() - started) });
    return result;
  } catch (err) {
    emit({ step: name, ok: false, ms: Math.round(performance.now() - started), error: String(err?.stack ?? err) });
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Resolves once `check()` holds, checking now and on every event of `events` from `emitter`. */
function waitFor(emitter, events, check) {
  return new Promise((resolve, reject) => {
    const listener = async () => {
      try {
        const value = await check();
        if (value) {
          for (const e of events) emitter.off(e, listener);
          resolve(value);
        }
      } catch (err) {
        reject(err);
      }
    };
    for (const e of events) emitter.on(e, listener);
    listener();
  });
}

async function api(method, path, body, token) {
  const res = await fetch(`${baseUrl}/_matrix/client/v3${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const register = (name) =>
  api("POST", "/register", { username: name, password: PASSWORD, auth: { type: "m.login.dummy" } });
const login = (userId) =>
  api("POST", "/login", { type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: PASSWORD });

/** A client with Rust crypto, started, past its first sync. */
async function startClient(session, { beforeStart } = {}) {
  const client = createClient({
    baseUrl, userId: session.user_id, deviceId: session.device_id, accessToken: session.access_token, logger: sdkLogger,
  });
  clients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  await beforeStart?.(client);
  const ready = waitFor(client, [ClientEvent.Sync], () =>
    [SyncState.Prepared, SyncState.Syncing].includes(client.getSyncState()));
  await client.startClient({ initialSyncLimit: 30 });
  await ready;
  return client;
}

/** Resolves once `client` has a decrypted message with this body in the room. */
function decrypted(client, roomId, body) {
  const found = () => client.getRoom(roomId)?.getLiveTimeline().getEvents()
    .find((e) => e.getType() === "m.room.message" && e.getContent()?.body === body);
  return waitFor(client, [RoomEvent.Timeline, MatrixEventEvent.Decrypted, ClientEvent.Sync], found);
}

function describeFailures(client, roomId) {
  return (client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [])
    .filter((e) => e.isDecryptionFailure?.())
    .map((e) => `${e.getId()}: ${e.decryptionFailureReason}`);
}

async function main() {
  const aliceReg = await step("register alice and bob", async () => {
    const a = await register(`e2ee-alice-${suffix}`);
    const b = await register(`e2ee-bob-${suffix}`);
    return [a, b];
  });
  const [aliceSession, bobSession] = aliceReg;
  const aliceId = aliceSession.user_id;
  const bobId = bobSession.user_id;

  const [alice, bob] = await step("start both clients with Rust crypto", async () =>
    Promise.all([startClient(aliceSession), startClient(bobSession)]));

  await step("alice bootstraps cross-signing", async () => {
    const crypto = alice.getCrypto();
    await crypto.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: aliceId }, password: PASSWORD });
      },
    });
    const status = await crypto.getCrossSigningStatus();
    assert(status.publicKeysOnDevice && status.privateKeysCachedLocally.masterKey, `cross-signing status ${JSON.stringify(status)}`);
    assert(await crypto.isCrossSigningReady(), "isCrossSigningReady() is false after bootstrap");
    // The server has the keys, and alice's device is signed by her self-signing key.
    const query = await api("POST", "/keys/query", { device_keys: { [aliceId]: [] } }, bobSession.access_token);
    assert(query.master_keys?.[aliceId] && query.self_signing_keys?.[aliceId], `keys/query lacks cross-signing keys: ${JSON.stringify(query)}`);
    const sigs = query.device_keys[aliceId][aliceSession.device_id]?.signatures?.[aliceId] ?? {};
    assert(Object.keys(sigs).length >= 2, `alice's device is not cross-signed: ${JSON.stringify(sigs)}`);
  });

  const backupVersion = await step("alice creates a key backup", async () => {
    const crypto = alice.getCrypto();
    await crypto.resetKeyBackup();
    const version = await crypto.getActiveSessionBackupVersion();
    assert(version, "no active backup version after resetKeyBackup()");
    return version;
  });

  const roomId = await step("alice creates an encrypted room; bob joins", async () => {
    const { room_id: id } = await alice.createRoom({
      invite: [bobId],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await waitFor(bob, [ClientEvent.Sync, RoomEvent.MyMembership], () => bob.getRoom(id)?.getMyMembership() === "invite");
    await bob.joinRoom(id);
    await waitFor(alice, [ClientEvent.Sync], () => alice.getRoom(id)?.getMember(bobId)?.membership === "join");
    assert(await alice.getCrypto().isEncryptionEnabledInRoom(id), "alice does not see the room as encrypted");
    return id;
  });

  const fromAlice = `secret from alice ${suffix}`;
  const fromBob = `secret from bob ${suffix}`;
  await step("bob decrypts alice's message", async () => {
    const seen = decrypted(bob, roomId, fromAlice);
    await alice.sendMessage(roomId, { msgtype: "m.text", body: fromAlice });
    const raw = await Promise.race([seen, new Promise((r) => setTimeout(r, STEP_TIMEOUT_MS - 1000))]);
    assert(raw, `bob did not decrypt: ${describeFailures(bob, roomId).join("; ")}`);
    assert(raw.isEncrypted(), "the message was not sent encrypted");
  });

  await step("alice decrypts bob's message", async () => {
    const seen = decrypted(alice, roomId, fromBob);
    await bob.sendMessage(roomId, { msgtype: "m.text", body: fromBob });
    const raw = await Promise.race([seen, new Promise((r) => setTimeout(r, STEP_TIMEOUT_MS - 1000))]);
    assert(raw, `alice did not decrypt: ${describeFailures(alice, roomId).join("; ")}`);
  });

  await step("alice's room keys reach the backup", async () => {
    for (;;) {
      const info = await api("GET", `/room_keys/version/${backupVersion}`, undefined, aliceSession.access_token);
      if (info.count >= 2) return;
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  await step("a third device of alice restores the keys from backup and decrypts history", async () => {
    const key = await alice.getCrypto().getSessionBackupPrivateKey();
    assert(key, "alice's device has no cached backup key");
    const session = await login(aliceId);
    const third = await startClient(session, {
      beforeStart: (client) => client.getCrypto().storeSessionBackupPrivateKey(key, backupVersion),
    });
    await waitFor(third, [ClientEvent.Sync], () => third.getRoom(roomId)?.getLiveTimeline().getEvents().length);
    const result = await third.getCrypto().restoreKeyBackup();
    assert(result.imported >= 2, `restored ${JSON.stringify(result)}`);
    const both = Promise.all([decrypted(third, roomId, fromAlice), decrypted(third, roomId, fromBob)]);
    const done = await Promise.race([both, new Promise((r) => setTimeout(r, STEP_TIMEOUT_MS - 2000))]);
    assert(done, `third device could not decrypt history: ${describeFailures(third, roomId).join("; ")}`);
  });
}

try {
  await main();
  process.exitCode = 0;
} catch {
  process.exitCode = 1;
} finally {
  for (const client of clients) client.stopClient();
  // The wasm crypto keeps timers alive; the result is decided.
  setTimeout(() => process.exit(process.exitCode), 100);
}
