//! `/sync` end to end through `TestServer`: the initial sync, an incremental one, and one that
//! parks for lack of news.

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::testing::{create_room, ok_call, TestServer};

async fn sync(server: &TestServer, token: &str, query: &str) -> Value {
    let path = format!("/_matrix/client/v3/sync{query}");
    let (status, answer) = server.request("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The device id of `token`.
async fn device_of(server: &TestServer, token: &str) -> String {
    let path = "/_matrix/client/v3/account/whoami";
    let whoami = ok_call(server, "GET", path, token, None).await;
    whoami["device_id"].as_str().unwrap().to_owned()
}

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn initial_incremental_and_parked_syncs() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let (status, created) = server
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&token),
                Some(json!({ "name": "Synced" })),
            )
            .await;
        assert_eq!(status, 200, "{created}");
        let room_id = created["room_id"].as_str().unwrap().to_owned();
        let send = |txn: &'static str, body: &'static str| {
            let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
            let token = token.clone();
            let server = &server;
            async move {
                let content = json!({ "msgtype": "m.text", "body": body });
                let (status, answer) = server
                    .request("PUT", &path, Some(&token), Some(content))
                    .await;
                assert_eq!(status, 200, "{answer}");
                answer["event_id"].as_str().unwrap().to_owned()
            }
        };
        let first = send("t1", "first").await;

        // Initial: the room, its latest events and the state before them.
        let initial = sync(&server, &token, "").await;
        let room = &initial["rooms"]["join"][&room_id];
        assert!(room.is_object(), "{initial}");
        let timeline = room["timeline"]["events"].as_array().unwrap();
        let last = timeline.last().expect("a timeline");
        assert_eq!(last["event_id"], first);
        assert_eq!(last["content"]["body"], "first");
        assert_eq!(
            last["unsigned"]["transaction_id"], "t1",
            "the sender's own echo"
        );
        let mut seen = types(&room["timeline"]["events"]);
        seen.extend(types(&room["state"]["events"]));
        for kind in [
            "m.room.create",
            "m.room.member",
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.name",
        ] {
            assert!(seen.iter().any(|t| t == kind), "{kind} missing: {seen:?}");
        }
        let name = room["timeline"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .chain(room["state"]["events"].as_array().unwrap())
            .find(|e| e["type"] == "m.room.name")
            .unwrap();
        assert_eq!(name["content"]["name"], "Synced");
        let member = room["timeline"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .chain(room["state"]["events"].as_array().unwrap())
            .find(|e| e["type"] == "m.room.member")
            .unwrap();
        assert_eq!(member["state_key"], alice);
        let since = initial["next_batch"].as_str().unwrap().to_owned();

        // Incremental: only what came after the token.
        let second = send("t2", "second").await;
        let delta = sync(&server, &token, &format!("?since={since}")).await;
        let joined = delta["rooms"]["join"].as_object().unwrap();
        assert_eq!(joined.len(), 1, "{delta}");
        let room = &joined[&room_id];
        let timeline = room["timeline"]["events"].as_array().unwrap();
        assert_eq!(timeline.len(), 1, "{delta}");
        assert_eq!(timeline[0]["event_id"], second);
        assert_eq!(room["timeline"]["limited"], false);
        assert!(
            room["state"]["events"]
                .as_array()
                .is_none_or(|s| s.is_empty()),
            "no state changed: {delta}"
        );
        let since = delta["next_batch"].as_str().unwrap().to_owned();
        assert_ne!(since, initial["next_batch"].as_str().unwrap());

        // Nothing new and a timeout: the sync parks for alice, then answers empty at the same
        // position. (The fake's wait returns at once, so keep the timeout short.)
        server.recorded.waits.borrow_mut().clear();
        let quiet = sync(&server, &token, &format!("?since={since}&timeout=20")).await;
        assert!(
            server.recorded.waits.borrow().iter().any(|u| *u == alice),
            "{:?}",
            server.recorded.waits.borrow()
        );
        assert_eq!(quiet["next_batch"], since, "{quiet}");
        assert!(
            quiet["rooms"]["join"]
                .as_object()
                .is_none_or(|j| j.is_empty()),
            "{quiet}"
        );

        // Without a timeout it answers at once, without parking.
        server.recorded.waits.borrow_mut().clear();
        let at_once = sync(&server, &token, &format!("?since={since}")).await;
        assert_eq!(at_once["next_batch"], since);
        assert!(server.recorded.waits.borrow().is_empty());
    });
}

#[test]
fn an_unknown_since_token_is_the_clients_error() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let (status, answer) = server
            .request(
                "GET",
                "/_matrix/client/v3/sync?since=garbage",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errcode"], "M_INVALID_PARAM");
    });
}

