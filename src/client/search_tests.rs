//! `POST /search`, `/threads` and thread summaries, relation and url filters, reports: end to
//! end through `TestServer` (real handlers, room objects and SQLite with the FTS5 index).

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::testing::{ok_call as call, TestServer};

async fn get(server: &TestServer, path: &str, token: &str) -> Value {
    call(server, "GET", path, token, None).await
}

async fn create_room(server: &TestServer, token: &str, body: Value) -> String {
    let answer = call(
        server,
        "POST",
        "/_matrix/client/v3/createRoom",
        token,
        Some(body),
    )
    .await;
    answer["room_id"].as_str().unwrap().to_owned()
}

async fn send(server: &TestServer, token: &str, room: &str, content: Value) -> String {
    let txn = next_txn();
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let answer = call(server, "PUT", &path, token, Some(content)).await;
    answer["event_id"].as_str().unwrap().to_owned()
}

/// A transaction id not used before in this process.
fn next_txn() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("txn{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn text(server: &TestServer, token: &str, room: &str, body: &str) -> String {
    send(
        server,
        token,
        room,
        json!({ "msgtype": "m.text", "body": body }),
    )
    .await
}

async fn join(server: &TestServer, token: &str, room: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/join");
    call(server, "POST", &path, token, Some(json!({}))).await;
}

async fn search(
    server: &TestServer,
    token: &str,
    query: Value,
    next: Option<&str>,
) -> (u16, Value) {
    let path = match next {
        Some(n) => format!("/_matrix/client/v3/search?next_batch={n}"),
        None => "/_matrix/client/v3/search".to_owned(),
    };
    let body = json!({ "search_categories": { "room_events": query } });
    server.request("POST", &path, Some(token), Some(body)).await
}

fn ids(found: &Value) -> Vec<&str> {
    found["search_categories"]["room_events"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["event_id"].as_str().unwrap())
        .collect()
}

#[test]
fn search_finds_words_prefixes_and_phrases_in_recent_order_with_paging() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room = create_room(&server, &token, json!({ "preset": "private_chat" })).await;
        let mut sent = Vec::new();
        for i in 0..7 {
            sent.push(text(&server, &token, &room, &format!("Message number {i}")).await);
        }
        let other = text(&server, &token, &room, "something else, café").await;

        let q = |term: &str| json!({ "search_term": term, "order_by": "recent", "filter": { "limit": 3 } });
        let (status, page1) = search(&server, &token, q("messag"), None).await;
        assert_eq!(status, 200, "{page1}");
        let found = &page1["search_categories"]["room_events"];
        assert_eq!(found["count"], 7, "{page1}");
        assert_eq!(ids(&page1), vec![&sent[6], &sent[5], &sent[4]]);
        assert_eq!(found["highlights"], json!(["messag"]));
        let next = found["next_batch"]
            .as_str()
            .expect("a full page has a next_batch");
        let (_, page2) = search(&server, &token, q("messag"), Some(next)).await;
        assert_eq!(ids(&page2), vec![&sent[3], &sent[2], &sent[1]]);
        assert_eq!(page2["search_categories"]["room_events"]["count"], 7);
        let next = page2["search_categories"]["room_events"]["next_batch"]
            .as_str()
            .unwrap();
        let (_, page3) = search(&server, &token, q("messag"), Some(next)).await;
        assert_eq!(ids(&page3), vec![&sent[0]]);
        assert!(page3["search_categories"]["room_events"]
            .get("next_batch")
            .is_none());

        // All words must match; a quoted phrase matches only as written; diacritics fold.
        let (_, found) = search(&server, &token, q("message 4"), None).await;
        assert_eq!(ids(&found), vec![&sent[4]]);
        let (_, found) = search(&server, &token, q("\"number message\""), None).await;
        assert!(ids(&found).is_empty());
        let (_, found) = search(&server, &token, q("cafe -message"), None).await;
        assert_eq!(ids(&found), vec![&other]);
        // A token of the other order is refused.
        let (status, _) = search(&server, &token, q("message"), Some("r3")).await;
        assert_eq!(status, 400);
    });
}

