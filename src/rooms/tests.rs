//! The engine driven through a room's life in each supported version: creation, membership,
//! power levels, bans and limits, with every event checked for a correct id, hash and signature.

use ruma::signatures::{verify_event, PublicKeyMap, PublicKeySet, Verified};
use ruma::{server_name, user_id, UserId};
use serde_json::json;

use super::builder::EventTemplate;
use super::engine::{EngineError, LocalServer, RoomEngine};
use super::{Pdu, RoomVersion};
use crate::keys::SigningKey;

const ALICE: &str = "@alice:example.org";

fn key() -> SigningKey {
    SigningKey::parse_key_file("ed25519 a_test YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0")
        .unwrap()
}

struct Room {
    engine: RoomEngine,
    key: SigningKey,
    clock: u64,
}

impl Room {
    /// A private room made the way `createRoom` with the `private_chat` preset makes it.
    fn create(version: RoomVersion) -> Room {
        let room_id = (!version.room_id_from_create_event())
            .then(|| ruma::room_id!("!room:example.org").to_owned());
        let mut room = Room {
            engine: RoomEngine::new(version, room_id),
            key: key(),
            clock: 1_000,
        };
        let alice = user_id!("@alice:example.org");
        let mut create = json!({"room_version": version.as_str()});
        if !version.rules().authorization.use_room_create_sender {
            create["creator"] = json!(ALICE);
        }
        room.send(alice, EventTemplate::state("m.room.create", "", create))
            .unwrap();
        room.send(alice, member("join")).unwrap();
        let mut users = json!({});
        if version != RoomVersion::V12 {
            // From v12 the creator has unlimited power and must not be listed.
            users[ALICE] = json!(100);
        }
        room.send(
            alice,
            EventTemplate::state(
                "m.room.power_levels",
                "",
                json!({
                    "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
                    "ban": 50, "kick": 50, "redact": 50, "invite": 0
                }),
            ),
        )
        .unwrap();
        room.send(
            alice,
            EventTemplate::state("m.room.join_rules", "", json!({"join_rule": "invite"})),
        )
        .unwrap();
        room.send(
            alice,
            EventTemplate::state(
                "m.room.history_visibility",
                "",
                json!({"history_visibility": "shared"}),
            ),
        )
        .unwrap();
        room
    }

    /// A room as `create` makes it, with Bob invited by Alice and joined.
    fn with_bob(version: RoomVersion) -> (Room, &'static UserId, &'static UserId) {
        let mut room = Room::create(version);
        let (alice, bob) = (user_id!("@alice:example.org"), user_id!("@bob:example.org"));
        room.send(alice, membership_of(bob.as_str(), "invite"))
            .unwrap();
        room.send(bob, member("join")).unwrap();
        (room, alice, bob)
    }

    fn send(
        &mut self,
        sender: &UserId,
        template: EventTemplate,
    ) -> Result<std::sync::Arc<Pdu>, EngineError> {
        self.clock += 1;
        let name = server_name!("example.org");
        let server = LocalServer {
            name,
            key: &self.key,
        };
        let template = match template.state_key.as_deref() {
            Some("@self") => EventTemplate {
                state_key: Some(sender.to_string()),
                ..template
            },
            _ => template,
        };
        self.engine
            .create_local(sender, template, self.clock, &server)
            .map(|accepted| accepted.pdu)
    }
}

/// A membership event about the sender itself.
fn member(membership: &str) -> EventTemplate {
    EventTemplate::state("m.room.member", "@self", json!({"membership": membership}))
}

fn membership_of(target: &str, membership: &str) -> EventTemplate {
    EventTemplate::state("m.room.member", target, json!({"membership": membership}))
}

fn text(body: &str) -> EventTemplate {
    EventTemplate::message("m.room.message", json!({"msgtype": "m.text", "body": body}))
}

