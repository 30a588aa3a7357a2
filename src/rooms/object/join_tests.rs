//! Joining a room another server holds (`remote_join.rs`) when its `send_join` answer carries
//! events that cannot be verified: the spec drops an event that fails its signature checks and
//! rejects one whose auth events fail; the join goes on with the rest when that is enough.

use std::collections::HashMap;

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::http::route::percent_encode;
use crate::rooms::RoomVersion;
use crate::testing::{json_response, path_of, RemoteServer, TestServer};
use crate::time::now_ms;

const CHARLIE: &str = "@charlie:remote.test";

/// A v12 room remote.test holds: charlie's, public.
struct RemoteRoom {
    remote: RemoteServer,
    room_id: String,
    /// Every event by id, as remote.test serves it.
    events: HashMap<String, Value>,
    /// The current state: (type, state_key) -> event id.
    state: HashMap<(String, String), String>,
    last: String,
    depth: u64,
    /// Charlie's join, the room's second event.
    first_join: String,
}

impl RemoteRoom {
    fn new() -> Self {
        let remote = RemoteServer::new("remote.test");
        let (create, create_json) = remote.sign(
            json!({
                "type": "m.room.create", "state_key": "", "sender": CHARLIE,
                "content": { "room_version": "12" },
                "prev_events": [], "auth_events": [], "depth": 1, "origin_server_ts": now_ms(),
            }),
            RoomVersion::V12,
        );
        let mut room = Self {
            remote,
            room_id: format!("!{}", &create[1..]),
            events: HashMap::from([(create.clone(), create_json)]),
            state: HashMap::from([(("m.room.create".into(), String::new()), create.clone())]),
            last: create,
            depth: 1,
            first_join: String::new(),
        };
        let join = room.add(
            "m.room.member",
            CHARLIE,
            json!({ "membership": "join" }),
            &[],
        );
        room.first_join = join.clone();
        let power = room.add("m.room.power_levels", "", json!({ "users": {} }), &[&join]);
        room.add(
            "m.room.join_rules",
            "",
            json!({ "join_rule": "public" }),
            &[&power, &join],
        );
        room
    }

    fn event(&self, kind: &str, state_key: &str, content: Value, auth: &[&str]) -> Value {
        json!({
            "room_id": self.room_id, "type": kind, "state_key": state_key, "sender": CHARLIE,
            "content": content, "prev_events": [self.last], "auth_events": auth,
            "depth": self.depth + 1, "origin_server_ts": now_ms(),
        })
    }

    /// Records a signed (or otherwise prepared) state event as the room's latest.
    fn record(&mut self, id: String, json: Value) -> String {
        let key = (
            json["type"].as_str().unwrap().to_owned(),
            json["state_key"].as_str().unwrap().to_owned(),
        );
        self.state.insert(key, id.clone());
        self.events.insert(id.clone(), json);
        self.last = id.clone();
        self.depth += 1;
        id
    }

    /// A state event of charlie's, properly signed.
    fn add(&mut self, kind: &str, state_key: &str, content: Value, auth: &[&str]) -> String {
        let (id, json) = self
            .remote
            .sign(self.event(kind, state_key, content, auth), RoomVersion::V12);
        self.record(id, json)
    }

    /// A state event of charlie's (citing his first join and the power levels), signed, then
    /// spoilt by `spoil`.
    fn add_bad(
        &mut self,
        kind: &str,
        state_key: &str,
        content: Value,
        spoil: impl FnOnce(&RemoteServer, &mut Value),
    ) -> String {
        let auth = [
            self.state_id("m.room.power_levels", ""),
            self.first_join.clone(),
        ];
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let (id, mut json) = self.remote.sign(
            self.event(kind, state_key, content, &auth),
            RoomVersion::V12,
        );
        spoil(&self.remote, &mut json);
        self.record(id, json)
    }

    fn state_id(&self, kind: &str, state_key: &str) -> String {
        self.state[&(kind.to_owned(), state_key.to_owned())].clone()
    }

