//! `storage::rooms` (the room object's atomic writes and the per-room lookups),
//! `storage::events` (timelines, state, the graph walks, relations) and
//! `storage::state_groups` (the state before and after each event), on rooms written through
//! the room object's own `RoomWrite` batch.

use std::collections::BTreeSet;
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{server_name, OwnedRoomId, UserId};
use serde_json::json;

use super::{ids, run, scalar, setup, signing_key, user, Room};
use super::{ALICE, BOB, CAROL, DAVE};
use crate::rooms::builder::EventTemplate;
use crate::rooms::engine::{LocalServer, RoomEngine};
use crate::rooms::state_groups::SlotChange;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::events::{self, RelationsPage};
use crate::storage::rooms::{self as stored, EventWrite, NewRoom, RoomWrite};
use crate::storage::state_groups::{self, At};
use crate::storage::{backfill, sync};

/// The position of an event in the stream.
async fn position(db: &crate::storage::Db, event_id: &str) -> i64 {
    events::event(db, event_id)
        .await
        .unwrap()
        .expect("the event is stored")
        .stream_ordering
}

#[test]
fn a_created_room_loads_back_with_its_state_tip_and_depth() {
    run(async {
        let (_server, db) = setup();
        let room = Room::create(&db, "one", ALICE, Some("#one:test.local")).await;
        let room_id = room.id.as_str();
        assert_eq!(
            stored::room_version(&db, room_id).await.unwrap(),
            Some(RoomVersion::V11)
        );
        let loaded = stored::load(&db, room_id, 0)
            .await
            .unwrap()
            .expect("the room");
        assert_eq!(loaded.version, RoomVersion::V11);
        assert_eq!(loaded.state_events.len(), 5);
        assert_eq!(loaded.depth, 5);
        assert_eq!(loaded.current, **room.engine.current());
        let tips: Vec<_> = loaded.tips.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(tips, room.engine.forward_extremities());
        let tip_state = loaded.tips[0]
            .1
            .as_ref()
            .expect("the tip has a state group");
        assert_eq!(*tip_state.state, **room.engine.current());
        // The rooms row, the creator's membership and the alias came in the same batch.
        assert_eq!(
            stored::membership(&db, room_id, ALICE)
                .await
                .unwrap()
                .as_deref(),
            Some("join")
        );
        assert_eq!(
            stored::alias_room(&db, "#one:test.local")
                .await
                .unwrap()
                .as_deref(),
            Some(room_id)
        );
        let (version, state) = stored::current_state(&db, room_id).await.unwrap().unwrap();
        assert_eq!((version, state.len()), (RoomVersion::V11, 5));
        assert!(stored::room_version(&db, "!nope:test.local")
            .await
            .unwrap()
            .is_none());
        assert!(stored::load(&db, "!nope:test.local", 0)
            .await
            .unwrap()
            .is_none());
        assert!(stored::current_state(&db, "!nope:test.local")
            .await
            .unwrap()
            .is_none());
    })
}

#[test]
fn a_room_reloaded_after_more_events_has_the_engine_s_state_and_tip() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        room.join(&db, BOB).await;
        room.state(&db, ALICE, "m.room.topic", json!({ "topic": "t" }))
            .await;
        let last = room.message(&db, BOB, "hi").await;
        let loaded = stored::load(&db, room.id.as_str(), 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.depth, 8);
        assert_eq!(loaded.state_events.len(), 7);
        assert_eq!(loaded.current, **room.engine.current());
        assert_eq!(loaded.tips.len(), 1);
        assert_eq!(loaded.tips[0].0, last);
        let state = loaded.tips[0].1.as_ref().unwrap();
        assert_eq!(*state.state, **room.engine.current());
    })
}

