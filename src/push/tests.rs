//! Push: rule evaluation per condition kind (pure), counts and payloads (pure), and end to end
//! through `TestServer`: counts in /sync reset by (threaded) receipts, /notifications,
//! pushers, and one delivery step against a scripted gateway.

use futures::executor::block_on;
use ruma::serde::Raw;
use ruma::{owned_room_id, owned_user_id, UserId};
use serde_json::{json, Value};

use super::counts::{RoomUnread, Unread, MAIN};
use super::evaluate::{evaluate, Decision, Recipient, RoomFacts};
use super::gateway::{self, Notification};
use super::pusher::{parse_set, SetPusher};
use crate::client::push_rules::StoredPushRules;
use crate::platform::HttpResponse;
use crate::storage::Db;
use crate::testing::{ok_call as call, TestServer};

// --- evaluation --------------------------------------------------------------------------------

fn facts(members: u64, sender_level: i64) -> RoomFacts {
    RoomFacts {
        room_id: owned_room_id!("!room:test.local"),
        member_count: members,
        sender_level,
        notifications: json!({}),
    }
}

fn bob(stored: Option<Value>) -> Recipient {
    Recipient {
        user_id: owned_user_id!("@bob:test.local"),
        display_name: "Bobby".into(),
        stored: stored.map(|s| serde_json::from_value::<StoredPushRules>(s).unwrap()),
    }
}

fn message(content: Value) -> Raw<Value> {
    Raw::new(&json!({
        "type": "m.room.message",
        "sender": "@alice:test.local",
        "room_id": "!room:test.local",
        "content": content,
    }))
    .unwrap()
}

fn eval(event: &Raw<Value>, facts: &RoomFacts, recipient: &Recipient) -> Option<Decision> {
    let alice = <&UserId>::try_from("@alice:test.local").unwrap();
    block_on(evaluate(event, alice, facts, recipient))
}

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

#[test]
fn a_message_in_a_group_notifies_without_highlight() {
    let d = eval(&message(text("hi")), &facts(3, 0), &bob(None)).unwrap();
    assert!(!d.highlight);
    assert_eq!(d.actions, vec![json!("notify")]);
}

#[test]
fn room_member_count_makes_a_one_to_one_room_ring() {
    // `.m.rule.room_one_to_one` (room_member_count == 2) adds a sound.
    let d = eval(&message(text("hi")), &facts(2, 0), &bob(None)).unwrap();
    assert!(d
        .actions
        .contains(&json!({ "set_tweak": "sound", "value": "default" })));
    let group = eval(&message(text("hi")), &facts(3, 0), &bob(None)).unwrap();
    assert!(!group.actions.iter().any(|a| a.get("set_tweak").is_some()));
}

#[test]
fn event_match_suppresses_notices_and_the_senders_own_events() {
    let notice = json!({ "msgtype": "m.notice", "body": "bot" });
    assert_eq!(eval(&message(notice), &facts(3, 0), &bob(None)), None);
    let own = Raw::new(&json!({
        "type": "m.room.message", "sender": "@bob:test.local", "content": text("me"),
    }))
    .unwrap();
    let bob_id = <&UserId>::try_from("@bob:test.local").unwrap();
    assert_eq!(
        block_on(evaluate(&own, bob_id, &facts(3, 0), &bob(None))),
        None
    );
}

#[test]
fn event_property_contains_matches_a_user_mention() {
    let content = json!({ "msgtype": "m.text", "body": "hey",
        "m.mentions": { "user_ids": ["@bob:test.local"] } });
    let d = eval(&message(content), &facts(3, 0), &bob(None)).unwrap();
    assert!(d.highlight, "{d:?}");
    let other = json!({ "msgtype": "m.text", "body": "hey",
        "m.mentions": { "user_ids": ["@carol:test.local"] } });
    assert!(
        !eval(&message(other), &facts(3, 0), &bob(None))
            .unwrap()
            .highlight
    );
}

#[test]
fn event_property_is_with_sender_notification_permission_gates_room_mentions() {
    let content = json!({ "msgtype": "m.text", "body": "all", "m.mentions": { "room": true } });
    // The default `notifications.room` level is 50.
    let moderator = eval(&message(content.clone()), &facts(3, 50), &bob(None)).unwrap();
    assert!(moderator.highlight);
    let member = eval(&message(content.clone()), &facts(3, 0), &bob(None)).unwrap();
    assert!(
        !member.highlight,
        "an unprivileged @room is a plain message"
    );
    // A room that lowers the level lets everyone do it.
    let mut open = facts(3, 0);
    open.notifications = json!({ "room": 0 });
    assert!(
        eval(&message(content), &open, &bob(None))
            .unwrap()
            .highlight
    );
}

