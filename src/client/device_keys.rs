//! Device keys: `POST /keys/upload`, `/keys/query`, `/keys/claim`, `GET /keys/changes`.
//! Remote users' keys come from their servers (federation `user/keys/query` and `/claim`,
//! src/federation/e2ee_out.rs), or from our cache of the device lists we track.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::api::request::Ctx;
use crate::e2ee::cross_signing::KeyType;
use crate::e2ee::device_keys::{check_device_keys, uploaded_keys, DeviceKeysError};
use crate::e2ee::signatures::add_signature;
use crate::federation::e2ee_out;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::e2ee::{self as stored, SignatureRow};
use crate::storage::e2ee_remote;
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
pub(crate) async fn wake_room_members(ctx: &Ctx, db: &Db, users: &[&str]) {
    if users.is_empty() {
        return;
    }
    match stored::users_sharing_rooms(db, users).await {
        Ok(users) => ctx.platform.wakeups.notify(users).await,
        Err(e) => crate::log_error!("device list wake-up failed: {e}"),
    }
}

/// Our users' devices or keys changed: wakes who shares a room with them here, and tells the
/// other servers in those rooms (which then fetch the whole list again).
pub(crate) async fn announce_device_change(ctx: &Ctx, db: &Db, users: &[&str]) {
    wake_room_members(ctx, db, users).await;
    for user in users {
        e2ee_out::announce_device_list(ctx, db, user, None).await;
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
    let db = ctx.db();
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
        // One device's keys: the update can carry them, no resync needed.
        wake_room_members(ctx, &db, &[user]).await;
        e2ee_out::announce_device_list(ctx, &db, user, Some(&me.device_id)).await;
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

/// The stored keys of `(user, device)` pairs (empty device: all of the user's) and the users'
/// cross-signing keys, with the signatures `viewer` may see, as a `/keys/query` answer without
/// `failures`. Serves our users and the remote users whose device lists we cache; an empty
/// viewer (another server asking) sees no user-signing keys.
pub(crate) async fn stored_keys(
    db: &Db,
    wanted: &[(&str, &str)],
    users: &[&str],
    viewer: &str,
) -> Result<Value, MatrixError> {
    let devices = stored::device_keys(db, wanted).await?;
    let cross = stored::cross_signing_keys(db, users).await?;
    let signatures = stored::signatures(db, users, viewer).await?;

    let mut device_keys: BTreeMap<&str, Map<String, Value>> =
        users.iter().map(|u| (*u, Map::new())).collect();
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
        if kind == KeyType::UserSigning && row.user_id != viewer {
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
    let mut answer = json!({ "device_keys": device_keys });
    for kind in KeyType::ALL {
        answer[format!("{}_keys", kind.as_str())] =
            Value::Object(by_type.remove(kind.as_str()).unwrap_or_default());
    }
    Ok(answer)
}

/// `device_keys` of a query body as `(user, device)` pairs (empty device: all) and the users.
pub(crate) fn requested_devices<'a>(
    user: &'a str,
    devices: &'a Value,
    wanted: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), MatrixError> {
    let devices = devices
        .as_array()
        .ok_or_else(|| MatrixError::bad_json(format!("device_keys.{user} must be a list")))?;
    if devices.is_empty() {
        wanted.push((user, ""));
    }
    for device in devices {
        let device = device
            .as_str()
            .ok_or_else(|| MatrixError::bad_json("device ids must be strings"))?;
        wanted.push((user, device));
    }
    Ok(())
}

pub(crate) async fn query(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let body = ctx.json_object()?;
    let requested = object_field(&body, "device_keys")?
        .ok_or_else(|| MatrixError::missing_param("device_keys is required"))?;
    let server_name = ctx.config.server_name.as_str();
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    let mut users: Vec<&str> = Vec::new();
    let mut remote: Vec<(&str, &str, &Value)> = Vec::new();
    for (user, devices) in requested {
        match server_of(user) {
            Some(server) if server == server_name => {
                requested_devices(user, devices, &mut wanted)?;
                users.push(user);
            }
            Some(server) => {
                if !devices.is_array() {
                    return Err(MatrixError::bad_json(format!(
                        "device_keys.{user} must be a list"
                    )));
                }
                remote.push((server, user, devices));
            }
            None => {}
        }
    }
    let db = ctx.db();
    // Remote users whose device lists we keep up to date are answered from the cache, like ours;
    // the others' servers are asked.
    let remote_users: Vec<&str> = remote.iter().map(|(_, user, _)| *user).collect();
    let tracked = e2ee_remote::tracked_users(&db, &remote_users).await?;
    let mut ask: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (server, user, devices) in remote {
        if tracked.iter().any(|t| t == user) {
            requested_devices(user, devices, &mut wanted)?;
            users.push(user);
        } else {
            ask.entry(server)
                .or_default()
                .insert(user.to_owned(), devices.clone());
        }
    }
    let mut answer = stored_keys(&db, &wanted, &users, me.user_id.as_str()).await?;
    let failures = e2ee_out::query_servers(&ctx.platform, ask, &mut answer).await;
    answer["failures"] = Value::Object(failures);
    Ok(JsonResponse::ok(answer))
}

/// `(user, device, algorithm)` triples of a claim body for one user.
pub(crate) fn requested_claims<'a>(
    user: &'a str,
    devices: &'a Value,
    wanted: &mut Vec<(&'a str, &'a str, &'a str)>,
) -> Result<(), MatrixError> {
    let devices = devices
        .as_object()
        .ok_or_else(|| MatrixError::bad_json(format!("one_time_keys.{user} must be an object")))?;
    for (device, algorithm) in devices {
        let algorithm = algorithm
            .as_str()
            .ok_or_else(|| MatrixError::bad_json("algorithms must be strings"))?;
        wanted.push((user, device, algorithm));
    }
    Ok(())
}

/// Claims our users' keys: a one-time key per device and algorithm, else the fallback key.
/// Answers the `one_time_keys` object of a claim.
pub(crate) async fn claim_stored(
    db: &Db,
    wanted: &[(&str, &str, &str)],
) -> Result<Value, MatrixError> {
    let mut claimed = stored::claim_one_time_keys(db, wanted).await?;
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
    claimed.extend(stored::claim_fallback_keys(db, &missing).await?);
    let mut keys: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    for key in claimed {
        let value = serde_json::from_str(&key.key_json).unwrap_or(Value::Null);
        keys.entry(key.user_id)
            .or_default()
            .entry(key.device_id)
            .or_default()
            .insert(format!("{}:{}", key.algorithm, key.key_id), value);
    }
    Ok(json!(keys))
}

pub(crate) async fn claim(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.requester().await?;
    let body = ctx.json_object()?;
    let requested = object_field(&body, "one_time_keys")?
        .ok_or_else(|| MatrixError::missing_param("one_time_keys is required"))?;
    let server_name = ctx.config.server_name.as_str();
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    let mut ask: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (user, devices) in requested {
        match server_of(user) {
            Some(server) if server == server_name => {
                requested_claims(user, devices, &mut wanted)?;
            }
            Some(server) => {
                // Checked here so a malformed body is refused before any server is asked.
                requested_claims(user, devices, &mut Vec::new())?;
                ask.entry(server)
                    .or_default()
                    .insert(user.to_owned(), devices.clone());
            }
            None => {}
        }
    }
    let mut keys = claim_stored(&ctx.db(), &wanted).await?;
    let failures = e2ee_out::claim_servers(&ctx.platform, ask, &mut keys).await;
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
        stored::device_list_delta(&ctx.db(), me.user_id.as_str(), &from, &to).await?;
    Ok(JsonResponse::ok(
        json!({ "changed": changed, "left": left }),
    ))
}
