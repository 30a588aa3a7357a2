//! Simplified sliding sync end to end through `TestServer`: lists, ordering, ranges, the
//! connection state across `pos` tokens, subscriptions, invites and the extensions.

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::testing::TestServer;

const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn slide(server: &TestServer, token: &str, query: &str, body: Value) -> Value {
    let (status, answer) = server
        .request("POST", &format!("{PATH}{query}"), Some(token), Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn create_room(server: &TestServer, token: &str, body: Value) -> String {
    let (status, created) = server
        .request(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    created["room_id"].as_str().unwrap().to_owned()
}

async fn send(server: &TestServer, token: &str, room_id: &str, txn: &str, text: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
    let content = json!({ "msgtype": "m.text", "body": text });
    let (status, answer) = server
        .request("PUT", &path, Some(token), Some(content))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

fn list_body(range: (u64, u64), timeline_limit: u64) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": { "all": {
            "ranges": [[range.0, range.1]],
            "timeline_limit": timeline_limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$ME"], ["m.room.member", "$LAZY"]],
        } }
    })
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

fn pos(answer: &Value) -> String {
    answer["pos"].as_str().expect("a pos").to_owned()
}

#[test]
fn lists_ranges_ordering_and_incremental_answers() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let older = create_room(&server, &token, json!({ "name": "Older" })).await;
        send(&server, &token, &older, "o1", "old one").await;
        send(&server, &token, &older, "o2", "old two").await;
        let newer = create_room(&server, &token, json!({})).await;
        send(&server, &token, &newer, "n1", "new one").await;

        // First answer: only the top room of the window, with its newest event.
        let first = slide(&server, &token, "", list_body((0, 0), 1)).await;
        assert_eq!(first["lists"]["all"]["count"], 2, "{first}");
        let rooms = first["rooms"].as_object().unwrap();
        assert_eq!(rooms.len(), 1, "{first}");
        let room = &rooms[&newer];
        assert_eq!(room["initial"], true);
        assert_eq!(room["membership"], "join");
        assert_eq!(room["lists"], json!(["all"]));
        assert_eq!(bodies(room), ["new one"]);
        assert_eq!(room["limited"], true, "the room has older events");
        assert_eq!(room["joined_count"], 1);
        assert!(room["prev_batch"].as_str().unwrap().starts_with('t'));
        assert!(room.get("name").is_none(), "the room has no name: {room}");
        let heroes = room["heroes"].as_array().unwrap();
        assert!(heroes.is_empty(), "alice is alone: {room}");
        let state = room["required_state"].as_array().unwrap();
        assert!(
            state
                .iter()
                .any(|e| e["type"] == "m.room.member" && e["state_key"] == alice),
            "$ME: {room}"
        );
        assert!(
            !state.iter().any(|e| e["type"] == "m.room.create"),
            "not asked for"
        );
        let newer_bump = room["bump_stamp"].as_u64().unwrap();

        // The range grows: only the room not sent yet comes, the other is not repeated.
        let second = slide(
            &server,
            &token,
            &format!("?pos={}&timeout=0", pos(&first)),
            list_body((0, 1), 1),
        )
        .await;
        let rooms = second["rooms"].as_object().unwrap();
        assert_eq!(rooms.keys().collect::<Vec<_>>(), [&older], "{second}");
        let room = &rooms[&older];
        assert_eq!(room["name"], "Older");
        assert_eq!(bodies(room), ["old two"]);
        assert!(room["bump_stamp"].as_u64().unwrap() < newer_bump);
        assert!(room["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Older"));

        // Nothing new: an empty answer, at once without a timeout.
        let quiet = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&second)),
            list_body((0, 1), 1),
        )
        .await;
        assert!(quiet["rooms"].as_object().unwrap().is_empty(), "{quiet}");

        // A new message in the older room: it alone comes, with just that event, live.
        send(&server, &token, &older, "o3", "old three").await;
        let third = slide(
            &server,
            &token,
            &format!("?pos={}&timeout=0", pos(&quiet)),
            list_body((0, 1), 5),
        )
        .await;
        let rooms = third["rooms"].as_object().unwrap();
        assert_eq!(rooms.len(), 1, "{third}");
        let room = &rooms[&older];
        assert!(room.get("initial").is_none(), "{room}");
        assert_eq!(bodies(room), ["old three"]);
        assert_eq!(room["num_live"], 1);
        assert_eq!(room["limited"], false);
        assert!(
            room["bump_stamp"].as_u64().unwrap() > newer_bump,
            "moved to the top"
        );

        // With a window of one, the room that dropped out is not sent again; once back in
        // view it comes with what it missed, not as new.
        let narrow = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&third)),
            list_body((0, 0), 5),
        )
        .await;
        assert!(narrow["rooms"].as_object().unwrap().is_empty(), "{narrow}");
        send(&server, &token, &newer, "n2", "new two").await;
        let back = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&narrow)),
            list_body((0, 0), 5),
        )
        .await;
        let room = &back["rooms"][&newer];
        assert!(room.get("initial").is_none(), "{back}");
        assert_eq!(bodies(room), ["new two"]);

        // Retrying the last pos works (a lost answer); the one before it is gone.
        let retry = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&narrow)),
            list_body((0, 0), 5),
        )
        .await;
        assert_eq!(bodies(&retry["rooms"][&newer]), ["new two"]);
        // The client goes on from the retried answer (the one it processed).
        let _ = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&retry)),
            list_body((0, 1), 5),
        )
        .await;
        let (status, gone) = server
            .request(
                "POST",
                &format!("{PATH}?pos={}", pos(&first)),
                Some(&token),
                Some(list_body((0, 1), 1)),
            )
            .await;
        assert_eq!(status, 400, "{gone}");
        assert_eq!(gone["errcode"], "M_UNKNOWN_POS");
    });
}

