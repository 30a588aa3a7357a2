//! End-to-end encryption from other servers: the key endpoints they call
//! (`user/keys/query`, `user/keys/claim`, `user/devices/{userId}`) and the EDUs they send
//! (`m.device_list_update`, `m.signing_key_update`, `m.direct_to_device`). Peer input is
//! checked before it is stored: a server speaks only for its own users, and only about users
//! who share a room with ours.

use ruma::{ServerName, UserId};
use serde_json::{json, Value};

use super::outgoing::request;
use crate::api::request::Ctx;
use crate::client::device_keys::{
    claim_stored, requested_claims, requested_devices, server_of, stored_keys, wake_room_members,
};
use crate::e2ee::cross_signing::{check_key, KeyType};
use crate::http::route::percent_encode;
use crate::http::{JsonResponse, MatrixError};
use crate::platform::Method;
use crate::storage::{accounts, e2ee as stored, e2ee_remote, Db};

/// Most devices we keep for one remote user (Synapse refuses more than 1000 too).
const MAX_REMOTE_DEVICES: usize = 1000;
/// Largest device-keys object we store for a remote device.
const MAX_KEYS_BYTES: usize = 16 * 1024;
/// Most to-device messages one EDU may put into our users' inboxes.
const MAX_TO_DEVICE: usize = 1000;

fn ours(ctx: &Ctx, user: &str) -> bool {
    server_of(user) == Some(ctx.config.server_name.as_str())
}

