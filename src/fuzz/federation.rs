//! Federation input: X-Matrix headers, canonical JSON and JSON signatures, and the PDUs of
//! every supported room version (parsing, then the signature and hash checks).

use proptest::prelude::*;
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName};
use serde_json::{json, Value};

use super::{json_object, json_value, run};
use crate::federation::xmatrix::{self, XMatrix};
use crate::keys::SigningKey;
use crate::rooms::{verify, Pdu, RoomVersion};
use crate::signing::event::hash_and_sign;
use crate::signing::{canonical_string, sign_json, to_canonical_object};
use crate::testing::message;

fn server_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}(\\.[a-z]{2,5}){0,2}(:[0-9]{1,5})?",
        "\\[[0-9a-f:]{2,12}\\](:[0-9]{1,4})?",
        ".{0,16}",
    ]
}

/// `name=value` with the value quoted (with escapes), bare, or broken.
fn param(name: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (name, ".{0,20}", 0..3u8).prop_map(|(name, value, style)| match style {
        0 => format!(
            "{name}=\"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        1 => format!("{name}={value}"),
        _ => format!("{name}=\"{value}"),
    })
}

fn header_text() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("origin".to_owned()),
        Just("destination".to_owned()),
        Just("key".to_owned()),
        Just("sig".to_owned()),
        "[A-Za-z]{0,6}",
    ];
    (
        prop_oneof![
            Just("X-Matrix "),
            Just("x-matrix  "),
            Just("Bearer "),
            Just("")
        ],
        prop::collection::vec(param(name), 0..6),
        prop_oneof![Just(","), Just(" , "), Just(";")],
    )
        .prop_map(|(scheme, params, separator)| format!("{scheme}{}", params.join(separator)))
}

#[test]
fn xmatrix_headers_parse_or_fail_cleanly() {
    run(
        "xmatrix_header",
        prop_oneof![header_text(), ".{0,80}"],
        |text| {
            if let Ok(header) = XMatrix::parse(&text) {
                // What was accepted is what the rest of the code relies on.
                prop_assert!(header.key_id.starts_with("ed25519:"));
                prop_assert!(ServerName::parse(header.origin.as_str()).is_ok());
            }
            Ok(())
        },
    );
}

#[test]
fn xmatrix_headers_we_write_parse_back() {
    let key = SigningKey::generate();
    run(
        "xmatrix_round_trip",
        (
            "[a-z]{1,10}\\.[a-z]{2,4}(:[0-9]{1,4})?",
            "[a-z]{1,10}\\.[a-z]{2,4}",
            "[A-Z]{3,6}",
            "/[ -~]{0,40}",
            prop::option::of(json_object()),
        ),
        |(origin, destination, method, uri, body)| {
            let (Ok(origin), Ok(destination)) =
                (ServerName::parse(&origin), ServerName::parse(&destination))
            else {
                return Ok(());
            };
            let body = body.map(Value::Object);
            let Ok(value) =
                xmatrix::authorization(&origin, &destination, &key, &method, &uri, body.as_ref())
            else {
                // Only a body canonical JSON forbids (floats, big integers) cannot be signed.
                prop_assert!(body.is_some());
                return Ok(());
            };
            let header = XMatrix::parse(&value).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(&header.origin, &origin);
            prop_assert_eq!(header.destination.as_ref(), Some(&destination));
            let public = key.public_key_base64();
            prop_assert!(xmatrix::verify(
                &header,
                &destination,
                &method,
                &uri,
                body.as_ref(),
                &public
            )
            .is_ok());
            // Any other URI, or a request meant for another server, fails the check.
            let other_uri = format!("{uri}x");
            prop_assert!(xmatrix::verify(
                &header,
                &destination,
                &method,
                &other_uri,
                body.as_ref(),
                &public
            )
            .is_err());
            let elsewhere = ServerName::parse("elsewhere.example").unwrap();
            prop_assert!(xmatrix::verify(
                &header,
                &elsewhere,
                &method,
                &uri,
                body.as_ref(),
                &public
            )
            .is_err());
            Ok(())
        },
    );
}

#[test]
fn xmatrix_verification_of_garbage_is_an_error() {
    let us = ServerName::parse("us.example").unwrap();
    run(
        "xmatrix_verify_garbage",
        (
            server_name(),
            ".{0,90}",
            ".{0,50}",
            prop::option::of(json_value()),
        ),
        |(origin, signature, public_key, content)| {
            let Ok(origin) = ServerName::parse(&origin) else {
                return Ok(());
            };
            let header = XMatrix {
                origin,
                destination: None,
                key_id: "ed25519:a".into(),
                signature,
            };
            prop_assert!(
                xmatrix::verify(&header, &us, "PUT", "/x", content.as_ref(), &public_key).is_err()
            );
            Ok(())
        },
    );
}