/// Alice and bob, `(user id, token)` each, joined to `n` public rooms alice made, and bob's
/// token after an initial sync.
type Pair = ((String, String), (String, String));
async fn pair_in_rooms(server: &TestServer, n: usize) -> (Pair, Vec<String>, String) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut rooms = Vec::new();
    for _ in 0..n {
        let room_id = create_room(server, &alice.1, json!({ "preset": "public_chat" })).await;
        let path = format!("/_matrix/client/v3/join/{room_id}");
        ok_call(server, "POST", &path, &bob.1, Some(json!({}))).await;
        rooms.push(room_id);
    }
    let since = sync(server, &bob.1, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    ((alice, bob), rooms, since)
}

/// An initial sync shows the rooms the user was banned or kicked from (they may not know yet),
/// but a room they left themselves only with `include_leave`.
#[test]
fn an_initial_sync_shows_bans_and_kicks_but_own_leaves_only_when_asked() {
    block_on(async {
        let server = TestServer::new();
        let (((_, alice), (bob_id, bob)), rooms, _) = pair_in_rooms(&server, 3).await;
        let [banned, kicked, left] = [&rooms[0], &rooms[1], &rooms[2]];
        let who = json!({ "user_id": bob_id });
        for (room, what) in [(banned, "ban"), (kicked, "kick")] {
            let path = format!("/_matrix/client/v3/rooms/{room}/{what}");
            ok_call(&server, "POST", &path, &alice, Some(who.clone())).await;
        }
        let path = format!("/_matrix/client/v3/rooms/{left}/leave");
        ok_call(&server, "POST", &path, &bob, Some(json!({}))).await;

        let answer = sync(&server, &bob, "").await;
        let shown = answer["rooms"]["leave"].as_object().unwrap();
        assert!(shown.contains_key(banned.as_str()), "{answer}");
        assert!(shown.contains_key(kicked.as_str()), "{answer}");
        assert!(!shown.contains_key(left.as_str()), "{answer}");
        let filter = json!({ "room": { "include_leave": true } }).to_string();
        let query = format!("?filter={}", crate::http::route::percent_encode(&filter));
        let asked = sync(&server, &bob, &query).await;
        assert_eq!(
            asked["rooms"]["leave"].as_object().unwrap().len(),
            3,
            "{asked}"
        );
    });
}

/// The common incremental sync (a new message in a room the user was already in) reads D1 in
/// one round trip: the first statement reads the rooms' first round too (`storage::sync_fold`).
/// A sync with nothing new is the first statement alone.
#[test]
fn an_incremental_sync_costs_one_round_trip() {
    block_on(async {
        let server = TestServer::new();
        let (pair, rooms, mut since) = pair_in_rooms(&server, 1).await;
        let ((_, token), (_, bob_token), room_id) = (pair.0, pair.1, rooms[0].clone());
        for (i, body) in ["one", "two"].iter().enumerate() {
            let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{i}");
            let content = json!({ "msgtype": "m.text", "body": body });
            ok_call(&server, "PUT", &path, &token, Some(content)).await;
            let before = server.d1_round_trips();
            let delta = sync(&server, &bob_token, &format!("?since={since}")).await;
            let round_trips = server.d1_round_trips() - before;
            let events = &delta["rooms"]["join"][&room_id]["timeline"]["events"];
            assert_eq!(events.as_array().map(Vec::len), Some(1), "{delta}");
            assert_eq!(events[0]["content"]["body"], *body);
            assert_eq!(round_trips, 1, "D1 round trips for one new event");
            since = delta["next_batch"].as_str().unwrap().to_owned();

            let before = server.d1_round_trips();
            let quiet = sync(&server, &bob_token, &format!("?since={since}")).await;
            assert_eq!(quiet["next_batch"], since.as_str());
            let round_trips = server.d1_round_trips() - before;
            assert_eq!(round_trips, 1, "D1 round trips for a sync with nothing new");
        }
    });
}

