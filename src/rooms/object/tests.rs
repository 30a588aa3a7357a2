//! The incoming-PDU pipeline (`incoming.rs`) end to end: a remote server joins one of our rooms
//! over federation and sends PDUs with `PUT /send/{txnId}`, X-Matrix signed with its own key,
//! which the test server fetches from it like any other server's.

use std::cell::RefCell;
use std::rc::Rc;

use futures::executor::block_on;
use serde_json::{json, Value};

use crate::http::route::percent_encode;
use crate::platform::Method;
use crate::rooms::RoomVersion;
use crate::testing::{body_of, json_response, message, path_of, RemoteServer, TestServer};

const BOB: &str = "@bob:remote.test";

/// A public room of alice's on the test server, which bob of `remote.test` has joined.
struct Room {
    server: TestServer,
    remote: RemoteServer,
    alice: String,
    token: String,
    room_id: String,
    version: RoomVersion,
    /// Bob's join.
    join: String,
    power_levels: String,
}

impl Room {
    async fn new() -> Self {
        let server = TestServer::new();
        let remote = RemoteServer::new("remote.test");
        server.respond_with(remote.responder(|_| None));
        let (alice, token) = server.register("alice").await;
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&token),
                Some(json!({ "preset": "public_chat" })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let room_id = answer["room_id"].as_str().unwrap().to_owned();
        let join = remote.join(&server, &room_id, BOB).await;
        let mut room = Self {
            server,
            remote,
            alice,
            token,
            room_id,
            version: RoomVersion::V12,
            join,
            power_levels: String::new(),
        };
        room.power_levels = room.state_event_id("m.room.power_levels", "").await;
        assert_eq!(
            room.state_event_id("m.room.member", BOB).await,
            room.join,
            "bob is in"
        );
        room
    }

    /// The current state event of a slot, as alice reads it.
    async fn state_event_id(&self, kind: &str, state_key: &str) -> String {
        let path = format!("/_matrix/client/v3/rooms/{}/state", self.room_id);
        let (status, state) = self
            .server
            .request("GET", &path, Some(&self.token), None)
            .await;
        assert_eq!(status, 200, "{state}");
        let event = state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == state_key)
            .unwrap_or_else(|| panic!("no {kind} {state_key} in {state}"));
        event["event_id"].as_str().unwrap().to_owned()
    }

    async fn depth(&self, event_id: &str) -> u64 {
        let rows = self
            .server
            .rows(&format!(
                "SELECT depth FROM events WHERE event_id = '{event_id}'"
            ))
            .await;
        rows[0]["depth"].as_u64().expect("a stored event")
    }

    /// A message of bob's after `prev`, authorised by bob's join.
    async fn bobs_message(&self, body: &str, prev: &str, depth: u64) -> Value {
        message(
            &self.room_id,
            BOB,
            body,
            &[prev],
            &[&self.power_levels, &self.join],
            depth,
        )
    }

    /// Bob's next message after his join, signed by remote.test: its id and the PDU.
    async fn bobs_next(&self, body: &str) -> (String, Value) {
        let depth = self.depth(&self.join).await;
        self.remote.sign(
            self.bobs_message(body, &self.join, depth + 1).await,
            self.version,
        )
    }

    /// Sends a PDU we hold already in a new transaction: accepted, nothing written, nobody
    /// woken.
    async fn send_held(&self, txn: &str, id: &str, pdu: Value) {
        let count = self.count_events().await;
        self.server.recorded.notified.borrow_mut().clear();
        let (status, answer) = self.remote.send(&self.server, txn, vec![pdu]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][id], json!({}), "{answer}");
        assert_eq!(self.count_events().await, count);
        assert!(self.server.recorded.notified.borrow().is_empty());
    }

    /// `events.outlier` of a stored event (0 timeline, 1 outlier, 2 soft-failed), `None` when
    /// it is not stored.
    async fn stored_as(&self, event_id: &str) -> Option<i64> {
        let rows = self
            .server
            .rows(&format!(
                "SELECT outlier FROM events WHERE event_id = '{event_id}'"
            ))
            .await;
        rows.first().and_then(|r| r["outlier"].as_i64())
    }

    /// As a restarted room object finds them in storage.
    async fn forward_extremities(&self) -> Vec<String> {
        let db = crate::storage::Db::new(&self.server.platform);
        let stored = crate::storage::rooms::load(&db, self.room_id.as_str(), 0)
            .await
            .unwrap()
            .unwrap();
        stored
            .tips
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect()
    }

    async fn extremity_rows(&self) -> usize {
        self.server
            .rows(&format!(
                "SELECT event_id FROM forward_extremities WHERE room_id = '{}'",
                self.room_id
            ))
            .await
            .len()
    }

    /// The ids of the events alice sees in the timeline, newest first.
    async fn timeline(&self) -> Vec<String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            self.room_id
        );
        let (status, answer) = self
            .server
            .request("GET", &path, Some(&self.token), None)
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn count_events(&self) -> i64 {
        self.server.rows("SELECT COUNT(*) AS n FROM events").await[0]["n"]
            .as_i64()
            .unwrap()
    }
}