#[test]
fn a_second_room_with_a_taken_alias_is_refused_and_writes_nothing() {
    run(async {
        let (server, db) = setup();
        Room::create(&db, "one", ALICE, Some("#taken:test.local")).await;
        let error = Room::try_create(&db, "two", BOB, Some("#taken:test.local"))
            .await
            .err()
            .expect("the alias is taken");
        assert!(error.message.contains("UNIQUE"), "{error:?}");
        assert!(stored::room_version(&db, "!two:test.local")
            .await
            .unwrap()
            .is_none());
        let events = scalar(
            &server,
            "SELECT COUNT(*) FROM events WHERE room_id = '!two:test.local'",
        )
        .await;
        assert_eq!(events, 0);
        let state = scalar(
            &server,
            "SELECT COUNT(*) FROM room_state WHERE room_id = '!two:test.local'",
        )
        .await;
        assert_eq!(state, 0);
    })
}

#[test]
fn timelines_page_both_ways_in_stream_order() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let m1 = room.message(&db, ALICE, "1").await;
        let m2 = room.message(&db, ALICE, "2").await;
        let m3 = room.message(&db, ALICE, "3").await;
        let room_id = room.id.as_str();
        let back = events::timeline_backwards(&db, room_id, 0, i64::MAX, 2)
            .await
            .unwrap();
        assert_eq!(ids(&back), [m3.as_str(), m2.as_str()]);
        let p1 = position(&db, m1.as_str()).await;
        let p3 = position(&db, m3.as_str()).await;
        // (after, up_to]
        let back = events::timeline_backwards(&db, room_id, p1, p3 - 1, 10)
            .await
            .unwrap();
        assert_eq!(ids(&back), [m2.as_str()]);
        // [from, before)
        let forwards = events::timeline_forwards(&db, room_id, p1, p3, 10)
            .await
            .unwrap();
        assert_eq!(ids(&forwards), [m1.as_str(), m2.as_str()]);
        let all = events::timeline_forwards(&db, room_id, 0, i64::MAX, 100)
            .await
            .unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(all[0].kind, "m.room.create");
        let row = events::event(&db, m2.as_str()).await.unwrap().unwrap();
        assert_eq!(
            (row.room_id.as_str(), row.sender.as_str()),
            (room_id, ALICE)
        );
        assert_eq!(
            (row.kind.as_str(), row.state_key.as_deref()),
            ("m.room.message", None)
        );
        assert_eq!(row.history_visibility, "shared");
        assert!(row.position() > 0);
        let client = row.to_client(RoomVersion::V11, ALICE, "DEV");
        assert_eq!(client["content"]["body"], "2");
        assert_eq!(client["event_id"], m2.as_str());
        assert!(events::event(&db, "$unknown").await.unwrap().is_none());
        assert!(
            events::timeline_backwards(&db, "!other:test.local", 0, i64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );
    })
}

#[test]
fn a_transaction_id_returns_the_first_event_and_shows_only_to_its_device() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let content = json!({ "msgtype": "m.text", "body": "once" });
        let sent = room
            .try_send(
                &db,
                ALICE,
                EventTemplate::message("m.room.message", content),
                Some(("DEV", "txn1")),
            )
            .await
            .unwrap();
        // The room object learns the room's recent transaction ids from the events' rows when
        // it loads the room (no row of their own); older ones are left out.
        let room_id = room.id.as_str();
        let loaded = stored::load(&db, room_id, 0).await.unwrap().unwrap();
        let ts = loaded.transactions.first().map_or(0, |t| t.ts);
        assert_eq!(
            loaded.transactions,
            vec![stored::SentTransaction {
                user_id: ALICE.into(),
                device_id: "DEV".into(),
                txn_id: "txn1".into(),
                event_id: sent.to_string(),
                ts,
            }]
        );
        let later = stored::load(&db, room_id, ts + 1).await.unwrap().unwrap();
        assert!(later.transactions.is_empty());
        assert!(
            !later.state_events.is_empty(),
            "the state is read all the same"
        );
        let row = events::event(&db, sent.as_str()).await.unwrap().unwrap();
        let mine = row.to_client(RoomVersion::V11, ALICE, "DEV");
        assert_eq!(mine["unsigned"]["transaction_id"], "txn1");
        let other_device = row.to_client(RoomVersion::V11, ALICE, "LAPTOP");
        assert!(other_device["unsigned"].get("transaction_id").is_none());
        let bob = row.to_client(RoomVersion::V11, BOB, "DEV");
        assert!(bob["unsigned"].get("transaction_id").is_none());
    })
}

