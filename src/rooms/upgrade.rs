//! Room upgrades (spec: client-server API, "Room Upgrades"), the pure part: what the
//! replacement room is made of, and how the old room's power levels are restricted. The handler
//! (`client/upgrade.rs`) reads the old room's state, sends the tombstone and creates the room.

use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{EventId, OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::builder::EventTemplate;
use super::create::member_content;
use super::power::int;
use super::state::RoomState;
use super::{Pdu, RoomVersion};

/// State the replacement room inherits: the spec's recommended list. Memberships are not
/// copied (other servers' users cannot be impersonated), except bans, which keep banned users
/// out of the new room as they were out of the old one.
const TRANSFERRED: [&str; 8] = [
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
];

#[derive(Debug, PartialEq, Eq)]
pub struct UpgradeError(pub String);

/// The events of the replacement room, in order: create (with `predecessor`), the upgrader's
/// join, power levels, the transferred state, bans, and, when the upgrader's level had to be
/// raised to send all that, the old room's power levels as they were.
pub fn plan(
    old: &RoomState,
    old_room_id: &RoomId,
    last_event: Option<&EventId>,
    upgrader: &UserId,
    version: RoomVersion,
    additional_creators: Vec<OwnedUserId>,
    profile: Value,
) -> Result<Vec<EventTemplate>, UpgradeError> {
    let content_of = |kind: &str, key: &str| -> Option<Value> {
        old.get(&StateEventType::from(kind), key)
            .and_then(|p| serde_json::from_str::<Value>(p.content().get()).ok())
    };
    let rules = version.rules().authorization;
    let mut create = Map::new();
    if !rules.use_room_create_sender {
        create.insert("creator".into(), json!(upgrader));
    }
    create.insert("room_version".into(), json!(version.as_str()));
    let mut predecessor = json!({ "room_id": old_room_id });
    // From v12 the predecessor names only the room (MSC4291); before, also its last event.
    if let (false, Some(event)) = (rules.room_create_event_id_as_room_id, last_event) {
        predecessor["event_id"] = json!(event);
    }
    create.insert("predecessor".into(), predecessor);
    let old_create = content_of("m.room.create", "").unwrap_or_default();
    // The room's kind (a space stays a space) and whether it federates carry over.
    for key in ["type", "m.federate"] {
        if let Some(value) = old_create.get(key) {
            create.insert(key.into(), value.clone());
        }
    }
    let mut creators = vec![upgrader.to_owned()];
    if rules.explicitly_privilege_room_creators {
        let mut extra = additional_creators;
        extra.retain(|u| u != upgrader);
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            create.insert("additional_creators".into(), json!(extra));
        }
        creators.extend(extra);
    } else if !additional_creators.is_empty() {
        return Err(UpgradeError(format!(
            "additional_creators needs a room version that has them, not {}",
            version.as_str()
        )));
    }

    let old_levels = content_of("m.room.power_levels", "").unwrap_or_else(|| json!({}));
    let mut levels = old_levels.clone();
    if let Some(users) = levels.get_mut("users").and_then(Value::as_object_mut) {
        if rules.explicitly_privilege_room_creators {
            // Creators have unlimited power and must not be listed (MSC4289).
            users.retain(|user, _| !creators.iter().any(|c| c.as_str() == user));
        }
    }
    let mut restore = false;
    if !rules.explicitly_privilege_room_creators {
        // The upgrader sends every copied event: raised to the highest level any of them
        // needs, then put back with the old power levels at the end.
        let needed = highest_level(&old_levels);
        let mine = int(old_levels.pointer(&format!("/users/{}", pointer_key(upgrader))))
            .or_else(|| int(old_levels.get("users_default")))
            .unwrap_or(0);
        if mine < needed {
            levels["users"][upgrader.as_str()] = json!(needed);
            restore = true;
        }
    }

    let mut events = vec![
        EventTemplate::state("m.room.create", "", Value::Object(create)),
        EventTemplate::state(
            "m.room.member",
            upgrader.as_str(),
            member_content("join", profile, false),
        ),
        EventTemplate::state("m.room.power_levels", "", levels),
    ];
    for kind in TRANSFERRED {
        if let Some(content) = content_of(kind, "") {
            events.push(EventTemplate::state(kind, "", content));
        }
    }
    for pdu in old.events() {
        if pdu.kind().to_string() == "m.room.member"
            && pdu.membership().as_deref() == Some("ban")
            // A creator cannot be banned (their power is unlimited from v12).
            && pdu
                .state_key()
                .is_some_and(|k| !creators.iter().any(|c| c.as_str() == k))
        {
            let mut content = json!({ "membership": "ban" });
            if let Some(reason) = content_json(pdu).get("reason") {
                content["reason"] = reason.clone();
            }
            events.push(EventTemplate::state(
                "m.room.member",
                pdu.state_key().unwrap_or_default(),
                content,
            ));
        }
    }
    if restore {
        events.push(EventTemplate::state("m.room.power_levels", "", old_levels));
    }
    Ok(events)
}