/// A to-device message reaches the device once, and the next sync that builds (the token
/// acknowledges it) deletes it: the first statement's view of the inbox decides whether to
/// read it, delete from it, or neither.
#[test]
fn to_device_messages_arrive_once_and_the_acknowledged_are_deleted() {
    block_on(async {
        let server = TestServer::new();
        let (alice, alice_token) = server.register("alice").await;
        let (bob, token) = server.register("bob").await;
        let device = device_of(&server, &token).await;
        let mut since = sync(&server, &token, "").await["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();
        for txn in ["t1", "t2"] {
            let body = json!({ "messages": { &bob: { &device: { "n": txn } } } });
            let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
            ok_call(&server, "PUT", &path, &alice_token, Some(body)).await;
            let delivered = sync(&server, &token, &format!("?since={since}")).await;
            let events = delivered["to_device"]["events"].as_array().unwrap();
            assert_eq!(events.len(), 1, "{delivered}");
            assert_eq!(events[0]["content"]["n"], txn);
            assert_eq!(events[0]["sender"], alice.as_str());
            since = delivered["next_batch"].as_str().unwrap().to_owned();
            // The earlier message, acknowledged by this sync's token, is gone.
            let left = server.rows("SELECT stream_id FROM e2e_to_device").await;
            assert_eq!(left.len(), 1, "{left:?}");
            // The token acknowledges the new one: it does not come again.
            let after = sync(&server, &token, &format!("?since={since}")).await;
            assert!(
                after["to_device"]["events"]
                    .as_array()
                    .is_none_or(|e| e.is_empty()),
                "{after}"
            );
            since = after["next_batch"].as_str().unwrap().to_owned();
        }
    });
}

/// A thread root in a sync's timeline carries the same summary as in `/messages` (the sync
/// finds the roots in SQL, `/messages` from its rows), and a timeline cut before the root
/// attaches none.
#[test]
fn thread_summaries_in_sync_match_messages() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room_id = create_room(&server, &token, json!({})).await;
        let send = |txn: &'static str, content: Value| {
            let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
            let (server, token) = (&server, token.clone());
            async move {
                let sent = ok_call(server, "PUT", &path, &token, Some(content)).await;
                sent["event_id"].as_str().unwrap().to_owned()
            }
        };
        let root = send("r", json!({ "msgtype": "m.text", "body": "root" })).await;
        let reply = |txn: &'static str| {
            json!({ "msgtype": "m.text", "body": txn,
                    "m.relates_to": { "rel_type": "m.thread", "event_id": root } })
        };
        send("a", reply("a")).await;
        let last = send("b", reply("b")).await;

        let synced = sync(&server, &token, "").await;
        let events = synced["rooms"]["join"][&room_id]["timeline"]["events"]
            .as_array()
            .unwrap()
            .clone();
        let in_sync = events.iter().find(|e| e["event_id"] == root).unwrap();
        let thread = &in_sync["unsigned"]["m.relations"]["m.thread"];
        assert_eq!(thread["count"], 2, "{in_sync}");
        assert_eq!(thread["latest_event"]["event_id"], last);
        assert_eq!(thread["current_user_participated"], true);
        let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=10");
        let (status, page) = server.request("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{page}");
        let in_messages = page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_id"] == root)
            .unwrap();
        let relations = |event: &Value| {
            let mut relations = event["unsigned"]["m.relations"].clone();
            // The latest reply's age is measured when each answer is made.
            relations["m.thread"]["latest_event"]["unsigned"]["age"].take();
            relations
        };
        assert_eq!(relations(in_messages), relations(in_sync), "{in_messages}");
        // The replies are no roots, and no event but the root has a summary.
        assert!(events
            .iter()
            .filter(|e| e["event_id"] != root)
            .all(|e| e["unsigned"]["m.relations"]["m.thread"].is_null()));

        let filter = r#"{"room":{"timeline":{"limit":2}}}"#;
        let cut = sync(&server, &token, &format!("?filter={filter}")).await;
        let events = cut["rooms"]["join"][&room_id]["timeline"]["events"]
            .as_array()
            .unwrap();
        assert_eq!(events.len(), 2, "{cut}");
        assert!(events
            .iter()
            .all(|e| e["event_id"] != root && e["unsigned"]["m.relations"]["m.thread"].is_null()));
    });
}

/// `sync` with every `age` taken out (it is measured when each answer is made).
async fn sync_without_ages(server: &TestServer, token: &str, query: &str) -> (Value, u64) {
    let before = server.d1_round_trips();
    let answer = sync(server, token, query).await;
    let round_trips = server.d1_round_trips() - before;
    (without_ages(answer), round_trips)
}

