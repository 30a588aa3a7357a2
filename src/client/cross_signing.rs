//! Cross-signing: `POST /keys/device_signing/upload` (a user's master, self-signing and
//! user-signing keys) and `POST /keys/signatures/upload` (signatures on devices and users).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::device_keys::{announce_device_change, server_of, unreachable_server};
use super::uia::authenticate;
use crate::accounts::uia::Purpose;
use crate::api::request::Ctx;
use crate::e2ee::cross_signing::{check_key, signed_by_master, upload_needs_auth, KeyType};
use crate::e2ee::signatures::verify_detached;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::e2ee::{self as stored, SignatureRow};

pub(crate) async fn upload_device_signing(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let user = me.user_id.as_str();
    let raw = ctx.json_value()?;
    let mut uploaded: Vec<(KeyType, &Value, String)> = Vec::new();
    for kind in KeyType::ALL {
        match raw.get(kind.field()) {
            None | Some(Value::Null) => {}
            Some(key) if key.is_object() => {
                let public = check_key(key, kind, user).map_err(MatrixError::invalid_param)?;
                uploaded.push((kind, key, public));
            }
            Some(_) => {
                return Err(MatrixError::bad_json(format!(
                    "{} must be an object",
                    kind.field()
                )))
            }
        }
    }
    let db = ctx.db();
    let stored_keys: Vec<(KeyType, Value)> = stored::cross_signing_keys(&db, &[user])
        .await?
        .into_iter()
        .filter_map(|row| {
            Some((
                KeyType::parse(&row.key_type)?,
                serde_json::from_str(&row.key_json).ok()?,
            ))
        })
        .collect();
    let stored_master = stored_keys
        .iter()
        .find(|(kind, _)| *kind == KeyType::Master)
        .map(|(_, key)| key);
    let master_public = match uploaded.iter().find(|(kind, ..)| *kind == KeyType::Master) {
        Some((_, _, public)) => Some(public.clone()),
        None => stored_master.and_then(|key| check_key(key, KeyType::Master, user).ok()),
    };
    for (kind, key, _) in &uploaded {
        if *kind == KeyType::Master {
            continue;
        }
        let Some(master) = &master_public else {
            return Err(MatrixError::invalid_param(
                "Upload a master key before the keys it signs",
            ));
        };
        if !signed_by_master(key, user, master) {
            return Err(MatrixError::new(
                400,
                ErrorCode::InvalidSignature,
                format!("{} is not signed by the master key", kind.field()),
            ));
        }
    }
    let as_pairs: Vec<(KeyType, &Value)> = uploaded.iter().map(|(k, v, _)| (*k, *v)).collect();
    if upload_needs_auth(stored_master, &as_pairs, &stored_keys) {
        if let Some(challenge) = authenticate(ctx, &raw, Purpose::CrossSigning, Some(user)).await? {
            return Ok(challenge);
        }
    }
    if uploaded.is_empty() {
        return Ok(JsonResponse::ok(json!({})));
    }
    let rows: Vec<(&str, String, String)> = uploaded
        .iter()
        .map(|(kind, key, public)| (kind.as_str(), public.clone(), key.to_string()))
        .collect();
    stored::store_cross_signing_keys(&db, user, &rows).await?;
    announce_device_change(ctx, &db, &[user]).await;
    crate::federation::e2ee_out::announce_signing_keys(ctx, &db, user).await;
    Ok(JsonResponse::ok(json!({})))
}

fn failure(code: ErrorCode, message: &str) -> Value {
    json!({ "errcode": code.as_str(), "error": message })
}

/// The public key of one of the signer's keys, named as in a signature (`ed25519:<id>`): a
/// device's ed25519 key, or one of the signer's cross-signing keys.
struct SignerKeys {
    devices: HashMap<String, String>,
    cross: HashMap<KeyType, String>,
}