#[test]
fn unknown_pos_other_connections_and_bad_bodies() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let (_, bob_token) = server.register("bob").await;
        let first = slide(&server, &token, "", list_body((0, 9), 1)).await;
        for bad in ["garbage", "99999s1_0_0_0_0_0_0", ""] {
            let (status, answer) = server
                .request(
                    "POST",
                    &format!("{PATH}?pos={bad}"),
                    Some(&token),
                    Some(json!({})),
                )
                .await;
            assert_eq!(
                (status, answer["errcode"].as_str()),
                (400, Some("M_UNKNOWN_POS")),
                "{bad}"
            );
        }
        // A pos belongs to its connection and its device.
        let mut other_conn = list_body((0, 9), 1);
        other_conn["conn_id"] = json!("encryption");
        let (status, answer) = server
            .request(
                "POST",
                &format!("{PATH}?pos={}", pos(&first)),
                Some(&token),
                Some(other_conn),
            )
            .await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (400, Some("M_UNKNOWN_POS"))
        );
        let (status, _) = server
            .request(
                "POST",
                &format!("{PATH}?pos={}", pos(&first)),
                Some(&bob_token),
                Some(list_body((0, 9), 1)),
            )
            .await;
        assert_eq!(status, 400);
        let (status, answer) = server
            .request(
                "POST",
                PATH,
                Some(&token),
                Some(json!({ "lists": { "a": { "ranges": [[3, 1]] } } })),
            )
            .await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM"))
        );
        let (status, answer) = server.request("POST", PATH, None, Some(json!({}))).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (401, Some("M_MISSING_TOKEN"))
        );
    });
}

#[test]
fn subscriptions_invites_filters_and_wildcard_state() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let (bob, bob_token) = server.register("bob").await;
        let quiet_room = create_room(&server, &token, json!({ "name": "Quiet" })).await;
        let busy = create_room(&server, &token, json!({ "name": "Busy" })).await;
        send(&server, &token, &busy, "b1", "hello").await;
        let invited = create_room(
            &server,
            &bob_token,
            json!({ "name": "Bob's", "invite": [alice.clone()] }),
        )
        .await;

        // A window of one (the invite is newest) plus a subscription to the quiet room, with
        // all of its state; a subscription to a room alice is not in is ignored.
        let body = json!({
            "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 1, "required_state": [] } },
            "room_subscriptions": {
                quiet_room.clone(): { "timeline_limit": 20, "required_state": [["*", "*"]] },
                "!nowhere:localhost": { "timeline_limit": 1 }
            }
        });
        let first = slide(&server, &token, "", body).await;
        let rooms = first["rooms"].as_object().unwrap();
        assert_eq!(rooms.len(), 2, "{first}");
        let invite = &rooms[&invited];
        assert_eq!(invite["membership"], "invite");
        assert_eq!(invite["name"], "Bob's");
        let stripped = invite["invite_state"].as_array().unwrap();
        assert!(stripped
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == alice));
        assert!(
            invite.get("timeline").is_none(),
            "an invitee sees no timeline"
        );
        let quiet = &rooms[&quiet_room];
        assert!(quiet.get("lists").is_none(), "only subscribed: {quiet}");
        let types: Vec<&str> = quiet["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        for kind in [
            "m.room.create",
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.name",
        ] {
            assert!(types.contains(&kind), "{kind} in {types:?}");
        }
        assert!(
            quiet["timeline"].as_array().unwrap().len() > 1,
            "up to 20 events"
        );

        // Filters: invites only, and rooms without a type.
        let body = json!({
            "conn_id": "filters",
            "lists": {
                "invites": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_invite": true } },
                "rooms": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_invite": false, "not_room_types": ["m.space"] } },
                "dms": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_dm": true } }
            }
        });
        let filtered = slide(&server, &token, "", body).await;
        assert_eq!(filtered["lists"]["invites"]["count"], 1, "{filtered}");
        assert_eq!(filtered["lists"]["rooms"]["count"], 2);
        assert_eq!(filtered["lists"]["dms"]["count"], 0);
        assert_eq!(filtered["rooms"][&invited]["lists"], json!(["invites"]));

        // Joining the invited room: it comes again, now in full (a new membership).
        let pos = pos(&first);
        let (status, joined) = server
            .request(
                "POST",
                &format!("/_matrix/client/v3/join/{invited}"),
                Some(&token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{joined}");
        let body = json!({
            "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 1, "required_state": [["m.room.member", "*"]] } }
        });
        let after = slide(&server, &token, &format!("?pos={pos}"), body).await;
        let room = &after["rooms"][&invited];
        assert_eq!(room["initial"], true, "{after}");
        assert_eq!(room["membership"], "join");
        assert_eq!(room["joined_count"], 2);
        let members: Vec<&str> = room["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state_key"].as_str().unwrap())
            .collect();
        assert!(
            members.contains(&bob.as_str()) && members.contains(&alice.as_str()),
            "{members:?}"
        );
    });
}