#[test]
fn contains_display_name_in_a_users_own_rule() {
    let stored = json!({ "user": { "override": [{
        "rule_id": "name", "default": false, "enabled": true,
        "conditions": [{ "kind": "contains_display_name" }],
        "actions": ["notify", { "set_tweak": "highlight" }],
    }] } });
    let d = eval(
        &message(text("hello Bobby!")),
        &facts(3, 0),
        &bob(Some(stored.clone())),
    )
    .unwrap();
    assert!(d.highlight);
    let d = eval(
        &message(text("hello Bobbyx")),
        &facts(3, 0),
        &bob(Some(stored)),
    )
    .unwrap();
    assert!(!d.highlight, "a display name matches whole words only");
}

#[test]
fn a_disabled_default_or_the_master_rule_silences() {
    let no_messages =
        json!({ "defaults": { "underride": { ".m.rule.message": { "enabled": false } } } });
    assert_eq!(
        eval(&message(text("hi")), &facts(3, 0), &bob(Some(no_messages))),
        None
    );
    let master = json!({ "defaults": { "override": { ".m.rule.master": { "enabled": true } } } });
    assert_eq!(
        eval(&message(text("hi")), &facts(2, 0), &bob(Some(master))),
        None
    );
}

#[test]
fn a_room_rule_with_dont_notify_mutes_one_room() {
    let stored = json!({ "user": { "room": [{
        "rule_id": "!room:test.local", "default": false, "enabled": true, "actions": [],
    }] } });
    assert_eq!(
        eval(&message(text("hi")), &facts(3, 0), &bob(Some(stored))),
        None
    );
    // The historical `dont_notify` is kept in the rule but does nothing, like no action.
    let sender = json!({ "user": { "sender": [{
        "rule_id": "@alice:test.local", "default": false, "enabled": true,
        "actions": ["dont_notify"],
    }] } });
    assert_eq!(
        eval(&message(text("hi")), &facts(3, 0), &bob(Some(sender))),
        None
    );
}

// --- counts and payloads -----------------------------------------------------------------------

#[test]
fn thread_counts_split_only_when_asked() {
    let mut unread = RoomUnread::default();
    unread.threads.insert(
        MAIN.into(),
        Unread {
            notifications: 2,
            highlights: 1,
        },
    );
    unread.threads.insert(
        "$root".into(),
        Unread {
            notifications: 3,
            highlights: 0,
        },
    );
    unread.threads.insert("$read".into(), Unread::default());
    let (all, threads) = unread.sync_fields(false);
    assert_eq!(
        all,
        json!({ "notification_count": 5, "highlight_count": 1 })
    );
    assert_eq!(threads, None);
    let (main, threads) = unread.sync_fields(true);
    assert_eq!(
        main,
        json!({ "notification_count": 2, "highlight_count": 1 })
    );
    assert_eq!(
        threads,
        Some(json!({ "$root": { "notification_count": 3, "highlight_count": 0 } }))
    );
}

fn pusher(format: Option<&str>) -> super::pusher::Pusher {
    let mut data = json!({ "url": "https://push.example/_matrix/push/v1/notify", "extra": 1 });
    if let Some(format) = format {
        data["format"] = json!(format);
    }
    super::pusher::Pusher {
        app_id: "org.example.app".into(),
        pushkey: "key1".into(),
        kind: "http".into(),
        app_display_name: "App".into(),
        device_display_name: "Phone".into(),
        profile_tag: None,
        lang: "en".into(),
        data: data.as_object().unwrap().clone(),
        pushkey_ts: 1_700_000_000_123,
    }
}