    /// `send_join`'s answer: the current state and every other event as the auth chain.
    fn send_join_answer(&self) -> Value {
        let state: Vec<&Value> = self.state.values().map(|id| &self.events[id]).collect();
        let chain: Vec<&Value> = self
            .events
            .iter()
            .filter(|(id, _)| !self.state.values().any(|s| s == *id))
            .map(|(_, e)| e)
            .collect();
        json!({ "state": state, "auth_chain": chain, "servers_in_room": ["remote.test"] })
    }

    /// The room as remote.test serves `make_join` and `send_join`; anything else is 404.
    fn serve(&self, server: &TestServer) {
        let make_join = format!(
            "/_matrix/federation/v1/make_join/{}/",
            percent_encode(&self.room_id)
        );
        let send_join = format!(
            "/_matrix/federation/v2/send_join/{}/",
            percent_encode(&self.room_id)
        );
        let template = self.event(
            "m.room.member",
            "",
            json!({ "membership": "join" }),
            &[
                &self.state_id("m.room.power_levels", ""),
                &self.state_id("m.room.join_rules", ""),
            ],
        );
        let answer = self.send_join_answer();
        server.respond_with(self.remote.responder(move |request| {
            let path = path_of(request);
            if path.starts_with(&make_join) {
                let user = path[make_join.len()..]
                    .split('?')
                    .next()
                    .unwrap_or_default();
                let user = percent_decode(user);
                let mut event = template.clone();
                event["state_key"] = json!(user);
                event["sender"] = json!(user);
                return Some(json_response(
                    200,
                    &json!({ "room_version": "12", "event": event }),
                ));
            }
            path.starts_with(&send_join)
                .then(|| json_response(200, &answer))
        }));
    }
}

/// The event signed again, with a key that is not its sender server's (same event id: the
/// reference hash leaves signatures out).
fn forge(remote: &RemoteServer, event: &mut Value) {
    if let Some(object) = event.as_object_mut() {
        object.remove("signatures");
        object.remove("hashes");
    }
    *event = remote.forge(event.clone(), RoomVersion::V12).1;
}

fn percent_decode(text: &str) -> String {
    text.replace("%40", "@")
        .replace("%3A", ":")
        .replace("%3a", ":")
}

/// Alice of the test server joins the room through remote.test; the status and answer.
async fn alice_joins(room: &RemoteRoom) -> (TestServer, String, u16, Value) {
    alice_joins_in_steps(room, None).await
}

/// `alice_joins`, with `JOIN_STEP_EVENTS` set to `step_events` if given.
async fn alice_joins_in_steps(
    room: &RemoteRoom,
    step_events: Option<&str>,
) -> (TestServer, String, u16, Value) {
    let server = TestServer::new();
    if let Some(step_events) = step_events {
        server.set_var("JOIN_STEP_EVENTS", step_events);
    }
    room.serve(&server);
    let (_, token) = server.register("alice").await;
    let (status, answer) = join_through_remote(&server, &token, &room.room_id).await;
    (server, token, status, answer)
}

/// The token's user joins `room_id` through remote.test; the status and answer.
async fn join_through_remote(server: &TestServer, token: &str, room_id: &str) -> (u16, Value) {
    let path = format!(
        "/_matrix/client/v3/join/{}?server_name=remote.test",
        percent_encode(room_id)
    );
    server
        .request("POST", &path, Some(token), Some(json!({})))
        .await
}

/// The state alice sees: (type, state_key) -> event id.
async fn state_seen(
    server: &TestServer,
    token: &str,
    room_id: &str,
) -> HashMap<(String, String), String> {
    let path = format!("/_matrix/client/v3/rooms/{}/state", percent_encode(room_id));
    let (status, state) = server.request("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{state}");
    state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["state_key"].as_str().unwrap().to_owned(),
                ),
                e["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn stored(server: &TestServer, event_id: &str) -> bool {
    !server
        .rows(&format!(
            "SELECT event_id FROM events WHERE event_id = '{event_id}'"
        ))
        .await
        .is_empty()
}