#[test]
fn extensions_to_device_e2ee_account_data_receipts_typing() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let (bob, bob_token) = server.register("bob").await;
        let room = create_room(&server, &token, json!({ "invite": [bob.clone()] })).await;
        let (status, _) = server
            .request(
                "POST",
                &format!("/_matrix/client/v3/join/{room}"),
                Some(&bob_token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
        let event = send(&server, &bob_token, &room, "m1", "hi").await;

        let extensions = |since: Option<&str>| {
            json!({
                "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 } },
                "extensions": {
                    "to_device": { "enabled": true, "since": since },
                    "e2ee": { "enabled": true },
                    "account_data": { "enabled": true },
                    "receipts": { "enabled": true },
                    "typing": { "enabled": true }
                }
            })
        };
        let first = slide(&server, &token, "", extensions(None)).await;
        let ext = &first["extensions"];
        assert!(
            ext["e2ee"]["device_one_time_keys_count"].is_object(),
            "{ext}"
        );
        assert!(
            ext["e2ee"]["device_unused_fallback_key_types"].is_array(),
            "{ext}"
        );
        assert!(ext["to_device"]["events"].as_array().unwrap().is_empty());
        let since = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
        assert!(ext["account_data"]["global"].is_array(), "{ext}");

        // Bob sends alice a to-device message, a read receipt, starts typing; alice sets
        // account data.
        let (status, _) = server
            .request(
                "PUT",
                "/_matrix/client/v3/sendToDevice/m.test/t1",
                Some(&bob_token),
                Some(json!({ "messages": { alice.clone(): { "*": { "secret": 1 } } } })),
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = server
            .request(
                "POST",
                &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
                Some(&bob_token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = server
            .request(
                "PUT",
                &format!("/_matrix/client/v3/rooms/{room}/typing/{bob}"),
                Some(&bob_token),
                Some(json!({ "typing": true, "timeout": 30000 })),
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = server
            .request(
                "PUT",
                &format!("/_matrix/client/v3/user/{alice}/account_data/org.example.test"),
                Some(&token),
                Some(json!({ "hello": "world" })),
            )
            .await;
        assert_eq!(status, 200);

        let next = slide(
            &server,
            &token,
            &format!("?pos={}&timeout=0", pos(&first)),
            extensions(Some(&since)),
        )
        .await;
        let ext = &next["extensions"];
        let to_device = ext["to_device"]["events"].as_array().unwrap();
        assert_eq!(to_device.len(), 1, "{ext}");
        assert_eq!(to_device[0]["content"]["secret"], 1);
        assert_eq!(to_device[0]["sender"], bob);
        let receipt = &ext["receipts"]["rooms"][&room];
        assert_eq!(receipt["type"], "m.receipt");
        assert!(
            receipt["content"][&event]["m.read"][&bob].is_object(),
            "{ext}"
        );
        assert_eq!(
            ext["typing"]["rooms"][&room]["content"]["user_ids"],
            json!([bob])
        );
        let global = ext["account_data"]["global"].as_array().unwrap();
        assert!(
            global
                .iter()
                .any(|e| e["type"] == "org.example.test" && e["content"]["hello"] == "world"),
            "{ext}"
        );
        // Acknowledging the message: it is not delivered again.
        let acked = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
        let again = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&next)),
            extensions(Some(&acked)),
        )
        .await;
        assert!(
            again["extensions"]["to_device"]["events"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{again}"
        );
    });
}

#[test]
fn a_quiet_connection_parks_and_writes_nothing() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let room = create_room(&server, &token, json!({})).await;
        send(&server, &token, &room, "x", "x").await;
        let first = slide(&server, &token, "", list_body((0, 9), 1)).await;
        let rows_before = server
            .rows("SELECT pos_id FROM sliding_sync_positions")
            .await;
        server.recorded.waits.borrow_mut().clear();
        let quiet = slide(
            &server,
            &token,
            &format!("?pos={}&timeout=20", pos(&first)),
            list_body((0, 9), 1),
        )
        .await;
        assert!(server.recorded.waits.borrow().iter().any(|u| *u == alice));
        assert!(quiet["rooms"].as_object().unwrap().is_empty());
        let rows_after = server
            .rows("SELECT pos_id FROM sliding_sync_positions")
            .await;
        assert_eq!(
            rows_before, rows_after,
            "no new connection row for a quiet answer"
        );
        // The same row, a new stream position.
        let row_of = |p: &str| p.split('s').next().unwrap().to_owned();
        assert_eq!(row_of(&pos(&quiet)), row_of(&pos(&first)));
    });
}