#[test]
fn a_remote_user_joins_over_federation() {
    block_on(async {
        let room = Room::new().await;
        // The join went through the pipeline: our server fetched remote.test's keys to check
        // the request and the event.
        assert!(room
            .server
            .recorded
            .requests
            .borrow()
            .iter()
            .any(|r| path_of(r) == "/_matrix/key/v2/server"));
        assert_eq!(room.stored_as(&room.join).await, Some(0));
        assert_eq!(room.forward_extremities().await, vec![room.join.clone()]);
        assert!(room.server.recorded.notified.borrow().contains(&room.alice));
        // And alice's messages are now queued for remote.test.
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
            room.room_id
        );
        let (status, sent) = room
            .server
            .request(
                "PUT",
                &path,
                Some(&room.token),
                Some(json!({ "msgtype": "m.text", "body": "hi bob" })),
            )
            .await;
        assert_eq!(status, 200, "{sent}");
        let queued = room.server.recorded.queued.borrow();
        assert!(
            queued.iter().any(|(to, pdus, _)| to == "remote.test"
                && pdus.iter().any(|p| p["content"]["body"] == "hi bob")),
            "{:?}",
            queued.iter().map(|(to, ..)| to).collect::<Vec<_>>()
        );
    });
}

#[test]
fn an_unknown_prev_event_is_fetched_with_get_missing_events() {
    block_on(async {
        let room = Room::new().await;
        let depth = room.depth(&room.join).await;
        let (first_id, first) = room.remote.sign(
            room.bobs_message("one", &room.join, depth + 1).await,
            room.version,
        );
        let (second_id, second) = room.remote.sign(
            room.bobs_message("two", &first_id, depth + 2).await,
            room.version,
        );
        // remote.test answers get_missing_events with the event we lack.
        let asked = Rc::new(RefCell::new(Vec::new()));
        let log = asked.clone();
        room.server
            .respond_with(room.remote.responder(move |request| {
                path_of(request)
                    .starts_with("/_matrix/federation/v1/get_missing_events/")
                    .then(|| {
                        log.borrow_mut().push(body_of(request));
                        json_response(200, &json!({ "events": [first.clone()] }))
                    })
            }));
        room.server.recorded.notified.borrow_mut().clear();

        let (status, answer) = room.remote.send(&room.server, "txn1", vec![second]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&second_id], json!({}), "{answer}");

        let requests = room.server.recorded.requests.borrow();
        let request = requests
            .iter()
            .find(|r| path_of(r).contains("get_missing_events"))
            .expect("get_missing_events was asked");
        assert_eq!(request.method, Method::Post);
        assert!(
            room.remote.addressed(request),
            "asked of the origin: {}",
            request.url
        );
        assert_eq!(
            path_of(request),
            format!(
                "/_matrix/federation/v1/get_missing_events/{}",
                percent_encode(&room.room_id)
            )
        );
        let body = &asked.borrow()[0];
        assert_eq!(body["latest_events"], json!([second_id]));
        assert_eq!(body["earliest_events"], json!([room.join]));

        // Both are in the room, in order, and the newest is the room's tip.
        assert_eq!(room.stored_as(&first_id).await, Some(0));
        assert_eq!(room.stored_as(&second_id).await, Some(0));
        let timeline = room.timeline().await;
        assert_eq!(timeline[..2], [second_id.clone(), first_id.clone()]);
        assert_eq!(room.forward_extremities().await, vec![second_id.clone()]);
        assert!(room.server.recorded.notified.borrow().contains(&room.alice));

        // The same transaction again is answered from the record, and stores nothing new.
        let before = room.count_events().await;
        drop(requests);
        let (status, again) = room
            .remote
            .send(&room.server, "txn1", vec![json!({"ignored": true})])
            .await;
        assert_eq!(status, 200);
        assert_eq!(again, answer);
        assert_eq!(room.count_events().await, before);
    });
}