/// The old room's power levels once it is replaced: nobody below the moderators may speak or
/// invite (spec: `events_default` and `invite` raised to 50, or `users_default + 1` if higher).
pub fn restricted_levels(old: &RoomState) -> Option<Value> {
    let mut levels = old
        .get(&StateEventType::RoomPowerLevels, "")
        .map(content_json)
        .unwrap_or_else(|| json!({}));
    let floor = (int(levels.get("users_default")).unwrap_or(0) + 1).max(50);
    let mut changed = false;
    for key in ["events_default", "invite"] {
        // Both default to 0 when absent.
        if int(levels.get(key)).unwrap_or(0) < floor {
            levels[key] = json!(floor);
            changed = true;
        }
    }
    changed.then_some(levels)
}

/// The highest level the power levels require for anything a room's admin sends.
fn highest_level(levels: &Value) -> i64 {
    let mut highest = ["state_default", "ban", "kick", "redact", "invite"]
        .iter()
        .map(|k| int(levels.get(*k)).unwrap_or(50))
        .max()
        .unwrap_or(50);
    if let Some(events) = levels.get("events").and_then(Value::as_object) {
        for value in events.values() {
            highest = highest.max(int(Some(value)).unwrap_or(0));
        }
    }
    highest
}

fn pointer_key(user: &UserId) -> String {
    user.as_str().replace('~', "~0").replace('/', "~1")
}