#[test]
fn hostile_terms_are_text_never_errors() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room = create_room(&server, &token, json!({})).await;
        let id = text(&server, &token, &room, "NEAR the AND gate OR body").await;
        for term in [
            "\"",
            "\"\"",
            "*",
            "(",
            ")",
            "NEAR(",
            "body:",
            "{body}: x",
            "-",
            "- -",
            "^",
            "AND",
            "a OR",
            "NOT x",
            "'; DROP TABLE events; --",
            "\u{0}",
            "🙂",
            "x\"y*z",
        ] {
            let (status, answer) =
                search(&server, &token, json!({ "search_term": term }), None).await;
            assert_eq!(status, 200, "{term:?}: {answer}");
        }
        let (_, found) = search(
            &server,
            &token,
            json!({ "search_term": "near(the and)" }),
            None,
        )
        .await;
        assert_eq!(ids(&found), vec![id.as_str()]);
        // A bad request shape is a 400, not a 500.
        let (status, _) = search(
            &server,
            &token,
            json!({ "search_term": "x", "keys": ["content.url"] }),
            None,
        )
        .await;
        assert_eq!(status, 400);
    });
}

#[test]
fn search_keeps_to_what_the_user_may_see() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        // A room bob is never in, and one he joins late with "joined" history.
        let private = create_room(&server, &alice, json!({ "preset": "private_chat" })).await;
        text(&server, &alice, &private, "secret plans").await;
        let public = create_room(
            &server,
            &alice,
            json!({ "preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "joined" } }] }),
        )
        .await;
        text(&server, &alice, &public, "early plans").await;
        join(&server, &bob, &public).await;
        let late = text(&server, &alice, &public, "later plans").await;

        let (_, found) = search(&server, &bob, json!({ "search_term": "plans" }), None).await;
        assert_eq!(ids(&found), vec![late.as_str()], "{found}");
        assert_eq!(found["search_categories"]["room_events"]["count"], 1);
        // Asking for the private room by name changes nothing.
        let (_, found) = search(
            &server,
            &bob,
            json!({ "search_term": "secret", "filter": { "rooms": [private] } }),
            None,
        )
        .await;
        assert!(ids(&found).is_empty(), "{found}");
        // Alice sees all three; rank order puts the best match first and pages by offset.
        let (_, found) = search(
            &server,
            &alice,
            json!({ "search_term": "plans", "filter": { "limit": 2 } }),
            None,
        )
        .await;
        let events = &found["search_categories"]["room_events"];
        assert_eq!(events["count"], 3);
        assert_eq!(ids(&found).len(), 2);
        let ranks: Vec<f64> = events["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rank"].as_f64().unwrap())
            .collect();
        assert!(ranks[0] >= ranks[1], "{ranks:?}");
        let next = events["next_batch"].as_str().unwrap();
        let (_, rest) = search(
            &server,
            &alice,
            json!({ "search_term": "plans", "filter": { "limit": 2 } }),
            Some(next),
        )
        .await;
        assert_eq!(ids(&rest).len(), 1);
    });
}

#[test]
fn redacted_events_leave_the_index() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room = create_room(&server, &token, json!({})).await;
        let gone = text(&server, &token, &room, "to be redacted").await;
        let kept = text(&server, &token, &room, "not to be redacted").await;
        let path = format!("/_matrix/client/v3/rooms/{room}/redact/{gone}/r1");
        call(&server, "PUT", &path, &token, Some(json!({}))).await;
        for order in ["rank", "recent"] {
            let (_, found) = search(
                &server,
                &token,
                json!({ "search_term": "redacted", "order_by": order }),
                None,
            )
            .await;
            assert_eq!(ids(&found), vec![kept.as_str()]);
        }
        let rows = server
            .rows("SELECT COUNT(*) AS n FROM event_search WHERE event_search MATCH 'redacted'")
            .await;
        assert_eq!(rows[0]["n"], 1, "the redacted text is gone from the index");
        // Encrypted events are not indexed: one row per text message, the room's name and topic.
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/e1");
        call(
            &server,
            "PUT",
            &path,
            &token,
            Some(json!({ "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "redacted" })),
        )
        .await;
        let rows = server
            .rows("SELECT COUNT(*) AS n FROM event_search WHERE event_search MATCH 'redacted'")
            .await;
        assert_eq!(rows[0]["n"], 1);
    });
}

