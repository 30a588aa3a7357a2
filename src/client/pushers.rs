//! `GET /pushers` and `POST /pushers/set` (spec: "Push Notifications", pushers). A pusher is
//! tied to the device of the access token that set it: deleting that device removes it
//! (src/storage/accounts.rs), which is how a password change that logs out the other devices
//! removes their pushers. Delivery is the push queue's (src/push/deliver.rs).

use serde_json::{json, Value};

use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::push::pusher::{parse_set, SetPusher};
use crate::storage::push as stored;
use crate::time::now_ms;

pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let pushers: Vec<Value> = stored::pushers(&ctx.db(), me.user_id.as_str())
        .await?
        .iter()
        .map(|(pusher, _)| pusher.to_json())
        .collect();
    Ok(JsonResponse::ok(json!({ "pushers": pushers })))
}

pub(crate) async fn set(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let body = ctx.json_object()?;
    let request = parse_set(&body, now_ms())
        .map_err(|(code, message)| MatrixError::new(400, ErrorCode::parse(code), message))?;
    let db = ctx.db();
    match request {
        SetPusher::Delete { app_id, pushkey } => {
            stored::delete_pusher(&db, me.user_id.as_str(), &app_id, &pushkey).await?;
        }
        SetPusher::Set { pusher, append } => {
            let device = (!me.device_id.is_empty()).then_some(me.device_id.as_str());
            stored::set_pusher(&db, me.user_id.as_str(), device, &pusher, append).await?;
        }
    }
    Ok(JsonResponse::ok(json!({})))
}