fn content_json(pdu: &Arc<Pdu>) -> Value {
    serde_json::from_str(pdu.content().get()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::rooms::engine::{LocalServer, RoomEngine};
    use ruma::{room_id, server_name, user_id};

    fn key() -> SigningKey {
        SigningKey::parse_key_file("ed25519 a_test YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0")
            .unwrap()
    }

    /// Sends `events` as `sender` into a new engine; fails on the first refusal.
    fn build(
        version: RoomVersion,
        room_id: &RoomId,
        sender: &UserId,
        events: Vec<EventTemplate>,
    ) -> RoomEngine {
        let key = key();
        let server = LocalServer {
            name: server_name!("example.org"),
            key: &key,
        };
        let mut engine = RoomEngine::new(
            version,
            (!version.room_id_from_create_event()).then(|| room_id.to_owned()),
        );
        for (n, template) in events.into_iter().enumerate() {
            let what = format!("{} {:?}", template.kind, template.state_key);
            engine
                .create_local(sender, template, 1000 + n as u64, &server)
                .unwrap_or_else(|e| panic!("{version:?}: {what}: {e:?}"));
        }
        engine
    }

    fn content(engine: &RoomEngine, kind: &str, key: &str) -> Value {
        engine
            .state()
            .get(&StateEventType::from(kind), key)
            .map(content_json)
            .unwrap_or(Value::Null)
    }

    /// A room of `version` made by Alice, where Bob is an admin, Carol is banned, and the name,
    /// topic and join rules are set.
    fn old_room(version: RoomVersion) -> RoomEngine {
        let (alice, bob) = (user_id!("@alice:example.org"), user_id!("@bob:example.org"));
        let mut create = json!({ "room_version": version.as_str(), "type": "m.space" });
        if !version.rules().authorization.use_room_create_sender {
            create["creator"] = json!(alice);
        }
        let mut users = json!({ "@bob:example.org": 100 });
        if !version
            .rules()
            .authorization
            .explicitly_privilege_room_creators
        {
            users[alice.as_str()] = json!(100);
        }
        let mut engine = build(
            version,
            room_id!("!old:example.org"),
            alice,
            vec![
                EventTemplate::state("m.room.create", "", create),
                EventTemplate::state(
                    "m.room.member",
                    alice.as_str(),
                    json!({"membership": "join"}),
                ),
                EventTemplate::state(
                    "m.room.power_levels",
                    "",
                    json!({ "users": users, "events": { "m.room.tombstone": 100 } }),
                ),
                EventTemplate::state("m.room.join_rules", "", json!({"join_rule": "public"})),
                EventTemplate::state("m.room.name", "", json!({"name": "old"})),
                EventTemplate::state("m.room.topic", "", json!({"topic": "talk"})),
                EventTemplate::state(
                    "m.room.member",
                    "@carol:example.org",
                    json!({"membership": "ban", "reason": "spam"}),
                ),
            ],
        );
        let key = key();
        let server = LocalServer {
            name: server_name!("example.org"),
            key: &key,
        };
        engine
            .create_local(
                bob,
                EventTemplate::state("m.room.member", bob.as_str(), json!({"membership": "join"})),
                2000,
                &server,
            )
            .unwrap();
        engine
    }

    #[test]
    fn the_planned_room_passes_the_auth_rules_and_carries_the_state_over() {
        let bob = user_id!("@bob:example.org");
        let carol = user_id!("@carol:example.org");
        let pairs = [
            (RoomVersion::V1, RoomVersion::V9),
            (RoomVersion::V9, RoomVersion::V1),
            (RoomVersion::V11, RoomVersion::V12),
            (RoomVersion::V12, RoomVersion::V12),
            (RoomVersion::V12, RoomVersion::V11),
        ];
        for (from, to) in pairs {
            let old = old_room(from);
            let old_id = old.room_id().unwrap().clone();
            let last = old.forward_extremities()[0].clone();
            let extra = if to == RoomVersion::V12 {
                vec![carol.to_owned()]
            } else {
                vec![]
            };
            let events = plan(old.state(), &old_id, Some(&last), bob, to, extra, json!({}))
                .unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e:?}"));
            let new = build(to, room_id!("!new:example.org"), bob, events);
            let create = content(&new, "m.room.create", "");
            assert_eq!(create["room_version"], to.as_str());
            assert_eq!(create["predecessor"]["room_id"], old_id.as_str());
            assert_eq!(create["type"], "m.space");
            let levels = content(&new, "m.room.power_levels", "");
            if to == RoomVersion::V12 {
                // Creators have unlimited power and are not listed; the predecessor names no
                // event (MSC4291).
                assert!(create["predecessor"].get("event_id").is_none());
                assert_eq!(create["additional_creators"], json!([carol]));
                assert!(levels["users"].get(bob.as_str()).is_none(), "{levels}");
            } else {
                assert_eq!(create["predecessor"]["event_id"], last.as_str());
                assert_eq!(levels["users"][bob.as_str()], 100);
            }
            assert_eq!(content(&new, "m.room.name", "")["name"], "old");
            assert_eq!(content(&new, "m.room.topic", "")["topic"], "talk");
            assert_eq!(
                content(&new, "m.room.join_rules", "")["join_rule"],
                "public"
            );
            let ban = content(&new, "m.room.member", carol.as_str());
            if to == RoomVersion::V12 {
                // Carol is made a creator here, and a creator cannot be banned.
                assert_eq!(ban, Value::Null);
            } else {
                assert_eq!(
                    (ban["membership"].as_str(), ban["reason"].as_str()),
                    (Some("ban"), Some("spam")),
                    "{from:?} -> {to:?}"
                );
            }
            // Nobody else's membership is copied.
            assert_eq!(
                content(&new, "m.room.member", "@alice:example.org"),
                Value::Null
            );
        }
    }

    #[test]
    fn additional_creators_need_a_version_that_has_them() {
        let old = old_room(RoomVersion::V11);
        let old_id = old.room_id().unwrap().clone();
        let bob = user_id!("@bob:example.org");
        let extra = vec![user_id!("@carol:example.org").to_owned()];
        assert!(plan(
            old.state(),
            &old_id,
            None,
            bob,
            RoomVersion::V11,
            extra,
            json!({})
        )
        .is_err());
    }

    #[test]
    fn the_old_room_is_restricted_to_moderators() {
        let old = old_room(RoomVersion::V10);
        let levels = restricted_levels(old.state()).unwrap();
        assert_eq!(
            (levels["events_default"].as_i64(), levels["invite"].as_i64()),
            (Some(50), Some(50))
        );
        // The rest of the power levels stay as they were.
        assert_eq!(levels["users"]["@bob:example.org"], 100);
    }
}