#[test]
fn search_context_groups_state_and_keys() {
    block_on(async {
        let server = TestServer::new();
        let (alice_id, token) = server.register("alice").await;
        let room = create_room(
            &server,
            &token,
            json!({ "name": "Garden club", "topic": "roses" }),
        )
        .await;
        for i in 1..=5 {
            text(&server, &token, &room, &format!("Message number {i}")).await;
        }
        let (_, found) = search(
            &server,
            &token,
            json!({
                "search_term": "message 3", "keys": ["content.body"],
                "event_context": { "before_limit": 2, "after_limit": 1, "include_profile": true },
                "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] },
                "include_state": true,
            }),
            None,
        )
        .await;
        let events = &found["search_categories"]["room_events"];
        let context = &events["results"][0]["context"];
        assert_eq!(
            context["events_before"][0]["content"]["body"],
            "Message number 2"
        );
        assert_eq!(
            context["events_before"][1]["content"]["body"],
            "Message number 1"
        );
        assert_eq!(
            context["events_after"][0]["content"]["body"],
            "Message number 4"
        );
        assert_eq!(context["events_after"].as_array().unwrap().len(), 1);
        assert_eq!(context["profile_info"][&alice_id]["displayname"], "alice");
        assert_eq!(
            events["groups"]["room_id"][&room]["results"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(events["groups"]["sender"][&alice_id]["order"], 1);
        assert!(events["state"][&room]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create"));
        // Names and topics are found by their keys only.
        let (_, by_name) = search(
            &server,
            &token,
            json!({ "search_term": "garden", "keys": ["content.name"] }),
            None,
        )
        .await;
        assert_eq!(
            by_name["search_categories"]["room_events"]["results"][0]["result"]["type"],
            "m.room.name"
        );
        let (_, by_body) = search(
            &server,
            &token,
            json!({ "search_term": "garden", "keys": ["content.body"] }),
            None,
        )
        .await;
        assert!(ids(&by_body).is_empty());
        let (_, topic) = search(&server, &token, json!({ "search_term": "roses" }), None).await;
        assert_eq!(ids(&topic).len(), 1);
    });
}

#[test]
fn threads_are_listed_by_latest_reply_and_summarised_on_their_roots() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
        join(&server, &bob, &room).await;
        let reply = |root: &str, body: &str| {
            json!({ "msgtype": "m.text", "body": body,
            "m.relates_to": { "rel_type": "m.thread", "event_id": root } })
        };
        let root1 = text(&server, &alice, &room, "Thread 1").await;
        let root2 = text(&server, &bob, &room, "Thread 2").await;
        send(&server, &alice, &room, reply(&root1, "one")).await;
        let latest2 = send(&server, &bob, &room, reply(&root2, "two")).await;
        let latest1 = send(&server, &bob, &room, reply(&root1, "three")).await;

        let path = format!("/_matrix/client/v1/rooms/{room}/threads");
        let list = get(&server, &path, &alice).await;
        let chunk = list["chunk"].as_array().unwrap();
        let order: Vec<&str> = chunk
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(order, vec![&root1, &root2]);
        let thread = &chunk[0]["unsigned"]["m.relations"]["m.thread"];
        assert_eq!(thread["latest_event"]["event_id"], latest1);
        assert_eq!(thread["count"], 2);
        assert_eq!(thread["latest_event"]["unsigned"]["membership"], "join");
        assert_eq!(thread["current_user_participated"], true);
        assert_eq!(
            chunk[1]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
            false
        );
        assert_eq!(
            chunk[1]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"],
            latest2
        );

        // Participated: alice started thread 1 and never wrote in thread 2.
        let mine = get(&server, &format!("{path}?include=participated"), &alice).await;
        assert_eq!(mine["chunk"].as_array().unwrap().len(), 1);
        // Paging: one per page, then nothing more.
        let first = get(&server, &format!("{path}?limit=1"), &alice).await;
        assert_eq!(first["chunk"][0]["event_id"], root1);
        let next = first["next_batch"].as_str().unwrap();
        let second = get(&server, &format!("{path}?limit=1&from={next}"), &alice).await;
        assert_eq!(second["chunk"][0]["event_id"], root2);
        let next = second["next_batch"].as_str().unwrap();
        let third = get(&server, &format!("{path}?limit=1&from={next}"), &alice).await;
        assert!(third["chunk"].as_array().unwrap().is_empty() && third.get("next_batch").is_none());
        let (status, _) = server
            .request("GET", &format!("{path}?include=some"), Some(&alice), None)
            .await;
        assert_eq!(status, 400);

        // The same summary on /event, /messages and /context.
        let event = get(
            &server,
            &format!("/_matrix/client/v3/rooms/{room}/event/{root2}"),
            &bob,
        )
        .await;
        assert_eq!(event["unsigned"]["m.relations"]["m.thread"]["count"], 1);
        assert_eq!(
            event["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
            true
        );
        let page = get(
            &server,
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"),
            &alice,
        )
        .await;
        let root = page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_id"] == root1.as_str())
            .unwrap();
        assert_eq!(
            root["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"],
            latest1
        );
        let context = get(
            &server,
            &format!("/_matrix/client/v3/rooms/{room}/context/{root1}"),
            &alice,
        )
        .await;
        assert_eq!(
            context["event"]["unsigned"]["m.relations"]["m.thread"]["count"],
            2
        );
        // And in /sync's timeline.
        let sync = get(&server, "/_matrix/client/v3/sync", &alice).await;
        let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .unwrap();
        let root = timeline
            .iter()
            .find(|e| e["event_id"] == root2.as_str())
            .unwrap();
        assert_eq!(root["unsigned"]["m.relations"]["m.thread"]["count"], 1);
    });
}

#[test]
fn messages_filter_by_relation_type_and_url() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("alice").await;
        let room = create_room(&server, &token, json!({})).await;
        let root = text(&server, &token, &room, "root").await;
        let in_thread = send(
            &server,
            &token,
            &room,
            json!({ "msgtype": "m.text", "body": "t",
            "m.relates_to": { "rel_type": "m.thread", "event_id": root } }),
        )
        .await;
        let image = send(
            &server,
            &token,
            &room,
            json!({ "msgtype": "m.image", "body": "i.png", "url": "mxc://x/y" }),
        )
        .await;
        let page = |filter: Value| {
            let path = format!(
                "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50&filter={}",
                urlencode(&filter.to_string())
            );
            let server = &server;
            let token = token.clone();
            async move {
                let answer = call(server, "GET", &path, &token, None).await;
                answer["chunk"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            page(json!({ "org.matrix.msc3874.rel_types": ["m.thread"] })).await,
            vec![in_thread.clone()]
        );
        assert!(
            !page(json!({ "org.matrix.msc3874.not_rel_types": ["m.thread"] }))
                .await
                .contains(&in_thread)
        );
        assert_eq!(
            page(json!({ "contains_url": true })).await,
            vec![image.clone()]
        );
        assert!(!page(json!({ "contains_url": false }))
            .await
            .contains(&image));
    });
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn reports_are_stored_and_checked() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let room = create_room(&server, &alice, json!({ "preset": "private_chat" })).await;
        let event = text(&server, &alice, &room, "bad words").await;
        let path = format!("/_matrix/client/v3/rooms/{room}/report/{event}");
        call(
            &server,
            "POST",
            &path,
            &alice,
            Some(json!({ "reason": "rude", "score": -50 })),
        )
        .await;
        // Bob is not in the room: as if the event did not exist.
        let (status, answer) = server
            .request("POST", &path, Some(&bob), Some(json!({ "reason": "x" })))
            .await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (404, Some("M_NOT_FOUND"))
        );
        let (status, _) = server
            .request("POST", &path, Some(&alice), Some(json!({ "score": 5 })))
            .await;
        assert_eq!(status, 400);
        // Anyone may report a room the server knows.
        let room_path = format!("/_matrix/client/v3/rooms/{room}/report");
        call(
            &server,
            "POST",
            &room_path,
            &bob,
            Some(json!({ "reason": "spam" })),
        )
        .await;
        let (status, _) = server
            .request(
                "POST",
                "/_matrix/client/v3/rooms/!nope:localhost/report",
                Some(&bob),
                Some(json!({ "reason": "x" })),
            )
            .await;
        assert_eq!(status, 404);
        let rows = server
            .rows("SELECT event_id, reason, score FROM content_reports ORDER BY id")
            .await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["reason"], "rude");
        assert_eq!(rows[0]["score"], -50);
        assert_eq!(rows[1]["event_id"], Value::Null);

        // Admins list the event reports, newest first; nobody else may.
        let (status, _) = server
            .request(
                "GET",
                "/_synapse/admin/v1/event_reports",
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(status, 403);
        let (root, admin) = server.register("root").await;
        server
            .rows(&format!(
                "UPDATE users SET admin = 1 WHERE user_id = '{root}'"
            ))
            .await;
        call(
            &server,
            "POST",
            &path,
            &alice,
            Some(json!({ "reason": "again" })),
        )
        .await;
        let list = get(&server, "/_synapse/admin/v1/event_reports?limit=1", &admin).await;
        assert_eq!(list["total"], 2);
        assert_eq!(list["event_reports"][0]["reason"], "again");
        assert_eq!(list["event_reports"][0]["event_id"], event);
        assert_eq!(list["next_token"], 1);
        let room_only = format!("/_synapse/admin/v1/event_reports?room_id={room}&dir=f");
        let list = get(&server, &room_only, &admin).await;
        assert_eq!(list["event_reports"][0]["reason"], "rude");
    });
}