#[test]
fn a_wider_config_resends_state_but_not_the_timeline() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room = create_room(
            &server,
            &token,
            json!({ "name": "Room", "topic": "a topic" }),
        )
        .await;
        send(&server, &token, &room, "a", "only").await;
        let first = slide(&server, &token, "", list_body((0, 9), 1)).await;
        assert!(!first["rooms"][&room]["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.topic"));
        // Opening the room: a subscription asking for everything. The room comes again with
        // the state it now matches, and no timeline (nothing new happened).
        let mut body = list_body((0, 9), 1);
        body["room_subscriptions"] =
            json!({ room.clone(): { "timeline_limit": 20, "required_state": [["*", "*"]] } });
        let wider = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&first)),
            body.clone(),
        )
        .await;
        let again = &wider["rooms"][&room];
        assert!(again.get("initial").is_none(), "{wider}");
        assert!(
            again.get("timeline").is_none() && again.get("prev_batch").is_none(),
            "{again}"
        );
        assert!(again["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "a topic"));
        // The same config again: nothing to send.
        let same = slide(&server, &token, &format!("?pos={}", pos(&wider)), body).await;
        assert!(same["rooms"].as_object().unwrap().is_empty(), "{same}");
    });
}

#[test]
fn only_the_pos_in_use_is_kept() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room = create_room(&server, &token, json!({})).await;
        let first = slide(&server, &token, "", list_body((0, 0), 1)).await;
        // Two answers to the same pos (the client cancelled the first request and resent).
        let mut wider = list_body((0, 0), 1);
        wider["room_subscriptions"] = json!({ room.clone(): { "timeline_limit": 5 } });
        let cancelled = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&first)),
            wider.clone(),
        )
        .await;
        let kept = slide(&server, &token, &format!("?pos={}", pos(&first)), wider).await;
        assert_ne!(pos(&cancelled), pos(&kept));
        // Answering the same pos again dropped the first answer's row: the client cancelled it.
        let rows = server
            .rows("SELECT pos_id FROM sliding_sync_positions")
            .await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        // Coming back with the answer it processed drops every other row.
        let _ = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&kept)),
            list_body((0, 1), 1),
        )
        .await;
        let rows = server
            .rows("SELECT pos_id FROM sliding_sync_positions")
            .await;
        assert_eq!(rows.len(), 2, "the one in use and the new one: {rows:?}");
        let (status, _) = server
            .request(
                "POST",
                &format!("{PATH}?pos={}", pos(&cancelled)),
                Some(&token),
                Some(list_body((0, 1), 1)),
            )
            .await;
        assert_eq!(status, 400);
    });
}

#[test]
fn reading_a_room_elsewhere_updates_its_count() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let (bob_id, bob) = server.register("bob").await;
        let room = create_room(&server, &token, json!({ "invite": [bob_id] })).await;
        let (status, _) = server
            .request(
                "POST",
                &format!("/_matrix/client/v3/join/{room}"),
                Some(&bob),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
        let event = send(&server, &bob, &room, "b", "unread").await;
        let first = slide(&server, &token, "", list_body((0, 9), 1)).await;
        assert_eq!(first["rooms"][&room]["notification_count"], 1, "{first}");
        // Alice reads it on another device: the room comes again with the new count only.
        let (status, _) = server
            .request(
                "POST",
                &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
                Some(&token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
        let next = slide(
            &server,
            &token,
            &format!("?pos={}", pos(&first)),
            list_body((0, 9), 1),
        )
        .await;
        let again = &next["rooms"][&room];
        assert_eq!(again["notification_count"], 0, "{next}");
        assert!(again.get("timeline").is_none(), "{again}");
    });
}

