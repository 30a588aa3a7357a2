//! Client handlers end to end through `TestServer`: real routing, handlers, room objects and
//! SQLite (docs/design.md, "Testing").

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::testing::TestServer;

/// Creates a room as `token`'s user; returns its id.
async fn create_room(server: &TestServer, token: &str) -> String {
    let (status, answer) = server
        .request(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(token),
            Some(json!({ "name": "A room" })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["room_id"].as_str().expect("a room id").to_owned()
}

/// Sends `body` as an `m.room.message` with transaction id `txn`; returns the status and answer.
async fn send_text(
    server: &TestServer,
    token: &str,
    room_id: &str,
    txn: &str,
    body: &str,
) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
    let content = json!({ "msgtype": "m.text", "body": body });
    server
        .request("PUT", &path, Some(token), Some(content))
        .await
}

/// The newest events of the room as `/messages` pages them (newest first).
async fn messages(server: &TestServer, token: &str, room_id: &str) -> Vec<Value> {
    let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50");
    let (status, answer) = server.request("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{answer}");
    answer["chunk"].as_array().expect("a chunk").clone()
}

/// A new device of `localpart` (password login); returns its access token.
async fn login(server: &TestServer, localpart: &str) -> String {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": localpart },
        "password": "correct horse battery",
    });
    let (status, answer) = server
        .request("POST", "/_matrix/client/v3/login", None, Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    server.rows(sql).await[0]["n"].as_i64().expect("a count")
}

/// An event id of room version 12: `$` and the unpadded url-safe base64 of a sha256.
fn assert_reference_hash(event_id: &str) {
    let hash = event_id.strip_prefix('$').expect("starts with $");
    assert_eq!(hash.len(), 43, "{event_id}");
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{event_id} is not url-safe unpadded base64"
    );
}

#[test]
fn a_sent_message_is_stored_readable_and_wakes_the_members() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let room_id = create_room(&server, &token).await;
        server.recorded.notified.borrow_mut().clear();

        let (status, answer) = send_text(&server, &token, &room_id, "t1", "hello").await;
        assert_eq!(status, 200, "{answer}");
        let event_id = answer["event_id"].as_str().unwrap().to_owned();
        assert_reference_hash(&event_id);

        let path = format!("/_matrix/client/v3/rooms/{room_id}/event/{event_id}");
        let (status, event) = server.request("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["event_id"], event_id);
        assert_eq!(event["room_id"], room_id);
        assert_eq!(event["sender"], alice);
        assert_eq!(event["type"], "m.room.message");
        assert_eq!(event["content"]["body"], "hello");

        let chunk = messages(&server, &token, &room_id).await;
        assert_eq!(chunk[0]["event_id"], event_id, "newest first");
        assert_eq!(chunk[0]["content"]["body"], "hello");
        // The room's creation is there behind it.
        assert!(chunk.iter().any(|e| e["type"] == "m.room.create"));

        assert!(
            server.recorded.notified.borrow().contains(&alice),
            "the sender's syncs were woken: {:?}",
            server.recorded.notified.borrow()
        );
        // A room with no other server queues nothing for federation.
        assert!(server.recorded.queued.borrow().is_empty());
    });
}

#[test]
fn a_retried_transaction_id_returns_the_first_event() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room_id = create_room(&server, &token).await;
        let messages_sql = format!(
            "SELECT COUNT(*) AS n FROM events WHERE room_id = '{room_id}' \
             AND type = 'm.room.message'"
        );

        let (_, first) = send_text(&server, &token, &room_id, "same", "once").await;
        let (status, again) = send_text(&server, &token, &room_id, "same", "once").await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(first["event_id"], again["event_id"]);
        assert_eq!(count(&server, &messages_sql).await, 1);
        let bodies: Vec<Value> = messages(&server, &token, &room_id)
            .await
            .into_iter()
            .filter(|e| e["type"] == "m.room.message")
            .collect();
        assert_eq!(bodies.len(), 1);

        // The transaction id is the device's: another device of the same user sends anew.
        let other_device = login(&server, "alice").await;
        let (status, other) = send_text(&server, &other_device, &room_id, "same", "once").await;
        assert_eq!(status, 200, "{other}");
        assert_ne!(other["event_id"], first["event_id"]);
        assert_eq!(count(&server, &messages_sql).await, 2);

        // And the same id in another room is another transaction too.
        let other_room = create_room(&server, &token).await;
        let (_, elsewhere) = send_text(&server, &token, &other_room, "same", "once").await;
        assert_ne!(elsewhere["event_id"], first["event_id"]);
    });
}

