//! `/hierarchy` with rooms another server holds: asked of the servers their links name, with
//! a space's answer standing in for its children that are not spaces.

use std::cell::RefCell;
use std::rc::Rc;

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::http::route::percent_decode;
use crate::testing::{
    create_room as create, json_response, ok_call, path_of, RemoteServer, TestServer,
};

const FAR: &str = "!far:remote.test";
const LEAF: &str = "!leaf:remote.test";
const SUB: &str = "!sub:remote.test";
const HIDDEN: &str = "!hidden:remote.test";
const MEMBERS_ONLY: &str = "!members:remote.test";
const STRANGERS_ONLY: &str = "!strangers:remote.test";
const GONE: &str = "!gone:remote.test";

fn link(child: &str, ts: u64) -> Value {
    json!({ "type": "m.space.child", "state_key": child, "sender": "@r:remote.test",
            "content": { "via": ["remote.test"] }, "origin_server_ts": ts })
}

fn summary(room_id: &str, extra: Value) -> Value {
    let mut room = json!({ "room_id": room_id, "num_joined_members": 2, "world_readable": false,
                           "guest_can_join": false, "join_rule": "public" });
    for (k, v) in extra.as_object().unwrap() {
        room[k] = v.clone();
    }
    room
}

/// What remote.test answers about its rooms (`space` is our space, which one of its rooms
/// lets in).
fn remote_answer(room_id: &str, space: &str) -> Option<Value> {
    let restricted =
        |allowed: &str| json!({ "join_rule": "restricted", "allowed_room_ids": [allowed] });
    match room_id {
        FAR => {
            let mut room = summary(FAR, json!({ "room_type": "m.space", "name": "Far" }));
            room["children_state"] = json!([
                link(LEAF, 1),
                link(SUB, 2),
                link(HIDDEN, 3),
                link(MEMBERS_ONLY, 4),
                link(STRANGERS_ONLY, 5)
            ]);
            Some(json!({
                "room": room,
                "children": [
                    summary(LEAF, json!({ "name": "Leaf" })),
                    summary(SUB, json!({ "room_type": "m.space" })),
                    summary(MEMBERS_ONLY, restricted(space)),
                    summary(STRANGERS_ONLY, restricted("!elsewhere:remote.test")),
                ],
                "inaccessible_children": [HIDDEN],
            }))
        }
        SUB => {
            let mut room = summary(SUB, json!({ "room_type": "m.space", "name": "Sub" }));
            room["children_state"] = json!([]);
            Some(json!({ "room": room, "children": [], "inaccessible_children": [] }))
        }
        _ => None,
    }
}

async fn hierarchy(server: &TestServer, token: &str, space: &str, query: &str) -> Value {
    let path = format!("/_matrix/client/v1/rooms/{space}/hierarchy{query}");
    ok_call(server, "GET", &path, token, None).await
}

fn ids(page: &Value) -> Vec<String> {
    let rooms = page["rooms"].as_array().unwrap();
    rooms
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn rooms_held_elsewhere_are_asked_of_their_via_servers() {
    block_on(async {
        let server = TestServer::new();
        let remote = RemoteServer::new("remote.test");
        let (_, token) = server.register("alice").await;
        let (_, bob_token) = server.register("bob").await;
        let space = create(
            &server,
            &token,
            json!({ "preset": "public_chat", "creation_content": { "type": "m.space" } }),
        )
        .await;
        let local = create(&server, &token, json!({ "preset": "public_chat" })).await;
        let asked: Rc<RefCell<Vec<String>>> = Rc::default();
        let (log, ours, answering) = (asked.clone(), space.clone(), remote.clone());
        server.respond_with(remote.responder(move |request| {
            // Any other server is down.
            if !answering.addressed(request) {
                return None;
            }
            let path = path_of(request);
            let rest = path.strip_prefix("/_matrix/federation/v1/hierarchy/")?;
            let room_id = percent_decode(rest.split('?').next()?)?;
            log.borrow_mut().push(room_id.clone());
            Some(match remote_answer(&room_id, &ours) {
                Some(answer) => json_response(200, &answer),
                None => json_response(404, &json!({ "errcode": "M_NOT_FOUND", "error": "no" })),
            })
        }));
        let us = crate::testing::SERVER_NAME;
        for (child, via, ts) in [
            (local.as_str(), us, 1),
            // Its link names a server that is down: the room id's server answers.
            (FAR, "down.test", 2),
            (GONE, "remote.test", 3),
        ] {
            let path = format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}");
            let content = json!({ "via": [via], "order": format!("{ts}") });
            let (status, answer) = server
                .request("PUT", &path, Some(&token), Some(content))
                .await;
            assert_eq!(status, 200, "{answer}");
        }
        // A link to a room only we would know of, that we do not hold: nobody is asked.
        let path = format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/!lost:{us}");
        let content = json!({ "via": [us], "order": "4" });
        server
            .request("PUT", &path, Some(&token), Some(content))
            .await;

        let page = hierarchy(&server, &token, &space, "").await;
        assert_eq!(
            ids(&page),
            [space.as_str(), local.as_str(), FAR, LEAF, SUB, MEMBERS_ONLY]
        );
        assert!(page.get("next_batch").is_none());
        let far = &page["rooms"][2];
        assert_eq!(far["name"], "Far");
        assert_eq!(far["children_state"].as_array().unwrap().len(), 5);
        assert_eq!(page["rooms"][3]["name"], "Leaf");
        assert_eq!(page["rooms"][3]["children_state"], json!([]));
        assert_eq!(page["rooms"][4]["name"], "Sub");
        // The far space and the room nobody has (at once), then the far space's child space;
        // not the leaf, whose summary came with its space.
        // Asked together, so in either order.
        let mut at_once = asked.borrow()[..2].to_vec();
        at_once.sort();
        assert_eq!(at_once, [FAR, GONE]);
        assert_eq!(asked.borrow()[2..], [SUB]);

        // Bob is in no room the restricted one allows.
        let page = hierarchy(&server, &bob_token, &space, "").await;
        assert_eq!(ids(&page), [space.as_str(), local.as_str(), FAR, LEAF, SUB]);

        // Pages carry the servers to ask along.
        asked.borrow_mut().clear();
        let first = hierarchy(&server, &token, &space, "?limit=2").await;
        assert_eq!(ids(&first), [space.as_str(), local.as_str()]);
        let token_from = first["next_batch"].as_str().unwrap();
        let second = hierarchy(&server, &token, &space, &format!("?from={token_from}")).await;
        assert_eq!(ids(&second), [FAR, LEAF, SUB, MEMBERS_ONLY]);
    });
}