/// Element X's steady room-list connection (a list window with its `required_state`, and the
/// account_data, receipts and typing extensions): an answer carrying one new event of the
/// user's own in a room in view reads D1 in one round trip (the first statement, with the room
/// list, the DMs and the new event's timeline and unread counts: `storage::sliding_sync::Fold`)
/// and writes nothing (the connection state did not change, so the `pos` keeps its row).
#[test]
fn an_incremental_answer_costs_few_round_trips() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let mut rooms = Vec::new();
        for i in 0..3 {
            let room = create_room(&server, &token, json!({ "name": format!("Room {i}") })).await;
            send(&server, &token, &room, &format!("m{i}"), "hello").await;
            rooms.push(room);
        }
        // The first room is a DM: the room list read with the first statement carries it.
        let direct = json!({ "@bob:test.local": [rooms[0]] });
        let path = format!("/_matrix/client/v3/user/{alice}/account_data/m.direct");
        let (status, answer) = server
            .request("PUT", &path, Some(&token), Some(direct))
            .await;
        assert_eq!(status, 200, "{answer}");
        let body = json!({
            "conn_id": "steady",
            "lists": { "all_rooms": {
                "ranges": [[0, 19]],
                "timeline_limit": 1,
                "required_state": [["m.room.name", ""], ["m.room.encryption", ""],
                    ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.topic", ""],
                    ["m.room.avatar", ""], ["m.room.power_levels", ""], ["m.room.create", ""],
                    ["m.space.parent", "*"], ["m.space.child", "*"]],
            },
            "dms": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_dm": true } } },
            "extensions": { "account_data": { "enabled": true },
                "receipts": { "enabled": true, "rooms": ["*"] }, "typing": { "enabled": true } },
        });
        let first = slide(&server, &token, "?timeout=0", body.clone()).await;
        assert_eq!(
            first["rooms"].as_object().map(|r| r.len()),
            Some(3),
            "{first}"
        );
        let mut at = pos(&first);
        for (n, room) in rooms.iter().enumerate() {
            send(
                &server,
                &token,
                room,
                &format!("new{n}"),
                &format!("new {n}"),
            )
            .await;
            let before = server.d1_round_trips();
            let answer = slide(
                &server,
                &token,
                &format!("?timeout=10000&pos={at}"),
                body.clone(),
            )
            .await;
            let round_trips = server.d1_round_trips() - before;
            assert_eq!(answer["lists"]["dms"]["count"], 1, "{answer}");
            assert_eq!(answer["lists"]["all_rooms"]["count"], 3);
            let only: Vec<&String> = answer["rooms"].as_object().unwrap().keys().collect();
            assert_eq!(only, vec![room], "{answer}");
            assert_eq!(bodies(&answer["rooms"][room]), vec![format!("new {n}")]);
            // No state: nothing changed, and the lazily loaded sender is alice herself, whose
            // member event the client holds (`$ME`). Other senders come with theirs
            // (`heroes_and_lazily_loaded_senders_come_with_their_member_events`).
            let state = answer["rooms"][room]["required_state"].as_array().unwrap();
            assert!(state.is_empty(), "{answer}");
            assert_eq!(
                pos(&answer).split('s').next(),
                at.split('s').next(),
                "no new row"
            );
            // One: the first statement reads the new event and the unread counts too
            // (`storage::sliding_sync::Fold`).
            assert_eq!(
                round_trips, 1,
                "{round_trips} D1 round trips for one new event"
            );
            at = pos(&answer);
        }
    });
}

/// A room without a name shows its heroes with their display names (their member events are
/// read with the room's other state), and a lazy-loading list gets the member event of the
/// sender with each new message (read in the same D1 batch as the timeline).
#[test]
fn heroes_and_lazily_loaded_senders_come_with_their_member_events() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let (bob, bob_token) = server.register("bob").await;
        let path = format!("/_matrix/client/v3/profile/{bob}/displayname");
        let (status, answer) = server
            .request(
                "PUT",
                &path,
                Some(&bob_token),
                Some(json!({ "displayname": "Bobby" })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let room = create_room(
            &server,
            &token,
            json!({ "preset": "public_chat", "invite": [bob.clone()] }),
        )
        .await;
        let join = format!("/_matrix/client/v3/join/{room}");
        let (status, answer) = server
            .request("POST", &join, Some(&bob_token), Some(json!({})))
            .await;
        assert_eq!(status, 200, "{answer}");
        // The one timeline event is alice's: bob's member event comes as a hero's only.
        send(&server, &token, &room, "a0", "welcome").await;

        let first = slide(&server, &token, "?timeout=0", list_body((0, 9), 1)).await;
        let answer = &first["rooms"][&room];
        assert_eq!(
            answer["heroes"],
            json!([{ "user_id": bob, "displayname": "Bobby" }]),
            "{first}"
        );
        assert_eq!(answer["joined_count"], 2);

        let next_answer = |at: &str| {
            let query = format!("?timeout=10000&pos={at}");
            let token = token.clone();
            let server = &server;
            async move { slide(server, &token, &query, list_body((0, 9), 1)).await }
        };
        let mut at = pos(&first);
        for (n, text) in ["hi alice", "again"].iter().enumerate() {
            send(&server, &bob_token, &room, &format!("b{n}"), text).await;
            let before = server.d1_round_trips();
            let next = next_answer(&at).await;
            // The first statement reads the sender's member event with the new event
            // (`storage::sliding_sync::Fold`).
            assert_eq!(server.d1_round_trips() - before, 1, "{next}");
            let answer = &next["rooms"][&room];
            assert_eq!(bodies(answer), [*text], "{next}");
            let members: Vec<&str> = answer["required_state"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "m.room.member")
                .map(|e| e["state_key"].as_str().unwrap())
                .collect();
            assert_eq!(members, [bob.as_str()], "the sender's member event: {next}");
            assert!(
                answer.get("joined_count").is_none(),
                "no member changed: {next}"
            );
            at = pos(&next);
        }
        // A member joining changes the counts: they come with the incremental answer.
        let (_, carol_token) = server.register("carol").await;
        let (status, answer) = server
            .request("POST", &join, Some(&carol_token), Some(json!({})))
            .await;
        assert_eq!(status, 200, "{answer}");
        let next = next_answer(&at).await;
        assert_eq!(next["rooms"][&room]["joined_count"], 3, "{next}");
        assert_eq!(next["rooms"][&room]["invited_count"], 0, "{next}");
    });
}