#[test]
fn a_body_that_is_not_json_is_refused_and_changes_nothing() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room_id = create_room(&server, &token).await;
        let events_sql = "SELECT COUNT(*) AS n FROM events";
        let before = count(&server, events_sql).await;

        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1");
        let bearer = format!("Bearer {token}");
        let (status, answer) = server
            .request_raw("PUT", &path, Some(&bearer), b"{\"body\": ".to_vec())
            .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errcode"], "M_NOT_JSON");
        // Valid JSON that is not an object is the wrong shape.
        let (status, answer) = server
            .request_raw("PUT", &path, Some(&bearer), b"[1, 2]".to_vec())
            .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errcode"], "M_BAD_JSON");
        assert_eq!(count(&server, events_sql).await, before);

        // The transaction id was not used up: the retry with a good body goes through.
        let (status, answer) = send_text(&server, &token, &room_id, "t1", "now").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(count(&server, events_sql).await, before + 1);
    });
}

#[test]
fn tokens_are_required_and_must_be_known() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let whoami = "/_matrix/client/v3/account/whoami";

        let (status, answer) = server.request("GET", whoami, Some(&token), None).await;
        assert_eq!((status, &answer["user_id"]), (200, &json!(alice)));
        let (status, answer) = server.request("GET", whoami, Some("nonsense"), None).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errcode"], "M_UNKNOWN_TOKEN");
        let (status, answer) = server.request("GET", whoami, None, None).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errcode"], "M_MISSING_TOKEN");
        // The query parameter works as the header does.
        let (status, _) = server
            .request("GET", &format!("{whoami}?access_token={token}"), None, None)
            .await;
        assert_eq!(status, 200);

        // A token that logged out is unknown from then on.
        let (status, _) = server
            .request("POST", "/_matrix/client/v3/logout", Some(&token), None)
            .await;
        assert_eq!(status, 200);
        let (status, answer) = server.request("GET", whoami, Some(&token), None).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errcode"], "M_UNKNOWN_TOKEN");
    });
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/account/whoami",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 405, "{answer}");
        assert_eq!(answer["errcode"], "M_UNRECOGNIZED");
        let (status, answer) = server
            .request(
                "GET",
                "/_matrix/client/v3/no/such/thing",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["errcode"], "M_UNRECOGNIZED");
        // r0 paths are the v3 endpoints.
        let (status, answer) = server
            .request(
                "GET",
                "/_matrix/client/r0/account/whoami",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    });
}

#[test]
fn only_members_may_send_or_read() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let room_id = create_room(&server, &alice).await;
        let (_, sent) = send_text(&server, &alice, &room_id, "t1", "private").await;
        let before = count(&server, "SELECT COUNT(*) AS n FROM events").await;

        let (status, answer) = send_text(&server, &bob, &room_id, "t1", "let me in").await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["errcode"], "M_FORBIDDEN");
        let path = format!(
            "/_matrix/client/v3/rooms/{room_id}/event/{}",
            sent["event_id"].as_str().unwrap()
        );
        let (status, answer) = server.request("GET", &path, Some(&bob), None).await;
        assert!(matches!(status, 403 | 404), "{status} {answer}");
        assert_eq!(
            count(&server, "SELECT COUNT(*) AS n FROM events").await,
            before
        );
    });
}