#[test]
fn the_gateway_body_follows_the_spec() {
    let n = Notification {
        event_id: "$e".into(),
        room_id: "!r:x".into(),
        kind: "m.room.message".into(),
        sender: "@alice:x".into(),
        content: text("hi"),
        sender_display_name: Some("Alice".into()),
        room_name: Some("Room".into()),
        actions: vec![json!("notify"), json!({ "set_tweak": "highlight" })],
        unread: 4,
        ..Default::default()
    };
    let full = gateway::body(&n, "@bob:x", &pusher(None));
    let note = &full["notification"];
    assert_eq!(note["event_id"], "$e");
    assert_eq!(note["type"], "m.room.message");
    assert_eq!(note["sender_display_name"], "Alice");
    assert_eq!(note["room_name"], "Room");
    assert_eq!(note["content"]["body"], "hi");
    assert_eq!(note["prio"], "high");
    assert_eq!(note["counts"], json!({ "unread": 4 }));
    let device = &note["devices"][0];
    assert_eq!(device["pushkey_ts"], 1_700_000_000);
    assert_eq!(
        device["data"],
        json!({ "extra": 1 }),
        "the url is the gateway's, not the device's"
    );
    assert_eq!(device["tweaks"], json!({ "highlight": true }));
    let short = gateway::body(&n, "@bob:x", &pusher(Some("event_id_only")));
    let note = &short["notification"];
    assert!(
        note.get("content").is_none() && note.get("sender").is_none(),
        "{note}"
    );
    assert_eq!(note["room_id"], "!r:x");
    assert_eq!(gateway::rejected(br#"{"rejected":["key1"]}"#), vec!["key1"]);
    assert!(gateway::rejected(b"not json").is_empty());
}

fn set_body(url: Value) -> serde_json::Map<String, Value> {
    json!({ "kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
        "device_display_name": "D", "lang": "en", "data": { "url": url } })
    .as_object()
    .unwrap()
    .clone()
}

#[test]
fn pusher_requests_are_checked() {
    assert!(matches!(
        parse_set(
            &set_body(json!("https://gw.example/_matrix/push/v1/notify")),
            5
        ),
        Ok(SetPusher::Set { append: false, .. })
    ));
    for bad in [
        json!("https://gw.example/notify"),
        json!("ftp://gw.example/_matrix/push/v1/notify"),
        json!(7),
    ] {
        let err = parse_set(&set_body(bad.clone()), 5).unwrap_err();
        assert_eq!(err.0, "M_INVALID_PARAM", "{bad}");
    }
    let mut missing = set_body(json!("https://gw.example/_matrix/push/v1/notify"));
    missing.remove("lang");
    assert_eq!(parse_set(&missing, 5).unwrap_err().0, "M_MISSING_PARAM");
    let mut delete = set_body(json!(null));
    delete.insert("kind".into(), Value::Null);
    assert_eq!(
        parse_set(&delete, 5),
        Ok(SetPusher::Delete {
            app_id: "a".into(),
            pushkey: "k".into()
        })
    );
    let mut other = set_body(json!("https://gw.example/_matrix/push/v1/notify"));
    other.insert("kind".into(), json!("carrier-pigeon"));
    assert_eq!(parse_set(&other, 5).unwrap_err().0, "M_INVALID_PARAM");
}

// --- end to end ----------------------------------------------------------------------------------

async fn send(server: &TestServer, token: &str, room: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    call(server, "PUT", &path, token, Some(content)).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Alice's group room (three members: a one-to-one room would ring instead) with Bob in it.
async fn group(server: &TestServer) -> (String, String, String, String) {
    let (alice_id, alice) = server.register("alice").await;
    let (bob_id, bob) = server.register("bob").await;
    let (carol_id, carol) = server.register("carol").await;
    let _ = alice_id;
    let created = call(
        server,
        "POST",
        "/_matrix/client/v3/createRoom",
        &alice,
        Some(json!({ "preset": "public_chat" })),
    )
    .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    for token in [&bob, &carol] {
        call(
            server,
            "POST",
            &format!("/_matrix/client/v3/join/{room}"),
            token,
            Some(json!({})),
        )
        .await;
    }
    let _ = carol_id;
    (room, alice, bob, bob_id)
}

async fn counts(server: &TestServer, token: &str, room: &str, threaded: bool) -> Value {
    let filter = json!({ "room": { "timeline": { "unread_thread_notifications": threaded } } });
    let path = format!(
        "/_matrix/client/v3/sync?filter={}",
        crate::http::route::percent_encode(&filter.to_string())
    );
    let answer = call(server, "GET", &path, token, None).await;
    let room = &answer["rooms"]["join"][room];
    json!({
        "all": room["unread_notifications"],
        "threads": room.get("unread_thread_notifications").cloned().unwrap_or(Value::Null),
    })
}

fn n(notifications: u64, highlights: u64) -> Value {
    json!({ "notification_count": notifications, "highlight_count": highlights })
}

#[test]
fn sync_counts_follow_rules_and_threaded_receipts() {
    block_on(async {
        let server = TestServer::new();
        let (room, alice, bob, bob_id) = group(&server).await;
        let root = send(&server, &alice, &room, "1", text("root")).await;
        let in_thread = |body: &str| {
            json!({ "msgtype": "m.text", "body": body,
                "m.relates_to": { "rel_type": "m.thread", "event_id": root } })
        };
        let t1 = send(&server, &alice, &room, "2", in_thread("one")).await;
        let mention = json!({ "msgtype": "m.text", "body": "bob!",
            "m.relates_to": { "rel_type": "m.thread", "event_id": root },
            "m.mentions": { "user_ids": [bob_id] } });
        send(&server, &alice, &room, "3", mention).await;
        let main2 = send(&server, &alice, &room, "4", text("main")).await;
        send(
            &server,
            &alice,
            &room,
            "5",
            json!({ "msgtype": "m.notice", "body": "bot" }),
        )
        .await;

        assert_eq!(counts(&server, &bob, &room, false).await["all"], n(4, 1));
        let threaded = counts(&server, &bob, &room, true).await;
        assert_eq!(threaded["all"], n(2, 0), "{threaded}");
        assert_eq!(threaded["threads"], json!({ &root: n(2, 1) }));
        // The sender's own messages never count for her.
        assert_eq!(counts(&server, &alice, &room, false).await["all"], n(0, 0));

        let receipt = |event: &str, body: Value| {
            let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}");
            let server = &server;
            let bob = bob.clone();
            async move { call(server, "POST", &path, &bob, Some(body)).await }
        };
        // A receipt in the main timeline leaves the thread unread.
        receipt(&main2, json!({ "thread_id": "main" })).await;
        let after_main = counts(&server, &bob, &room, true).await;
        assert_eq!(after_main["all"], n(0, 0), "{after_main}");
        assert_eq!(after_main["threads"], json!({ &root: n(2, 1) }));
        // A threaded receipt reads that thread up to its event.
        receipt(&t1, json!({ "thread_id": root })).await;
        assert_eq!(counts(&server, &bob, &room, false).await["all"], n(1, 1));
        // An unthreaded receipt reads everything before it.
        receipt(&main2, json!({})).await;
        let all_read = counts(&server, &bob, &room, true).await;
        assert_eq!(all_read["all"], n(0, 0));
        assert_eq!(
            all_read["threads"],
            Value::Null,
            "threads with nothing unread are left out"
        );
    });
}

#[test]
fn unread_counts_look_at_a_bounded_window_of_the_room() {
    block_on(async {
        let server = TestServer::new();
        let (room, alice, bob, _) = group(&server).await;
        let window = crate::storage::push::UNREAD_WINDOW as u64;
        let start = send(&server, &alice, &room, "start", text("start")).await;
        let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{start}");
        call(&server, "POST", &path, &bob, Some(json!({}))).await;
        for i in 0..window + 3 {
            send(&server, &alice, &room, &format!("w{i}"), text("spam")).await;
        }
        // Every one of them notifies Bob, but only those within `window` positions of his
        // read position are counted (nothing else happens on this server meanwhile).
        assert_eq!(
            counts(&server, &bob, &room, false).await["all"],
            n(window, 0)
        );
        let last = send(&server, &alice, &room, "last", text("last")).await;
        let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}");
        call(&server, "POST", &path, &bob, Some(json!({}))).await;
        assert_eq!(counts(&server, &bob, &room, false).await["all"], n(0, 0));
    });
}

#[test]
fn notifications_list_newest_first_with_highlight_filter_and_pages() {
    block_on(async {
        let server = TestServer::new();
        let (room, alice, bob, bob_id) = group(&server).await;
        let first = send(&server, &alice, &room, "1", text("one")).await;
        let mention = json!({ "msgtype": "m.text", "body": "bob",
            "m.mentions": { "user_ids": [bob_id] } });
        let second = send(&server, &alice, &room, "2", mention).await;
        let third = send(&server, &alice, &room, "3", text("three")).await;
        let path = "/_matrix/client/v3/notifications";
        let page = call(&server, "GET", &format!("{path}?limit=2"), &bob, None).await;
        let ids: Vec<&str> = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["event"]["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![third.as_str(), second.as_str()]);
        assert_eq!(page["notifications"][0]["room_id"], room.as_str());
        assert_eq!(page["notifications"][0]["read"], false);
        assert_eq!(page["notifications"][0]["actions"], json!(["notify"]));
        let token = page["next_token"].as_str().unwrap();
        let rest = call(&server, "GET", &format!("{path}?from={token}"), &bob, None).await;
        assert_eq!(
            rest["notifications"][0]["event"]["event_id"],
            first.as_str()
        );
        assert!(rest.get("next_token").is_none(), "{rest}");
        let highlights = call(
            &server,
            "GET",
            &format!("{path}?only=highlight"),
            &bob,
            None,
        )
        .await;
        assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);
        assert_eq!(
            highlights["notifications"][0]["event"]["event_id"],
            second.as_str()
        );
        // Read up to the second: those two are read, the third is not.
        let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{second}");
        call(&server, "POST", &receipt, &bob, Some(json!({}))).await;
        let all = call(&server, "GET", path, &bob, None).await;
        let read: Vec<bool> = all["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["read"].as_bool().unwrap())
            .collect();
        assert_eq!(read, vec![false, true, true]);
        let (status, bad) = server
            .request("GET", &format!("{path}?from=zzz"), Some(&bob), None)
            .await;
        assert_eq!(
            (status, bad["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM"))
        );
    });
}

fn pusher_body(pushkey: &str, url: &str) -> Value {
    json!({ "kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
        "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
        "data": { "url": url, "format": "event_id_only" } })
}

const GATEWAY: &str = "https://gateway.example/_matrix/push/v1/notify";

#[test]
fn pushers_are_set_listed_replaced_and_deleted() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let set = "/_matrix/client/v3/pushers/set";
        let list = "/_matrix/client/v3/pushers";
        call(
            &server,
            "POST",
            set,
            &alice,
            Some(pusher_body("k1", GATEWAY)),
        )
        .await;
        let pushers = call(&server, "GET", list, &alice, None).await;
        assert_eq!(pushers["pushers"][0]["pushkey"], "k1");
        assert_eq!(pushers["pushers"][0]["data"]["url"], GATEWAY);
        // The same app id and pushkey for Bob, without append, takes it from Alice.
        call(&server, "POST", set, &bob, Some(pusher_body("k1", GATEWAY))).await;
        assert_eq!(
            call(&server, "GET", list, &alice, None).await["pushers"],
            json!([])
        );
        let mut appended = pusher_body("k1", GATEWAY);
        appended["append"] = json!(true);
        call(&server, "POST", set, &alice, Some(appended)).await;
        assert_eq!(
            call(&server, "GET", list, &bob, None).await["pushers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // kind null deletes.
        let mut delete = pusher_body("k1", GATEWAY);
        delete["kind"] = Value::Null;
        call(&server, "POST", set, &alice, Some(delete)).await;
        assert_eq!(
            call(&server, "GET", list, &alice, None).await["pushers"],
            json!([])
        );
        // A bad URL changes nothing.
        let (status, bad) = server
            .request(
                "POST",
                set,
                Some(&alice),
                Some(pusher_body("k2", "https://gateway.example/")),
            )
            .await;
        assert_eq!(
            (status, bad["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM"))
        );
        assert_eq!(
            call(&server, "GET", list, &alice, None).await["pushers"],
            json!([])
        );
    });
}

#[test]
fn a_password_change_removes_the_other_devices_pushers() {
    block_on(async {
        let server = TestServer::new();
        let (_, first) = server.register("alice").await;
        let login = json!({ "type": "m.login.password", "user": "alice",
            "password": "correct horse battery" });
        let (status, other) = server
            .request("POST", "/_matrix/client/v3/login", None, Some(login))
            .await;
        assert_eq!(status, 200, "{other}");
        let second = other["access_token"].as_str().unwrap().to_owned();
        let set = "/_matrix/client/v3/pushers/set";
        call(
            &server,
            "POST",
            set,
            &first,
            Some(pusher_body("mine", GATEWAY)),
        )
        .await;
        call(
            &server,
            "POST",
            set,
            &second,
            Some(pusher_body("other", GATEWAY)),
        )
        .await;
        let change = json!({ "new_password": "another horse battery",
            "auth": { "type": "m.login.password", "password": "correct horse battery",
                      "identifier": { "type": "m.id.user", "user": "alice" } } });
        call(
            &server,
            "POST",
            "/_matrix/client/v3/account/password",
            &first,
            Some(change),
        )
        .await;
        let left = call(&server, "GET", "/_matrix/client/v3/pushers", &first, None).await;
        let keys: Vec<&str> = left["pushers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pushkey"].as_str().unwrap())
            .collect();
        assert_eq!(keys, vec!["mine"]);
    });
}

