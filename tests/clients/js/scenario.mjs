// A two-user chat driven through matrix-js-sdk, the way a real client uses it.
//
//   node tests/clients/js/scenario.mjs <baseUrl>        e.g. http://localhost:8787
//
// Registers two fresh users (user-interactive auth: an empty POST /register answered with 401 and
// a session, then m.login.dummy), starts a syncing client for each, and walks them through a
// private room: create with name and topic, invite, join, messages both ways, typing, a read
// receipt, a redaction, a displayname change, then stops both clients and logs out. Everything
// the other user is expected to notice is awaited through the SDK's own sync-driven events.
//
// Output: one JSON line per step on stdout, {"step": ..., "ok": true, "ms": ...}; the first failing
// step prints {"step": ..., "ok": false, "ms": ..., "error": ...} and the process exits 1.
// Every step times out after SCENARIO_STEP_TIMEOUT_MS (default 20000) so a broken server fails fast.
// SCENARIO_SDK_LOG=debug (or info, warn, ...) lets the SDK's own log through to stderr.

import {
  ClientEvent,
  createClient,
  EventType,
  MatrixError,
  Preset,
  RoomEvent,
  RoomMemberEvent,
  SyncState,
  Visibility,
} from "matrix-js-sdk";
// The package's global logger is not exported from its index; some SDK modules log through it directly.
import { logger as globalSdkLogger } from "matrix-js-sdk/lib/logger.js";

const STEP_TIMEOUT_MS = Number(process.env.SCENARIO_STEP_TIMEOUT_MS ?? 20000);
const SDK_LOG = process.env.SCENARIO_SDK_LOG ?? "silent";

// ---------------------------------------------------------------------------------------------
// Logging: the SDK is chatty at debug level. Silence it unless asked for, and never on stdout.

const LEVELS = ["trace", "debug", "info", "warn", "error"];
function makeSdkLogger(prefix) {
  const threshold = LEVELS.indexOf(SDK_LOG);
  const log = {};
  for (const [i, level] of LEVELS.entries()) {
    log[level] = threshold >= 0 && i >= threshold ? (...msg) => console.error(`[sdk${prefix}] ${level}:`, ...msg) : () => {};
  }
  log.getChild = (child) => makeSdkLogger(`${prefix}${child}`);
  return log;
}
const sdkLogger = makeSdkLogger("");
// The global logger is loglevel's: setLevel alone is not enough, as every child logger (the SDK makes
// them on the fly, e.g. for MatrixRTC sessions) starts at debug level, writing to stdout. Children
// copy their parent's methodFactory, so routing the root's through ours silences them all.
globalSdkLogger.methodFactory = (methodName) => function (...msg) {
  sdkLogger[methodName]?.(...(this?.prefix ? [this.prefix, ...msg] : msg));
};
globalSdkLogger.setLevel(SDK_LOG === "silent" ? "silent" : SDK_LOG);
globalSdkLogger.rebuild?.();

// ---------------------------------------------------------------------------------------------
// Steps, assertions, waits.

class StepFailure extends Error {}

function assert(condition, message) {
  if (!condition) throw new StepFailure(message);
}

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

// Listeners registered during a step; removed when the step ends, whatever the outcome.
let stepCleanups = [];

