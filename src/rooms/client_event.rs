//! Turns a stored PDU into the client-server event format: the server-only fields dropped,
//! redactions applied per the room version, and `unsigned` filled for this reader.

use ruma::canonical_json::redact;
use ruma::CanonicalJsonObject;
use serde_json::{json, Map, Value};

use super::RoomVersion;

/// What is known about one stored event when it is served.
pub struct StoredEvent<'a> {
    pub pdu: &'a str,
    pub event_id: &'a str,
    pub room_id: &'a str,
    /// The PDU of the redaction that applies to this event, if any.
    pub redaction: Option<&'a str>,
    /// The sender's transaction id, when the reader is the device that sent it.
    pub transaction_id: Option<&'a str>,
}

const CLIENT_FIELDS: [&str; 7] = [
    "type",
    "content",
    "sender",
    "state_key",
    "origin_server_ts",
    "redacts",
    "room_id",
];

pub fn client_event(event: &StoredEvent<'_>, version: RoomVersion, now_ms: u64) -> Value {
    let Ok(mut object) = serde_json::from_str::<CanonicalJsonObject>(event.pdu) else {
        return Value::Null;
    };
    let mut unsigned = Map::new();
    if let Some(redaction) = event.redaction {
        let because = serde_json::from_str::<CanonicalJsonObject>(redaction).ok();
        if let Ok(redacted) = redact(object.clone(), &version.rules().redaction, None) {
            object = redacted;
        }
        if let Some(because) = because {
            let because_id = super::Pdu::from_json(because.clone(), version)
                .map(|p| p.event_id().to_string())
                .unwrap_or_default();
            let mut because = pdu_to_client(because);
            because.insert("event_id".into(), json!(because_id));
            because.insert("room_id".into(), json!(event.room_id));
            unsigned.insert("redacted_because".into(), Value::Object(because));
        }
    }
    let ts = object
        .get("origin_server_ts")
        .and_then(|v| match v {
            ruma::CanonicalJsonValue::Integer(i) => Some(i64::from(*i)),
            _ => None,
        })
        .unwrap_or(0);
    unsigned.insert("age".into(), json!((now_ms as i64 - ts).max(0)));
    if let Some(txn) = event.transaction_id {
        unsigned.insert("transaction_id".into(), json!(txn));
    }
    let mut out = pdu_to_client(object);
    // From v11 the target lives in content; clients still read the top-level field, so it is
    // served in both places, as the spec's compatibility note suggests.
    if out.get("type").and_then(Value::as_str) == Some("m.room.redaction")
        && !out.contains_key("redacts")
    {
        if let Some(target) = out.get("content").and_then(|c| c.get("redacts")).cloned() {
            out.insert("redacts".into(), target);
        }
    }
    out.insert("event_id".into(), json!(event.event_id));
    out.insert("room_id".into(), json!(event.room_id));
    out.insert("unsigned".into(), Value::Object(unsigned));
    Value::Object(out)
}

fn pdu_to_client(object: CanonicalJsonObject) -> Map<String, Value> {
    object
        .into_iter()
        .filter(|(k, _)| CLIENT_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect()
}

/// State an invitee sees before joining (spec: stripped state), sent with invites.
pub const INVITE_STATE: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The stripped form of a state event that invitees see (`invite_state`).
pub fn stripped_state(pdu: &str) -> Value {
    let Ok(object) = serde_json::from_str::<Map<String, Value>>(pdu) else {
        return Value::Null;
    };
    let mut out = Map::new();
    for field in ["type", "state_key", "content", "sender"] {
        if let Some(v) = object.get(field) {
            out.insert(field.into(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDU: &str = r#"{"auth_events":[],"content":{"body":"hi","msgtype":"m.text"},"depth":3,"hashes":{"sha256":"x"},"origin_server_ts":1000,"prev_events":[],"room_id":"!r:x","sender":"@a:x","signatures":{},"type":"m.room.message"}"#;
    const REDACTION: &str = r#"{"auth_events":[],"content":{"redacts":"$e"},"depth":4,"hashes":{"sha256":"y"},"origin_server_ts":2000,"prev_events":[],"room_id":"!r:x","sender":"@a:x","signatures":{},"type":"m.room.redaction"}"#;

    fn stored<'a>(redaction: Option<&'a str>, txn: Option<&'a str>) -> StoredEvent<'a> {
        StoredEvent {
            pdu: PDU,
            event_id: "$e",
            room_id: "!r:x",
            redaction,
            transaction_id: txn,
        }
    }

    #[test]
    fn server_fields_are_dropped_and_unsigned_is_filled() {
        let e = client_event(&stored(None, Some("t1")), RoomVersion::V11, 1500);
        assert_eq!(e["event_id"], "$e");
        assert_eq!(e["content"]["body"], "hi");
        assert!(
            e.get("hashes").is_none() && e.get("depth").is_none() && e.get("prev_events").is_none()
        );
        assert_eq!(e["unsigned"]["age"], 500);
        assert_eq!(e["unsigned"]["transaction_id"], "t1");
    }

    #[test]
    fn redacted_events_lose_their_content_and_say_why() {
        let e = client_event(&stored(Some(REDACTION), None), RoomVersion::V11, 3000);
        assert_eq!(e["content"], json!({}));
        assert_eq!(
            e["unsigned"]["redacted_because"]["type"],
            "m.room.redaction"
        );
        assert_eq!(
            e["unsigned"]["redacted_because"]["content"]["redacts"],
            "$e"
        );
    }

    #[test]
    fn v11_redactions_name_their_target_at_the_top_level_too() {
        let e = client_event(
            &StoredEvent {
                pdu: REDACTION,
                event_id: "$r",
                room_id: "!r:x",
                redaction: None,
                transaction_id: None,
            },
            RoomVersion::V11,
            3000,
        );
        assert_eq!(e["redacts"], "$e");
        assert_eq!(e["content"]["redacts"], "$e");
    }
}
