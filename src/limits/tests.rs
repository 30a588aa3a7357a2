//! The limits end to end through `TestServer`: real handlers, SQLite's counters, the answers.

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::testing::{RemoteServer, TestServer};

async fn create_room(server: &TestServer, token: &str) -> (u16, Value) {
    server
        .request(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(token),
            Some(json!({})),
        )
        .await
}

/// A message from `ip`.
async fn send(server: &TestServer, token: &str, room: &str, txn: &str, ip: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let body = json!({"msgtype": "m.text", "body": txn})
        .to_string()
        .into_bytes();
    let authorization = format!("Bearer {token}");
    let (status, _, body) = server
        .request_with_headers(
            "PUT",
            &path,
            Some(&authorization),
            &[("cf-connecting-ip", ip)],
            body,
        )
        .await;
    (status, serde_json::from_slice(&body).unwrap())
}

fn assert_limited((status, answer): &(u16, Value)) {
    assert_eq!(*status, 429, "{answer}");
    assert_eq!(answer["errcode"], "M_LIMIT_EXCEEDED");
    let retry = answer["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry > 0 && retry <= 60_000, "{retry}");
}

async fn messages_with_body(server: &TestServer, body: &str) -> usize {
    server
        .rows("SELECT pdu AS json FROM events WHERE type = 'm.room.message'")
        .await
        .iter()
        .filter(|row| {
            row["json"]
                .as_str()
                .is_some_and(|j| j.contains(&format!("\"body\":\"{body}\"")))
        })
        .count()
}

#[test]
fn sends_are_limited_per_user_and_a_refused_send_stores_nothing() {
    block_on(async {
        let server = TestServer::new();
        server.set_var("RATE_LIMITS", "send=3/100");
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let (_, room) = create_room(&server, &alice).await;
        let room = room["room_id"].as_str().unwrap().to_owned();
        for txn in ["a1", "a2", "a3"] {
            assert_eq!(send(&server, &alice, &room, txn, "10.0.0.1").await.0, 200);
        }
        let refused = send(&server, &alice, &room, "a4", "10.0.0.1").await;
        assert_limited(&refused);
        assert_eq!(messages_with_body(&server, "a4").await, 0);
        // Another user on the same address has a count of their own (bob is not in the room:
        // the answer is the room's, not the limit's).
        let (status, answer) = send(&server, &bob, &room, "b1", "10.0.0.1").await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
    })
}

#[test]
fn sends_are_limited_per_address_across_users() {
    block_on(async {
        let server = TestServer::new();
        server.set_var("RATE_LIMITS", "send=100/3");
        let (_, alice) = server.register("alice").await;
        let (_, room) = create_room(&server, &alice).await;
        let room = room["room_id"].as_str().unwrap().to_owned();
        for txn in ["x1", "x2", "x3"] {
            assert_eq!(send(&server, &alice, &room, txn, "10.0.0.9").await.0, 200);
        }
        assert_limited(&send(&server, &alice, &room, "x4", "10.0.0.9").await);
        // The same user from another address is not that address's count.
        assert_eq!(send(&server, &alice, &room, "x5", "10.0.0.10").await.0, 200);
        assert_eq!(messages_with_body(&server, "x4").await, 0);
    })
}

#[test]
fn joins_and_room_creation_are_limited() {
    block_on(async {
        let server = TestServer::new();
        server.set_var("RATE_LIMITS", "join=2");
        let (_, alice) = server.register("alice").await;
        assert_eq!(create_room(&server, &alice).await.0, 200);
        assert_eq!(create_room(&server, &alice).await.0, 200);
        assert_limited(&create_room(&server, &alice).await);
        let rooms = server.rows("SELECT room_id FROM rooms").await;
        assert_eq!(rooms.len(), 2, "{rooms:?}");
    })
}

#[test]
fn uploads_are_limited() {
    block_on(async {
        let server = TestServer::new();
        server.set_var("RATE_LIMITS", "upload=1/50");
        let (_, alice) = server.register("alice").await;
        let authorization = format!("Bearer {alice}");
        let upload = || {
            server.request_with_headers(
                "POST",
                "/_matrix/media/v3/upload",
                Some(&authorization),
                &[("content-type", "text/plain")],
                b"hello".to_vec(),
            )
        };
        assert_eq!(upload().await.0, 200);
        let (status, _, body) = upload().await;
        assert_limited(&(status, serde_json::from_slice(&body).unwrap()));
        assert_eq!(server.rows("SELECT media_id FROM media").await.len(), 1);
    })
}

#[test]
fn federation_requests_are_limited_per_origin_server() {
    block_on(async {
        let server = TestServer::new();
        server.set_var("RATE_LIMITS", "federation=2");
        let (alice, _) = server.register("alice").await;
        let (one, two) = (RemoteServer::new("one.test"), RemoteServer::new("two.test"));
        let (r1, r2) = (one.clone(), two.clone());
        server.respond_with(move |request| {
            if r1.addressed(request) {
                r1.responder(|_| None)(request)
            } else {
                r2.responder(|_| None)(request)
            }
        });
        let path = format!("/_matrix/federation/v1/query/profile?user_id={alice}");
        assert_eq!(one.request(&server, "GET", &path, None).await.0, 200);
        assert_eq!(one.request(&server, "GET", &path, None).await.0, 200);
        assert_limited(&one.request(&server, "GET", &path, None).await);
        assert_eq!(two.request(&server, "GET", &path, None).await.0, 200);
    })
}

#[test]
fn a_body_over_the_limit_is_413_whether_read_or_only_declared() {
    block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let authorization = format!("Bearer {alice}");
        let path = "/_matrix/client/v3/createRoom";
        let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024)).into_bytes();
        let (status, _, body) = server
            .request_with_headers("POST", path, Some(&authorization), &[], huge)
            .await;
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (413, Some("M_TOO_LARGE"))
        );
        // The runtime leaves a body declared too large unread; the declaration decides.
        let (status, _, body) = server
            .request_with_headers(
                "POST",
                path,
                Some(&authorization),
                &[("content-length", "5000000")],
                Vec::new(),
            )
            .await;
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (413, Some("M_TOO_LARGE"))
        );
        assert!(server.rows("SELECT room_id FROM rooms").await.is_empty());
    })
}