#[test]
fn a_join_answer_with_unsigned_forged_or_unverifiable_events_still_joins() {
    block_on(async {
        let mut room = RemoteRoom::new();
        let power = room.state_id("m.room.power_levels", "");
        // A name without signatures.
        let unsigned_id = room.add_bad("m.room.name", "", json!({ "name": "unsigned" }), |_, e| {
            e["signatures"] = json!({});
        });
        // A topic signed with a key that is not remote.test's.
        let forged_id = room.add_bad("m.room.topic", "", json!({ "topic": "forged" }), forge);
        // An alias event signed with a key remote.test does not publish.
        let unknown_key_id = room.add_bad("m.room.canonical_alias", "", json!({}), |_, e| {
            let signature = e["signatures"]["remote.test"]
                .as_object()
                .and_then(|s| s.values().next().cloned())
                .unwrap();
            e["signatures"] = json!({ "remote.test": { "ed25519:bogus": signature } });
        });
        // Charlie's membership, forged, and a later one that cites it: that one cannot be
        // authorised, so it is rejected too.
        let content = json!({ "membership": "join", "displayname": "forged" });
        let bad_join_id = room.add_bad("m.room.member", CHARLIE, content, forge);
        let leave = room.add(
            "m.room.member",
            CHARLIE,
            json!({ "membership": "leave" }),
            &[&power, &bad_join_id],
        );

        let (server, token, status, answer) = alice_joins(&room).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["room_id"], json!(room.room_id));

        let state = state_seen(&server, &token, &room.room_id).await;
        let alice = state.get(&("m.room.member".into(), "@alice:test.local".into()));
        assert!(alice.is_some(), "alice is in: {state:?}");
        for kind in ["m.room.create", "m.room.power_levels", "m.room.join_rules"] {
            assert_eq!(
                state[&(kind.into(), String::new())],
                room.state_id(kind, "")
            );
        }
        // What failed is neither state nor stored.
        for kind in ["m.room.name", "m.room.topic", "m.room.canonical_alias"] {
            assert!(!state.contains_key(&(kind.into(), String::new())), "{kind}");
        }
        assert!(!state.contains_key(&("m.room.member".into(), CHARLIE.into())));
        for id in [
            &unsigned_id,
            &forged_id,
            &unknown_key_id,
            &bad_join_id,
            &leave,
        ] {
            assert!(!stored(&server, id).await, "{id} is not stored");
        }
        assert!(
            stored(&server, &room.first_join).await,
            "charlie's first join is"
        );
    });
}

#[test]
fn a_join_answer_whose_needed_events_fail_is_refused() {
    block_on(async {
        let mut room = RemoteRoom::new();
        // The join rules our join needs, forged: the rest does not let us in.
        let content = json!({ "join_rule": "public", "forged": true });
        let forged_id = room.add_bad("m.room.join_rules", "", content, forge);

        let (server, _, status, answer) = alice_joins(&room).await;
        assert_eq!(status, 403, "{answer}");
        let why = answer["error"].as_str().unwrap_or_default();
        assert!(why.contains("our join does not pass"), "{answer}");
        assert!(!stored(&server, &forged_id).await);
        assert!(claims(&server).await.is_empty(), "the claim is released");
        assert!(
            server
                .rows("SELECT room_id FROM rooms")
                .await
                .iter()
                .all(|r| r["room_id"] != json!(room.room_id)),
            "the room is not stored"
        );
    });
}

