//! `PUT /sendToDevice/{eventType}/{txnId}`: messages straight to other devices (Olm key
//! exchange, verification), queued in each device's inbox and delivered by its `/sync`.

use serde_json::{json, Value};

use super::keys::server_of;
use crate::http::{JsonResponse, MatrixError};
use crate::runtime::notifier;
use crate::runtime::request::Ctx;
use crate::storage::e2ee as stored;

pub(crate) async fn send(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let (event_type, txn_id) = (ctx.param(0), ctx.param(1));
    let body = ctx.json_object()?;
    let messages = body
        .get("messages")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json("messages must be an object"))?;
    let server_name = ctx.config.server_name.as_str();
    let mut queue = Vec::new();
    let mut recipients = Vec::new();
    for (user, devices) in messages {
        let devices = devices
            .as_object()
            .ok_or_else(|| MatrixError::bad_json(format!("messages.{user} must be an object")))?;
        // Remote users' devices are reached by m.direct_to_device EDUs once federation
        // exists; until then such messages are dropped, which the spec allows for any message.
        if server_of(user) != Some(server_name) {
            continue;
        }
        for (device, content) in devices {
            if !content.is_object() {
                return Err(MatrixError::bad_json("message contents must be objects"));
            }
            queue.push(json!([user, device, content]));
        }
        recipients.push(user.clone());
    }
    if queue.is_empty() {
        return Ok(JsonResponse::ok(json!({})));
    }
    let queued = stored::send_to_device(
        &ctx.db()?,
        me.user_id.as_str(),
        &me.device_id,
        event_type,
        txn_id,
        &queue,
    )
    .await?;
    if queued > 0 {
        notifier::notify(&ctx.env, recipients).await;
    }
    Ok(JsonResponse::ok(json!({})))
}