/// `POST /_matrix/federation/v1/user/keys/query`: our users' device and cross-signing keys
/// (no user-signing keys: those are for their owner only).
pub(crate) async fn user_keys_query(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    let body = ctx.json_object()?;
    let requested = body
        .get("device_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json("device_keys must be an object"))?;
    let (mut wanted, mut users) = (Vec::new(), Vec::new());
    for (user, devices) in requested.iter().filter(|(user, _)| ours(ctx, user)) {
        requested_devices(user, devices, &mut wanted)?;
        users.push(user.as_str());
    }
    let mut answer = stored_keys(&ctx.db(), &wanted, &users, "").await?;
    if let Some(fields) = answer.as_object_mut() {
        fields.remove("user_signing_keys");
    }
    Ok(JsonResponse::ok(answer))
}

/// `POST /_matrix/federation/v1/user/keys/claim`: one-time (else fallback) keys of our users.
pub(crate) async fn user_keys_claim(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    let body = ctx.json_object()?;
    let requested = body
        .get("one_time_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json("one_time_keys must be an object"))?;
    let mut wanted = Vec::new();
    for (user, devices) in requested.iter().filter(|(user, _)| ours(ctx, user)) {
        requested_claims(user, devices, &mut wanted)?;
    }
    let keys = claim_stored(&ctx.db(), &wanted).await?;
    Ok(JsonResponse::ok(json!({ "one_time_keys": keys })))
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`: all of our user's devices, with keys
/// where uploaded, its cross-signing keys, and the device-list position they reflect (what a
/// later update's prev_id names).
pub(crate) async fn user_devices(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    let user = ctx.param("userId");
    if UserId::parse(user).is_err() || !ours(ctx, user) {
        return Err(MatrixError::invalid_param(
            "That user is not on this server",
        ));
    }
    let db = ctx.db();
    // The position first: a change racing this answer then shows up as a newer update.
    let stream_id = e2ee_remote::local_stream_id(&db, user).await?;
    let answer = stored_keys(&db, &[(user, "")], &[user], "").await?;
    let devices: Vec<Value> = accounts::devices(&db, user)
        .await?
        .into_iter()
        .map(|d| {
            let mut device = json!({ "device_id": d.device_id });
            let keys = &answer["device_keys"][user][d.device_id.as_str()];
            if keys.is_object() {
                device["keys"] = keys.clone();
            }
            if let Some(name) = d.display_name {
                device["device_display_name"] = json!(name);
            }
            device
        })
        .collect();
    let mut reply = json!({ "user_id": user, "stream_id": stream_id, "devices": devices });
    for (field, from) in [
        ("master_key", "master_keys"),
        ("self_signing_key", "self_signing_keys"),
    ] {
        if answer[from][user].is_object() {
            reply[field] = answer[from][user].clone();
        }
    }
    Ok(JsonResponse::ok(reply))
}

/// The user an EDU is about: a valid id of the sending server's.
fn origin_user<'a>(
    content: &'a Value,
    field: &str,
    origin: &ServerName,
) -> Result<&'a str, MatrixError> {
    let user = content[field]
        .as_str()
        .ok_or_else(|| MatrixError::bad_json(format!("{field} is required")))?;
    match UserId::parse(user) {
        Ok(id) if id.server_name() == origin => Ok(user),
        _ => Err(MatrixError::forbidden(format!(
            "{field} is not a user of the sending server"
        ))),
    }
}

/// Device keys a remote server sent for its user's device, with the display name it gave in
/// `unsigned` (where our `/keys/query` answers put it); `None` if they are not that device's.
fn remote_device_keys(
    keys: &Value,
    user: &str,
    device: &str,
    display_name: Option<&str>,
) -> Option<String> {
    if keys["user_id"] != user || keys["device_id"] != device {
        return None;
    }
    let mut keys = keys.clone();
    if let Some(name) = display_name {
        keys["unsigned"]["device_display_name"] = json!(name);
    }
    let text = keys.to_string();
    (text.len() <= MAX_KEYS_BYTES).then_some(text)
}

/// `m.device_list_update`: applied at once when we hold every update it depends on (prev_id),
/// else (first news of the user, or a gap) the whole list is fetched again with `user/devices`.
pub(crate) async fn device_list_update(
    ctx: &Ctx,
    origin: &ServerName,
    content: &Value,
) -> Result<(), MatrixError> {
    let user = origin_user(content, "user_id", origin)?;
    let (Some(device), Some(stream_id)) =
        (content["device_id"].as_str(), content["stream_id"].as_i64())
    else {
        return Err(MatrixError::bad_json(
            "m.device_list_update needs device_id and stream_id",
        ));
    };
    let db = ctx.db();
    if !e2ee_remote::shares_room_with_local(&db, user, ctx.config.server_name.as_str()).await? {
        // Nobody here shares a room with the user: nothing to keep up to date.
        return Ok(());
    }
    let prev: Option<Vec<i64>> = content["prev_id"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect());
    let known = e2ee_remote::remote_stream_id(&db, user).await?;
    match (known, prev) {
        (Some(known), _) if stream_id <= known => return Ok(()),
        (Some(known), Some(prev)) if !prev.is_empty() && prev.iter().all(|p| *p <= known) => {
            let keys = match content["deleted"].as_bool() {
                Some(true) => None,
                _ if content["keys"].is_object() => Some(
                    remote_device_keys(
                        &content["keys"],
                        user,
                        device,
                        content["device_display_name"].as_str(),
                    )
                    .ok_or_else(|| {
                        MatrixError::bad_json("keys are not those of the named device")
                    })?,
                ),
                // A device without keys yet: nothing for /keys/query to show.
                _ => None,
            };
            e2ee_remote::apply_remote_device_update(&db, user, device, keys.as_deref(), stream_id)
                .await?;
        }
        _ => resync(ctx, &db, origin, user).await?,
    }
    wake_room_members(ctx, &db, &[user]).await;
    Ok(())
}

/// Fetches a remote user's whole device list from its server and replaces our cache of it.
pub(crate) async fn resync(
    ctx: &Ctx,
    db: &Db,
    origin: &ServerName,
    user: &str,
) -> Result<(), MatrixError> {
    let path = format!(
        "/_matrix/federation/v1/user/devices/{}",
        percent_encode(user)
    );
    let answer = match request(&ctx.platform, origin, Method::Get, &path, None, true).await {
        Ok((200, answer)) => answer,
        Ok((status, _)) => {
            return Err(MatrixError::forbidden(format!(
                "device list resync of {user}: {origin} answered {status}"
            )))
        }
        Err(e) => {
            return Err(MatrixError::forbidden(format!(
                "device list resync of {user} failed: {e}"
            )))
        }
    };
    if answer["user_id"] != user {
        return Err(MatrixError::bad_json(
            "user/devices answered for another user",
        ));
    }
    let stream_id = answer["stream_id"].as_i64().unwrap_or(0);
    let listed = answer["devices"].as_array().cloned().unwrap_or_default();
    if listed.len() > MAX_REMOTE_DEVICES {
        return Err(MatrixError::bad_json("too many devices"));
    }
    let devices: Vec<(String, String)> = listed
        .iter()
        .filter_map(|d| {
            let device = d["device_id"].as_str()?;
            let keys =
                remote_device_keys(&d["keys"], user, device, d["device_display_name"].as_str())?;
            Some((device.to_owned(), keys))
        })
        .collect();
    let cross = cross_signing_keys(
        &answer,
        user,
        [
            ("master_key", KeyType::Master),
            ("self_signing_key", KeyType::SelfSigning),
        ],
    );
    e2ee_remote::replace_remote_devices(db, user, stream_id, &devices, &cross).await
}

/// The well-formed cross-signing keys of `user` in the named fields, as `(type, public, json)`.
fn cross_signing_keys<'a>(
    content: &Value,
    user: &str,
    fields: impl IntoIterator<Item = (&'a str, KeyType)>,
) -> Vec<(&'static str, String, String)> {
    fields
        .into_iter()
        .filter_map(|(field, kind)| {
            let key = &content[field];
            let public = check_key(key, kind, user).ok()?;
            Some((kind.as_str(), public, key.to_string()))
        })
        .filter(|(_, _, json)| json.len() <= MAX_KEYS_BYTES)
        .collect()
}

/// `m.signing_key_update`: a remote user's new master and self-signing keys.
pub(crate) async fn signing_key_update(
    ctx: &Ctx,
    origin: &ServerName,
    content: &Value,
) -> Result<(), MatrixError> {
    let user = origin_user(content, "user_id", origin)?;
    let db = ctx.db();
    if !e2ee_remote::shares_room_with_local(&db, user, ctx.config.server_name.as_str()).await? {
        return Ok(());
    }
    let keys = cross_signing_keys(
        content,
        user,
        [
            ("master_key", KeyType::Master),
            ("self_signing_key", KeyType::SelfSigning),
        ],
    );
    if keys.is_empty() {
        return Err(MatrixError::bad_json("no well-formed cross-signing key"));
    }
    stored::store_cross_signing_keys(&db, user, &keys).await?;
    wake_room_members(ctx, &db, &[user]).await;
    Ok(())
}

/// `m.direct_to_device`: to-device messages from a remote user into our users' inboxes.
pub(crate) async fn direct_to_device(
    ctx: &Ctx,
    origin: &ServerName,
    content: &Value,
) -> Result<(), MatrixError> {
    let sender = origin_user(content, "sender", origin)?;
    let (Some(event_type), Some(messages)) =
        (content["type"].as_str(), content["messages"].as_object())
    else {
        return Err(MatrixError::bad_json(
            "m.direct_to_device needs type and messages",
        ));
    };
    let mut queue = Vec::new();
    let mut recipients = Vec::new();
    for (user, devices) in messages.iter().filter(|(user, _)| ours(ctx, user)) {
        let Some(devices) = devices.as_object() else {
            continue;
        };
        for (device, message) in devices.iter().filter(|(_, m)| m.is_object()) {
            queue.push(json!([user, device, message]));
        }
        recipients.push(user.clone());
    }
    if queue.len() > MAX_TO_DEVICE {
        return Err(MatrixError::bad_json("too many to-device messages"));
    }
    let db = ctx.db();
    if e2ee_remote::deliver_to_device(&db, sender, event_type, &queue).await? > 0 {
        ctx.platform.wakeups.notify(recipients).await;
    }
    Ok(())
}