#[test]
fn an_event_write_that_fails_leaves_nothing_behind() {
    run(async {
        let (server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let first = room
            .try_send(&db, ALICE, topic("first"), Some(("DEV", "txn1")))
            .await
            .unwrap();
        let count =
            "SELECT (SELECT COUNT(*) FROM events) || ' ' || (SELECT COUNT(*) FROM state_groups)";
        let before = scalar(&server, count).await;
        // A statement after the event's row fails (the state change, made to fail here): the
        // event, its state group and the state change must not land.
        db.run(
            "CREATE TRIGGER fail_state BEFORE UPDATE ON room_state
             BEGIN SELECT RAISE(ABORT, 'the state change fails'); END",
            crate::args![],
        )
        .await
        .unwrap();
        let error = room
            .try_send(&db, ALICE, topic("second"), Some(("DEV", "txn2")))
            .await
            .unwrap_err();
        assert!(
            error.message.contains("the state change fails"),
            "{error:?}"
        );
        assert_eq!(scalar(&server, count).await, before);
        let topic = events::current_state_content(&db, room.id.as_str(), "m.room.topic", "")
            .await
            .unwrap();
        assert_eq!(topic, Some(json!({ "topic": "first" })));
        let tips = stored::load(&db, room.id.as_str(), 0)
            .await
            .unwrap()
            .unwrap()
            .tips;
        assert_eq!(tips[0].0, first);
    })
}

fn topic(text: &str) -> EventTemplate {
    EventTemplate::state("m.room.topic", "", json!({ "topic": text }))
}

#[test]
fn current_state_holds_the_latest_event_of_each_slot_and_state_at_the_one_then() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let t1 = room.send(&db, ALICE, topic("first")).await;
        let m = room.message(&db, ALICE, "between").await;
        let t2 = room.send(&db, ALICE, topic("second")).await;
        let room_id = room.id.as_str();
        let current = events::current_state(&db, room_id).await.unwrap();
        assert_eq!(current.len(), 6);
        let topics: Vec<&str> = current
            .iter()
            .filter(|e| e.kind == "m.room.topic")
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(topics, [t2.as_str()]);
        assert_eq!(
            events::current_state_content(&db, room_id, "m.room.topic", "")
                .await
                .unwrap(),
            Some(json!({ "topic": "second" }))
        );
        assert_eq!(
            events::current_state_content(&db, room_id, "m.room.member", ALICE)
                .await
                .unwrap(),
            Some(json!({ "membership": "join" }))
        );
        assert!(
            events::current_state_content(&db, room_id, "m.room.name", "")
                .await
                .unwrap()
                .is_none()
        );
        let at_message = position(&db, m.as_str()).await as u64;
        let then = events::state_at(&db, room_id, at_message).await.unwrap();
        assert_eq!(then.len(), 6);
        assert!(ids(&then).contains(&t1.as_str()));
        assert!(!ids(&then).contains(&t2.as_str()));
    })
}

#[test]
fn state_groups_hold_the_state_before_and_after_each_event() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let t1 = room.send(&db, ALICE, topic("first")).await;
        let m = room.message(&db, ALICE, "after").await;
        let slot = (StateEventType::RoomTopic, String::new());
        let after = state_groups::state_at(&db, t1.as_str(), At::After)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.state.get(&slot), Some(&t1));
        assert_eq!(after.state.len(), 6);
        assert_eq!(after.id.as_deref(), Some(t1.as_str()));
        let before = state_groups::state_at(&db, t1.as_str(), At::Before)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.state.get(&slot), None);
        assert_eq!(before.state.len(), 5);
        // A message shares its predecessor's group: the state before and after it is the same.
        let message_before = state_groups::state_at(&db, m.as_str(), At::Before)
            .await
            .unwrap()
            .unwrap();
        let message_after = state_groups::state_at(&db, m.as_str(), At::After)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message_before.id, after.id);
        assert_eq!(*message_after.state, *after.state);
        assert_eq!(*message_after.state, **room.engine.current());
        assert!(state_groups::state_at(&db, "$unknown", At::After)
            .await
            .unwrap()
            .is_none());
    })
}