#[test]
fn an_event_the_current_state_forbids_is_soft_failed() {
    block_on(async {
        let room = Room::new().await;
        let depth = room.depth(&room.join).await;
        // Alice bans bob; bob's server, not having seen it, sends a message after his join.
        let path = format!("/_matrix/client/v3/rooms/{}/ban", room.room_id);
        let (status, answer) = room
            .server
            .request(
                "POST",
                &path,
                Some(&room.token),
                Some(json!({ "user_id": BOB, "reason": "test" })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let ban = room.state_event_id("m.room.member", BOB).await;
        assert_ne!(ban, room.join);
        room.server.recorded.notified.borrow_mut().clear();
        let requests_before = room.server.recorded.requests.borrow().len();

        let (late_id, late) = room.remote.sign(
            room.bobs_message("did I miss something?", &room.join, depth + 1)
                .await,
            room.version,
        );
        let (status, answer) = room.remote.send(&room.server, "txn1", vec![late]).await;
        assert_eq!(status, 200, "{answer}");
        // Soft-failure is not a rejection: the event is accepted into the graph...
        assert_eq!(answer["pdus"][&late_id], json!({}), "{answer}");
        assert_eq!(
            room.stored_as(&late_id).await,
            Some(2),
            "stored soft-failed"
        );
        // ...but not into the timeline, not as a tip, and nobody is woken for it.
        assert!(!room.timeline().await.contains(&late_id));
        assert_eq!(room.forward_extremities().await, vec![ban.clone()]);
        assert!(room.server.recorded.notified.borrow().is_empty());
        // Its predecessor was known: nothing was fetched for it.
        assert!(room.server.recorded.requests.borrow()[requests_before..]
            .iter()
            .all(|r| !path_of(r).starts_with("/_matrix/federation/")));
        // The ban stands.
        assert_eq!(room.state_event_id("m.room.member", BOB).await, ban);
        let (status, sync) = room
            .server
            .request("GET", "/_matrix/client/v3/sync", Some(&room.token), None)
            .await;
        assert_eq!(status, 200);
        let events = sync["rooms"]["join"][&room.room_id]["timeline"]["events"].to_string();
        assert!(!events.contains(&late_id), "not in alice's sync");
    });
}

#[test]
fn a_pdu_with_a_bad_signature_is_refused_and_not_stored() {
    block_on(async {
        let room = Room::new().await;
        let depth = room.depth(&room.join).await;
        let before = room.count_events().await;
        let extremities = room.forward_extremities().await;
        room.server.recorded.notified.borrow_mut().clear();

        let (forged_id, forged) = room.remote.forge(
            room.bobs_message("not really bob", &room.join, depth + 1)
                .await,
            room.version,
        );
        let (status, answer) = room.remote.send(&room.server, "txn1", vec![forged]).await;
        // The transaction itself is fine; the PDU in it is refused.
        assert_eq!(status, 200, "{answer}");
        let error = answer["pdus"][&forged_id]["error"].as_str();
        assert!(error.is_some_and(|e| !e.is_empty()), "{answer}");

        assert_eq!(room.stored_as(&forged_id).await, None);
        assert_eq!(room.count_events().await, before);
        assert_eq!(room.forward_extremities().await, extremities);
        assert!(!room.timeline().await.contains(&forged_id));
        assert!(room.server.recorded.notified.borrow().is_empty());
        // It is recorded as refused, for the operator.
        let rejected = room
            .server
            .rows(&format!(
                "SELECT COUNT(*) AS n FROM rejected_events WHERE event_id = '{forged_id}'"
            ))
            .await;
        assert_eq!(rejected[0]["n"], 1);

        // The same event properly signed is accepted: the forgery was refused for its
        // signature alone.
        let (good_id, good) = room.remote.sign(
            room.bobs_message("not really bob", &room.join, depth + 1)
                .await,
            room.version,
        );
        let (status, answer) = room.remote.send(&room.server, "txn2", vec![good]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&good_id], json!({}), "{answer}");
    });
}

#[test]
fn a_transaction_with_a_bad_request_signature_is_refused() {
    block_on(async {
        let room = Room::new().await;
        let depth = room.depth(&room.join).await;
        let before = room.count_events().await;
        let (_, pdu) = room.remote.sign(
            room.bobs_message("hello", &room.join, depth + 1).await,
            room.version,
        );
        let path = "/_matrix/federation/v1/send/txn1";
        let body = json!({ "origin": "remote.test", "pdus": [pdu] });
        // Signed over another body than the one sent.
        let header = room
            .remote
            .authorization("PUT", path, Some(&json!({ "pdus": [] })));
        let (status, answer) = room
            .server
            .request_raw("PUT", path, Some(&header), body.to_string().into_bytes())
            .await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errcode"], "M_UNAUTHORIZED");
        // No header at all.
        let (status, _) = room
            .server
            .request_raw("PUT", path, None, body.to_string().into_bytes())
            .await;
        assert_eq!(status, 401);
        assert_eq!(room.count_events().await, before);
    });
}

#[test]
fn extremities_are_stored_only_while_the_room_is_forked() {
    block_on(async {
        let room = Room::new().await;
        let depth = room.depth(&room.join).await;
        assert_eq!(
            room.extremity_rows().await,
            0,
            "a linear room needs no rows"
        );
        let send = |body: &'static str, txn: &'static str| {
            let path = format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                room.room_id
            );
            let token = room.token.clone();
            let server = &room.server;
            async move {
                let (status, answer) = server
                    .request(
                        "PUT",
                        &path,
                        Some(&token),
                        Some(json!({ "msgtype": "m.text", "body": body })),
                    )
                    .await;
                assert_eq!(status, 200, "{answer}");
                answer["event_id"].as_str().unwrap().to_owned()
            }
        };
        let alices = send("hello", "t1").await;
        assert_eq!(room.forward_extremities().await, vec![alices.clone()]);
        assert_eq!(room.extremity_rows().await, 0);

        // Bob's server has not seen alice's message: his cites his join, and the room forks.
        let (bobs_id, bobs) = room.remote.sign(
            room.bobs_message("meanwhile", &room.join, depth + 1).await,
            room.version,
        );
        let (status, answer) = room.remote.send(&room.server, "txn1", vec![bobs]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&bobs_id], json!({}), "{answer}");
        let mut tips = room.forward_extremities().await;
        tips.sort();
        let mut expected = vec![alices.clone(), bobs_id.clone()];
        expected.sort();
        assert_eq!(tips, expected, "both tips survive a restart");
        assert_eq!(room.extremity_rows().await, 2);

        // Alice's next message merges the fork; the rows go with it.
        let merge = send("merged", "t2").await;
        assert_eq!(room.forward_extremities().await, vec![merge]);
        assert_eq!(room.extremity_rows().await, 0);
    });
}

