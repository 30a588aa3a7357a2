//! What `POST /createRoom` puts in a new room, in the spec's order: the create event, the
//! creator's join, power levels, the canonical alias, the preset's join rules, history
//! visibility and guest access, `initial_state`, name, topic, then the invites.

use ruma::{OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::builder::EventTemplate;
use super::RoomVersion;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreateRoomRequest {
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<OwnedUserId>,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    pub preset: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    pub power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl CreateRoomRequest {
    pub fn preset(&self) -> Result<Preset, PlanError> {
        match self.preset.as_deref() {
            Some("private_chat") => Ok(Preset::PrivateChat),
            Some("trusted_private_chat") => Ok(Preset::TrustedPrivateChat),
            Some("public_chat") => Ok(Preset::PublicChat),
            Some(other) => Err(PlanError(format!("unknown preset {other}"))),
            None if self.visibility.as_deref() == Some("public") => Ok(Preset::PublicChat),
            None => Ok(Preset::PrivateChat),
        }
    }

    pub fn is_public(&self) -> bool {
        self.visibility.as_deref() == Some("public")
    }
}

/// The events of a new room. `alias` is the full canonical alias when one was asked for.
pub fn plan(
    request: &CreateRoomRequest,
    creator: &UserId,
    version: RoomVersion,
    alias: Option<&str>,
    creator_profile: Value,
) -> Result<Vec<EventTemplate>, PlanError> {
    let preset = request.preset()?;
    let creators_by_event = version
        .rules()
        .authorization
        .explicitly_privilege_room_creators;
    let mut create = request.creation_content.clone().unwrap_or_default();
    // From v12 on, creators may name co-creators, and trusted private chats add the invitees to
    // them (instead of giving them power level 100); creators must not be in the power levels.
    let mut co_creators: Vec<OwnedUserId> = Vec::new();
    if creators_by_event {
        if let Some(given) = create.remove("additional_creators") {
            co_creators = serde_json::from_value(given)
                .map_err(|_| PlanError("additional_creators must be a list of user ids".into()))?;
        }
        if preset == Preset::TrustedPrivateChat {
            co_creators.extend(request.invite.iter().cloned());
        }
        co_creators.sort();
        co_creators.dedup();
    }
    for reserved in ["creator", "room_version"] {
        create.remove(reserved);
    }
    if !version.rules().authorization.use_room_create_sender {
        create.insert("creator".into(), json!(creator));
    }
    create.insert("room_version".into(), json!(version.as_str()));
    if !co_creators.is_empty() {
        create.insert("additional_creators".into(), json!(co_creators));
    }

    let mut events = vec![
        EventTemplate::state("m.room.create", "", Value::Object(create)),
        EventTemplate::state(
            "m.room.member",
            creator.as_str(),
            member_content("join", creator_profile, false),
        ),
        EventTemplate::state(
            "m.room.power_levels",
            "",
            power_levels(request, creator, preset, creators_by_event),
        ),
    ];
    if let Some(alias) = alias {
        events.push(EventTemplate::state(
            "m.room.canonical_alias",
            "",
            json!({ "alias": alias }),
        ));
    }
    // `public_chat` forbids guests, which is what a room without `m.room.guest_access` means
    // (spec, m.room.guest_access): no event is sent for it, as other servers do not.
    let (join_rule, guest_access) = match preset {
        Preset::PublicChat => ("public", None),
        _ => ("invite", Some("can_join")),
    };
    events.push(EventTemplate::state(
        "m.room.join_rules",
        "",
        json!({ "join_rule": join_rule }),
    ));
    events.push(EventTemplate::state(
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "shared" }),
    ));
    if let Some(guest_access) = guest_access {
        events.push(EventTemplate::state(
            "m.room.guest_access",
            "",
            json!({ "guest_access": guest_access }),
        ));
    }
    for state in &request.initial_state {
        if state.kind == "m.room.power_levels" && state.state_key.is_empty() {
            // Takes the place of the default power levels; the override still applies on top.
            events[2].content = with_overrides(state.content.clone(), request);
            continue;
        }
        if ["m.room.create", "m.room.member"].contains(&state.kind.as_str()) {
            return Err(PlanError(format!(
                "initial_state may not set {}",
                state.kind
            )));
        }
        // A later event of the same slot replaces an earlier one, as the spec's order implies.
        events.retain(|e| {
            !(e.kind == state.kind && e.state_key.as_deref() == Some(&state.state_key))
        });
        events.push(EventTemplate::state(
            &state.kind,
            &state.state_key,
            state.content.clone(),
        ));
    }
    if let Some(name) = &request.name {
        events.push(EventTemplate::state(
            "m.room.name",
            "",
            json!({ "name": name }),
        ));
    }
    if let Some(topic) = &request.topic {
        // The plain topic and its rich form (spec: `m.room.topic`, `m.topic` is a
        // TextualBody: an object whose `m.text` lists the representations).
        let rich = json!({ "m.text": [{ "mimetype": "text/plain", "body": topic }] });
        events.push(EventTemplate::state(
            "m.room.topic",
            "",
            json!({ "topic": topic, "m.topic": rich }),
        ));
    }
    Ok(events)
}