#[test]
fn the_queue_pushes_once_and_drops_rejected_pushkeys() {
    block_on(async {
        let server = TestServer::new();
        let (room, alice, bob, bob_id) = group(&server).await;
        let mut body = pusher_body("k1", GATEWAY);
        body["data"] = json!({ "url": GATEWAY });
        call(
            &server,
            "POST",
            "/_matrix/client/v3/pushers/set",
            &bob,
            Some(body),
        )
        .await;
        let event = send(&server, &alice, &room, "1", text("ping")).await;
        assert!(server.recorded.push_pokes.borrow().contains(&bob_id));
        // First the gateway is down, then it takes the push and rejects the pushkey.
        let answers = std::cell::RefCell::new(vec![
            Ok(HttpResponse {
                status: 200,
                headers: vec![],
                body: br#"{"rejected":["k1"]}"#.to_vec(),
            }),
            Err("connection refused".to_owned()),
        ]);
        server.respond_with(move |_| answers.borrow_mut().pop().unwrap());
        let db = Db::new(&server.platform);
        let mut state = super::deliver::QueueState {
            user_id: bob_id.clone(),
            ..Default::default()
        };
        let next = super::deliver::step(&server.platform, &db, &mut state)
            .await
            .unwrap();
        assert_eq!(next, super::deliver::Next::After(1000));
        let next = super::deliver::step(&server.platform, &db, &mut state)
            .await
            .unwrap();
        assert_eq!(next, super::deliver::Next::Now);
        let requests = server.recorded.requests.borrow().clone();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].url, GATEWAY);
        let sent: Value = serde_json::from_slice(requests[1].body.as_ref().unwrap()).unwrap();
        let note = &sent["notification"];
        assert_eq!(note["event_id"], event.as_str());
        assert_eq!(note["sender"], "@alice:test.local");
        assert_eq!(note["content"]["body"], "ping");
        assert_eq!(note["counts"]["unread"], 1);
        assert_eq!(note["devices"][0]["pushkey"], "k1");
        // The rejected pushkey lost its pusher, and nothing else is waiting.
        let pushers = call(&server, "GET", "/_matrix/client/v3/pushers", &bob, None).await;
        assert_eq!(pushers["pushers"], json!([]));
        let next = super::deliver::step(&server.platform, &db, &mut state)
            .await
            .unwrap();
        assert_eq!(next, super::deliver::Next::Idle);
    });
}