/// The room type and encryption filters, on a first answer and on an incremental one (whose
/// room list comes with the request's first statement): the list reads those columns only
/// when a filter needs them.
#[test]
fn room_type_and_encryption_filters() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let space = create_room(
            &server,
            &token,
            json!({ "creation_content": { "type": "m.space" } }),
        )
        .await;
        let secret = create_room(
            &server,
            &token,
            json!({ "initial_state": [{ "type": "m.room.encryption", "state_key": "",
                "content": { "algorithm": "m.megolm.v1.aes-sha2" } }] }),
        )
        .await;
        let plain = create_room(&server, &token, json!({})).await;
        let list =
            |filters: Value| json!({ "ranges": [[0, 9]], "timeline_limit": 0, "filters": filters });
        let body = json!({
            "conn_id": "filtered",
            "lists": {
                "spaces": list(json!({ "room_types": ["m.space"] })),
                "rooms": list(json!({ "not_room_types": ["m.space"] })),
                "encrypted": list(json!({ "is_encrypted": true })),
                "clear": list(json!({ "is_encrypted": false, "room_types": [null] })),
            }
        });
        let first = slide(&server, &token, "?timeout=0", body.clone()).await;
        send(&server, &token, &plain, "p1", "hello").await;
        let next = slide(
            &server,
            &token,
            &format!("?timeout=0&pos={}", pos(&first)),
            body,
        )
        .await;
        for answer in [&first, &next] {
            let lists = &answer["lists"];
            assert_eq!(lists["spaces"]["count"], 1, "{answer}");
            assert_eq!(lists["rooms"]["count"], 2, "{answer}");
            assert_eq!(lists["encrypted"]["count"], 1, "{answer}");
            assert_eq!(lists["clear"]["count"], 1, "{answer}");
        }
        assert_eq!(first["rooms"][&space]["lists"], json!(["spaces"]));
        assert_eq!(
            first["rooms"][&secret]["lists"],
            json!(["encrypted", "rooms"])
        );
        assert_eq!(first["rooms"][&plain]["lists"], json!(["clear", "rooms"]));
        let moved: Vec<&String> = next["rooms"].as_object().unwrap().keys().collect();
        assert_eq!(moved, [&plain], "{next}");
    });
}

