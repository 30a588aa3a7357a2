//! The key server document (`GET /_matrix/key/v2/server`): this server's current verify key, the
//! keys it used before, how long the answer may be cached, all signed with the current key.

use serde_json::{json, Map, Value};

use super::SigningKey;
use crate::signing::{sign_json, SigningError};

/// How long other servers may cache our keys. Synapse publishes one day; a shorter time
/// means more key fetches, a longer one a slower reaction to a key rotation.
pub const KEY_VALIDITY_MS: u64 = 24 * 60 * 60 * 1000;

/// A key this server signed with before and no longer uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldVerifyKey {
    pub key_id: String,
    pub public_key_base64: String,
    /// When the key stopped being used, in ms since the epoch.
    pub expired_ts: u64,
}

pub fn server_keys_document(
    server_name: &str,
    current: &SigningKey,
    old_keys: &[OldVerifyKey],
    now_ms: u64,
) -> Result<Value, SigningError> {
    let old: Map<String, Value> = old_keys
        .iter()
        .filter(|old| old.key_id != current.key_id())
        .map(|old| {
            (
                old.key_id.clone(),
                json!({ "key": old.public_key_base64, "expired_ts": old.expired_ts }),
            )
        })
        .collect();
    let document = json!({
        "server_name": server_name,
        "verify_keys": { current.key_id(): { "key": current.public_key_base64() } },
        "old_verify_keys": old,
        "valid_until_ts": now_ms + KEY_VALIDITY_MS,
    });
    sign_json(server_name, current.key_pair(), document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::tests::spec_key;
    use ruma::serde::Base64;
    use ruma::signatures::{verify_json, PublicKeyMap, PublicKeySet};

    #[test]
    fn document_is_self_signed_and_lists_old_keys() {
        let key = spec_key();
        let old = OldVerifyKey {
            key_id: "ed25519:old".into(),
            public_key_base64: "AAAA".into(),
            expired_ts: 5,
        };
        let doc = server_keys_document("example.org", &key, &[old], 1_000).unwrap();

        assert_eq!(doc["server_name"], "example.org");
        assert_eq!(doc["valid_until_ts"], 1_000 + KEY_VALIDITY_MS);
        assert_eq!(
            doc["verify_keys"]["ed25519:1"]["key"],
            key.public_key_base64()
        );
        assert_eq!(
            doc["old_verify_keys"],
            json!({"ed25519:old": {"key": "AAAA", "expired_ts": 5}})
        );

        // Verify with ruma's verifier, from the published public key alone.
        let mut keys = PublicKeySet::new();
        keys.insert(
            "ed25519:1".into(),
            Base64::parse(key.public_key_base64()).unwrap(),
        );
        let mut map = PublicKeyMap::new();
        map.insert("example.org".into(), keys);
        let object = crate::signing::to_canonical_object(doc.clone()).unwrap();
        verify_json(&map, &object).expect("self-signature verifies");

        // Tampering breaks it.
        let mut tampered = object;
        tampered.insert(
            "valid_until_ts".into(),
            ruma::CanonicalJsonValue::Integer(1u32.into()),
        );
        assert!(verify_json(&map, &tampered).is_err());
    }
}