#[test]
fn an_event_whose_predecessors_cannot_be_had_is_refused_until_they_arrive() {
    block_on(async {
        let room = Room::new().await;
        let depth = room.depth(&room.join).await;
        let (a_id, a) = room.remote.sign(
            room.bobs_message("A", &room.join, depth + 1).await,
            room.version,
        );
        let (b_id, b) = room
            .remote
            .sign(room.bobs_message("B", &a_id, depth + 2).await, room.version);
        // remote.test cannot help (get_missing_events, /event and /state all answer 404): the
        // state before B is unknown, so B is refused, and not kept as judged.
        let (status, answer) = room
            .remote
            .send(&room.server, "txn1", vec![b.clone()])
            .await;
        assert_eq!(status, 200, "{answer}");
        let error = answer["pdus"][&b_id]["error"].as_str().unwrap_or_default();
        assert!(error.contains("state before the event"), "{answer}");
        assert_eq!(room.stored_as(&b_id).await, None);
        assert_eq!(room.forward_extremities().await, vec![room.join.clone()]);

        let (status, answer) = room.remote.send(&room.server, "txn2", vec![a]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&a_id], json!({}), "{answer}");
        // B again, now that its predecessor is here: accepted into the timeline after A.
        let (status, answer) = room.remote.send(&room.server, "txn3", vec![b]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&b_id], json!({}), "{answer}");
        assert_eq!(room.stored_as(&b_id).await, Some(0));
        assert_eq!(room.timeline().await[..2], [b_id.clone(), a_id.clone()]);
        assert_eq!(room.forward_extremities().await, vec![b_id]);
    });
}

