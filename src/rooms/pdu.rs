//! A PDU as the room engine handles it: the signed JSON exactly as it travels between servers,
//! plus the fields the auth rules read, parsed once. Implements ruma's `state_res::Event`, so the
//! same value goes through ruma's auth checks and state resolution.

use ruma::events::TimelineEventType;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;

use super::RoomVersion;
use crate::signing::event::reference_hash;

#[derive(Clone, Debug)]
pub struct Pdu {
    event_id: OwnedEventId,
    fields: PduFields,
    version: RoomVersion,
    json: CanonicalJsonObject,
}

/// The fields the engine reads. Unknown fields stay in `json` untouched: they are covered by the
/// hashes and signatures and must be passed on byte-for-byte.
#[derive(Clone, Debug, Deserialize)]
struct PduFields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    #[serde(deserialize_with = "event_refs")]
    prev_events: Vec<OwnedEventId>,
    #[serde(deserialize_with = "event_refs")]
    auth_events: Vec<OwnedEventId>,
    depth: UInt,
    redacts: Option<OwnedEventId>,
}

#[derive(Debug)]
pub struct PduError(pub String);

impl std::fmt::Display for PduError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid PDU: {}", self.0)
    }
}

/// Longest `type` and `state_key` of rooms before v11, in codepoints (see `check_format`).
const LEGACY_MAX_CODEPOINTS: usize = 255;

/// The event format and size limits (spec, "Size limits": 255 bytes per string field, 64 KiB
/// per PDU), with one allowance for rooms of versions 1 to 10: a `type` or `state_key` of at
/// most 255 codepoints passes even when it is longer in bytes. Synapse has always let those
/// through in those versions (it counts bytes from v11 on), so such events are part of existing
/// rooms' history and state; refusing them would split our view of those rooms from every
/// other server's. The ids (`sender`, `room_id`, `event_id`) are held to bytes regardless.
fn check_format(json: &CanonicalJsonObject, version: RoomVersion) -> Result<(), PduError> {
    let rules = version.rules();
    let error = match ruma::state_res::check_pdu_format(json, &rules.event_format) {
        Ok(()) => return Ok(()),
        Err(e) => PduError(e),
    };
    if version.strict_byte_limits() {
        return Err(error);
    }
    // The PDU's own size is checked on the PDU as it is, not on the stand-in below.
    if CanonicalJsonValue::Object(json.clone()).to_string().len() > 65_535 {
        return Err(error);
    }
    let mut stand_in = json.clone();
    let mut replaced = false;
    for field in ["type", "state_key"] {
        if let Some(CanonicalJsonValue::String(text)) = stand_in.get_mut(field) {
            let codepoints = text.chars().count();
            if text.len() > LEGACY_MAX_CODEPOINTS && codepoints <= LEGACY_MAX_CODEPOINTS {
                *text = "x".repeat(codepoints);
                replaced = true;
            }
        }
    }
    if !replaced {
        return Err(error);
    }
    ruma::state_res::check_pdu_format(&stand_in, &rules.event_format).map_err(PduError)
}

impl Pdu {
    /// Parses a signed PDU and derives its event id (the reference hash, room versions 3+).
    /// Checks the format the room version requires, not signatures or auth: callers do that.
    pub fn from_json(json: CanonicalJsonObject, version: RoomVersion) -> Result<Self, PduError> {
        let rules = version.rules();
        check_format(&json, version)?;
        let text = CanonicalJsonValue::Object(json.clone()).to_string();
        let fields: PduFields = serde_json::from_str(&text).map_err(|e| PduError(e.to_string()))?;
        let event_id = if version.event_id_in_pdu() {
            // Versions 1 and 2: the id the sending server gave it, `$opaque:server`; the
            // signature check requires that server's signature (`rooms/verify.rs`).
            match json.get("event_id") {
                Some(CanonicalJsonValue::String(id)) => {
                    let id = EventId::parse(id.as_str()).map_err(|e| PduError(e.to_string()))?;
                    if id.server_name().is_none() {
                        return Err(PduError("event_id has no server name".into()));
                    }
                    id
                }
                _ => return Err(PduError("event_id is missing".into())),
            }
        } else {
            let hash = reference_hash(&json, &rules).map_err(|e| PduError(e.to_string()))?;
            EventId::parse(format!("${hash}")).map_err(|e| PduError(e.to_string()))?
        };
        Ok(Self {
            event_id,
            fields,
            version,
            json,
        })
    }

    pub fn event_id(&self) -> &EventId {
        &self.event_id
    }

    /// The room this event belongs to. For a v12 create event, which has no `room_id`, that is
    /// the id derived from its own event id.
    pub fn room_id(&self) -> OwnedRoomId {
        match &self.fields.room_id {
            Some(room_id) => room_id.clone(),
            None => RoomId::parse(format!("!{}", &self.event_id.as_str()[1..]))
                .expect("an event id's hash is a valid room id localpart"),
        }
    }

    pub fn sender(&self) -> &UserId {
        &self.fields.sender
    }

    pub fn kind(&self) -> &TimelineEventType {
        &self.fields.kind
    }

    pub fn state_key(&self) -> Option<&str> {
        self.fields.state_key.as_deref()
    }

    pub fn content(&self) -> &RawJsonValue {
        &self.fields.content
    }

