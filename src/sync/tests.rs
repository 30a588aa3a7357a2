//! `/sync` end to end through `TestServer`: the initial sync, an incremental one, and one that
//! parks for lack of news.

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::testing::TestServer;

async fn sync(server: &TestServer, token: &str, query: &str) -> Value {
    let path = format!("/_matrix/client/v3/sync{query}");
    let (status, answer) = server.request("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{answer}");
    answer
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
