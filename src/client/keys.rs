//! Device keys: `POST /keys/upload`, `/keys/query`, `/keys/claim`, `GET /keys/changes`.
//! Local users only for now: remote users' servers are reported in `failures` until the
//! federation key endpoints exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::e2ee::cross_signing::KeyType;
use crate::e2ee::device_keys::{check_device_keys, uploaded_keys, DeviceKeysError};
use crate::e2ee::signatures::add_signature;
use crate::http::{JsonResponse, MatrixError};
use crate::runtime::notifier;
use crate::runtime::request::Ctx;
use crate::storage::e2ee::{self as stored, SignatureRow};
use crate::storage::Db;
use crate::sync::token::StreamPosition;

/// The server part of a user id (`@a:example.org` → `example.org`), `None` if it is no user id.
pub(crate) fn server_of(user_id: &str) -> Option<&str> {
    user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, server)| server)
        .filter(|server| !server.is_empty())
}

/// The `failures` entry for a server we cannot ask yet.
pub(crate) fn unreachable_server() -> Value {
    json!({
        "status": 503,
        "message": "Federation is not available on this server yet: remote users' keys cannot be fetched"
    })
}

/// Wakes the syncs of everyone who shares a room with these users: their next sync lists the
/// users in `device_lists.changed`.
pub(crate) async fn announce_device_change(ctx: &Ctx, db: &Db, users: &[&str]) {
    if users.is_empty() {
        return;
    }
    match stored::users_sharing_rooms(db, users).await {
        Ok(users) => notifier::notify(&ctx.env, users).await,
        Err(e) => worker::console_error!("device list wake-up failed: {e}"),
    }
}

fn object_field<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, MatrixError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(MatrixError::bad_json(format!("{field} must be an object"))),
    }
}

pub(crate) async fn upload(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let body = ctx.json_object()?;
    let user = me.user_id.as_str();
    let device_keys = match body.get("device_keys") {
        None | Some(Value::Null) => None,
        Some(keys) => {
            check_device_keys(keys, user, &me.device_id).map_err(|e| match e {
                DeviceKeysError::Shape(why) => MatrixError::bad_json(why),
                DeviceKeysError::NotYours(why) => MatrixError::invalid_param(why),
            })?;
            Some(keys.to_string())
        }
    };
    let one_time = match object_field(&body, "one_time_keys")? {
        Some(map) => uploaded_keys(map).map_err(MatrixError::bad_json)?,
        None => Vec::new(),
    };
    // Clients written before fallback keys were stable still use the MSC2732 name.
    let fallback_map = match object_field(&body, "fallback_keys")? {
        Some(map) => Some(map),
        None => object_field(&body, "org.matrix.msc2732.fallback_keys")?,
    };
    let fallback = match fallback_map {
        Some(map) => uploaded_keys(map).map_err(MatrixError::bad_json)?,
        None => Vec::new(),
    };
    let db = ctx.db()?;
    let (counts, changed) = stored::upload(
        &db,
        user,
        &me.device_id,
        device_keys.as_deref(),
        &one_time,
        &fallback,
    )
    .await?;
    if changed {
        announce_device_change(ctx, &db, &[user]).await;
    }
    Ok(JsonResponse::ok(json!({ "one_time_key_counts": counts })))
}

/// Merges stored signatures into the objects they sign: `target_key_id` is a device id or a
/// cross-signing public key.
fn signatures_for<'a>(
    rows: &'a [SignatureRow],
    user_id: &'a str,
    key_id: &'a str,
) -> impl Iterator<Item = &'a SignatureRow> + 'a {
    rows.iter()
        .filter(move |r| r.target_user_id == user_id && r.target_key_id == key_id)
}

