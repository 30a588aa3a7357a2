//! Cross-signing keys (`POST /keys/device_signing/upload`): a user's master key, and the
//! self-signing and user-signing keys the master key signs.

use serde_json::Value;

use super::signatures::verify;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    Master,
    SelfSigning,
    UserSigning,
}

impl KeyType {
    pub const ALL: [KeyType; 3] = [KeyType::Master, KeyType::SelfSigning, KeyType::UserSigning];

    /// The request field, the `usage` entry, and the `keys/query` field stem at once.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Master => "master",
            KeyType::SelfSigning => "self_signing",
            KeyType::UserSigning => "user_signing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The field `keys/upload` and `keys/query` use: `master_key`, `self_signing_key`, ...
    pub fn field(self) -> String {
        format!("{}_key", self.as_str())
    }
}

/// Checks a `CrossSigningKey` object and returns its public key (unpadded base64): it must be
/// the requester's, say what it is for, and hold exactly one ed25519 key.
pub fn check_key(key: &Value, kind: KeyType, user_id: &str) -> Result<String, String> {
    let name = kind.field();
    if key.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(format!("{name}.user_id does not match the requester"));
    }
    let usage_ok = key
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().any(|v| v.as_str() == Some(kind.as_str())));
    if !usage_ok {
        return Err(format!("{name}.usage must contain {}", kind.as_str()));
    }
    let keys = key
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{name}.keys must be an object"))?;
    let mut entries = keys.iter();
    match (entries.next(), entries.next()) {
        (Some((id, Value::String(public))), None) if id == &format!("ed25519:{public}") => {
            Ok(public.clone())
        }
        _ => Err(format!(
            "{name}.keys must hold exactly one key, ed25519:<public key>"
        )),
    }
}

/// A self-signing or user-signing key must carry the master key's signature; without it a
/// client could not trust it, and a stolen token could swap it unnoticed.
pub fn signed_by_master(key: &Value, user_id: &str, master_public: &str) -> bool {
    verify(
        key,
        user_id,
        &format!("ed25519:{master_public}"),
        master_public,
    )
}

/// The spec lets a user upload cross-signing keys without user-interactive auth when they have
/// no master key yet (first setup). Re-uploading exactly what is stored (a retried request)
/// changes nothing, so it needs none either.
pub fn upload_needs_auth(
    stored_master: Option<&Value>,
    uploaded: &[(KeyType, &Value)],
    stored: &[(KeyType, Value)],
) -> bool {
    if stored_master.is_none() {
        return false;
    }
    !uploaded.iter().all(|(kind, key)| {
        stored
            .iter()
            .any(|(stored_kind, stored_key)| stored_kind == kind && stored_key == *key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::signatures::tests::{public, sign};
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn cross_key(kind: &str, key: &SigningKey) -> Value {
        let p = public(key);
        json!({"user_id": "@a:x", "usage": [kind], "keys": {format!("ed25519:{p}"): p}})
    }

    #[test]
    fn a_cross_signing_key_names_its_user_usage_and_one_key() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let master = cross_key("master", &key);
        assert_eq!(
            check_key(&master, KeyType::Master, "@a:x").unwrap(),
            public(&key)
        );
        assert!(check_key(&master, KeyType::Master, "@b:x").is_err());
        assert!(check_key(&master, KeyType::SelfSigning, "@a:x").is_err());
        let mut two = master.clone();
        two["keys"]["ed25519:other"] = json!("other");
        assert!(check_key(&two, KeyType::Master, "@a:x").is_err());
    }

    #[test]
    fn sub_keys_must_be_signed_by_the_master_key() {
        let master = SigningKey::from_bytes(&[1; 32]);
        let ssk = SigningKey::from_bytes(&[2; 32]);
        let mp = public(&master);
        let signed = sign(
            cross_key("self_signing", &ssk),
            &master,
            "@a:x",
            &format!("ed25519:{mp}"),
        );
        assert!(signed_by_master(&signed, "@a:x", &mp));
        assert!(!signed_by_master(
            &cross_key("self_signing", &ssk),
            "@a:x",
            &mp
        ));
    }

    #[test]
    fn first_upload_and_identical_retries_need_no_auth() {
        let master = cross_key("master", &SigningKey::from_bytes(&[1; 32]));
        let other = cross_key("master", &SigningKey::from_bytes(&[3; 32]));
        assert!(!upload_needs_auth(None, &[(KeyType::Master, &master)], &[]));
        let stored = vec![(KeyType::Master, master.clone())];
        assert!(!upload_needs_auth(
            Some(&master),
            &[(KeyType::Master, &master)],
            &stored
        ));
        assert!(upload_needs_auth(
            Some(&master),
            &[(KeyType::Master, &other)],
            &stored
        ));
    }
}