#[test]
fn a_long_chain_of_state_groups_reads_back_whole() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        // More state events than `MAX_CHAIN`: reads walk deltas back to a full group.
        let mut last = None;
        for i in 0..40 {
            let key = format!("k{i}");
            let template = EventTemplate::state("org.example.slot", &key, json!({ "i": i }));
            last = Some(room.send(&db, ALICE, template).await);
        }
        let last = last.unwrap();
        let after = state_groups::state_at(&db, last.as_str(), At::After)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*after.state, **room.engine.current());
        assert_eq!(after.state.len(), 45);
        assert!(after.chain <= crate::rooms::state_groups::MAX_CHAIN);
        let before = state_groups::state_at(&db, last.as_str(), At::Before)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.state.len(), 44);
    })
}

#[test]
fn memberships_follow_member_events() {
    run(async {
        let (_server, db) = setup();
        user(&db, BOB).await;
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let room_id = room.id.to_string();
        assert!(stored::membership(&db, &room_id, BOB)
            .await
            .unwrap()
            .is_none());
        room.member(&db, ALICE, BOB, "invite").await;
        assert_eq!(
            stored::membership(&db, &room_id, BOB)
                .await
                .unwrap()
                .as_deref(),
            Some("invite")
        );
        assert_eq!(
            stored::inviter(&db, &room_id, BOB)
                .await
                .unwrap()
                .as_deref(),
            Some(ALICE)
        );
        assert_eq!(
            stored::rooms_with_membership(&db, BOB, "invite")
                .await
                .unwrap(),
            [room_id.clone()]
        );
        room.join(&db, BOB).await;
        assert_eq!(
            stored::membership(&db, &room_id, BOB)
                .await
                .unwrap()
                .as_deref(),
            Some("join")
        );
        assert!(stored::inviter(&db, &room_id, BOB).await.unwrap().is_none());
        assert!(stored::rooms_with_membership(&db, BOB, "invite")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            stored::rooms_with_membership(&db, BOB, "join")
                .await
                .unwrap(),
            [room_id.clone()]
        );
        room.member(&db, BOB, BOB, "leave").await;
        assert_eq!(
            stored::membership(&db, &room_id, BOB)
                .await
                .unwrap()
                .as_deref(),
            Some("leave")
        );
        let history = events::membership_history(&db, &room_id, BOB)
            .await
            .unwrap();
        let memberships: Vec<&str> = history.0.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(memberships, ["invite", "join", "leave"]);
        assert!(history.0.windows(2).all(|w| w[0].0 < w[1].0));
        // Forgetting hides the room from sync, and joining again un-forgets it.
        assert_eq!(sync::memberships(&db, BOB, None).await.unwrap().len(), 1);
        stored::forget(&db, &room_id, BOB).await.unwrap();
        assert!(sync::memberships(&db, BOB, None).await.unwrap().is_empty());
        // An incremental sync from before the leave still sees it.
        assert_eq!(sync::memberships(&db, BOB, Some(1)).await.unwrap().len(), 1);
        room.join(&db, BOB).await;
        let rows = sync::memberships(&db, BOB, None).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].membership.as_str(), rows[0].room_version.as_str()),
            ("join", "11")
        );
    })
}

#[test]
fn a_remote_server_sees_history_from_its_users_join() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        room.state(
            &db,
            ALICE,
            "m.room.history_visibility",
            json!({ "history_visibility": "joined" }),
        )
        .await;
        let before = room.message(&db, ALICE, "before").await;
        room.join(&db, DAVE).await;
        let after = room.message(&db, ALICE, "after").await;
        let room_id = room.id.as_str();
        let remote = events::server_memberships(&db, room_id, "remote.example")
            .await
            .unwrap();
        let at = |p: i64| p as u64;
        let content = json!({});
        let before = at(position(&db, before.as_str()).await);
        let after = at(position(&db, after.as_str()).await);
        assert!(!remote.may_see(before, "m.room.message", None, &content, "joined"));
        assert!(remote.may_see(after, "m.room.message", None, &content, "joined"));
        let ours = events::server_memberships(&db, room_id, "test.local")
            .await
            .unwrap();
        assert!(ours.may_see(before, "m.room.message", None, &content, "joined"));
        let nobody = events::server_memberships(&db, room_id, "other.example")
            .await
            .unwrap();
        assert!(!nobody.may_see(after, "m.room.message", None, &content, "joined"));
    })
}