pub(crate) async fn query(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let body = ctx.json_object()?;
    let requested = object_field(&body, "device_keys")?
        .ok_or_else(|| MatrixError::missing_param("device_keys is required"))?;
    let server_name = ctx.config.server_name.as_str();
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    let mut local_users: Vec<&str> = Vec::new();
    let mut failures = Map::new();
    for (user, devices) in requested {
        let devices = devices
            .as_array()
            .ok_or_else(|| MatrixError::bad_json(format!("device_keys.{user} must be a list")))?;
        match server_of(user) {
            Some(server) if server == server_name => {
                local_users.push(user);
                if devices.is_empty() {
                    wanted.push((user, ""));
                }
                for device in devices {
                    let device = device
                        .as_str()
                        .ok_or_else(|| MatrixError::bad_json("device ids must be strings"))?;
                    wanted.push((user, device));
                }
            }
            Some(server) => {
                failures.insert(server.to_owned(), unreachable_server());
            }
            None => {}
        }
    }
    let db = ctx.db()?;
    let devices = stored::device_keys(&db, &wanted).await?;
    let cross = stored::cross_signing_keys(&db, &local_users).await?;
    let signatures = stored::signatures(&db, &local_users, me.user_id.as_str()).await?;

    let mut device_keys: BTreeMap<&str, Map<String, Value>> =
        local_users.iter().map(|u| (*u, Map::new())).collect();
    for row in &devices {
        let mut keys: Value = serde_json::from_str(&row.key_json).unwrap_or(Value::Null);
        for sig in signatures_for(&signatures, &row.user_id, &row.device_id) {
            add_signature(
                &mut keys,
                &sig.signer_user_id,
                &sig.signer_key_id,
                &sig.signature,
            );
        }
        if let Some(name) = &row.display_name {
            keys["unsigned"] = json!({ "device_display_name": name });
        }
        if let Some(user) = device_keys.get_mut(row.user_id.as_str()) {
            user.insert(row.device_id.clone(), keys);
        }
    }
    let mut by_type: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for row in &cross {
        let Some(kind) = KeyType::parse(&row.key_type) else {
            continue;
        };
        // A user-signing key is only for its owner: it says whom they trust.
        if kind == KeyType::UserSigning && row.user_id != me.user_id.as_str() {
            continue;
        }
        let mut key: Value = serde_json::from_str(&row.key_json).unwrap_or(Value::Null);
        for sig in signatures_for(&signatures, &row.user_id, &row.public_key) {
            add_signature(
                &mut key,
                &sig.signer_user_id,
                &sig.signer_key_id,
                &sig.signature,
            );
        }
        by_type
            .entry(kind.as_str())
            .or_default()
            .insert(row.user_id.clone(), key);
    }
    let mut answer = json!({ "device_keys": device_keys, "failures": failures });
    for kind in KeyType::ALL {
        answer[format!("{}_keys", kind.as_str())] =
            Value::Object(by_type.remove(kind.as_str()).unwrap_or_default());
    }
    Ok(JsonResponse::ok(answer))
}

pub(crate) async fn claim(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.requester().await?;
    let body = ctx.json_object()?;
    let requested = object_field(&body, "one_time_keys")?
        .ok_or_else(|| MatrixError::missing_param("one_time_keys is required"))?;
    let server_name = ctx.config.server_name.as_str();
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    let mut failures = Map::new();
    for (user, devices) in requested {
        let devices = devices.as_object().ok_or_else(|| {
            MatrixError::bad_json(format!("one_time_keys.{user} must be an object"))
        })?;
        match server_of(user) {
            Some(server) if server == server_name => {
                for (device, algorithm) in devices {
                    let algorithm = algorithm
                        .as_str()
                        .ok_or_else(|| MatrixError::bad_json("algorithms must be strings"))?;
                    wanted.push((user, device, algorithm));
                }
            }
            Some(server) => {
                failures.insert(server.to_owned(), unreachable_server());
            }
            None => {}
        }
    }
    let db = ctx.db()?;
    let mut claimed = stored::claim_one_time_keys(&db, &wanted).await?;
    let served: BTreeSet<(&str, &str, &str)> = claimed
        .iter()
        .map(|k| {
            (
                k.user_id.as_str(),
                k.device_id.as_str(),
                k.algorithm.as_str(),
            )
        })
        .collect();
    let missing: Vec<(&str, &str, &str)> = wanted
        .iter()
        .filter(|w| !served.contains(w))
        .copied()
        .collect();
    claimed.extend(stored::claim_fallback_keys(&db, &missing).await?);
    let mut keys: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    for key in claimed {
        let value = serde_json::from_str(&key.key_json).unwrap_or(Value::Null);
        keys.entry(key.user_id)
            .or_default()
            .entry(key.device_id)
            .or_default()
            .insert(format!("{}:{}", key.algorithm, key.key_id), value);
    }
    Ok(JsonResponse::ok(
        json!({ "one_time_keys": keys, "failures": failures }),
    ))
}

pub(crate) async fn changes(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let token = |name: &str| {
        let raw = ctx
            .query(name)
            .ok_or_else(|| MatrixError::missing_param(format!("{name} is required")))?;
        StreamPosition::parse(raw)
            .ok_or_else(|| MatrixError::invalid_param(format!("{name} is not a sync token")))
    };
    let (from, to) = (token("from")?, token("to")?);
    let (changed, left) =
        stored::device_list_delta(&ctx.db()?, me.user_id.as_str(), &from, &to).await?;
    Ok(JsonResponse::ok(
        json!({ "changed": changed, "left": left }),
    ))
}
