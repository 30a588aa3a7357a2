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
        if version == RoomVersion::V10 {
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
            assert!(id.starts_with('$') && id.len() == 44, "{version:?}: {id}");
            assert!(!id.contains(['+', '/', '=']));
            assert!(
                !event.json().contains_key("event_id"),
                "no event_id field from v3 on"
            );
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