#[test]
fn filters_naming_bad_ids_are_refused() {
    block_on(async {
        let server = TestServer::new();
        let (alice, token) = server.register("alice").await;
        let path = format!("/_matrix/client/v3/user/{alice}/filter");
        for filter in [
            json!({ "room": { "timeline": { "rooms": ["not_a_room_id"] } } }),
            json!({ "room": { "timeline": { "senders": ["not_a_sender_id"] } } }),
            json!({ "room": { "timeline": { "types": [1] } } }),
        ] {
            let (status, _) = server
                .request("POST", &path, Some(&token), Some(filter))
                .await;
            assert_eq!(status, 400);
        }
    });
}

#[test]
fn events_carry_the_readers_membership_and_forgotten_rooms_are_closed() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
        let before = text(&server, &alice, &room, "before bob").await;
        join(&server, &bob, &room).await;
        let after = text(&server, &alice, &room, "after bob").await;
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
        let chunk = get(&server, &path, &bob).await["chunk"].clone();
        let membership = |id: &str| {
            chunk
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["event_id"] == id)
                .unwrap()["unsigned"]["membership"]
                .clone()
        };
        assert_eq!(membership(&before), "leave");
        assert_eq!(membership(&after), "join");

        // Not a member: a world-readable event is readable, any other is 404.
        let (_, eve) = server.register("eve").await;
        let event_path = format!("/_matrix/client/v3/rooms/{room}/event/{after}");
        let (status, _) = server.request("GET", &event_path, Some(&eve), None).await;
        assert_eq!(status, 404);
        let open = create_room(
            &server,
            &alice,
            json!({ "preset": "public_chat", "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "",
            "content": { "history_visibility": "world_readable" } }] }),
        )
        .await;
        let readable = text(&server, &alice, &open, "for everyone").await;
        let path = format!("/_matrix/client/v3/rooms/{open}/event/{readable}");
        assert_eq!(
            get(&server, &path, &eve).await["content"]["body"],
            "for everyone"
        );

        // Bob leaves and forgets: the history is closed to him.
        let leave = format!("/_matrix/client/v3/rooms/{room}/leave");
        call(&server, "POST", &leave, &bob, Some(json!({}))).await;
        let forget = format!("/_matrix/client/v3/rooms/{room}/forget");
        call(&server, "POST", &forget, &bob, Some(json!({}))).await;
        let path = format!("/_matrix/client/v3/rooms/{room}/messages");
        let (status, answer) = server.request("GET", &path, Some(&bob), None).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
    });
}