#[test]
fn a_redaction_marks_its_target() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let target = room.message(&db, ALICE, "oops").await;
        let redaction = room
            .send(
                &db,
                ALICE,
                EventTemplate::message("m.room.redaction", json!({ "redacts": target })),
            )
            .await;
        let row = events::event(&db, target.as_str()).await.unwrap().unwrap();
        let because: serde_json::Value =
            serde_json::from_str(row.redaction.as_deref().expect("the target is marked")).unwrap();
        assert_eq!(because["content"]["redacts"], target.as_str());
        let client = row.to_client(RoomVersion::V11, ALICE, "DEV");
        assert_eq!(client["content"], json!({}));
        assert_eq!(
            client["unsigned"]["redacted_because"]["event_id"],
            redaction.as_str()
        );
        assert_eq!(
            stored::event_sender(&db, room.id.as_str(), target.as_str())
                .await
                .unwrap()
                .as_deref(),
            Some(ALICE)
        );
        assert!(
            stored::event_sender(&db, "!other:test.local", target.as_str())
                .await
                .unwrap()
                .is_none()
        );
    })
}

#[test]
fn relations_are_paged_by_type_and_position() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let parent = room.message(&db, ALICE, "parent").await;
        let reaction = room
            .send(
                &db,
                ALICE,
                EventTemplate::message(
                    "m.reaction",
                    json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": parent, "key": "+1" } }),
                ),
            )
            .await;
        let reply = room
            .send(
                &db,
                ALICE,
                EventTemplate::message(
                    "m.room.message",
                    json!({ "body": "in thread", "msgtype": "m.text",
                            "m.relates_to": { "rel_type": "m.thread", "event_id": parent } }),
                ),
            )
            .await;
        room.message(&db, ALICE, "unrelated").await;
        let page = |rel_type, event_type, backwards| RelationsPage {
            rel_type,
            event_type,
            after: 0,
            up_to: i64::MAX,
            backwards,
            limit: 10,
        };
        let room_id = room.id.as_str();
        let all = events::relations(&db, room_id, parent.as_str(), &page(None, None, true))
            .await
            .unwrap();
        assert_eq!(ids(&all), [reply.as_str(), reaction.as_str()]);
        let forwards = events::relations(&db, room_id, parent.as_str(), &page(None, None, false))
            .await
            .unwrap();
        assert_eq!(ids(&forwards), [reaction.as_str(), reply.as_str()]);
        let threads = events::relations(
            &db,
            room_id,
            parent.as_str(),
            &page(Some("m.thread"), None, true),
        )
        .await
        .unwrap();
        assert_eq!(ids(&threads), [reply.as_str()]);
        let typed = events::relations(
            &db,
            room_id,
            parent.as_str(),
            &page(Some("m.annotation"), Some("m.reaction"), true),
        )
        .await
        .unwrap();
        assert_eq!(ids(&typed), [reaction.as_str()]);
        let wrong_type = events::relations(
            &db,
            room_id,
            parent.as_str(),
            &page(Some("m.annotation"), Some("m.room.message"), true),
        )
        .await
        .unwrap();
        assert!(wrong_type.is_empty());
        let after_reaction = RelationsPage {
            after: position(&db, reaction.as_str()).await,
            ..page(None, None, true)
        };
        let later = events::relations(&db, room_id, parent.as_str(), &after_reaction)
            .await
            .unwrap();
        assert_eq!(ids(&later), [reply.as_str()]);
    })
}

