//! Server-side key backup (`room_keys`): the shape of uploaded session keys. Which of two keys
//! for one session is kept (the spec's replacement rule) is decided in the single SQL upsert
//! that stores them (`storage::e2ee_backup`), so concurrent uploads cannot undo each other;
//! `keeps_new` states the same rule for the tests and for readers.

use serde::Deserialize;
use serde_json::Value;

/// One session's backed-up key (`KeyBackupData`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct KeyBackupData {
    pub first_message_index: u64,
    pub forwarded_count: u64,
    pub is_verified: bool,
    /// Encrypted by the client with the backup's public key; opaque to the server.
    pub session_data: Value,
}

/// The spec's rule: a verified key beats an unverified one; then the lower first message index
/// wins (it decrypts more history); then the lower forwarded count. On a tie the stored key stays.
pub fn keeps_new(old: &KeyBackupData, new: &KeyBackupData) -> bool {
    if old.is_verified != new.is_verified {
        return new.is_verified;
    }
    if old.first_message_index != new.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

/// One uploaded key with where it belongs.
#[derive(Debug)]
pub struct SessionKey {
    pub room_id: String,
    pub session_id: String,
    pub data: KeyBackupData,
}

/// Flattens `{rooms: {room: {sessions: {id: data}}}}`; the error names the offending session.
pub fn flatten_rooms(rooms: &serde_json::Map<String, Value>) -> Result<Vec<SessionKey>, String> {
    let mut out = Vec::new();
    for (room_id, room) in rooms {
        let sessions = room
            .get("sessions")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("rooms.{room_id}.sessions must be an object"))?;
        for (session_id, data) in sessions {
            out.push(session_key(room_id, session_id, data)?);
        }
    }
    Ok(out)
}

pub fn session_key(room_id: &str, session_id: &str, data: &Value) -> Result<SessionKey, String> {
    let data: KeyBackupData = serde_json::from_value(data.clone())
        .map_err(|e| format!("session {session_id} in {room_id}: {e}"))?;
    if !data.session_data.is_object() {
        return Err(format!(
            "session {session_id}: session_data must be an object"
        ));
    }
    Ok(SessionKey {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(verified: bool, index: u64, forwarded: u64) -> KeyBackupData {
        KeyBackupData {
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: json!({}),
        }
    }

    #[test]
    fn the_replacement_rule_prefers_verified_then_earlier_then_less_forwarded() {
        assert!(keeps_new(&key(false, 0, 0), &key(true, 9, 9)));
        assert!(!keeps_new(&key(true, 9, 9), &key(false, 0, 0)));
        assert!(keeps_new(&key(true, 5, 9), &key(true, 4, 9)));
        assert!(!keeps_new(&key(true, 4, 0), &key(true, 5, 0)));
        assert!(keeps_new(&key(true, 4, 2), &key(true, 4, 1)));
        assert!(!keeps_new(&key(true, 4, 1), &key(true, 4, 1)));
    }

    #[test]
    fn uploaded_rooms_flatten_and_bad_shapes_are_named() {
        let body = json!({"!r:x": {"sessions": {"s1": {"first_message_index": 0, "forwarded_count": 0,
            "is_verified": false, "session_data": {"ciphertext": "c"}}}}});
        let keys = flatten_rooms(body.as_object().unwrap()).unwrap();
        assert_eq!(
            (keys[0].room_id.as_str(), keys[0].session_id.as_str()),
            ("!r:x", "s1")
        );
        let bad = json!({"!r:x": {"sessions": {"s1": {"first_message_index": "zero"}}}});
        assert!(flatten_rooms(bad.as_object().unwrap())
            .unwrap_err()
            .contains("s1"));
    }
}