#[test]
fn a_redaction_of_an_event_we_do_not_hold_is_sent_to_the_rooms_servers() {
    block_on(async {
        let room = Room::new().await;
        // An event of remote.test's that never reached us.
        let target = "$notheld:remote.test";
        let path = format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/r1",
            room.room_id,
            percent_encode(target)
        );
        let (status, answer) = room
            .server
            .request(
                "PUT",
                &path,
                Some(&room.token),
                Some(json!({ "reason": "spam" })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let redaction = answer["event_id"].as_str().unwrap().to_owned();
        assert_eq!(room.stored_as(&redaction).await, Some(0));
        let queued = room.server.recorded.queued.borrow();
        let sent = queued
            .iter()
            .filter(|(to, ..)| to == "remote.test")
            .flat_map(|(_, pdus, _)| pdus)
            .find(|p| p["type"] == "m.room.redaction")
            .expect("the redaction is queued for remote.test");
        assert_eq!(sent["content"]["redacts"], target);
    });
}

#[test]
fn an_incoming_message_costs_few_round_trips_and_a_resent_one_is_accepted_once() {
    block_on(async {
        let room = Room::new().await;
        let (id, pdu) = room.bobs_next("hello alice").await;
        room.server.recorded.notified.borrow_mut().clear();
        let requests_before = room.server.recorded.requests.borrow().len();
        let before = room.server.d1_round_trips();
        let (status, answer) = room
            .remote
            .send(&room.server, "txn1", vec![pdu.clone()])
            .await;
        let round_trips = room.server.d1_round_trips() - before;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&id], json!({}), "{answer}");
        // The keys of remote.test were fetched for its join: neither the request's signature
        // nor the event's is looked up again (11 round trips before the key cache and these
        // merges). What is left: the transaction's first reads (one batch); the members' push
        // rules; the event's write, alice's notification in its own row (one batch); the
        // answer kept.
        assert!(
            round_trips <= 4,
            "{round_trips} D1 round trips for one incoming message"
        );
        let notified = room
            .server
            .rows(&format!(
                "SELECT u.key AS user_id FROM events e JOIN json_each(e.push, '$.u') u
                 WHERE e.event_id = '{id}'"
            ))
            .await;
        assert_eq!(
            notified,
            vec![json!({ "user_id": room.alice })],
            "alice's rules were read in the write and her notification stored"
        );
        assert_eq!(
            room.server.recorded.requests.borrow().len(),
            requests_before,
            "nothing asked of the network"
        );
        assert_eq!(room.stored_as(&id).await, Some(0));
        assert_eq!(
            *room.server.recorded.notified.borrow(),
            vec![room.alice.clone()]
        );
        // The same event in a new transaction (its predecessor is no longer a tip, so the
        // stored copy is looked up).
        room.send_held("txn2", &id, pdu).await;
        assert_eq!(room.forward_extremities().await, vec![id]);
    });
}

#[test]
fn an_event_held_as_an_outlier_that_arrives_at_the_tip_is_not_stored_twice() {
    block_on(async {
        let room = Room::new().await;
        let (id, pdu) = room.bobs_next("known already").await;
        // Held out of the timeline (as a fetched auth chain's events are), while its
        // predecessor is still the room's tip: the write, not a read, finds it.
        let object = crate::signing::to_canonical_object(pdu.clone()).unwrap();
        let parsed = crate::rooms::Pdu::from_json(object, room.version).unwrap();
        let room_id = ruma::RoomId::parse(&room.room_id).unwrap();
        let db = crate::storage::Db::new(&room.server.platform);
        crate::storage::rooms::persist(
            &db,
            crate::storage::rooms::RoomWrite {
                events: vec![crate::storage::rooms::EventWrite::outlier(
                    &parsed, &room_id,
                )],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        room.send_held("txn1", &id, pdu).await;
        assert_eq!(room.stored_as(&id).await, Some(1), "still the outlier");
        // The room object kept its state: the room goes on from its tip.
        assert_eq!(room.forward_extremities().await, vec![room.join.clone()]);
        let (next_id, next) = room.bobs_next("next").await;
        let (status, answer) = room.remote.send(&room.server, "txn2", vec![next]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pdus"][&next_id], json!({}), "{answer}");
        assert_eq!(room.stored_as(&next_id).await, Some(0));
    });
}