#[test]
fn by_ids_walk_back_and_auth_chain_follow_the_room_graph() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        let mut other = Room::create(&db, "two", ALICE, None).await;
        let elsewhere = other.message(&db, ALICE, "elsewhere").await;
        let m1 = room.message(&db, ALICE, "1").await;
        let m2 = room.message(&db, ALICE, "2").await;
        let m3 = room.message(&db, ALICE, "3").await;
        let room_id = room.id.as_str();
        let found = events::by_ids(&db, room_id, &[m1.as_str(), elsewhere.as_str(), "$unknown"])
            .await
            .unwrap();
        assert_eq!(ids(&found), [m1.as_str()]);
        let walked = events::walk_back(&db, room_id, &[m3.as_str()], &[], 3, 0)
            .await
            .unwrap();
        assert_eq!(ids(&walked), [m3.as_str(), m2.as_str(), m1.as_str()]);
        let stopped = events::walk_back(&db, room_id, &[m3.as_str()], &[m1.as_str()], 10, 0)
            .await
            .unwrap();
        assert_eq!(ids(&stopped), [m3.as_str(), m2.as_str()]);
        let depth_m2 = events::event(&db, m2.as_str()).await.unwrap().unwrap();
        let depth_m2 = serde_json::from_str::<serde_json::Value>(&depth_m2.pdu).unwrap()["depth"]
            .as_u64()
            .unwrap();
        let shallow = events::walk_back(&db, room_id, &[m3.as_str()], &[], 10, depth_m2)
            .await
            .unwrap();
        assert_eq!(ids(&shallow), [m3.as_str(), m2.as_str()]);
        // A message's auth chain: the create event, the power levels and the sender's join.
        let chain: BTreeSet<String> = events::auth_chain(&db, room_id, &[m3.as_str()])
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.kind, e.state_key.unwrap_or_default()))
            .collect();
        let expected: BTreeSet<String> = [
            "m.room.create ".to_owned(),
            "m.room.power_levels ".to_owned(),
            format!("m.room.member {ALICE}"),
        ]
        .into();
        assert_eq!(chain, expected);
    })
}

#[test]
fn the_event_closest_to_a_timestamp_is_found_in_either_direction() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        // The creation events have timestamps 1001..=1005; these 1006 and 1007.
        let m6 = room.message(&db, ALICE, "6").await;
        let m7 = room.message(&db, ALICE, "7").await;
        let room_id = room.id.as_str();
        let found = events::closest_to_timestamp(&db, room_id, 1_006, true)
            .await
            .unwrap();
        assert_eq!(found, Some((m6.to_string(), 1_006)));
        let found = events::closest_to_timestamp(&db, room_id, 1_100, false)
            .await
            .unwrap();
        assert_eq!(found, Some((m7.to_string(), 1_007)));
        let found = events::closest_to_timestamp(&db, room_id, 1_000, false)
            .await
            .unwrap();
        assert_eq!(found, None);
        let found = events::closest_to_timestamp(&db, room_id, 1_100, true)
            .await
            .unwrap();
        assert_eq!(found, None);
    })
}

