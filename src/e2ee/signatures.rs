//! Signatures on keys: verifying an ed25519 signature a user made on a JSON object (the
//! spec's "Signing JSON"), and merging stored signatures back into the object they sign.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use ruma::serde::base64::{Base64, Standard};
use serde_json::Value;

use crate::signing::{canonical_string, to_canonical_object};

/// True if `object.signatures[signer][key_id]` is a valid signature by `public_key` (unpadded
/// base64) over the object without its `signatures` and `unsigned`.
pub fn verify(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object
        .pointer(&format!(
            "/signatures/{}/{}",
            escape(signer),
            escape(key_id)
        ))
        .and_then(Value::as_str)
    else {
        return false;
    };
    verify_detached(object, signature, public_key)
}

/// Like `verify`, with the signature given separately.
pub fn verify_detached(object: &Value, signature: &str, public_key: &str) -> bool {
    let (Ok(key), Ok(signature)) = (
        Base64::<Standard>::parse(public_key),
        Base64::<Standard>::parse(signature),
    ) else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (
        <[u8; 32]>::try_from(key.as_bytes()),
        Signature::from_slice(signature.as_bytes()),
    ) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let mut unsigned = object.clone();
    if let Some(map) = unsigned.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    let Ok(canonical) = to_canonical_object(unsigned) else {
        return false;
    };
    key.verify(canonical_string(&canonical).as_bytes(), &signature)
        .is_ok()
}

/// JSON pointer escaping (`~` and `/` may occur in user ids).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Adds a stored signature to a signed object, as `signatures[signer][key_id]`.
pub fn add_signature(object: &mut Value, signer: &str, key_id: &str, signature: &str) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let signatures = map
        .entry("signatures")
        .or_insert_with(|| Value::Object(Default::default()));
    if !signatures.is_object() {
        *signatures = Value::Object(Default::default());
    }
    let by_signer = signatures
        .as_object_mut()
        .expect("made an object above")
        .entry(signer)
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(by_signer) = by_signer.as_object_mut() {
        by_signer.insert(key_id.to_owned(), Value::String(signature.to_owned()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    /// Signs `object` as a client would: returns it with the signature added.
    pub(crate) fn sign(object: Value, key: &SigningKey, signer: &str, key_id: &str) -> Value {
        let mut bare = object.clone();
        let map = bare.as_object_mut().unwrap();
        map.remove("signatures");
        map.remove("unsigned");
        let canonical = canonical_string(&to_canonical_object(bare).unwrap());
        let signature = Base64::<Standard>::new(key.sign(canonical.as_bytes()).to_bytes().to_vec());
        let mut signed = object;
        add_signature(&mut signed, signer, key_id, &signature.encode());
        signed
    }

    pub(crate) fn public(key: &SigningKey) -> String {
        Base64::<Standard>::new(key.verifying_key().to_bytes().to_vec()).encode()
    }

    #[test]
    fn a_signature_verifies_and_a_tampered_object_does_not() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign(
            json!({"a": 1, "unsigned": {"x": 1}}),
            &key,
            "@u:x",
            "ed25519:K",
        );
        assert!(verify(&signed, "@u:x", "ed25519:K", &public(&key)));
        let mut tampered = signed.clone();
        tampered["a"] = json!(2);
        assert!(!verify(&tampered, "@u:x", "ed25519:K", &public(&key)));
        assert!(!verify(&signed, "@u:x", "ed25519:OTHER", &public(&key)));
        assert!(!verify(&signed, "@u:x", "ed25519:K", "not base64!"));
    }
}