/// A steady connection ranks only the rooms of its window and those with events since its
/// `pos`: after each change its window and count are those a new connection (which ranks every
/// room) sees, through moves into the window, an invite, a leave and a forget.
#[test]
fn a_partly_ranked_window_matches_a_full_ranking() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let (_, bob_token) = server.register("bob").await;
        let mut rooms = Vec::new();
        for i in 0..6 {
            let room = create_room(&server, &token, json!({ "name": format!("Room {i}") })).await;
            send(&server, &token, &room, &format!("m{i}"), "hello").await;
            rooms.push(room);
        }
        let body = |conn: &str| {
            json!({ "conn_id": conn,
                "lists": { "all": { "ranges": [[0, 2]], "timeline_limit": 1, "required_state": [] } } })
        };
        // The window a connection keeps in its row, and its count.
        let kept = |at: String| {
            let server = &server;
            async move {
                let row = at.split('s').next().unwrap().to_owned();
                let stored = server
                    .rows(&format!(
                        "SELECT rooms FROM sliding_sync_positions WHERE pos_id = {row}"
                    ))
                    .await;
                let state: Value =
                    serde_json::from_str(stored[0]["rooms"].as_str().unwrap()).unwrap();
                let list = &state["lists"]["all"];
                let mut ids: Vec<String> = serde_json::from_value(list[2].clone()).unwrap();
                ids.sort();
                (ids, list[1].as_u64().unwrap())
            }
        };
        let membership = |room: &str, verb: &str| {
            let path = format!("/_matrix/client/v3/rooms/{room}/{verb}");
            let (server, token) = (&server, token.clone());
            async move {
                let (status, answer) = server
                    .request("POST", &path, Some(&token), Some(json!({})))
                    .await;
                assert_eq!(status, 200, "{answer}");
            }
        };
        let mut fresh = 0;
        let mut check = |answer: Value, what: &'static str| {
            fresh += 1;
            let server = &server;
            let token = token.clone();
            async move {
                let whole = slide(server, &token, "", body(&format!("fresh{fresh}"))).await;
                let mut ids: Vec<String> = whole["rooms"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                ids.sort();
                let count = whole["lists"]["all"]["count"].as_u64().unwrap();
                assert_eq!(answer["lists"]["all"]["count"], count, "{what}: {answer}");
                (ids, count)
            }
        };
        let first = slide(&server, &token, "", body("steady")).await;
        let mut at = pos(&first);
        let next = |at: String| {
            let server = &server;
            let token = token.clone();
            async move {
                slide(
                    server,
                    &token,
                    &format!("?timeout=0&pos={at}"),
                    body("steady"),
                )
                .await
            }
        };

        // A room from below the window moves in; one from the window moves to its top.
        send(&server, &token, &rooms[0], "up0", "up").await;
        let answer = next(at.clone()).await;
        assert!(answer["rooms"].get(&rooms[0]).is_some(), "{answer}");
        at = pos(&answer);
        assert_eq!(kept(at.clone()).await, check(answer, "moved in").await);
        send(&server, &token, &rooms[4], "up4", "up").await;
        let answer = next(at.clone()).await;
        assert_eq!(
            pos(&answer).split('s').next(),
            at.split('s').next(),
            "no new row"
        );
        at = pos(&answer);
        assert_eq!(kept(at.clone()).await, check(answer, "reordered").await);

        // An invite adds a room at the top; leaving one keeps it listed (the client has it),
        // at the position of the leave; forgetting it takes it out.
        create_room(&server, &bob_token, json!({ "invite": [alice.clone()] })).await;
        let answer = next(at.clone()).await;
        at = pos(&answer);
        assert_eq!(kept(at.clone()).await, check(answer, "invited").await);
        membership(&rooms[0], "leave").await;
        let answer = next(at.clone()).await;
        assert_eq!(
            answer["rooms"][&rooms[0]]["membership"], "leave",
            "{answer}"
        );
        at = pos(&answer);
        let left = kept(at.clone()).await;
        assert!(left.0.contains(&rooms[0]));
        membership(&rooms[0], "forget").await;
        let answer = next(at.clone()).await;
        at = pos(&answer);
        let forgotten = kept(at.clone()).await;
        assert_eq!(forgotten.1, left.1 - 1, "{answer}");
        assert!(!forgotten.0.contains(&rooms[0]));
        // (a new connection never lists a room the user left themselves: no comparison here)

        // Back to steady answers after the full ranking.
        send(&server, &token, &rooms[1], "up1", "up").await;
        let answer = next(at.clone()).await;
        assert!(answer["rooms"].get(&rooms[1]).is_some(), "{answer}");
        at = pos(&answer);
        assert_eq!(
            kept(at.clone()).await,
            check(answer, "after a forget").await
        );

        // A state change in a room of the window comes with the next answer: the partial read
        // says which rooms have new state, and only those read it.
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", rooms[1]);
        let (status, _) = server
            .request(
                "PUT",
                &path,
                Some(&token),
                Some(json!({ "name": "Renamed" })),
            )
            .await;
        assert_eq!(status, 200);
        let answer = next(at.clone()).await;
        assert_eq!(answer["rooms"][&rooms[1]]["name"], "Renamed", "{answer}");
        at = pos(&answer);

        // A grown window (Element X grows its range) ranks every room in the first statement,
        // without a read of its own.
        let mut wider = body("steady");
        wider["lists"]["all"]["ranges"] = json!([[0, 4]]);
        let before = server.d1_round_trips();
        let answer = slide(&server, &token, &format!("?timeout=0&pos={at}"), wider).await;
        assert!(server.d1_round_trips() - before <= 2, "{answer}");
        let (window, count) = kept(pos(&answer)).await;
        assert_eq!((window.len(), count), (5, 6), "{answer}");
    });
}

/// The answer to `at` read folded, then the separate way (`sync::start::NO_FOLD`), each
/// without its `pos` and ages; the `pos` of the second and the first's D1 round trips.
async fn both_ways(
    server: &TestServer,
    token: &str,
    at: &str,
    body: &Value,
) -> (Value, Value, String, u64) {
    let query = format!("?timeout=0&pos={at}");
    let before = server.d1_round_trips();
    let folded = slide(server, token, &query, body.clone()).await;
    let trips = server.d1_round_trips() - before;
    crate::sync::start::NO_FOLD.with(|off| off.set(true));
    let separate = slide(server, token, &query, body.clone()).await;
    crate::sync::start::NO_FOLD.with(|off| off.set(false));
    let next = pos(&separate);
    let strip = |mut answer: Value| {
        answer["pos"].take();
        crate::sync::tests::without_ages(answer)
    };
    (strip(folded), strip(separate), next, trips)
}