#[test]
fn a_big_remote_join_is_written_in_bulk_as_outliers_with_its_state() {
    run(async {
        let (server, db) = setup();
        // Another server's room as its state arrives with a join: more events than the bulk
        // threshold, written as outliers with every slot of the state.
        let room_id = OwnedRoomId::try_from("!big:remote.example").unwrap();
        let mut templates = vec![
            EventTemplate::state("m.room.create", "", json!({ "room_version": "11" })),
            EventTemplate::state("m.room.member", DAVE, json!({ "membership": "join" })),
            EventTemplate::state("m.room.power_levels", "", json!({ "users": { DAVE: 100 } })),
            EventTemplate::state("m.room.join_rules", "", json!({ "join_rule": "public" })),
        ];
        for i in 0..10 {
            templates.push(EventTemplate::state(
                "org.example.slot",
                &format!("k{i}"),
                json!({ "i": i }),
            ));
        }
        let (engine, pdus) = remote_room(&room_id, templates);
        let slots: Vec<SlotChange> = engine
            .current()
            .iter()
            .map(|(slot, id)| (slot.clone(), Some(id.clone())))
            .collect();
        let write = |new_room| RoomWrite {
            events: pdus
                .iter()
                .map(|p| EventWrite::outlier(p, &room_id))
                .collect(),
            state_changes: slots.iter().collect(),
            new_room,
            ..RoomWrite::default()
        };
        stored::persist(&db, write(Some(remote_new_room())))
            .await
            .unwrap();
        let count = |sql: &'static str| scalar(&server, sql);
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE outlier = 1").await,
            14
        );
        assert_eq!(count("SELECT COUNT(*) FROM room_state").await, 14);
        assert_eq!(
            count("SELECT membership FROM events WHERE type = 'm.room.member'").await,
            "join"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE membership IS NOT NULL").await,
            1
        );
        assert_eq!(
            stored::membership(&db, room_id.as_str(), DAVE)
                .await
                .unwrap()
                .as_deref(),
            Some("join")
        );
        let current = events::current_state(&db, room_id.as_str()).await.unwrap();
        assert_eq!(current.len(), 14);
        assert_eq!(
            events::current_state_content(&db, room_id.as_str(), "org.example.slot", "k3")
                .await
                .unwrap(),
            Some(json!({ "i": 3 }))
        );
        // Outliers are never in a timeline.
        assert!(
            events::timeline_backwards(&db, room_id.as_str(), 0, i64::MAX, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(backfill::oldest_timeline_event(&db, room_id.as_str())
            .await
            .unwrap()
            .is_none());
        // Joining again brings the same events: outliers already held are kept.
        stored::persist(&db, write(None)).await.unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM events").await, 14);
        // The room loads: its latest event is its one tip when no extremity was stored.
        let loaded = stored::load(&db, room_id.as_str(), 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.current, **engine.current());
        assert_eq!(loaded.tips.len(), 1);
    })
}

#[test]
fn backfilled_events_go_below_zero_in_order_and_outliers_move_into_the_timeline() {
    run(async {
        let (_server, db) = setup();
        // A room's history as another server holds it; we hold its create event as an outlier
        // and backfill the rest, newest first.
        let room_id = OwnedRoomId::try_from("!old:remote.example").unwrap();
        let templates = vec![
            EventTemplate::state("m.room.create", "", json!({ "room_version": "11" })),
            EventTemplate::state("m.room.member", DAVE, json!({ "membership": "join" })),
            EventTemplate::message(
                "m.room.message",
                json!({ "body": "old", "msgtype": "m.text" }),
            ),
        ];
        let (_, pdus) = remote_room(&room_id, templates);
        let create = pdus[0].clone();
        let outlier = RoomWrite {
            events: vec![EventWrite::outlier(&create, &room_id)],
            new_room: Some(remote_new_room()),
            ..RoomWrite::default()
        };
        stored::persist(&db, outlier).await.unwrap();
        // And a room of ours, so that the stream has a position above zero.
        Room::create(&db, "ours", ALICE, None).await;
        let before = sync::current_position(&db).await.unwrap();
        let newest_first: Vec<&crate::rooms::Pdu> = pdus.iter().rev().map(|p| &**p).collect();
        backfill::store(&db, room_id.as_str(), &newest_first, "shared")
            .await
            .unwrap();
        let timeline = events::timeline_backwards(&db, room_id.as_str(), i64::MIN, 0, 10)
            .await
            .unwrap();
        let expected: Vec<&str> = pdus.iter().rev().map(|p| p.event_id().as_str()).collect();
        assert_eq!(ids(&timeline), expected);
        assert!(timeline
            .iter()
            .all(|e| e.signed_position() < 0 && e.position() == 0));
        let oldest = backfill::oldest_timeline_event(&db, room_id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(oldest.event_id, create.event_id().as_str());
        let wanted: Vec<&str> = pdus
            .iter()
            .map(|p| p.event_id().as_str())
            .chain(["$nope"])
            .collect();
        let held = backfill::in_timeline(&db, room_id.as_str(), &wanted)
            .await
            .unwrap();
        assert_eq!(held.len(), 3);
        // /sync moves forwards from zero: none of it is new there.
        let now = sync::current_position(&db).await.unwrap();
        assert_eq!(now.events, before.events);
    })
}

#[test]
fn the_stream_never_hands_out_a_position_twice_even_when_backfill_meets_the_top_outlier() {
    run(async {
        let (_server, db) = setup();
        Room::create(&db, "ours", ALICE, None).await;
        let room_id = OwnedRoomId::try_from("!old:remote.example").unwrap();
        let templates = vec![
            EventTemplate::state("m.room.create", "", json!({ "room_version": "11" })),
            EventTemplate::state("m.room.member", DAVE, json!({ "membership": "join" })),
        ];
        let (_, pdus) = remote_room(&room_id, templates);
        // Both outliers, the member event the newest event of the whole stream.
        let outliers = RoomWrite {
            events: pdus
                .iter()
                .map(|p| EventWrite::outlier(p, &room_id))
                .collect(),
            new_room: Some(remote_new_room()),
            ..RoomWrite::default()
        };
        stored::persist(&db, outliers).await.unwrap();
        let top = sync::current_position(&db).await.unwrap().events;
        let member = pdus[1].event_id().as_str();
        assert_eq!(position(&db, member).await, top as i64);
        let newest_first: Vec<&crate::rooms::Pdu> = pdus.iter().rev().map(|p| &**p).collect();
        backfill::store(&db, room_id.as_str(), &newest_first, "shared")
            .await
            .unwrap();
        // The create event moved below zero; the member event kept the top position (a
        // client's token may hold it), so the stream's end did not go back.
        assert!(position(&db, pdus[0].event_id().as_str()).await < 0);
        assert_eq!(position(&db, member).await, top as i64);
        assert_eq!(sync::current_position(&db).await.unwrap().events, top);
        // And the next event comes after every position handed out so far.
        Room::create(&db, "next", ALICE, None).await;
        assert!(sync::current_position(&db).await.unwrap().events > top);
    })
}

#[test]
fn every_event_of_a_linear_room_has_a_state_group_and_the_room_one_extremity() {
    run(async {
        let (server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        room.join(&db, CAROL).await;
        let last = room.message(&db, CAROL, "hi").await;
        let missing = "SELECT COUNT(*) FROM events WHERE state_group IS NULL";
        assert_eq!(scalar(&server, missing).await, 0);
        // One group per state event (the message shares the join's), and the empty state
        // before the create event.
        assert_eq!(
            scalar(&server, "SELECT COUNT(*) FROM state_groups").await,
            7
        );
        // A linear room's one extremity is its newest event, found without rows.
        let rows = "SELECT COUNT(*) FROM forward_extremities";
        assert_eq!(scalar(&server, rows).await, 0);
        let loaded = stored::load(&db, room.id.as_str(), 0)
            .await
            .unwrap()
            .unwrap();
        let tips: Vec<_> = loaded.tips.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(tips, [last]);
    })
}

/// Another server's room: `templates` built and signed in order by its user dave, as its
/// server would hold them (nothing stored).
fn remote_room(
    room_id: &OwnedRoomId,
    templates: Vec<EventTemplate>,
) -> (RoomEngine, Vec<Arc<Pdu>>) {
    let mut engine = RoomEngine::new(RoomVersion::V11, Some(room_id.clone()));
    let key = signing_key();
    let remote = LocalServer {
        name: server_name!("remote.example"),
        key: &key,
    };
    let dave = UserId::parse(DAVE).unwrap();
    let pdus = templates
        .into_iter()
        .enumerate()
        .map(|(i, template)| {
            engine
                .create_local(&dave, template, 1 + i as u64, &remote)
                .unwrap()
                .pdu
        })
        .collect();
    (engine, pdus)
}

/// The `rooms` row of a remote room dave created.
fn remote_new_room() -> NewRoom<'static> {
    NewRoom {
        version: RoomVersion::V11,
        creator: DAVE,
        alias: None,
        publish: false,
    }
}
