//! Other servers' key documents (their answers to `GET /_matrix/key/v2/server`), as a fetching
//! server and as a notary sees them (spec: server-server API, "Retrieving server keys"):
//! checking a document against its origin's own signature, and a notary's copy against the
//! notary's signature too; whether a cached document is fresh enough for a query's
//! `minimum_valid_until_ts`; and the query body a notary receives. Pure: the Worker fetches,
//! stores and signs.

use ruma::serde::Base64;
use ruma::signatures::{verify_json, PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonValue, OwnedServerName, ServerName};
use serde_json::{json, Value};

use crate::signing::to_canonical_object;

/// One key a verified document vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteKey {
    pub key_id: String,
    pub public_key: String,
    /// Until when the key may verify new signatures (`0` for an old key).
    pub valid_until_ts: u64,
    /// When an old key stopped being used; it verifies only what was signed before.
    pub expired_ts: Option<u64>,
}

/// A key document whose origin signature checked out, and the keys it lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedKeys {
    pub valid_until_ts: u64,
    pub keys: Vec<RemoteKey>,
}

/// Checks that `signer` signed `doc` with one of `keys`, ignoring other entities' signatures
/// (a notary's copy carries several; each is checked on its own).
pub fn signed_by(doc: &Value, signer: &str, keys: PublicKeySet) -> Result<(), String> {
    let mut object = to_canonical_object(doc.clone()).map_err(|e| e.to_string())?;
    let own = match object.get("signatures") {
        Some(CanonicalJsonValue::Object(all)) => all.get(signer).cloned(),
        _ => None,
    }
    .ok_or_else(|| format!("not signed by {signer}"))?;
    let mut only = ruma::CanonicalJsonObject::new();
    only.insert(signer.to_owned(), own);
    object.insert("signatures".into(), CanonicalJsonValue::Object(only));
    let mut map = PublicKeyMap::new();
    map.insert(signer.to_owned(), keys);
    verify_json(&map, &object).map_err(|e| format!("signature of {signer}: {e}"))
}

/// A key document as `server` itself serves it: the right `server_name`, and signed by one of
/// the current keys it lists.
pub fn verify_self_signed(doc: &Value, server: &ServerName) -> Result<VerifiedKeys, String> {
    if doc["server_name"].as_str() != Some(server.as_str()) {
        return Err(format!("the document is not about {server}"));
    }
    let valid_until_ts = doc["valid_until_ts"]
        .as_u64()
        .ok_or("the document has no valid_until_ts")?;
    let current = doc["verify_keys"]
        .as_object()
        .ok_or("the document has no verify_keys")?;
    let mut set = PublicKeySet::new();
    let mut keys = Vec::new();
    for (key_id, entry) in current {
        let text = entry["key"].as_str().ok_or("a verify key without key")?;
        let parsed = Base64::parse(text).map_err(|e| format!("{key_id}: {e}"))?;
        set.insert(key_id.clone(), parsed);
        keys.push(RemoteKey {
            key_id: key_id.clone(),
            public_key: text.to_owned(),
            valid_until_ts,
            expired_ts: None,
        });
    }
    signed_by(doc, server.as_str(), set)?;
    if let Some(old) = doc["old_verify_keys"].as_object() {
        keys.extend(old.iter().filter_map(|(key_id, entry)| {
            Some(RemoteKey {
                key_id: key_id.clone(),
                public_key: entry["key"].as_str()?.to_owned(),
                valid_until_ts: 0,
                expired_ts: entry["expired_ts"].as_u64(),
            })
        }));
    }
    Ok(VerifiedKeys {
        valid_until_ts,
        keys,
    })
}

/// A key document of `server` relayed by the notary `notary`: the origin's own signature, and
/// the notary's with `notary_keys` (its keys as we know them, not as the document says).
pub fn verify_notarised(
    doc: &Value,
    server: &ServerName,
    notary: &ServerName,
    notary_keys: PublicKeySet,
) -> Result<VerifiedKeys, String> {
    let verified = verify_self_signed(doc, server)?;
    signed_by(doc, notary.as_str(), notary_keys)?;
    Ok(verified)
}

/// Whether a cached document may answer a query that needs keys valid until `minimum` (spec:
/// the notary fetches again when its copy expires sooner).
pub fn fresh_enough(valid_until_ts: u64, minimum: u64) -> bool {
    valid_until_ts >= minimum
}

/// The servers a `POST /_matrix/key/v2/query` asks about, each with the latest
/// `minimum_valid_until_ts` asked of any of its keys (`now` when none is given: the spec's
/// default is the notary's current time).
pub fn query_criteria(body: &Value, now: u64) -> Result<Vec<(OwnedServerName, u64)>, String> {
    let servers = body["server_keys"]
        .as_object()
        .ok_or("server_keys must be an object")?;
    servers
        .iter()
        .map(|(name, key_ids)| {
            let server =
                ServerName::parse(name).map_err(|_| format!("{name} is not a server name"))?;
            let criteria = key_ids
                .as_object()
                .ok_or_else(|| format!("the keys of {name} must be an object"))?;
            let minimum = criteria
                .values()
                .filter_map(|c| c["minimum_valid_until_ts"].as_u64())
                .max()
                .unwrap_or(now);
            Ok((server, minimum))
        })
        .collect()
}