async function step(name, fn) {
  const started = performance.now();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepFailure(`timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  try {
    const result = await Promise.race([fn(), timeout]);
    emit({ step: name, ok: true, ms: Math.round(performance.now() - started) });
    return result;
  } catch (err) {
    emit({ step: name, ok: false, ms: Math.round(performance.now() - started), error: describe(err) });
    throw err;
  } finally {
    clearTimeout(timer);
    for (const cleanup of stepCleanups.splice(0)) cleanup();
  }
}

function describe(err) {
  if (err instanceof MatrixError) {
    return `HTTP ${err.httpStatus} ${err.errcode ?? ""} ${err.data?.error ?? err.message} (${err.url ?? "?"})`.trim();
  }
  if (!(err instanceof Error)) return String(err);
  // The SDK's ConnectionError drops fetch's cause (ECONNREFUSED and the like): name the server at least.
  return err.name === "ConnectionError" ? `${err.message} (no HTTP response from ${baseUrl})` : err.message;
}

/**
 * Resolves with `check()`'s first truthy value, evaluated now and after every `event` that
 * `emitter` fires. Register it BEFORE the action whose effect it waits for. `what` (a string, or a
 * function returning one) names the awaited condition in the timeout message.
 */
// Conditions over several pieces of room state also listen to ClientEvent.Sync: the SDK applies
// a sync response's state in no fixed order, and the last specific event may fire before the last
// piece of state lands; the Sync event comes once the whole response is applied.
function until(emitter, events, check, what) {
  let listener;
  const promise = new Promise((resolve, reject) => {
    listener = (...args) => {
      try {
        const value = check(...args);
        if (value) resolve(value);
      } catch (err) {
        reject(err);
      }
    };
  });
  for (const event of [].concat(events)) emitter.on(event, listener);
  const cleanup = () => {
    for (const event of [].concat(events)) emitter.off(event, listener);
  };
  stepCleanups.push(cleanup);
  listener(); // the condition may already hold
  let timer;
  const labelled = new Promise((_, reject) => {
    // Slightly shorter than the step's own timeout, so the message says what was awaited.
    timer = setTimeout(() => reject(new StepFailure(`timed out waiting for ${typeof what === "function" ? what() : what}`)),
      Math.max(STEP_TIMEOUT_MS - 250, 1));
  });
  stepCleanups.push(() => clearTimeout(timer));
  return Promise.race([promise, labelled]);
}

// ---------------------------------------------------------------------------------------------
// The scenario.

const baseUrl = process.argv[2];
if (!baseUrl || !/^https?:\/\//.test(baseUrl)) {
  console.error("usage: node tests/clients/js/scenario.mjs <baseUrl>   (e.g. http://localhost:8787)");
  process.exit(2);
}

const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const clients = [];

async function register(localpart) {
  const anon = createClient({ baseUrl, logger: sdkLogger });
  let session;
  try {
    await anon.registerRequest({});
    throw new StepFailure("POST /register with an empty body succeeded; expected 401 with UIA flows");
  } catch (err) {
    if (err instanceof StepFailure) throw err;
    assert(err instanceof MatrixError && err.httpStatus === 401,
      `POST /register with an empty body: expected 401 with UIA flows, got ${describe(err)}`);
    session = err.data?.session;
    const flows = err.data?.flows ?? [];
    assert(typeof session === "string" && session, `401 from /register has no session: ${JSON.stringify(err.data)}`);
    assert(flows.some((flow) => flow.stages?.length === 1 && flow.stages[0] === "m.login.dummy"),
      `401 from /register offers no m.login.dummy-only flow: ${JSON.stringify(flows)}`);
  }
  const password = `pw-${Math.random().toString(36).slice(2)}-${suffix}`;
  const res = await anon.register(localpart, password, session, { type: "m.login.dummy" });
  assert(res.user_id?.startsWith(`@${localpart}:`), `register returned user_id ${res.user_id}, expected @${localpart}:...`);
  assert(res.access_token, "register returned no access_token");
  assert(res.device_id, "register returned no device_id");
  return res;
}

function makeClient(reg) {
  const client = createClient({
    baseUrl,
    userId: reg.user_id,
    accessToken: reg.access_token,
    deviceId: reg.device_id,
    logger: sdkLogger,
  });
  clients.push(client);
  return client;
}

function prepared(client, who) {
  let lastError;
  return until(
    client,
    ClientEvent.Sync,
    (state, _prev, data) => {
      if (state === SyncState.Error) lastError = describe(data?.error);
      return client.getSyncState() === SyncState.Prepared || client.getSyncState() === SyncState.Syncing;
    },
    () => `${who}'s first sync (sync state PREPARED)${lastError ? `; last sync error: ${lastError}` : ""}`,
  );
}

function stateContent(room, type, stateKey = "") {
  return room?.currentState.getStateEvents(type, stateKey)?.getContent();
}

