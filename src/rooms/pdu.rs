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
    prev_events: Vec<OwnedEventId>,
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

impl Pdu {
    /// Parses a signed PDU and derives its event id (the reference hash, room versions 3+).
    /// Checks the format the room version requires, not signatures or auth: callers do that.
    pub fn from_json(json: CanonicalJsonObject, version: RoomVersion) -> Result<Self, PduError> {
        let rules = version.rules();
        ruma::state_res::check_pdu_format(&json, &rules.event_format).map_err(PduError)?;
        let text = CanonicalJsonValue::Object(json.clone()).to_string();
        let fields: PduFields = serde_json::from_str(&text).map_err(|e| PduError(e.to_string()))?;
        let hash = reference_hash(&json, &rules).map_err(|e| PduError(e.to_string()))?;
        let event_id = EventId::parse(format!("${hash}")).map_err(|e| PduError(e.to_string()))?;
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

    /// The PDU as sent over federation (no `event_id` field from room version 3 on).
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
        // ruma's auth rules read this only for room versions 1 and 2, which we never run.
        self.fields.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        // Only accepted events are ever held as `Pdu`s so far; rejected federated events
        // (issue 4) will need a flag here.
        false
    }
}