/// Each of the three join endpoints reads the room from its own path parameter: `/rooms/{roomId}/join`
/// once read the `{roomIdOrAlias}` of `/join/...` and refused every room.
#[test]
fn every_join_endpoint_finds_its_room() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (bob_id, bob) = server.register("bob").await;
        let (carol_id, carol) = server.register("carol").await;
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&alice),
                Some(json!({ "preset": "public_chat", "room_alias_name": "lobby" })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let room_id = answer["room_id"].as_str().unwrap().to_owned();
        let encoded = crate::http::route::percent_encode(&room_id);

        let by_room = format!("/_matrix/client/v3/rooms/{encoded}/join");
        let (status, answer) = server.request("POST", &by_room, Some(&bob), None).await;
        assert_eq!(
            (status, answer["room_id"].as_str()),
            (200, Some(room_id.as_str())),
            "{answer}"
        );

        let by_alias = "/_matrix/client/v3/join/%23lobby%3Atest.local";
        let (status, answer) = server.request("POST", by_alias, Some(&carol), None).await;
        assert_eq!(
            (status, answer["room_id"].as_str()),
            (200, Some(room_id.as_str())),
            "{answer}"
        );

        let members = format!("/_matrix/client/v3/rooms/{encoded}/joined_members");
        let (status, answer) = server.request("GET", &members, Some(&alice), None).await;
        assert_eq!(status, 200, "{answer}");
        for user in [&bob_id, &carol_id] {
            assert!(
                answer["joined"].get(user.as_str()).is_some(),
                "{user} joined: {answer}"
            );
        }
    });
}

#[test]
fn deleting_a_device_with_another_users_password_is_forbidden_and_keeps_it() {
    block_on(async {
        let server = TestServer::new();
        let (_alice, token) = server.register("alice").await;
        server.register("bob").await;
        let second = login(&server, "alice").await;
        let (_, whoami) = server
            .request(
                "GET",
                "/_matrix/client/v3/account/whoami",
                Some(&second),
                None,
            )
            .await;
        let device = whoami["device_id"].as_str().unwrap().to_owned();
        let path = format!("/_matrix/client/v3/devices/{device}");
        // Bob's own, correct password: still not alice's proof.
        let body = json!({ "auth": {
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "bob" },
            "password": "correct horse battery",
        }});
        let (status, answer) = server
            .request("DELETE", &path, Some(&token), Some(body))
            .await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["errcode"], "M_FORBIDDEN");
        let (status, _) = server.request("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "the device is still there");
    });
}

#[test]
fn setting_the_same_state_twice_is_one_event_and_a_create_event_is_refused() {
    block_on(async {
        let server = TestServer::new();
        let (_alice, token) = server.register("alice").await;
        let room_id = create_room(&server, &token).await;
        let path = format!("/_matrix/client/v3/rooms/{room_id}/state/org.example.slot/");
        let put = |content: Value| server.request("PUT", &path, Some(&token), Some(content));
        let (status, first) = put(json!({ "a": 1 })).await;
        assert_eq!(status, 200, "{first}");
        let before = count(&server, "SELECT COUNT(*) AS n FROM events").await;
        let (_, again) = put(json!({ "a": 1 })).await;
        assert_eq!(again["event_id"], first["event_id"]);
        assert_eq!(
            count(&server, "SELECT COUNT(*) AS n FROM events").await,
            before
        );
        let (_, changed) = put(json!({ "a": 2 })).await;
        assert_ne!(changed["event_id"], first["event_id"]);

        let before = count(&server, "SELECT COUNT(*) AS n FROM events").await;
        let create = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.create/");
        let body = json!({ "room_version": "12", "entropy": 1 });
        let (status, answer) = server
            .request("PUT", &create, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{answer}");
        let message = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.create/t1");
        let (status, _) = server
            .request("PUT", &message, Some(&token), Some(body))
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            count(&server, "SELECT COUNT(*) AS n FROM events").await,
            before
        );
    });
}

#[test]
fn joined_members_is_for_members_only() {
    block_on(async {
        let server = TestServer::new();
        let (_alice, token) = server.register("alice").await;
        let room_id = create_room(&server, &token).await;
        let path = format!("/_matrix/client/v3/rooms/{room_id}/joined_members");
        let (status, _) = server.request("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200);
        let leave = format!("/_matrix/client/v3/rooms/{room_id}/leave");
        let (status, _) = server
            .request("POST", &leave, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, 200);
        let (status, answer) = server.request("GET", &path, Some(&token), None).await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["errcode"], "M_FORBIDDEN");
    });
}