/// Every row of every table with a `room_id` column that belongs to `room_id`, with our join's
/// id (which differs between two joins: its `origin_server_ts` does) named `$our_join`, and
/// timestamps and PDU texts (which carry that time) left out.
async fn room_rows(server: &TestServer, room_id: &str) -> Vec<(String, String)> {
    let ours = server
        .rows(&format!(
            "SELECT event_id FROM events WHERE room_id = '{room_id}' AND type = 'm.room.member'
             AND state_key = '@alice:test.local'"
        ))
        .await;
    let ours = ours[0]["event_id"].as_str().unwrap().to_owned();
    let tables = server
        .rows(
            "SELECT m.name AS name FROM sqlite_master m JOIN pragma_table_info(m.name) c
             WHERE m.type = 'table' AND c.name = 'room_id' ORDER BY m.name",
        )
        .await;
    let mut all = Vec::new();
    for table in tables {
        let table = table["name"].as_str().unwrap();
        for mut row in server
            .rows(&format!(
                "SELECT * FROM {table} WHERE room_id = '{room_id}'"
            ))
            .await
        {
            if let Some(row) = row.as_object_mut() {
                row.retain(|column, _| !column.ends_with("_ts") && column != "pdu");
            }
            all.push((
                table.to_owned(),
                row.to_string().replace(&ours, "$our_join"),
            ));
        }
    }
    // Some tables have no rowid: an order of the rows' text stands in.
    all.sort();
    all
}

#[test]
fn a_small_answer_is_stored_in_one_request_as_the_stepped_join_stores_it() {
    block_on(async {
        let mut room = RemoteRoom::new();
        let auth = [
            room.state_id("m.room.power_levels", ""),
            room.first_join.clone(),
        ];
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        room.add("m.room.name", "", json!({ "name": "small" }), &auth);
        let events = room.events.len();

        // Default step size: the whole answer fits one step.
        let (one, token, status, answer) = alice_joins(&room).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            *one.recorded.room_commands.borrow(),
            ["join_answered"],
            "make_join and send_join from the Worker, then checks and the store in one room \
             object request"
        );

        // Two events a step: the same answer in steps, each its own request.
        let (stepped, _, status, answer) = alice_joins_in_steps(&room, Some("2")).await;
        assert_eq!(status, 200, "{answer}");
        let commands = stepped.recorded.room_commands.borrow().clone();
        assert_eq!(commands[0], "join_answered");
        assert!(
            commands.len() > events / 2 && commands[1..].iter().all(|c| c == "continue_join"),
            "{events} events, two a step: {commands:?}"
        );

        let rows = room_rows(&one, &room.room_id).await;
        assert!(rows.iter().any(|(t, _)| t == "events"));
        assert!(rows.iter().any(|(t, _)| t == "memberships"));
        assert_eq!(rows, room_rows(&stepped, &room.room_id).await);
        // No job is left behind: asked for a next step, the object finds none and the room
        // ours already.
        let next = crate::rooms::command::RoomCommand::ContinueJoin {
            room_id: ruma::RoomId::parse(&room.room_id).unwrap(),
            in_background: false,
        };
        let left = one
            .platform
            .rooms
            .command(&room.room_id, &next)
            .await
            .unwrap();
        assert_eq!(left, json!({ "room_id": room.room_id, "user_id": null }));
        assert_eq!(
            state_seen(&one, &token, &room.room_id).await.len(),
            room.state.len() + 1
        );
    });
}

/// The claims of joins under way (storage/join_claims.rs) left in the test server's D1.
async fn claims(server: &TestServer) -> Vec<Value> {
    server.rows("SELECT * FROM remote_join_claims").await
}

/// How many requests to remote.test's `endpoint` (`make_join`, `send_join`) the server sent.
fn asked(server: &TestServer, endpoint: &str) -> usize {
    server
        .recorded
        .requests
        .borrow()
        .iter()
        .filter(|r| r.url.contains(&format!("/{endpoint}/")))
        .count()
}

/// A fresh test server, and the room remote.test serves it.
fn served() -> (RemoteRoom, TestServer) {
    let room = RemoteRoom::new();
    let server = TestServer::new();
    room.serve(&server);
    (room, server)
}