    /// `content.membership` (of an `m.room.member` event; `None` when absent or not a string).
    pub fn membership(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(self.content().get())
            .ok()?
            .get("membership")?
            .as_str()
            .map(str::to_owned)
    }

    pub fn depth(&self) -> u64 {
        self.fields.depth.into()
    }

    pub fn prev_events(&self) -> &[OwnedEventId] {
        &self.fields.prev_events
    }

    pub fn auth_events(&self) -> &[OwnedEventId] {
        &self.fields.auth_events
    }

    pub fn version(&self) -> RoomVersion {
        self.version
    }

    /// The PDU as sent over federation (an `event_id` field only in room versions 1 and 2).
    pub fn json(&self) -> &CanonicalJsonObject {
        &self.json
    }

    /// The event this one redacts: `content.redacts` from v11, the top-level field before.
    pub fn redacts(&self) -> Option<OwnedEventId> {
        if self.version.rules().redaction.content_field_redacts {
            #[derive(Deserialize)]
            struct Content {
                redacts: Option<OwnedEventId>,
            }
            serde_json::from_str::<Content>(self.fields.content.get())
                .ok()?
                .redacts
        } else {
            self.fields.redacts.clone()
        }
    }
}

/// The ids an event cites in `prev_events` or `auth_events`: bare ids from room version 3 on,
/// `[event_id, {"sha256": ..}]` pairs in versions 1 and 2 (the hashes are not checked by anyone
/// and only the id is kept; the PDU's own bytes are passed on untouched).
fn event_refs<'de, D>(deserializer: D) -> Result<Vec<OwnedEventId>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ref {
        Id(OwnedEventId),
        Pair(OwnedEventId, serde::de::IgnoredAny),
    }
    let refs = Vec::<Ref>::deserialize(deserializer)?;
    Ok(refs
        .into_iter()
        .map(|r| match r {
            Ref::Id(id) | Ref::Pair(id, _) => id,
        })
        .collect())
}

/// The event ids of a raw PDU's `prev_events` or `auth_events`, in either format (see
/// `event_refs`): for code that reads stored or received JSON without parsing a whole `Pdu`.
pub fn ref_ids<'a>(pdu: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    pdu[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().or_else(|| r.get(0)?.as_str()))
        .collect()
}

/// How this server cites events in a PDU it makes: bare ids, or in versions 1 and 2 pairs with
/// an empty hash object (the hashes are informational; servers read only the id, and the
/// reference hash of a cited message is not at hand where prev_events are chosen).
pub fn refs_json(version: RoomVersion, ids: &[OwnedEventId]) -> serde_json::Value {
    if version.refs_with_hashes() {
        serde_json::Value::Array(ids.iter().map(|id| serde_json::json!([id, {}])).collect())
    } else {
        serde_json::json!(ids)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.fields.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.fields.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.fields.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.fields.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.fields.content
    }

    fn state_key(&self) -> Option<&str> {
        self.fields.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.fields.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.fields.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        // ruma's auth rules read this only for room versions 1 and 2, where it is top-level.
        self.fields.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        // Only accepted events are ever held as `Pdu`s so far; rejected federated events
        // (issue 4) will need a flag here.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cited_ids_are_read_in_both_formats() {
        let v1 = serde_json::json!({ "prev_events": [["$a:x", { "sha256": "h" }], ["$b:y", {}]] });
        assert_eq!(ref_ids(&v1, "prev_events"), ["$a:x", "$b:y"]);
        let v3 = serde_json::json!({ "auth_events": ["$c", "$d"] });
        assert_eq!(ref_ids(&v3, "auth_events"), ["$c", "$d"]);
        assert!(ref_ids(&v3, "prev_events").is_empty());

        let ids = [EventId::parse("$a:x").unwrap()];
        assert_eq!(
            refs_json(RoomVersion::V2, &ids),
            serde_json::json!([["$a:x", {}]])
        );
        assert_eq!(
            refs_json(RoomVersion::V3, &ids),
            serde_json::json!(["$a:x"])
        );
    }

    fn with_state_key(version: RoomVersion, state_key: &str) -> Result<Pdu, PduError> {
        let json = serde_json::json!({
            "room_id": "!room:remote.example", "sender": "@charlie:remote.example",
            "type": "my.room.breaker", "state_key": state_key, "content": {},
            "prev_events": ["$prev"], "auth_events": ["$auth"], "depth": 5,
            "origin_server_ts": 1, "hashes": { "sha256": "x" }, "signatures": {},
        });
        Pdu::from_json(crate::signing::to_canonical_object(json).unwrap(), version)
    }

    #[test]
    fn before_v11_a_state_key_is_limited_in_codepoints_from_v11_in_bytes() {
        let wide = "\u{1F4A5}".repeat(70); // 280 bytes, 70 codepoints
        let pdu = with_state_key(RoomVersion::V10, &wide).unwrap();
        assert_eq!(pdu.state_key(), Some(wide.as_str()), "kept as it was sent");
        assert!(with_state_key(RoomVersion::V11, &wide).is_err());
        assert!(with_state_key(RoomVersion::V12, &wide).is_err());
        // 256 codepoints is too long in every version.
        assert!(with_state_key(RoomVersion::V10, &"\u{e9}".repeat(256)).is_err());
        assert!(with_state_key(RoomVersion::V10, &"a".repeat(256)).is_err());
        assert!(with_state_key(RoomVersion::V10, &"a".repeat(255)).is_ok());
    }
}
