//! Device management: list, inspect, rename, delete (UIA).

use serde::Deserialize;
use serde_json::{json, Value};

use super::device_keys::{announce_device_change, wake_room_members};
use super::uia::authenticate;
use crate::accounts::uia::Purpose;
use crate::api::request::{Ctx, Requester};
use crate::federation::e2ee_out;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::accounts::{self, DeviceRow};

/// The spec's `Device`: a field we do not know (no name set, never seen from an address) is
/// absent, not null.
fn device_json(d: &DeviceRow) -> Value {
    let mut device = json!({ "device_id": d.device_id });
    if let Some(name) = &d.display_name {
        device["display_name"] = json!(name);
    }
    if let Some(ts) = d.last_seen_ts {
        device["last_seen_ts"] = json!(ts);
    }
    if let Some(ip) = &d.last_seen_ip {
        device["last_seen_ip"] = json!(ip);
    }
    device
}

pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let devices = accounts::devices(&ctx.db(), me.user_id.as_str()).await?;
    Ok(JsonResponse::ok(
        json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() }),
    ))
}

pub(crate) async fn get(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let devices = accounts::devices(&ctx.db(), me.user_id.as_str()).await?;
    devices
        .iter()
        .find(|d| d.device_id == ctx.param("deviceId"))
        .map(|d| JsonResponse::ok(device_json(d)))
        .ok_or_else(|| MatrixError::not_found("No such device"))
}

pub(crate) async fn update(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    #[derive(Deserialize)]
    struct Body {
        display_name: Option<String>,
    }
    let body: Body = ctx.json()?;
    let db = ctx.db();
    let device = ctx.param("deviceId");
    let (exists, renamed) = accounts::rename_device(
        &db,
        me.user_id.as_str(),
        device,
        body.display_name.as_deref(),
    )
    .await?;
    if !exists {
        return Err(MatrixError::not_found("No such device"));
    }
    if renamed {
        // Others see the name (in /keys/query): local room members are woken, other servers
        // get an update carrying the device's keys with the new name.
        let user = me.user_id.as_str();
        wake_room_members(ctx, &db, &[user]).await;
        e2ee_out::announce_device_list(ctx, &db, user, Some(device)).await;
    }
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn delete_one(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    delete(ctx, me, vec![ctx.param("deviceId").to_owned()], true).await
}

pub(crate) async fn delete_many(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    // The token first: a client without one learns it must log in, not how to shape a body.
    let me = ctx.requester().await?;
    #[derive(Deserialize)]
    struct Body {
        devices: Vec<String>,
    }
    let body: Body = ctx.json()?;
    delete(ctx, me, body.devices, false).await
}

async fn delete(
    ctx: &Ctx,
    me: Requester,
    devices: Vec<String>,
    must_exist: bool,
) -> Result<JsonResponse, MatrixError> {
    let db = ctx.db();
    if must_exist
        && !accounts::devices(&db, me.user_id.as_str())
            .await?
            .iter()
            .any(|d| devices.contains(&d.device_id))
    {
        return Err(MatrixError::not_found("No such device"));
    }
    let raw = ctx.json_value()?;
    if let Some(challenge) =
        authenticate(ctx, &raw, Purpose::DeleteDevices, Some(me.user_id.as_str())).await?
    {
        return Ok(challenge);
    }
    accounts::delete_devices(&db, me.user_id.as_str(), &devices).await?;
    announce_device_change(ctx, &db, &[me.user_id.as_str()]).await;
    Ok(JsonResponse::ok(json!({})))
}