fn forbidden(result: Result<std::sync::Arc<Pdu>, EngineError>) -> String {
    match result {
        Err(EngineError::Forbidden(e)) => e.0,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn every_event_has_a_reference_hash_id_a_valid_hash_and_our_signature() {
    for version in RoomVersion::ALL {
        let mut room = Room::create(version);
        let pdu = room
            .send(user_id!("@alice:example.org"), text("hello"))
            .unwrap();
        let mut keys = PublicKeySet::new();
        keys.insert(
            room.key.key_id(),
            ruma::serde::Base64::parse(room.key.public_key_base64()).unwrap(),
        );
        let mut map = PublicKeyMap::new();
        map.insert("example.org".into(), keys);
        for event in room
            .engine
            .state()
            .events()
            .map(|e| e.as_ref())
            .chain([pdu.as_ref()])
        {
            let id = event.event_id().as_str();
            if version.event_id_in_pdu() {
                // v1, v2: `$opaque:server`, named in the PDU and covered by its signature.
                assert!(id.starts_with('$') && id.ends_with(":example.org"), "{id}");
                assert_eq!(
                    event.json().get("event_id"),
                    Some(&ruma::CanonicalJsonValue::String(id.to_owned()))
                );
                // Cited as [id, hashes] pairs.
                let refs = crate::signing::event::into_json(event.json().clone());
                assert!(refs["auth_events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r[0].is_string() && r[1].is_object()));
            } else {
                assert!(id.starts_with('$') && id.len() == 44, "{version:?}: {id}");
                if version != RoomVersion::V3 {
                    // v3 uses standard base64; v4 on the URL-safe alphabet.
                    assert!(!id.contains(['+', '/', '=']));
                }
                assert!(
                    !event.json().contains_key("event_id"),
                    "no event_id field from v3 on"
                );
            }
            assert!(
                matches!(
                    verify_event(&map, event.json(), &version.rules()),
                    Ok(Verified::All)
                ),
                "{version:?}"
            );
            // Recomputing from the wire JSON gives the same id.
            assert_eq!(
                Pdu::from_json(event.json().clone(), version)
                    .unwrap()
                    .event_id(),
                event.event_id()
            );
        }
        assert_eq!(pdu.depth(), 6);
        assert_eq!(
            room.engine.forward_extremities(),
            [pdu.event_id().to_owned()]
        );
    }
}

#[test]
fn v12_room_id_is_the_create_event_hash_and_the_create_event_is_never_cited() {
    let room = Room::create(RoomVersion::V12);
    let create = room
        .engine
        .state()
        .get(&"m.room.create".into(), "")
        .unwrap()
        .clone();
    assert!(!create.json().contains_key("room_id"));
    let room_id = room.engine.room_id().unwrap().as_str().to_owned();
    assert_eq!(&room_id[1..], &create.event_id().as_str()[1..]);
    for event in room.engine.state().events() {
        assert!(!event.auth_events().contains(&create.event_id().to_owned()));
        if event.kind().to_string() != "m.room.create" {
            assert_eq!(
                event.json()["room_id"],
                ruma::CanonicalJsonValue::String(room_id.clone())
            );
        }
    }
    for version in [RoomVersion::V10, RoomVersion::V11] {
        let room = Room::create(version);
        let create_id = room
            .engine
            .state()
            .event_id(&"m.room.create".into(), "")
            .unwrap();
        let power = room
            .engine
            .state()
            .get(&"m.room.power_levels".into(), "")
            .unwrap();
        assert!(
            power.auth_events().contains(&create_id),
            "{version:?} cites the create event"
        );
    }
}

#[test]
fn strangers_cannot_speak_or_join_an_invite_only_room_until_invited() {
    for version in RoomVersion::ALL {
        let mut room = Room::create(version);
        let bob = user_id!("@bob:example.org");
        forbidden(room.send(bob, text("hi")));
        forbidden(room.send(bob, member("join")));
        room.send(
            user_id!("@alice:example.org"),
            membership_of("@bob:example.org", "invite"),
        )
        .unwrap();
        room.send(bob, member("join")).unwrap();
        room.send(bob, text("hi")).unwrap();
    }
}

#[test]
fn power_levels_guard_state_changes() {
    for version in RoomVersion::ALL {
        let (mut room, alice, bob) = Room::with_bob(version);
        forbidden(room.send(
            bob,
            EventTemplate::state("m.room.topic", "", json!({"topic": "mine"})),
        ));
        forbidden(room.send(
            bob,
            EventTemplate::state(
                "m.room.power_levels",
                "",
                json!({"users": {"@bob:example.org": 100}}),
            ),
        ));
        forbidden(room.send(bob, membership_of(ALICE, "ban")));
        room.send(
            alice,
            EventTemplate::state("m.room.topic", "", json!({"topic": "ours"})),
        )
        .unwrap();
    }
}

#[test]
fn banned_users_can_neither_speak_nor_rejoin() {
    for version in RoomVersion::ALL {
        let (mut room, alice, bob) = Room::with_bob(version);
        room.send(alice, membership_of("@bob:example.org", "ban"))
            .unwrap();
        forbidden(room.send(bob, text("let me back")));
        forbidden(room.send(bob, member("join")));
        forbidden(room.send(alice, membership_of("@bob:example.org", "invite")));
        room.send(alice, membership_of("@bob:example.org", "leave"))
            .unwrap(); // unban
        room.send(alice, membership_of("@bob:example.org", "invite"))
            .unwrap();
    }
}

#[test]
fn refused_events_change_nothing() {
    let mut room = Room::create(RoomVersion::V12);
    let before = room.engine.forward_extremities().to_vec();
    let state_size = room.engine.state().len();
    forbidden(room.send(user_id!("@mallory:example.org"), text("spam")));
    assert_eq!(room.engine.forward_extremities(), before);
    assert_eq!(room.engine.state().len(), state_size);
}

#[test]
fn oversized_events_and_bad_content_are_refused() {
    use super::builder::BuildError;
    let mut room = Room::create(RoomVersion::V11);
    let alice = user_id!("@alice:example.org");
    let big = "x".repeat(65_536);
    assert!(matches!(
        room.send(alice, text(&big)),
        Err(EngineError::Build(BuildError::TooLarge(_)))
    ));
    // Just under the limit fits once the envelope and signature are counted.
    let fits = "x".repeat(64_000);
    room.send(alice, text(&fits)).unwrap();
    let long_type = "t".repeat(256);
    assert!(matches!(
        room.send(alice, EventTemplate::message(&long_type, json!({}))),
        Err(EngineError::Build(BuildError::TooLarge(_)))
    ));
    assert!(matches!(
        room.send(
            alice,
            EventTemplate::message("m.room.message", json!({"n": 1.5}))
        ),
        Err(EngineError::Build(BuildError::BadContent(_)))
    ));
}

#[test]
fn only_the_first_event_is_the_create_event() {
    let mut room = Room::create(RoomVersion::V11);
    let again = EventTemplate::state("m.room.create", "", json!({"room_version": "11"}));
    assert_eq!(
        room.send(user_id!("@alice:example.org"), again)
            .unwrap_err(),
        EngineError::NotCreated
    );
    let mut empty = RoomEngine::new(
        RoomVersion::V11,
        Some(ruma::room_id!("!r:example.org").to_owned()),
    );
    let k = key();
    let server = LocalServer {
        name: server_name!("example.org"),
        key: &k,
    };
    assert_eq!(
        empty
            .create_local(user_id!("@alice:example.org"), text("first"), 1, &server)
            .unwrap_err(),
        EngineError::NotCreated
    );
}

// --- Forks: events of another server built on an older tip -------------------------------------

mod forks {
    use std::collections::HashMap;
    use std::sync::Arc;

    use ruma::events::StateEventType;
    use ruma::{server_name, user_id, OwnedEventId, UserId};
    use serde_json::json;

    use super::{key, membership_of, text, Room};
    use crate::rooms::builder::EventTemplate;
    use crate::rooms::engine::{Accepted, EngineError, LocalServer};
    use crate::rooms::state_groups::{before_group_id, GroupRef};
    use crate::rooms::RoomVersion;

    /// Two copies of one room, as two servers hold it, and the state after every event either
    /// side accepted (what the room's Durable Object reads back from state groups).
    struct Pair {
        ours: Room,
        theirs: Room,
        after: HashMap<OwnedEventId, GroupRef>,
    }

    impl Pair {
        /// Alice (ours, creator), Bob and Carol (theirs) joined; Bob at power 50.
        fn new(version: RoomVersion) -> Pair {
            let (mut room, alice, _bob) = Room::with_bob(version);
            let carol = user_id!("@carol:example.org");
            room.send(alice, membership_of(carol.as_str(), "invite"))
                .unwrap();
            room.send(carol, super::member("join")).unwrap();
            let levels = power_levels(version, 50);
            room.send(alice, levels).unwrap();
            let theirs = Room {
                engine: room.engine.clone(),
                key: key(),
                clock: room.clock,
            };
            let after = room
                .engine
                .forward_extremities()
                .into_iter()
                .map(|id| {
                    let state = room.engine.tip_state(&id).unwrap().clone();
                    (id, state)
                })
                .collect();
            Pair {
                ours: room,
                theirs,
                after,
            }
        }

        fn send(
            side: &mut Room,
            after: &mut HashMap<OwnedEventId, GroupRef>,
            sender: &UserId,
            template: EventTemplate,
        ) -> Accepted {
            side.clock += 1;
            let server = LocalServer {
                name: server_name!("example.org"),
                key: &side.key,
            };
            let accepted = side
                .engine
                .create_local(sender, template, side.clock, &server)
                .unwrap();
            after.insert(
                accepted.pdu.event_id().to_owned(),
                accepted.placement.after.clone(),
            );
            accepted
        }

        fn ours_send(&mut self, sender: &UserId, template: EventTemplate) -> Accepted {
            Self::send(&mut self.ours, &mut self.after, sender, template)
        }

        fn theirs_send(&mut self, sender: &UserId, template: EventTemplate) -> Accepted {
            Self::send(&mut self.theirs, &mut self.after, sender, template)
        }

        /// Their event arriving at our side, with the states after its predecessors.
        fn receive(&mut self, event: &Accepted) -> Result<Accepted, EngineError> {
            let prevs = event
                .pdu
                .prev_events()
                .iter()
                .map(|id| {
                    self.ours
                        .engine
                        .tip_state(id)
                        .cloned()
                        .or_else(|| self.after.get(id).cloned())
                        .expect("the state after a predecessor")
                })
                .collect();
            let accepted = self.ours.engine.accept_remote(event.pdu.clone(), prevs)?;
            self.after.insert(
                accepted.pdu.event_id().to_owned(),
                accepted.placement.after.clone(),
            );
            self.ours.engine.commit(&accepted);
            Ok(accepted)
        }

        fn current(&self, kind: &str) -> Option<OwnedEventId> {
            self.ours
                .engine
                .state()
                .event_id(&StateEventType::from(kind), "")
        }
    }

    fn power_levels(version: RoomVersion, bob: u64) -> EventTemplate {
        let mut users = json!({"@bob:example.org": bob});
        if version != RoomVersion::V12 {
            users["@alice:example.org"] = json!(100);
        }
        EventTemplate::state(
            "m.room.power_levels",
            "",
            json!({"users": users, "state_default": 50, "ban": 50, "kick": 50, "invite": 0}),
        )
    }

    fn named(name: &str) -> EventTemplate {
        EventTemplate::state("m.room.name", "", json!({ "name": name }))
    }

    const ALICE: fn() -> &'static UserId = || user_id!("@alice:example.org");
    const BOB: fn() -> &'static UserId = || user_id!("@bob:example.org");

    #[test]
    fn an_event_on_our_tip_extends_the_room_linearly() {
        for version in RoomVersion::ALL {
            let mut pair = Pair::new(version);
            let rename = pair.theirs_send(BOB(), named("theirs"));
            let accepted = pair.receive(&rename).unwrap();
            assert!(!accepted.soft_failed);
            assert_eq!(
                accepted.extremities(),
                Some(vec![rename.pdu.event_id().to_owned()])
            );
            assert_eq!(
                pair.current("m.room.name").as_deref(),
                Some(rename.pdu.event_id())
            );
            // One prev, nothing resolved: only the event's own group, on top of the tip's.
            assert_eq!(accepted.placement.groups.len(), 1);
            assert_eq!(accepted.state_changes.len(), 1);
        }
    }

    #[test]
    fn concurrent_renames_fork_the_room_and_resolve_on_both_sides() {
        for version in RoomVersion::ALL {
            let mut pair = Pair::new(version);
            let ours = pair.ours_send(ALICE(), named("ours"));
            let theirs = pair.theirs_send(BOB(), named("theirs"));
            let accepted = pair.receive(&theirs).unwrap();
            assert!(!accepted.soft_failed, "{version:?}");
            let mut tips = accepted.extremities().unwrap();
            tips.sort();
            let mut expected = vec![
                ours.pdu.event_id().to_owned(),
                theirs.pdu.event_id().to_owned(),
            ];
            expected.sort();
            assert_eq!(tips, expected, "both renames are forward extremities");
            // The other side resolves the same two states to the same name.
            let ours_name = pair.current("m.room.name").unwrap();
            let mut mirror = Pair {
                ours: Room {
                    engine: pair.theirs.engine.clone(),
                    key: key(),
                    clock: 0,
                },
                theirs: Room {
                    engine: pair.theirs.engine.clone(),
                    key: key(),
                    clock: 0,
                },
                after: pair.after.clone(),
            };
            mirror.receive(&ours).unwrap();
            assert_eq!(
                mirror.current("m.room.name").unwrap(),
                ours_name,
                "{version:?}"
            );
            // Our next event merges the fork: both tips are its prev_events.
            let merge = pair.ours_send(ALICE(), text("merge"));
            assert_eq!(merge.pdu.prev_events().len(), 2);
            assert_eq!(
                pair.ours.engine.forward_extremities(),
                vec![merge.pdu.event_id().to_owned()]
            );
            // A message merging two states gets a group for the resolved state before it.
            assert_eq!(merge.placement.groups.len(), 1);
            assert_eq!(
                merge.placement.groups[0].id,
                before_group_id(merge.pdu.event_id().as_str())
            );
        }
    }

    #[test]
    fn an_event_allowed_before_a_demotion_but_not_after_is_soft_failed() {
        for version in RoomVersion::ALL {
            let mut pair = Pair::new(version);
            let demotion = pair.ours_send(ALICE(), power_levels(version, 0));
            let rename = pair.theirs_send(BOB(), named("by bob at 50"));
            let tips_before = pair.ours.engine.forward_extremities();
            let accepted = pair.receive(&rename).unwrap();
            assert!(accepted.soft_failed, "{version:?}");
            assert!(accepted.state_changes.is_empty());
            assert_eq!(pair.ours.engine.forward_extremities(), tips_before);
            assert_eq!(pair.current("m.room.name"), None);
            assert_eq!(
                pair.current("m.room.power_levels").as_deref(),
                Some(demotion.pdu.event_id())
            );
            // Still part of the graph: an event built on it is checked against the state after it.
            let message = pair.theirs_send(BOB(), text("after my rename"));
            let accepted = pair.receive(&message).unwrap();
            assert!(!accepted.soft_failed);
            if version == RoomVersion::V1 {
                // State resolution v1 counts a slot set in only one of the states as
                // unconflicted, so the rename comes back with the message built on it: the
                // flaw room version 2's algorithm was made to fix.
                assert_eq!(
                    pair.current("m.room.name").as_deref(),
                    Some(rename.pdu.event_id())
                );
                continue;
            }
            assert_eq!(
                pair.current("m.room.name"),
                None,
                "the soft-failed rename stays out"
            );
        }
    }

    #[test]
    fn version_1_resolution_takes_the_deepest_allowed_event_and_orders_power_levels_by_depth() {
        let mut pair = Pair::new(RoomVersion::V1);
        // Ours: one rename. Theirs: two (the second deeper than ours).
        let _ours = pair.ours_send(ALICE(), named("ours"));
        let first = pair.theirs_send(BOB(), named("theirs 1"));
        let second = pair.theirs_send(BOB(), named("theirs 2"));
        pair.receive(&first).unwrap();
        pair.receive(&second).unwrap();
        assert_eq!(
            pair.current("m.room.name").as_deref(),
            Some(second.pdu.event_id())
        );

        // Conflicting power levels: the shallower one first, then the deeper one only if the
        // state so far allows it. Alice (ours) demotes Bob; Bob (theirs), still at 50 on his
        // side, sends two events so that his power levels change is deeper: it may not raise
        // himself, so Alice's demotion stands.
        let mut pair = Pair::new(RoomVersion::V1);
        let demotion = pair.ours_send(ALICE(), power_levels(RoomVersion::V1, 0));
        pair.theirs_send(BOB(), named("padding"));
        let mut raised = power_levels(RoomVersion::V1, 50);
        raised.content["users_default"] = json!(10);
        let bobs = pair.theirs_send(BOB(), raised);
        let accepted = pair.receive(&bobs).unwrap();
        assert!(accepted.soft_failed);
        assert_eq!(
            pair.current("m.room.power_levels").as_deref(),
            Some(demotion.pdu.event_id())
        );
    }

    #[test]
    fn an_event_the_state_before_it_does_not_allow_is_rejected_and_changes_nothing() {
        for version in RoomVersion::ALL {
            let mut pair = Pair::new(version);
            let demotion = pair.theirs_send(ALICE(), power_levels(version, 0));
            pair.receive(&demotion).unwrap();
            // What a server that skips the auth rules builds: Bob renames on top of his own
            // demotion, citing the power levels from before it.
            let template = named("not allowed");
            let key = key();
            let old_levels = pair
                .ours
                .engine
                .known(
                    demotion
                        .pdu
                        .auth_events()
                        .iter()
                        .find(|id| {
                            pair.ours
                                .engine
                                .known(id)
                                .is_some_and(|p| p.kind().to_string() == "m.room.power_levels")
                        })
                        .unwrap(),
                )
                .unwrap()
                .event_id()
                .to_owned();
            let mut auth = vec![old_levels];
            auth.extend(
                pair.ours
                    .engine
                    .state()
                    .event_id(&StateEventType::RoomMember, BOB().as_str()),
            );
            auth.extend(
                pair.ours
                    .engine
                    .state()
                    .event_id(&StateEventType::RoomCreate, "")
                    .filter(|_| version != RoomVersion::V12),
            );
            let pdu = crate::rooms::builder::build_event(
                template,
                crate::rooms::builder::Placement {
                    version,
                    room_id: pair.ours.engine.room_id().map(|r| r.as_ref()),
                    sender: BOB(),
                    prev_events: vec![demotion.pdu.event_id().to_owned()],
                    auth_events: auth,
                    depth: demotion.pdu.depth() + 1,
                    origin_server_ts: 99_999,
                    server_name: server_name!("example.org"),
                    key: &key,
                },
            )
            .unwrap();
            let tips = pair.ours.engine.forward_extremities();
            let prevs = vec![pair
                .ours
                .engine
                .tip_state(demotion.pdu.event_id())
                .unwrap()
                .clone()];
            let refused = pair.ours.engine.accept_remote(Arc::new(pdu), prevs);
            assert!(
                matches!(refused, Err(EngineError::Forbidden(_))),
                "{version:?}: {refused:?}"
            );
            assert_eq!(pair.ours.engine.forward_extremities(), tips);
            assert_eq!(pair.current("m.room.name"), None);
        }
    }

    #[test]
    fn state_groups_share_messages_and_chain_state_events() {
        let mut pair = Pair::new(RoomVersion::V12);
        let tip = pair.ours.engine.forward_extremities()[0].clone();
        let tip_group = pair.ours.engine.tip_state(&tip).unwrap().clone();
        let message = pair.ours_send(ALICE(), text("hello"));
        assert!(
            message.placement.groups.is_empty(),
            "a message stores no group"
        );
        assert_eq!(message.placement.after.id, tip_group.id);
        let rename = pair.ours_send(ALICE(), named("x"));
        let group = &rename.placement.groups[0];
        assert_eq!(group.id, rename.pdu.event_id().as_str());
        assert_eq!(
            group.parent, tip_group.id,
            "the parent is the state before the event"
        );
        assert_eq!(group.entries.len(), 1);
        // Every MAX_CHAIN generations a group is stored whole.
        let mut full = 0;
        for i in 0..40 {
            let accepted = pair.ours_send(ALICE(), named(&format!("n{i}")));
            let group = &accepted.placement.groups[0];
            assert!(group.chain <= crate::rooms::state_groups::MAX_CHAIN);
            if group.full {
                full += 1;
                assert_eq!(group.entries.len(), pair.ours.engine.current().len());
            }
        }
        assert!(full >= 2, "{full} full groups in 40 generations");
        let _ = Arc::strong_count(&tip_group.state);
    }
}
