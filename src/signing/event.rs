//! Hashing and signing of PDUs: the content hash, the signature over the redacted event, and the
//! reference hash that is the event id from room version 3 on. Which fields survive redaction
//! depends on the room version, so every function takes that version's rules.

use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::Value;

use super::{to_canonical_object, SigningError};
use crate::keys::SigningKey;

/// Adds `hashes.sha256` (over the event without `unsigned`, `signatures` and `hashes`) and this
/// server's signature (over the redacted event) to a PDU.
pub fn hash_and_sign(
    server_name: &str,
    key: &SigningKey,
    event: Value,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject, SigningError> {
    let mut object = to_canonical_object(event)?;
    signatures::hash_and_sign_event(server_name, key.key_pair(), &mut object, &rules.redaction)
        .map_err(|e| SigningError::Signing(e.to_string()))?;
    Ok(object)
}

/// The reference hash of a PDU, which is its event id (without the `$`) in room versions 3+.
pub fn reference_hash(
    event: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<String, SigningError> {
    signatures::reference_hash(event, rules).map_err(|e| SigningError::Signing(e.to_string()))
}

/// Converts back to plain JSON for storage and responses.
pub fn into_json(object: CanonicalJsonObject) -> Value {
    CanonicalJsonValue::Object(object).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::tests::spec_key;
    use serde_json::json;

    #[test]
    fn spec_vector_minimal_event() {
        let event = json!({
            "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
            "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
            "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
            "unsigned": {"age_ts": 1000000}
        });
        let signed =
            into_json(hash_and_sign("domain", &spec_key(), event, &RoomVersionRules::V1).unwrap());
        assert_eq!(
            signed,
            json!({
                "auth_events": [], "content": {}, "depth": 3,
                "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
                "origin": "domain", "origin_server_ts": 1000000, "prev_events": [],
                "room_id": "!x:domain", "sender": "@a:domain",
                "signatures": {"domain": {"ed25519:1":
                    "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
                "type": "X", "unsigned": {"age_ts": 1000000}
            })
        );
    }

    #[test]
    fn spec_vector_redactable_event() {
        let event = json!({
            "content": {"body": "Here is the message content"}, "event_id": "$0:domain",
            "origin": "domain", "origin_server_ts": 1000000, "type": "m.room.message",
            "room_id": "!r:domain", "sender": "@u:domain", "signatures": {},
            "unsigned": {"age_ts": 1000000}
        });
        let signed =
            into_json(hash_and_sign("domain", &spec_key(), event, &RoomVersionRules::V1).unwrap());
        assert_eq!(
            signed["hashes"],
            json!({"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"})
        );
        assert_eq!(
            signed["signatures"],
            json!({"domain": {"ed25519:1":
                "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}})
        );
        // The content is signed only through its hash: a redacted copy keeps a valid signature.
        assert_eq!(
            signed["content"],
            json!({"body": "Here is the message content"})
        );
    }

    #[test]
    fn reference_hash_ignores_signatures_and_unsigned_and_is_url_safe_from_v4() {
        let event = json!({
            "room_id": "!x:domain", "sender": "@a:domain", "origin_server_ts": 1000000,
            "type": "m.room.message", "content": {"body": "hello"}, "prev_events": [],
            "auth_events": [], "depth": 3
        });
        let signed = hash_and_sign("domain", &spec_key(), event, &RoomVersionRules::V11).unwrap();
        let id = reference_hash(&signed, &RoomVersionRules::V11).unwrap();
        assert_eq!(id.len(), 43, "unpadded base64 of a sha256");
        assert!(!id.contains(['+', '/', '=']));

        let mut resigned = signed.clone();
        resigned.insert(
            "unsigned".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        resigned.remove("signatures");
        assert_eq!(
            reference_hash(&resigned, &RoomVersionRules::V11).unwrap(),
            id
        );

        let mut edited = signed;
        edited.insert("depth".into(), CanonicalJsonValue::Integer(4u32.into()));
        assert_ne!(reference_hash(&edited, &RoomVersionRules::V11).unwrap(), id);
    }
}
