//! Canonical JSON, JSON signing and event hashing, as the spec's appendices define them.
//!
//! Thin wrappers over ruma's implementations: the value here is one place that fixes how this
//! server calls them, and the spec's own test vectors pinning that behaviour.

pub mod event;

use ruma::signatures::{self, Ed25519KeyPair};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::Value;

#[derive(Debug)]
pub enum SigningError {
    /// The value is not a JSON object, or holds what canonical JSON forbids (floats, integers
    /// out of range).
    NotCanonical(String),
    Signing(String),
}

impl std::fmt::Display for SigningError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningError::NotCanonical(why) => write!(f, "not canonical JSON: {why}"),
            SigningError::Signing(why) => write!(f, "signing failed: {why}"),
        }
    }
}

/// Converts a JSON object to ruma's canonical form.
pub fn to_canonical_object(value: Value) -> Result<CanonicalJsonObject, SigningError> {
    match CanonicalJsonValue::try_from(value) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(SigningError::NotCanonical("not an object".into())),
        Err(e) => Err(SigningError::NotCanonical(e.to_string())),
    }
}

/// The canonical JSON encoding (sorted keys, no insignificant whitespace, UTF-8).
pub fn canonical_string(object: &CanonicalJsonObject) -> String {
    CanonicalJsonValue::Object(object.clone()).to_string()
}

/// Signs a JSON object as `entity` (a server name) and returns it with the signature added
/// under `signatures.<entity>.<key id>`. Existing signatures and `unsigned` are kept but not
/// signed over, as the signing algorithm requires.
pub fn sign_json(entity: &str, key: &Ed25519KeyPair, value: Value) -> Result<Value, SigningError> {
    let mut object = to_canonical_object(value)?;
    signatures::sign_json(entity, key, &mut object)
        .map_err(|e| SigningError::Signing(e.to_string()))?;
    Ok(CanonicalJsonValue::Object(object).into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use serde_json::json;

    /// The appendix's test key: seed below, server `domain`, key id `ed25519:1`.
    pub(crate) fn spec_key() -> SigningKey {
        SigningKey::parse_key_file("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap()
    }

    #[test]
    fn spec_vector_signing_an_empty_object() {
        let signed = sign_json("domain", spec_key().key_pair(), json!({})).unwrap();
        assert_eq!(
            signed,
            json!({"signatures": {"domain": {"ed25519:1":
                "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}})
        );
    }

    #[test]
    fn spec_vector_signing_an_object_with_data() {
        let signed = sign_json(
            "domain",
            spec_key().key_pair(),
            json!({"one": 1, "two": "Two"}),
        )
        .unwrap();
        assert_eq!(
            signed,
            json!({"one": 1, "two": "Two", "signatures": {"domain": {"ed25519:1":
                "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}}})
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let object =
            to_canonical_object(json!({"b": 2, "a": {"d": [1, "日本"], "c": null}})).unwrap();
        assert_eq!(
            canonical_string(&object),
            r#"{"a":{"c":null,"d":[1,"日本"]},"b":2}"#
        );
    }

    #[test]
    fn floats_and_huge_integers_are_not_canonical() {
        assert!(to_canonical_object(json!({"a": 1.5})).is_err());
        assert!(to_canonical_object(json!({"a": 9007199254740992u64})).is_err());
        assert!(to_canonical_object(json!([1])).is_err());
    }
}