/// Content of a membership event, with the member's profile for joins and `is_direct` for
/// direct-chat invites.
pub fn member_content(membership: &str, profile: Value, is_direct: bool) -> Value {
    let mut content = json!({ "membership": membership });
    if let Value::Object(profile) = profile {
        for (key, value) in profile {
            if !value.is_null() {
                content[key] = value;
            }
        }
    }
    if is_direct {
        content["is_direct"] = json!(true);
    }
    content
}

fn power_levels(
    request: &CreateRoomRequest,
    creator: &UserId,
    preset: Preset,
    creators_by_event: bool,
) -> Value {
    let mut users = Map::new();
    if !creators_by_event {
        users.insert(creator.to_string(), json!(100));
        if preset == Preset::TrustedPrivateChat {
            for invitee in &request.invite {
                users.insert(invitee.to_string(), json!(100));
            }
        }
    }
    let content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == Preset::PublicChat { 50 } else { 0 },
        "notifications": { "room": 50 },
    });
    with_overrides(content, request)
}

/// `power_level_content_override`'s top-level keys replace those of the power levels.
fn with_overrides(mut content: Value, request: &CreateRoomRequest) -> Value {
    if let (Some(overrides), Value::Object(map)) =
        (&request.power_level_content_override, &mut content)
    {
        for (key, value) in overrides {
            map.insert(key.clone(), value.clone());
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> OwnedUserId {
        UserId::parse("@alice:example.org").unwrap()
    }

    fn kinds(events: &[EventTemplate]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn events_come_in_the_spec_order() {
        let request = CreateRoomRequest {
            name: Some("N".into()),
            topic: Some("T".into()),
            ..Default::default()
        };
        let events = plan(
            &request,
            &alice(),
            RoomVersion::V11,
            Some("#a:example.org"),
            json!({}),
        )
        .unwrap();
        assert_eq!(
            kinds(&events),
            [
                "m.room.create",
                "m.room.member",
                "m.room.power_levels",
                "m.room.canonical_alias",
                "m.room.join_rules",
                "m.room.history_visibility",
                "m.room.guest_access",
                "m.room.name",
                "m.room.topic"
            ]
        );
        assert_eq!(events[4].content["join_rule"], "invite");
        // The topic also in its rich form, a TextualBody (spec: `m.room.topic`).
        assert_eq!(
            events[8].content,
            json!({ "topic": "T", "m.topic": { "m.text": [{ "mimetype": "text/plain", "body": "T" }] } })
        );
    }

    #[test]
    fn creators_are_not_in_v12_power_levels_but_are_before() {
        let request = CreateRoomRequest {
            preset: Some("trusted_private_chat".into()),
            invite: vec![UserId::parse("@bob:example.org").unwrap()],
            ..Default::default()
        };
        let v11 = plan(&request, &alice(), RoomVersion::V11, None, json!({})).unwrap();
        assert_eq!(v11[2].content["users"]["@bob:example.org"], 100);
        // v11 dropped `creator` from the create event: the sender is the creator.
        assert!(v11[0].content.get("creator").is_none());
        let v12 = plan(&request, &alice(), RoomVersion::V12, None, json!({})).unwrap();
        assert!(v12[2].content["users"].as_object().unwrap().is_empty());
        assert_eq!(v12[0].content["additional_creators"][0], "@bob:example.org");
    }

    #[test]
    fn initial_state_replaces_preset_state_and_overrides_apply() {
        let request: CreateRoomRequest = serde_json::from_value(json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
            "power_level_content_override": {"events_default": 10}
        }))
        .unwrap();
        let events = plan(&request, &alice(), RoomVersion::V10, None, json!({})).unwrap();
        let hv: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "m.room.history_visibility")
            .collect();
        assert_eq!(hv.len(), 1);
        assert_eq!(hv[0].content["history_visibility"], "joined");
        assert_eq!(events[2].content["events_default"], 10);
        assert!(plan(
            &serde_json::from_value(json!({"preset": "nope"})).unwrap(),
            &alice(),
            RoomVersion::V10,
            None,
            json!({})
        )
        .is_err());
    }

    #[test]
    fn initial_power_levels_replace_the_defaults_and_creators_can_be_named() {
        let request: CreateRoomRequest = serde_json::from_value(json!({
            "initial_state": [{"type": "m.room.power_levels", "content": {"ban": 10, "users": {}}}],
            "power_level_content_override": {"kick": 20},
            "creation_content": {"additional_creators": ["@carol:example.org"]}
        }))
        .unwrap();
        let events = plan(&request, &alice(), RoomVersion::V12, None, json!({})).unwrap();
        assert_eq!(
            kinds(&events)
                .iter()
                .filter(|k| **k == "m.room.power_levels")
                .count(),
            1
        );
        assert_eq!(events[2].content["ban"], 10);
        assert_eq!(events[2].content["kick"], 20);
        assert_eq!(
            events[0].content["additional_creators"],
            json!(["@carol:example.org"])
        );
        let bad: CreateRoomRequest =
            serde_json::from_value(json!({"creation_content": {"additional_creators": "x"}}))
                .unwrap();
        assert!(plan(&bad, &alice(), RoomVersion::V12, None, json!({})).is_err());
    }
}
