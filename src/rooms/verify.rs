//! Signatures and content hashes of PDUs from other servers (spec: "Validating hashes and
//! signatures on received events"): the signatures of every server that must have signed it
//! are checked, and an event whose content hash does not match is kept only in redacted form.

use ruma::canonical_json::redact;
use ruma::signatures::{
    required_server_signatures_to_verify_event, verify_event, PublicKeyMap, Verified,
};
use ruma::{CanonicalJsonObject, OwnedServerName};

use super::RoomVersion;

/// Which servers' keys are needed to check the event, and the key ids each signed with.
pub fn required_keys(
    object: &CanonicalJsonObject,
    version: RoomVersion,
) -> Result<Vec<(OwnedServerName, Vec<String>)>, String> {
    let servers = required_server_signatures_to_verify_event(object, &version.rules().signatures)
        .map_err(|e| e.to_string())?;
    let signatures = match object.get("signatures") {
        Some(ruma::CanonicalJsonValue::Object(s)) => s,
        _ => return Err("the event has no signatures".into()),
    };
    Ok(servers
        .into_iter()
        .map(|server| {
            let ids = match signatures.get(server.as_str()) {
                Some(ruma::CanonicalJsonValue::Object(by_key)) => by_key
                    .keys()
                    .filter(|id| id.starts_with("ed25519:"))
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            (server, ids)
        })
        .collect())
}

/// The event as it may be accepted: unchanged when signatures and hash check out, redacted when
/// only the hash fails (the content was altered, or the event was redacted on the way).
pub fn verified_form(
    object: CanonicalJsonObject,
    version: RoomVersion,
    keys: &PublicKeyMap,
) -> Result<CanonicalJsonObject, String> {
    let rules = version.rules();
    match verify_event(keys, &object, &rules).map_err(|e| e.to_string())? {
        Verified::All => Ok(object),
        Verified::Signatures => redact(object, &rules.redaction, None).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::rooms::builder::{build_event, EventTemplate, Placement};
    use ruma::signatures::PublicKeySet;
    use ruma::{ServerName, UserId};
    use serde_json::json;

    fn signed_message(key: &SigningKey) -> CanonicalJsonObject {
        let sender = UserId::parse("@bob:remote.example").unwrap();
        let room_id = ruma::RoomId::parse("!room:remote.example").unwrap();
        let pdu = build_event(
            EventTemplate::message("m.room.message", json!({"body": "hi", "msgtype": "m.text"})),
            Placement {
                version: RoomVersion::V11,
                room_id: Some(&room_id),
                sender: &sender,
                prev_events: vec![],
                auth_events: vec![],
                depth: 1,
                origin_server_ts: 1,
                server_name: <&ServerName>::try_from("remote.example").unwrap(),
                key,
            },
        )
        .unwrap();
        pdu.json().clone()
    }

    fn keys_of(key: &SigningKey) -> PublicKeyMap {
        let mut set = PublicKeySet::new();
        set.insert(
            key.key_id(),
            ruma::serde::Base64::parse(key.public_key_base64()).unwrap(),
        );
        let mut map = PublicKeyMap::new();
        map.insert("remote.example".into(), set);
        map
    }

    #[test]
    fn a_good_event_passes_and_needs_its_senders_key() {
        let key = SigningKey::generate();
        let object = signed_message(&key);
        let needed = required_keys(&object, RoomVersion::V11).unwrap();
        assert_eq!(
            needed,
            vec![("remote.example".try_into().unwrap(), vec![key.key_id()])]
        );
        assert_eq!(
            verified_form(object.clone(), RoomVersion::V11, &keys_of(&key)).unwrap(),
            object
        );
    }

    #[test]
    fn altered_content_is_redacted_and_a_bad_signature_refused() {
        let key = SigningKey::generate();
        let mut object = signed_message(&key);
        object.insert(
            "content".into(),
            serde_json::from_value(json!({"body": "changed", "msgtype": "m.text"})).unwrap(),
        );
        let accepted = verified_form(object, RoomVersion::V11, &keys_of(&key)).unwrap();
        assert_eq!(
            accepted["content"],
            ruma::CanonicalJsonValue::Object(Default::default())
        );
        let other = SigningKey::generate();
        assert!(verified_form(signed_message(&key), RoomVersion::V11, &keys_of(&other)).is_err());
    }
}