pub(crate) async fn upload_signatures(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let signer = me.user_id.as_str();
    let body = ctx.json_object()?;
    let server_name = ctx.config.server_name.as_str();
    let mut failures: Map<String, Value> = Map::new();
    let mut targets: Vec<&str> = vec![signer];
    for (user, keys) in &body {
        if !keys.is_object() {
            return Err(MatrixError::bad_json(format!(
                "{user} must map key ids to keys"
            )));
        }
        if server_of(user) == Some(server_name) && user != signer {
            targets.push(user);
        }
    }
    let db = ctx.db();
    let wanted: Vec<(&str, &str)> = targets.iter().map(|u| (*u, "")).collect();
    let devices = stored::device_keys(&db, &wanted).await?;
    let cross = stored::cross_signing_keys(&db, &targets).await?;
    let device_object = |user: &str, device: &str| -> Option<Value> {
        devices
            .iter()
            .find(|d| d.user_id == user && d.device_id == device)
            .and_then(|d| serde_json::from_str(&d.key_json).ok())
    };
    let cross_of = |user: &str, kind: KeyType| {
        cross
            .iter()
            .find(|c| c.user_id == user && c.key_type == kind.as_str())
    };
    let mine = SignerKeys {
        devices: devices
            .iter()
            .filter(|d| d.user_id == signer)
            .filter_map(|d| {
                let keys: Value = serde_json::from_str(&d.key_json).ok()?;
                let key = keys
                    .pointer(&format!("/keys/ed25519:{}", d.device_id))?
                    .as_str()?
                    .to_owned();
                Some((d.device_id.clone(), key))
            })
            .collect(),
        cross: KeyType::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, cross_of(signer, kind)?.public_key.clone())))
            .collect(),
    };

    let mut accepted: Vec<SignatureRow> = Vec::new();
    for (user, keys) in &body {
        let keys = keys.as_object().expect("checked above");
        let mut user_failures = Map::new();
        if server_of(user) != Some(server_name) {
            for key_id in keys.keys() {
                user_failures.insert(key_id.clone(), unreachable_server());
            }
            failures.insert(user.clone(), Value::Object(user_failures));
            continue;
        }
        for (key_id, submitted) in keys {
            // What the signature is over, and which of the signer's keys may make it: the
            // self-signing key signs one's own devices, a device signs its own master key, the
            // user-signing key signs other users' master keys.
            let master = cross_of(user, KeyType::Master).filter(|m| &m.public_key == key_id);
            let (target, allowed): (Option<Value>, Vec<String>) = if let Some(master) = master {
                let object = serde_json::from_str(&master.key_json).ok();
                if user == signer {
                    (object, mine.devices.values().cloned().collect())
                } else {
                    (
                        object,
                        mine.cross
                            .get(&KeyType::UserSigning)
                            .cloned()
                            .into_iter()
                            .collect(),
                    )
                }
            } else if user == signer {
                (
                    device_object(user, key_id),
                    mine.cross
                        .get(&KeyType::SelfSigning)
                        .cloned()
                        .into_iter()
                        .collect(),
                )
            } else {
                (None, Vec::new())
            };
            let Some(target) = target else {
                user_failures.insert(
                    key_id.clone(),
                    failure(ErrorCode::NotFound, "No such key, or not one you may sign"),
                );
                continue;
            };
            let Some(signatures) = submitted
                .pointer(&format!(
                    "/signatures/{}",
                    signer.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(Value::as_object)
            else {
                user_failures.insert(
                    key_id.clone(),
                    failure(
                        ErrorCode::InvalidSignature,
                        "No signature by you on this key",
                    ),
                );
                continue;
            };
            for (signer_key_id, signature) in signatures {
                // Signatures already in the stored object (a key's signature on itself, a
                // device's by its own key) are there already; only new ones are checked.
                if target
                    .get("signatures")
                    .and_then(|s| s.get(signer))
                    .and_then(|s| s.get(signer_key_id))
                    == Some(signature)
                {
                    continue;
                }
                let public = signer_key_id
                    .strip_prefix("ed25519:")
                    .map(|id| {
                        mine.devices
                            .get(id)
                            .cloned()
                            .unwrap_or_else(|| id.to_owned())
                    })
                    .filter(|public| allowed.contains(public));
                match (public, signature.as_str()) {
                    (Some(public), Some(signature))
                        if verify_detached(&target, signature, &public) =>
                    {
                        accepted.push(SignatureRow {
                            target_user_id: user.clone(),
                            target_key_id: key_id.clone(),
                            signer_user_id: signer.to_owned(),
                            signer_key_id: signer_key_id.clone(),
                            signature: signature.to_owned(),
                        })
                    }
                    _ => {
                        user_failures.insert(
                            key_id.clone(),
                            failure(
                                ErrorCode::InvalidSignature,
                                "The signature does not verify with a key allowed to sign this key",
                            ),
                        );
                    }
                }
            }
        }
        if !user_failures.is_empty() {
            failures.insert(user.clone(), Value::Object(user_failures));
        }
    }
    stored::store_signatures(&db, &accepted).await?;
    let mut changed: Vec<&str> = accepted.iter().map(|r| r.target_user_id.as_str()).collect();
    changed.sort_unstable();
    changed.dedup();
    announce_device_change(ctx, &db, &changed).await;
    Ok(JsonResponse::ok(json!({ "failures": failures })))
}