/// `value` without its `age` fields, which grow between two answers.
pub(crate) fn without_ages(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("age");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// The same sync read folded, then the separate way (`sync_without_ages`).
async fn both_ways(server: &TestServer, token: &str, query: &str) -> ((Value, u64), (Value, u64)) {
    let folded = sync_without_ages(server, token, query).await;
    crate::sync::start::NO_FOLD.with(|off| off.set(true));
    let separate = sync_without_ages(server, token, query).await;
    crate::sync::start::NO_FOLD.with(|off| off.set(false));
    (folded, separate)
}

/// The first round read by the first statement (`storage::sync_fold`) answers exactly what the
/// separate reads answer from the same token: new messages, a thread reply, a state change
/// (with what it replaced), a receipt, typing, unread counts and a device-list change, with
/// the default limit, an inline filter and a stored one whose limit cuts the timeline; and a
/// sync whose rooms it cannot serve (a room joined since the token) reads the usual way.
#[test]
fn a_folded_first_round_answers_what_the_separate_reads_answer() {
    block_on(async {
        let server = TestServer::new();
        let (pair, rooms, since) = pair_in_rooms(&server, 2).await;
        let ((alice, token), (bob, bob_token)) = pair;
        let (room_id, other) = (rooms[0].clone(), rooms[1].clone());
        let put = |path: String, body: Value| {
            let (server, token) = (&server, token.clone());
            async move { ok_call(server, "PUT", &path, &token, Some(body)).await }
        };
        let send = |room: &str, txn: &str, content: Value| {
            put(
                format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                content,
            )
        };
        let root = send(
            &room_id,
            "r",
            json!({ "msgtype": "m.text", "body": "root" }),
        )
        .await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let reply = json!({ "msgtype": "m.text", "body": "in thread",
            "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
        send(&room_id, "t", reply).await;
        for topic in ["one", "two"] {
            let path = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic");
            put(path, json!({ "topic": topic })).await;
        }
        let last = send(&other, "o", json!({ "msgtype": "m.text", "body": "other" })).await
            ["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/_matrix/client/v3/rooms/{other}/receipt/m.read/{last}");
        ok_call(&server, "POST", &path, &token, Some(json!({}))).await;
        let path = format!("/_matrix/client/v3/rooms/{room_id}/typing/{alice}");
        put(path, json!({ "typing": true, "timeout": 30000 })).await;
        let device = device_of(&server, &token).await;
        let keys = json!({ "device_keys": { "user_id": alice, "device_id": device,
            "algorithms": [], "keys": {}, "signatures": {} } });
        ok_call(
            &server,
            "POST",
            "/_matrix/client/v3/keys/upload",
            &token,
            Some(keys),
        )
        .await;

        let stored = ok_call(
            &server,
            "POST",
            &format!("/_matrix/client/v3/user/{bob}/filter"),
            &bob_token,
            Some(json!({ "room": { "timeline": { "limit": 2 } } })),
        )
        .await["filter_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let inline = r#"{"room":{"timeline":{"limit":3},"state":{"lazy_load_members":true}}}"#;
        for query in [
            format!("?since={since}"),
            format!("?since={since}&filter={inline}"),
            format!("?since={since}&filter={stored}"),
        ] {
            let ((folded, round_trips), (separate, separate_trips)) =
                both_ways(&server, &bob_token, &query).await;
            assert_eq!(folded, separate, "{query}");
            assert!(
                round_trips < separate_trips,
                "{query}: {round_trips} {separate_trips}"
            );
            let rooms = &folded["rooms"]["join"];
            assert!(rooms[&room_id]["timeline"]["events"]
                .as_array()
                .is_some_and(|e| !e.is_empty()));
            assert!(rooms[&other]["ephemeral"]["events"]
                .as_array()
                .is_some_and(|e| !e.is_empty()));
        }
        let (folded, _) = sync_without_ages(&server, &bob_token, &format!("?since={since}")).await;
        let room = &folded["rooms"]["join"][&room_id];
        let events = room["timeline"]["events"].as_array().unwrap();
        let topic = events
            .iter()
            .rev()
            .find(|e| e["type"] == "m.room.topic")
            .unwrap();
        assert_eq!(topic["unsigned"]["prev_content"]["topic"], "one", "{topic}");
        assert!(
            room["unread_notifications"]["notification_count"].as_u64() > Some(0),
            "{room}"
        );
        assert!(
            folded["device_lists"]["changed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u == alice.as_str()),
            "{folded}"
        );

        // A room joined since the token is built whole: the separate reads do it.
        let third = create_room(&server, &token, json!({ "preset": "public_chat" })).await;
        let since_join = sync(&server, &bob_token, &format!("?since={since}")).await["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/_matrix/client/v3/join/{third}");
        ok_call(&server, "POST", &path, &bob_token, Some(json!({}))).await;
        let query = format!("?since={since_join}");
        let ((joined, _), (separate, _)) = both_ways(&server, &bob_token, &query).await;
        assert_eq!(joined, separate);
        assert!(
            joined["rooms"]["join"][&third]["timeline"]["events"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{joined}"
        );
    });
}