#[test]
fn canonical_json_round_trips_and_signatures_hold() {
    let key = SigningKey::generate();
    let map = key_map("us.example", &key);
    run(
        "canonical_json_and_signatures",
        (json_object(), any::<usize>(), any::<u8>()),
        |(object, at, byte)| {
            let Ok(canonical) = to_canonical_object(Value::Object(object.clone())) else {
                return Ok(());
            };
            // The encoding is a fixed point: parsing it back gives the same text.
            let text = canonical_string(&canonical);
            let again: Value =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again =
                to_canonical_object(again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(canonical_string(&again), text);

            let Ok(signed) = sign_json("us.example", key.key_pair(), Value::Object(object)) else {
                return Ok(());
            };
            let signed =
                to_canonical_object(signed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(ruma::signatures::verify_json(&map, &signed).is_ok());
            // One changed byte of the signed text: unparseable, or a failed check, or else
            // nothing signed changed: not the content, not the signature's bytes. (The last
            // character of unpadded base64 carries unused bits: ruma, like Synapse, ignores them,
            // so that byte may change the text and not the signature. Found by this target.)
            let mut bytes = canonical_string(&signed).into_bytes();
            let i = at % bytes.len();
            bytes[i] = byte;
            let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                return Ok(());
            };
            let Ok(mutated) = to_canonical_object(value) else {
                return Ok(());
            };
            if ruma::signatures::verify_json(&map, &mutated).is_ok() {
                prop_assert_eq!(signed_part(&mutated), signed_part(&signed));
                prop_assert_eq!(our_signature(&mutated, &key), our_signature(&signed, &key));
            }
            Ok(())
        },
    );
}

/// What a signature covers: the object without `signatures` and `unsigned`, as text.
fn signed_part(object: &CanonicalJsonObject) -> String {
    let mut object = object.clone();
    object.remove("signatures");
    object.remove("unsigned");
    canonical_string(&object)
}

/// The bytes of `us.example`'s signature with `key`.
fn our_signature(object: &CanonicalJsonObject, key: &SigningKey) -> Option<Vec<u8>> {
    let Some(CanonicalJsonValue::Object(by_server)) = object.get("signatures") else {
        return None;
    };
    let Some(CanonicalJsonValue::Object(by_key)) = by_server.get("us.example") else {
        return None;
    };
    let Some(CanonicalJsonValue::String(text)) = by_key.get(&key.key_id()) else {
        return None;
    };
    ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(text)
        .ok()
        .map(|b| b.as_bytes().to_vec())
}

/// A signed message from `remote.example` in a room of `version`, with `content`.
fn signed_pdu(
    key: &SigningKey,
    version: RoomVersion,
    content: Value,
) -> Option<CanonicalJsonObject> {
    let mut event = message(
        "!room:remote.example",
        "@bob:remote.example",
        "",
        &[],
        &[],
        1,
    );
    event["content"] = content;
    if version.event_id_in_pdu() {
        // Versions 1 and 2: the sending server names the event.
        event["event_id"] = Value::from("$fuzzed:remote.example");
    }
    hash_and_sign("remote.example", key, event, &version.rules()).ok()
}

/// `key` as the public key of `server`, the form signature checks take.
fn key_map(server: &str, key: &SigningKey) -> PublicKeyMap {
    let mut set = PublicKeySet::new();
    set.insert(
        key.key_id(),
        ruma::serde::Base64::parse(key.public_key_base64()).unwrap(),
    );
    let mut map = PublicKeyMap::new();
    map.insert(server.into(), set);
    map
}

/// Every way a field of a PDU can be wrong: removed, or replaced by any JSON value.
fn mutation() -> impl Strategy<Value = (String, Option<Value>)> {
    let field = prop_oneof![
        Just("room_id"),
        Just("sender"),
        Just("origin_server_ts"),
        Just("type"),
        Just("content"),
        Just("state_key"),
        Just("prev_events"),
        Just("auth_events"),
        Just("depth"),
        Just("redacts"),
        Just("hashes"),
        Just("signatures"),
        Just("unsigned"),
        Just("event_id"),
    ]
    .prop_map(str::to_owned);
    (field, prop::option::of(json_value()))
}

#[test]
fn pdus_of_every_room_version_parse_and_verify_or_fail_cleanly() {
    let key = SigningKey::generate();
    let keys = key_map("remote.example", &key);
    run(
        "pdu_parse_and_verify",
        (
            prop::sample::select(RoomVersion::ALL.to_vec()),
            json_object(),
            prop::collection::vec(mutation(), 0..3),
        ),
        |(version, content, mutations)| {
            let Some(mut object) = signed_pdu(&key, version, Value::Object(content)) else {
                return Ok(());
            };
            let untouched = mutations.is_empty();
            for (field, value) in mutations {
                match value.map(CanonicalJsonValue::try_from) {
                    None => {
                        object.remove(&field);
                    }
                    Some(Ok(value)) => {
                        object.insert(field, value);
                    }
                    Some(Err(_)) => {}
                }
            }
            let parsed = Pdu::from_json(object.clone(), version);
            let _ = verify::required_keys(&object, version);
            let checked = verify::verified_form(object.clone(), version, &keys);
            if untouched {
                prop_assert!(
                    parsed.is_ok(),
                    "a PDU we built does not parse: {:?}",
                    parsed.err()
                );
                let checked = checked.ok();
                prop_assert_eq!(checked.as_ref(), Some(&object));
            }
            Ok(())
        },
    );
}

#[test]
fn arbitrary_objects_as_pdus_are_errors_not_panics() {
    run(
        "pdu_arbitrary_object",
        (
            prop::sample::select(RoomVersion::ALL.to_vec()),
            json_object(),
        ),
        |(version, object)| {
            let Ok(object) = to_canonical_object(Value::Object(object)) else {
                return Ok(());
            };
            let _ = Pdu::from_json(object.clone(), version);
            let _ = verify::required_keys(&object, version);
            let _ = verify::verified_form(object, version, &PublicKeyMap::new());
            Ok(())
        },
    );
    // The shape of a PDU with every field of the wrong type.
    let wrong = json!({"room_id": 1, "sender": [], "origin_server_ts": "x", "type": {},
        "content": 5, "prev_events": "a", "auth_events": [1], "depth": -1, "hashes": 1, "signatures": 2});
    for version in RoomVersion::ALL {
        let object = to_canonical_object(wrong.clone()).unwrap();
        assert!(Pdu::from_json(object, version).is_err());
    }
}