#[test]
fn an_invite_from_an_ignored_user_is_not_in_sync() {
    block_on(async {
        let server = TestServer::new();
        let (alice, alice_token) = server.register("alice").await;
        let (bob, bob_token) = server.register("bob").await;
        let (_carol, carol_token) = server.register("carol").await;
        let path = format!("/_matrix/client/v3/user/{alice}/account_data/m.ignored_user_list");
        let ignore = json!({ "ignored_users": { bob.clone(): {} } });
        let (status, _) = server
            .request("PUT", &path, Some(&alice_token), Some(ignore))
            .await;
        assert_eq!(status, 200);
        let mut rooms = Vec::new();
        for token in [&bob_token, &carol_token] {
            let room_id = create_room(&server, token).await;
            let invite = format!("/_matrix/client/v3/rooms/{room_id}/invite");
            let (status, answer) = server
                .request(
                    "POST",
                    &invite,
                    Some(token),
                    Some(json!({ "user_id": alice })),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            rooms.push(room_id);
        }
        let (status, sync) = server
            .request("GET", "/_matrix/client/v3/sync", Some(&alice_token), None)
            .await;
        assert_eq!(status, 200);
        let invites = &sync["rooms"]["invite"];
        assert!(
            invites.get(&rooms[0]).is_none(),
            "bob is ignored: {invites}"
        );
        assert!(invites.get(&rooms[1]).is_some(), "carol is not: {invites}");
    });
}

#[test]
fn a_creator_in_v12_power_levels_is_bad_content() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let room_id = create_room(&server, &token).await;
        let path = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/");
        let content = json!({ "users": { alice: 100 } });
        let (status, answer) = server
            .request("PUT", &path, Some(&token), Some(content))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errcode"], "M_BAD_JSON");
    });
}

/// A join through servers the client names goes through those only: when none of them can
/// authorise it, it fails rather than going round them; with none named, the room id's server
/// is the guess.
#[test]
fn a_join_goes_only_through_the_servers_the_client_names() {
    use crate::testing::{json_response, path_of, RemoteServer};
    use std::{cell::RefCell, rc::Rc};
    block_on(async {
        let server = TestServer::new();
        let (named, other) = (
            RemoteServer::new("named.test"),
            RemoteServer::new("remote.test"),
        );
        let asked: Rc<RefCell<Vec<String>>> = Rc::default();
        let log = asked.clone();
        server.respond_with(move |request| {
            if let Some(answer) = named
                .standard_answer(request)
                .or_else(|| other.standard_answer(request))
            {
                return Ok(answer);
            }
            if path_of(request).starts_with("/_matrix/federation/v1/make_join/") {
                let rest = request.url.split("://").nth(1).unwrap_or_default();
                log.borrow_mut()
                    .push(rest.split([':', '/']).next().unwrap_or_default().to_owned());
            }
            let refusal =
                json!({ "errcode": "M_UNABLE_TO_GRANT_JOIN", "error": "nobody may invite" });
            Ok(json_response(400, &refusal))
        });
        let (_, token) = server.register("carol").await;
        let room = "!restricted:remote.test";
        let path = format!("/_matrix/client/v3/join/{room}?via=named.test");
        let (status, refused) = server
            .request("POST", &path, Some(&token), Some(json!({})))
            .await;
        assert_ne!(status, 200);
        assert_eq!(refused["errcode"], "M_UNABLE_TO_GRANT_JOIN", "{refused}");
        assert_eq!(*asked.borrow(), ["named.test"]);
        asked.borrow_mut().clear();
        let path = format!("/_matrix/client/v3/join/{room}");
        let (status, _) = server
            .request("POST", &path, Some(&token), Some(json!({})))
            .await;
        assert_ne!(status, 200);
        assert_eq!(*asked.borrow(), ["remote.test"]);
    });
}
