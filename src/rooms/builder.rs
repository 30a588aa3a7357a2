//! Builds events this server creates: fills the PDU fields, adds the content hash and our
//! signature, and derives the event id from the reference hash. Which `prev_events`,
//! `auth_events` and `depth` to use is the room's Durable Object's decision; this module only
//! makes a spec-correct, signed PDU out of them.

use ruma::{OwnedEventId, RoomId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::pdu::refs_json;
use super::{Pdu, RoomVersion};
use crate::keys::SigningKey;
use crate::signing::event::hash_and_sign;

/// Largest PDU, in bytes of canonical JSON including signatures (spec: 65536).
pub const MAX_PDU_BYTES: usize = 65_536;
/// Largest `type`, `state_key`, `sender` and `room_id`, in bytes (spec: 255).
pub const MAX_ID_BYTES: usize = 255;

/// What a client (or the server itself) asks to send.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventTemplate {
    #[serde(rename = "type")]
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
}

impl EventTemplate {
    pub fn message(kind: &str, content: Value) -> Self {
        Self {
            kind: kind.to_owned(),
            state_key: None,
            content,
        }
    }

    pub fn state(kind: &str, state_key: &str, content: Value) -> Self {
        Self {
            kind: kind.to_owned(),
            state_key: Some(state_key.to_owned()),
            content,
        }
    }
}

/// Where in the room graph the new event goes, and who signs it.
pub struct Placement<'a> {
    pub version: RoomVersion,
    /// `None` only for the create event of a room whose id derives from it (v12+).
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
    pub origin_server_ts: u64,
    pub server_name: &'a ServerName,
    pub key: &'a SigningKey,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The event would exceed the spec's size limits (`M_TOO_LARGE`).
    TooLarge(String),
    /// The content is not a JSON object, or not canonical JSON (`M_BAD_JSON`).
    BadContent(String),
    /// A field the room version requires is missing (a bug in the caller).
    Invalid(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::TooLarge(what)
            | BuildError::BadContent(what)
            | BuildError::Invalid(what) => f.write_str(what),
        }
    }
}

pub fn build_event(template: EventTemplate, at: Placement<'_>) -> Result<Pdu, BuildError> {
    if !template.content.is_object() {
        return Err(BuildError::BadContent(
            "content must be a JSON object".into(),
        ));
    }
    for (field, value) in [
        ("type", Some(template.kind.as_str())),
        ("state_key", template.state_key.as_deref()),
    ] {
        if value.is_some_and(|v| v.len() > MAX_ID_BYTES) {
            return Err(BuildError::TooLarge(format!(
                "{field} is longer than {MAX_ID_BYTES} bytes"
            )));
        }
    }
    let rules = at.version.rules();
    let is_create = template.kind == "m.room.create";
    let mut pdu = Map::new();
    match at.room_id {
        Some(room_id) => {
            pdu.insert("room_id".into(), json!(room_id));
        }
        None if is_create && at.version.room_id_from_create_event() => {}
        None => {
            return Err(BuildError::Invalid(
                "room_id is required for this event".into(),
            ))
        }
    }
    pdu.insert("type".into(), json!(template.kind));
    if let Some(state_key) = &template.state_key {
        pdu.insert("state_key".into(), json!(state_key));
    }
    pdu.insert("sender".into(), json!(at.sender));
    pdu.insert("origin_server_ts".into(), json!(at.origin_server_ts));
    if at.version.event_id_in_pdu() {
        pdu.insert(
            "event_id".into(),
            json!(server_event_id(at.server_name.as_str())),
        );
    }
    pdu.insert("prev_events".into(), refs_json(at.version, &at.prev_events));
    pdu.insert("auth_events".into(), refs_json(at.version, &at.auth_events));
    pdu.insert("depth".into(), json!(at.depth));
    // Before v11, redactions name their target at the top level as well as in content.
    if template.kind == "m.room.redaction" && !rules.redaction.content_field_redacts {
        if let Some(redacts) = template.content.get("redacts") {
            pdu.insert("redacts".into(), redacts.clone());
        }
    }
    pdu.insert("content".into(), template.content);

    // Checked before hashing too: ruma refuses to hash an oversized event with an error that
    // would otherwise read as bad content rather than too large.
    let unsigned_size = serde_json::to_string(&pdu)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if unsigned_size > MAX_PDU_BYTES {
        return Err(BuildError::TooLarge(format!(
            "the event is over {MAX_PDU_BYTES} bytes"
        )));
    }
    let signed = hash_and_sign(at.server_name.as_str(), at.key, Value::Object(pdu), &rules)
        .map_err(|e| BuildError::BadContent(e.to_string()))?;
    let size = ruma::CanonicalJsonValue::Object(signed.clone())
        .to_string()
        .len();
    if size > MAX_PDU_BYTES {
        return Err(BuildError::TooLarge(format!(
            "the event is {size} bytes; the limit is {MAX_PDU_BYTES}"
        )));
    }
    Pdu::from_json(signed, at.version).map_err(|e| BuildError::Invalid(e.to_string()))
}

/// A new event id of this server for room versions 1 and 2, where the sender names events:
/// `$` plus 20 random characters, then our server name (unique without any coordination).
pub fn server_event_id(server_name: &str) -> String {
    format!(
        "${}:{server_name}",
        crate::accounts::tokens::random_string(crate::accounts::tokens::TOKEN_ALPHABET, 20)
    )
}