async function main() {
  const roomName = `scenario ${suffix}`;
  const topic = `a matrix-js-sdk scenario (${suffix})`;

  const aliceReg = await step("register alice", () => register(`alice-${suffix}`));
  const bobReg = await step("register bob", () => register(`bob-${suffix}`));
  const aliceId = aliceReg.user_id;
  const bobId = bobReg.user_id;
  const alice = makeClient(aliceReg);
  const bob = makeClient(bobReg);

  await step("start clients", async () => {
    const ready = [prepared(alice, "alice"), prepared(bob, "bob")];
    await Promise.all([alice.startClient({ initialSyncLimit: 20 }), bob.startClient({ initialSyncLimit: 20 })]);
    await Promise.all(ready);
    const whoami = await alice.whoami();
    assert(whoami.user_id === aliceId, `whoami says ${whoami.user_id}, expected ${aliceId}`);
  });

  const roomId = await step("alice creates a private room", async () => {
    const { room_id: id } = await alice.createRoom({
      name: roomName,
      topic,
      preset: Preset.PrivateChat,
      visibility: Visibility.Private,
    });
    assert(typeof id === "string" && id.startsWith("!"), `createRoom returned room_id ${id}`);
    const room = await until(alice, [RoomEvent.MyMembership, RoomEvent.Timeline, RoomEvent.Name, ClientEvent.Sync], () => {
      const r = alice.getRoom(id);
      return r?.getMyMembership() === "join" && r.name === roomName && stateContent(r, EventType.RoomTopic)?.topic === topic ? r : undefined;
    }, "alice's sync to show the new room joined, with its name and topic");
    assert(stateContent(room, EventType.RoomJoinRules)?.join_rule === "invite",
      `private_chat room has join_rule ${stateContent(room, EventType.RoomJoinRules)?.join_rule}, expected invite`);
    assert(stateContent(room, EventType.RoomCreate)?.creator === aliceId || room.currentState.getStateEvents(EventType.RoomCreate, "")?.getSender() === aliceId,
      "m.room.create is not from alice");
    return id;
  });

  await step("alice invites bob; bob sees the invite", async () => {
    const invited = until(bob, [RoomEvent.MyMembership, ClientEvent.Room, ClientEvent.Sync], () => {
      const r = bob.getRoom(roomId);
      return r?.getMyMembership() === "invite" ? r : undefined;
    }, "bob's sync to show the invite");
    await alice.invite(roomId, bobId);
    const room = await invited;
    const inviteEvent = room.getMember(bobId)?.events.member;
    assert(inviteEvent?.getSender() === aliceId, `bob's invite is from ${inviteEvent?.getSender()}, expected ${aliceId}`);
    assert(room.name === roomName, `bob's invite shows room name "${room.name}", expected "${roomName}" (m.room.name in invite_state)`);
  });

  await step("bob joins; both see the membership", async () => {
    const bobJoined = until(bob, [RoomEvent.MyMembership, RoomEvent.Timeline, ClientEvent.Sync], () => {
      const r = bob.getRoom(roomId);
      return r?.getMyMembership() === "join" && stateContent(r, EventType.RoomTopic)?.topic === topic ? r : undefined;
    }, "bob's sync to show the room joined, with its topic");
    const aliceSawJoin = until(alice, RoomMemberEvent.Membership, () =>
      alice.getRoom(roomId)?.getMember(bobId)?.membership === "join", "alice's sync to show bob joined");
    const joined = await bob.joinRoom(roomId);
    assert(joined.roomId === roomId, `joinRoom returned room ${joined.roomId}, expected ${roomId}`);
    const room = await bobJoined;
    await aliceSawJoin;
    assert(room.getMember(aliceId)?.membership === "join", "bob's room state does not show alice joined");
  });

  const aliceMessage = await step("alice sends a message; bob receives it", async () => {
    const body = `hello bob ${suffix}`;
    let eventId;
    const arrival = until(bob, RoomEvent.Timeline, (event, room) =>
      room?.roomId === roomId && event.getType() === EventType.RoomMessage && event.getContent().body === body ? event : undefined,
    "bob's sync timeline to deliver alice's message");
    ({ event_id: eventId } = await alice.sendTextMessage(roomId, body));
    assert(eventId?.startsWith("$"), `send returned event_id ${eventId}`);
    const event = await arrival;
    assert(event.getId() === eventId, `bob got event ${event.getId()}, alice's send returned ${eventId}`);
    assert(event.getSender() === aliceId, `message sender is ${event.getSender()}, expected ${aliceId}`);
    assert(event.getContent().msgtype === "m.text", `msgtype is ${event.getContent().msgtype}`);
    return event;
  });

  await step("bob sends a message; alice receives it", async () => {
    const body = `hello alice ${suffix}`;
    const arrival = until(alice, RoomEvent.Timeline, (event, room) =>
      room?.roomId === roomId && event.getType() === EventType.RoomMessage && event.getContent().body === body
        && event.getSender() === bobId && !event.isSending() ? event : undefined,
    "alice's sync timeline to deliver bob's message");
    const { event_id: eventId } = await bob.sendTextMessage(roomId, body);
    const event = await arrival;
    assert(event.getId() === eventId, `alice got event ${event.getId()}, bob's send returned ${eventId}`);
    // alice's own message must also be in her timeline (remote echo of her send), before bob's.
    const ids = alice.getRoom(roomId).getLiveTimeline().getEvents().map((e) => e.getId());
    assert(ids.indexOf(aliceMessage.getId()) >= 0 && ids.indexOf(aliceMessage.getId()) < ids.indexOf(eventId),
      "alice's timeline does not hold her own message before bob's");
  });

  await step("alice types; bob sees the typing notification", async () => {
    const typing = until(bob, RoomMemberEvent.Typing, (_event, member) =>
      member?.roomId === roomId && member.userId === aliceId && member.typing, "bob's sync to show alice typing");
    await alice.sendTyping(roomId, true, 30000);
    await typing;
    const stopped = until(bob, RoomMemberEvent.Typing, (_event, member) =>
      member?.roomId === roomId && member.userId === aliceId && !member.typing, "bob's sync to show alice stopped typing");
    await alice.sendTyping(roomId, false, 0);
    await stopped;
  });

  await step("bob sends a read receipt; alice sees it", async () => {
    const bobsCopy = bob.getRoom(roomId).findEventById(aliceMessage.getId());
    assert(bobsCopy, "bob's room has no copy of alice's message");
    const seen = until(alice, RoomEvent.Receipt, (event, room) => {
      if (room?.roomId !== roomId) return undefined;
      const receipt = event.getContent()[aliceMessage.getId()]?.["m.read"]?.[bobId];
      return receipt ? receipt : undefined;
    }, "alice's sync to deliver bob's m.read receipt");
    await bob.sendReadReceipt(bobsCopy);
    const receipt = await seen;
    assert(typeof receipt.ts === "number", `receipt has no numeric ts: ${JSON.stringify(receipt)}`);
  });

  await step("alice redacts her message; bob sees the redaction", async () => {
    const targetId = aliceMessage.getId();
    const redaction = until(bob, RoomEvent.Redaction, (event, room) =>
      room?.roomId === roomId && event.getAssociatedId() === targetId ? event : undefined,
    "bob's sync to deliver the redaction");
    const { event_id: redactionId } = await alice.redactEvent(roomId, targetId, undefined, { reason: "scenario" });
    const event = await redaction;
    assert(event.getId() === redactionId, `bob got redaction ${event.getId()}, alice's redact returned ${redactionId}`);
    assert(event.getSender() === aliceId, `redaction sender is ${event.getSender()}`);
    const target = bob.getRoom(roomId).findEventById(targetId);
    assert(target?.isRedacted(), "bob's copy of the message is not marked redacted");
    assert(target.getContent().body === undefined, "bob's copy of the redacted message still has a body");
  });

  await step("alice changes her displayname; bob sees the member update", async () => {
    const newName = `Alice ${suffix}`;
    const renamed = until(bob, RoomMemberEvent.Name, (_event, member) =>
      member?.roomId === roomId && member.userId === aliceId && member.name === newName ? member : undefined,
    "bob's sync to show alice's new displayname");
    await alice.setDisplayName(newName);
    const member = await renamed;
    const content = member.events.member?.getContent();
    assert(content?.membership === "join" && content.displayname === newName,
      `alice's member event on bob's side is ${JSON.stringify(content)}`);
    const profile = await bob.getProfileInfo(aliceId);
    assert(profile.displayname === newName, `profile lookup gives displayname ${profile.displayname}`);
  });

  await step("stop clients and log out", async () => {
    for (const client of [alice, bob]) {
      client.stopClient();
      assert(client.getSyncState() === null || client.getSyncState() === SyncState.Stopped,
        `sync state after stopClient is ${client.getSyncState()}`);
      await client.logout();
    }
    for (const reg of [aliceReg, bobReg]) {
      const stale = createClient({ baseUrl, userId: reg.user_id, accessToken: reg.access_token, logger: sdkLogger });
      try {
        await stale.whoami();
        throw new StepFailure(`${reg.user_id}'s access token still works after logout`);
      } catch (err) {
        if (err instanceof StepFailure) throw err;
        assert(err instanceof MatrixError && err.httpStatus === 401 && err.errcode === "M_UNKNOWN_TOKEN",
          `whoami after logout: expected 401 M_UNKNOWN_TOKEN, got ${describe(err)}`);
      }
    }
  });
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  if (!(err instanceof StepFailure) && !(err instanceof MatrixError)) console.error(err);
} finally {
  for (const client of clients) client.stopClient();
}
// Both clients are stopped and logged out, and every listener and timer of ours is gone, yet Node
// would linger for up to 110 s: matrix-js-sdk (43.0.0) arms a referenced setTimeout for each HTTP
// request's local timeout (its own AbortSignal.timeout ponyfill, http-api/utils.js timeoutSignal)
// and never clears it, sync requests included (30 s long-poll + 80 s). So exit explicitly, once
// stdout has been flushed.
process.stdout.write("", () => process.exit(failed ? 1 : 0));