/// What we ask a notary for when `server`'s own key server fails us: one key by id when we
/// know which (a notary fetches a named key it lacks), else all it has.
pub fn notary_request(server: &ServerName, key_id: Option<&str>) -> Value {
    let keys = match key_id {
        Some(id) => json!({ id: {} }),
        None => json!({}),
    };
    json!({ "server_keys": { server.as_str(): keys } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::server_keys::server_keys_document;
    use crate::keys::SigningKey;
    use crate::signing::sign_json;

    fn name(s: &str) -> OwnedServerName {
        ServerName::parse(s).unwrap()
    }

    fn key_set(key: &SigningKey) -> PublicKeySet {
        let mut set = PublicKeySet::new();
        set.insert(
            key.key_id(),
            Base64::parse(key.public_key_base64()).unwrap(),
        );
        set
    }

    #[test]
    fn a_self_signed_document_lists_its_current_and_old_keys() {
        let key = SigningKey::generate();
        let old = crate::keys::server_keys::OldVerifyKey {
            key_id: "ed25519:old".into(),
            public_key_base64: "AAAA".into(),
            expired_ts: 7,
        };
        let doc = server_keys_document("origin.example", &key, &[old], 1_000).unwrap();
        let verified = verify_self_signed(&doc, &name("origin.example")).unwrap();
        assert_eq!(
            verified.valid_until_ts,
            doc["valid_until_ts"].as_u64().unwrap()
        );
        assert_eq!(verified.keys.len(), 2);
        assert_eq!(verified.keys[0].key_id, key.key_id());
        assert_eq!(verified.keys[1].expired_ts, Some(7));
        // Not about the server asked for, or altered: refused.
        assert!(verify_self_signed(&doc, &name("other.example")).is_err());
        let mut altered = doc.clone();
        altered["valid_until_ts"] = json!(u64::MAX >> 12);
        assert!(verify_self_signed(&altered, &name("origin.example")).is_err());
    }

    #[test]
    fn a_document_signed_by_a_key_it_does_not_list_is_refused() {
        let listed = SigningKey::generate();
        let doc = server_keys_document("origin.example", &listed, &[], 1_000).unwrap();
        let mut forged = doc.clone();
        forged.as_object_mut().unwrap().remove("signatures");
        let forged =
            sign_json("origin.example", SigningKey::generate().key_pair(), forged).unwrap();
        assert!(verify_self_signed(&forged, &name("origin.example")).is_err());
    }

    #[test]
    fn a_notarised_document_needs_both_signatures() {
        let origin = SigningKey::generate();
        let notary = SigningKey::generate();
        let doc = server_keys_document("origin.example", &origin, &[], 1_000).unwrap();
        let relayed = sign_json("notary.example", notary.key_pair(), doc.clone()).unwrap();
        let (server, by) = (name("origin.example"), name("notary.example"));
        assert!(verify_notarised(&relayed, &server, &by, key_set(&notary)).is_ok());
        // The notary's signature is checked against the notary's real key.
        let stranger = SigningKey::generate();
        assert!(verify_notarised(&relayed, &server, &by, key_set(&stranger)).is_err());
        // Without the notary's signature, or with a forged origin signature: refused.
        assert!(verify_notarised(&doc, &server, &by, key_set(&notary)).is_err());
        let mut unsigned = doc.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        let only_notary = sign_json("notary.example", notary.key_pair(), unsigned).unwrap();
        assert!(verify_notarised(&only_notary, &server, &by, key_set(&notary)).is_err());
        // Other entities' signatures do not get in the way of checking the ones we need.
        let third = sign_json("third.example", stranger.key_pair(), relayed).unwrap();
        assert!(verify_notarised(&third, &server, &by, key_set(&notary)).is_ok());
    }

    #[test]
    fn query_criteria_take_the_latest_minimum_and_default_to_now() {
        let body = json!({"server_keys": {
            "a.example": {"ed25519:1": {"minimum_valid_until_ts": 5}, "ed25519:2": {"minimum_valid_until_ts": 9}},
            "b.example": {},
            "c.example": {"ed25519:1": {}},
        }});
        let mut got = query_criteria(&body, 100).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                (name("a.example"), 9),
                (name("b.example"), 100),
                (name("c.example"), 100)
            ]
        );
        assert!(query_criteria(&json!({}), 0).is_err());
        assert!(query_criteria(&json!({"server_keys": {"bad name": {}}}), 0).is_err());
        assert!(fresh_enough(10, 10) && !fresh_enough(9, 10));
    }

    #[test]
    fn the_notary_request_names_the_key_when_known() {
        let server = name("a.example");
        assert_eq!(
            notary_request(&server, Some("ed25519:x")),
            json!({"server_keys": {"a.example": {"ed25519:x": {}}}})
        );
        assert_eq!(
            notary_request(&server, None),
            json!({"server_keys": {"a.example": {}}})
        );
    }
}