#[test]
fn a_join_the_resident_refuses_leaves_nothing_behind() {
    block_on(async {
        let (room, server) = served();
        let (_, token) = server.register("alice").await;
        // remote.test holds no such room: its make_join answers 404.
        let unknown = format!("!{}", "x".repeat(43));
        let (status, answer) = join_through_remote(&server, &token, &unknown).await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(asked(&server, "make_join"), 1);
        assert_eq!(asked(&server, "send_join"), 0);
        assert!(claims(&server).await.is_empty(), "the claim is released");
        assert!(
            server.recorded.room_commands.borrow().is_empty(),
            "no room object was reached"
        );
        assert!(server
            .rows(&format!(
                "SELECT room_id FROM rooms WHERE room_id = '{unknown}'"
            ))
            .await
            .is_empty());

        // The room it holds is joined as if nothing had happened, and leaves no claim either.
        let (status, answer) = join_through_remote(&server, &token, &room.room_id).await;
        assert_eq!(status, 200, "{answer}");
        assert!(claims(&server).await.is_empty());
    });
}

#[test]
fn two_users_joining_the_same_room_at_once_run_one_handshake() {
    block_on(async {
        let (room, server) = served();
        let (alice, alice_token) = server.register("alice").await;
        let (bob, bob_token) = server.register("bob").await;
        let ((a_status, a_answer), (b_status, b_answer)) = futures::join!(
            join_through_remote(&server, &alice_token, &room.room_id),
            join_through_remote(&server, &bob_token, &room.room_id)
        );
        assert_eq!(a_status, 200, "{a_answer}");
        assert_eq!(b_status, 200, "{b_answer}");
        // One of them joined through remote.test; the other here, once the room was stored.
        assert_eq!(asked(&server, "send_join"), 1);
        // The second found the first's claim, went to the room object, waited for the first's
        // answer to be stored, and joined here.
        assert_eq!(
            *server.recorded.room_commands.borrow(),
            ["join_remote", "join_answered", "continue_join", "send"]
        );
        assert!(claims(&server).await.is_empty());
        let joined = server
            .rows(&format!(
                "SELECT user_id FROM memberships WHERE room_id = '{}' AND membership = 'join'
                 AND user_id LIKE '%:test.local' ORDER BY user_id",
                room.room_id
            ))
            .await;
        assert_eq!(
            joined,
            vec![json!({ "user_id": alice }), json!({ "user_id": bob })]
        );
        // The room's create event is stored once.
        let creates = server
            .rows(&format!(
                "SELECT event_id FROM events WHERE room_id = '{}' AND type = 'm.room.create'",
                room.room_id
            ))
            .await;
        assert_eq!(creates.len(), 1);
    });
}

#[test]
fn a_claim_whose_worker_died_is_taken_over_and_a_live_one_waited_for() {
    block_on(async {
        let (room, server) = served();
        let (_, token) = server.register("alice").await;
        let claim = |ts: u64| {
            format!(
                "INSERT INTO remote_join_claims (room_id, user_id, claimed_ts)
                 VALUES ('{}', '@gone:test.local', {ts})",
                room.room_id
            )
        };
        // A claim of now, whose handshake never hands an answer over: the join waits for it a
        // bounded while, then asks the client to come back, having sent nothing.
        server.rows(&claim(now_ms())).await;
        let (status, answer) = join_through_remote(&server, &token, &room.room_id).await;
        assert_eq!(status, 429, "{answer}");
        assert_eq!(
            asked(&server, "make_join"),
            1,
            "the template asked while claiming"
        );
        assert_eq!(asked(&server, "send_join"), 0);

        // The same claim, older than CLAIM_TTL_MS: its Worker died. The room object takes it
        // over and joins; the claim is released with the room stored.
        server.rows("DELETE FROM remote_join_claims").await;
        server.rows(&claim(1)).await;
        let (status, answer) = join_through_remote(&server, &token, &room.room_id).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(asked(&server, "send_join"), 1);
        assert!(claims(&server).await.is_empty());
    });
}
