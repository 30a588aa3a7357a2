//! Group commit (`queued.rs`) through the client API of a test server: messages sent at once
//! reach the room's writer while it is busy and are written together, each once, in the order
//! they arrived, with the answers their senders expect.

use futures::executor::block_on;
use futures::future::join_all;
use serde_json::{json, Value};

use crate::testing::TestServer;

async fn room_of_three(server: &TestServer) -> (String, Vec<String>) {
    let mut tokens = Vec::new();
    for name in ["alice", "bob", "carol"] {
        tokens.push(server.register(name).await.1);
    }
    let (status, answer) = server
        .request(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&tokens[0]),
            Some(json!({ "preset": "public_chat" })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let room_id = answer["room_id"].as_str().unwrap().to_owned();
    for token in &tokens[1..] {
        let path = format!("/_matrix/client/v3/join/{room_id}");
        let (status, answer) = server
            .request("POST", &path, Some(token), Some(json!({})))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    (room_id, tokens)
}

async fn send(server: &TestServer, room_id: &str, token: &str, txn: &str, body: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
    let content = json!({ "msgtype": "m.text", "body": body });
    let (status, answer) = server
        .request("PUT", &path, Some(token), Some(content))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

#[test]
fn messages_sent_at_once_are_written_together_once_each_in_order() {
    block_on(async {
        let server = TestServer::new();
        let (room_id, tokens) = room_of_three(&server).await;
        // 20 messages from three users at once, and a retry of message 5 racing it.
        let mut sends: Vec<(usize, usize)> = (0..20).map(|k| (k, k % 3)).collect();
        sends.insert(9, (5, 5 % 3));
        let before = server.d1_round_trips();
        let ids = join_all(sends.iter().map(|&(k, user)| {
            let (server, room_id, token) = (&server, &room_id, &tokens[user]);
            async move {
                let id = send(server, room_id, token, &format!("t{k}"), &format!("m{k}")).await;
                (k, id)
            }
        }))
        .await;
        let round_trips = server.d1_round_trips() - before;
        let id_of = |k: usize| ids.iter().find(|(j, _)| *j == k).unwrap().1.clone();
        assert!(
            ids.iter()
                .filter(|(k, _)| *k == 5)
                .all(|(_, id)| *id == id_of(5)),
            "the retry got another event: {ids:?}"
        );
        // One at a time this costs about 3 round trips a message (token, transaction and push
        // rules, write); written together, the writer's two are shared.
        assert!(
            round_trips < 2 * 20,
            "{round_trips} D1 round trips for 20 messages sent at once"
        );

        let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=f&limit=100");
        let (status, page) = server.request("GET", &path, Some(&tokens[0]), None).await;
        assert_eq!(status, 200, "{page}");
        let timeline: Vec<(String, String)> = page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| {
                let body = e["content"]["body"].as_str().unwrap_or_default().to_owned();
                (e["event_id"].as_str().unwrap().to_owned(), body)
            })
            .collect();
        // Each message once, with the id its sender was given, in the order they were sent
        // (the futures reach the room's queue in that order).
        let expected: Vec<(String, String)> =
            (0..20).map(|k| (id_of(k), format!("m{k}"))).collect();
        assert_eq!(timeline, expected);

        // The notifications were stored with the messages: bob has one for each message of
        // alice and carol (13 of the 20).
        let (status, notifications) = server
            .request(
                "GET",
                "/_matrix/client/v3/notifications",
                Some(&tokens[1]),
                None,
            )
            .await;
        assert_eq!(status, 200, "{notifications}");
        let notified: Vec<&Value> = notifications["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            notified.len(),
            (0..20).filter(|k| k % 3 != 1).count(),
            "{notifications}"
        );
    });
}