#[test]
fn an_invite_notifies_the_invitee_and_stops_counting_once_joined() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (bob_id, bob) = server.register("bob").await;
        let created = call(
            &server,
            "POST",
            "/_matrix/client/v3/createRoom",
            &alice,
            Some(json!({})),
        )
        .await;
        let room = created["room_id"].as_str().unwrap().to_owned();
        let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
        call(
            &server,
            "POST",
            &invite,
            &alice,
            Some(json!({ "user_id": bob_id })),
        )
        .await;
        let listed = call(
            &server,
            "GET",
            "/_matrix/client/v3/notifications",
            &bob,
            None,
        )
        .await;
        // Not joined: /notifications lists rooms the user is in, so the invite is not there yet.
        assert_eq!(listed["notifications"], json!([]));
        let rows = server
            .rows(
                "SELECT u.key AS user_id, json_extract(u.value, '$[0]') AS highlight
                 FROM events e JOIN json_each(e.push, '$.u') u",
            )
            .await;
        assert_eq!(rows, vec![json!({ "user_id": bob_id, "highlight": 0 })]);
        call(
            &server,
            "POST",
            &format!("/_matrix/client/v3/join/{room}"),
            &bob,
            Some(json!({})),
        )
        .await;
        assert_eq!(counts(&server, &bob, &room, false).await["all"], n(0, 0));
        send(&server, &alice, &room, "1", text("welcome")).await;
        assert_eq!(counts(&server, &bob, &room, false).await["all"], n(1, 0));
    });
}
