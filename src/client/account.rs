//! Changing a password and deactivating an account, both behind UIA with the current password.

use serde::Deserialize;
use serde_json::json;

use super::device_keys::announce_device_change;
use super::password::hash_password;
use super::uia::authenticate;
use crate::accounts::uia::Purpose;
use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::accounts;

pub(crate) async fn change_password(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let raw = ctx.json_value()?;
    #[derive(Deserialize)]
    struct Body {
        new_password: String,
        logout_devices: Option<bool>,
    }
    let body: Body =
        serde_json::from_value(raw.clone()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if let Some(challenge) = authenticate(
        ctx,
        &raw,
        Purpose::ChangePassword,
        Some(me.user_id.as_str()),
    )
    .await?
    {
        return Ok(challenge);
    }
    let db = ctx.db();
    accounts::set_password(
        &db,
        me.user_id.as_str(),
        &hash_password(
            &ctx.platform,
            &body.new_password,
            ctx.config.password_iterations,
        )
        .await?,
    )
    .await?;
    // The spec's default: every other session ends, the one that changed the password stays.
    if body.logout_devices.unwrap_or(true) {
        let others: Vec<String> = accounts::devices(&db, me.user_id.as_str())
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .filter(|d| *d != me.device_id)
            .collect();
        accounts::delete_devices(&db, me.user_id.as_str(), &others).await?;
        announce_device_change(ctx, &db, &[me.user_id.as_str()]).await;
    }
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn deactivate(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let raw = ctx.json_value()?;
    if let Some(challenge) =
        authenticate(ctx, &raw, Purpose::Deactivate, Some(me.user_id.as_str())).await?
    {
        return Ok(challenge);
    }
    // Leave every room first, while the account can still send its leave events.
    // Wake those who shared a room before leaving them, so they drop the devices.
    let db = ctx.db();
    let sharing = crate::storage::e2ee::users_sharing_rooms(&db, &[me.user_id.as_str()]).await?;
    super::membership::leave_all_rooms(ctx, &me).await?;
    accounts::deactivate(&db, me.user_id.as_str()).await?;
    let erase = raw.get("erase").and_then(serde_json::Value::as_bool) == Some(true);
    crate::media::repository::on_deactivation(&db, &ctx.platform, me.user_id.as_str(), erase)
        .await?;
    ctx.platform.wakeups.notify(sharing).await;
    Ok(JsonResponse::ok(
        json!({ "id_server_unbind_result": "no-support" }),
    ))
}