/// An answer whose rooms' timelines and unread counts come with its first statement
/// (`storage::sliding_sync::Fold`) is the answer the separate reads give for the same `pos`:
/// other users' messages (a limited timeline in the list, a longer one in a subscription, a
/// mention that highlights), the user's own message, a room read on another device, a room
/// joined since the `pos` and a room whose state changed; then, with no membership changed,
/// the lazily loaded members the fold reads with the timelines.
#[test]
fn a_folded_answer_is_the_answer_of_the_separate_reads() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let (bob, bob_token) = server.register("bob").await;
        let mut rooms = Vec::new();
        for i in 0..5 {
            let body = json!({ "preset": "public_chat", "name": format!("Room {i}") });
            let room = create_room(&server, &token, body).await;
            let join = format!("/_matrix/client/v3/join/{room}");
            let (status, answer) = server
                .request("POST", &join, Some(&bob_token), Some(json!({})))
                .await;
            assert_eq!(status, 200, "{answer}");
            send(&server, &token, &room, &format!("w{i}"), "welcome").await;
            rooms.push(room);
        }
        let later = create_room(&server, &token, json!({ "preset": "public_chat" })).await;
        // With `$ME` the fold reads no member for a room of bob's own new events alone
        // (`ListRead::lazy_members`); without, it does.
        let connection = |conn_id: &str, own: &str| {
            json!({
                "conn_id": conn_id,
                "lists": { "all": {
                    "ranges": [[0, 19]],
                    "timeline_limit": 2,
                    "required_state": [["m.room.name", ""], ["m.room.member", own],
                        ["m.room.member", "$LAZY"]],
                } },
                "room_subscriptions": { &rooms[1]: { "timeline_limit": 5,
                    "required_state": [["m.room.topic", ""]] } },
            })
        };
        // Members lazily, every member but bob by his user id: the fold cannot tell this from
        // `$ME` before it knows the reader, and leaves bob's own rooms to a read of their own.
        let mut excluding = connection("exclude", "$ME");
        excluding["lists"]["all"]["required_state"] = json!({
            "include": [{ "type": "m.room.name", "state_key": "" }, { "type": "m.room.member" }],
            "exclude": [{ "type": "m.room.member", "state_key": bob }],
            "lazy_members": true,
        });
        let mut connections = Vec::new();
        for body in [
            connection("me", "$ME"),
            connection("alice", &alice),
            excluding,
        ] {
            let first = slide(&server, &bob_token, "?timeout=0", body.clone()).await;
            connections.push((body, pos(&first)));
        }
        // Four messages of alice's (the list's timeline is limited, the subscription's not).
        for (room, n) in [(&rooms[0], 4), (&rooms[1], 4)] {
            for i in 0..n {
                send(
                    &server,
                    &token,
                    room,
                    &format!("m{i}{room}"),
                    &format!("m{i}"),
                )
                .await;
            }
        }
        // A mention of bob: a highlight.
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/mention",
            rooms[2]
        );
        let mention = json!({ "msgtype": "m.text", "body": "hello bob",
            "m.mentions": { "user_ids": [bob] } });
        let (status, _) = server
            .request("PUT", &path, Some(&token), Some(mention))
            .await;
        assert_eq!(status, 200);
        // Bob's own message, and a room he reads on another device.
        send(&server, &bob_token, &rooms[3], "own", "mine").await;
        send(&server, &bob_token, &rooms[4], "own only", "mine alone").await;
        let last = send(&server, &token, &rooms[3], "after", "read me").await;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{last}",
            rooms[3]
        );
        let (status, _) = server
            .request("POST", &path, Some(&bob_token), Some(json!({})))
            .await;
        assert_eq!(status, 200);
        // A new topic in the subscribed room; a room bob joins after the pos.
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", rooms[1]);
        let (status, _) = server
            .request("PUT", &path, Some(&token), Some(json!({ "topic": "new" })))
            .await;
        assert_eq!(status, 200);
        send(&server, &token, &later, "l", "before bob").await;
        let join = format!("/_matrix/client/v3/join/{later}");
        let (status, _) = server
            .request("POST", &join, Some(&bob_token), Some(json!({})))
            .await;
        assert_eq!(status, 200);

        let mut next = Vec::new();
        for (body, at) in &connections {
            let (folded, separate, at, _) = both_ways(&server, &bob_token, at, body).await;
            assert_eq!(folded, separate);
            let answer = &folded["rooms"];
            assert_eq!(bodies(&answer[&rooms[0]]), ["m2", "m3"], "{folded}");
            assert_eq!(answer[&rooms[0]]["limited"], true);
            assert_eq!(bodies(&answer[&rooms[1]]), ["m0", "m1", "m2", "m3"]);
            // (Counted within the native tests' small `push::UNREAD_WINDOW`.)
            assert!(answer[&rooms[0]]["notification_count"].as_u64() > Some(0));
            assert_eq!(answer[&rooms[2]]["highlight_count"], 1);
            assert_eq!(answer[&rooms[3]]["notification_count"], 0);
            assert_eq!(answer[&later]["initial"], true);
            next.push(at);
        }
        // No membership changed since: the list read is partial and says which rooms have
        // only bob's own new events. His member event comes for his own message only when
        // he did not ask for it (`$ME`); each answer is one round trip.
        send(&server, &bob_token, &rooms[4], "own again", "mine again").await;
        send(&server, &token, &rooms[0], "m4", "m4").await;
        for ((body, _), at) in connections.iter().zip(next) {
            let (folded, separate, _, trips) = both_ways(&server, &bob_token, &at, body).await;
            assert_eq!(folded, separate);
            let left_out = body["conn_id"] == "exclude";
            assert_eq!(trips, if left_out { 2 } else { 1 }, "{folded}");
            let state = &folded["rooms"][&rooms[4]]["required_state"];
            let own_member = state
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["state_key"] == bob);
            assert_eq!(own_member, body["conn_id"] != "me", "{state}");
            assert_eq!(bodies(&folded["rooms"][&rooms[0]]), ["m4"], "{folded}");
        }
    });
}
