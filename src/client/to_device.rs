//! `PUT /sendToDevice/{eventType}/{txnId}`: messages straight to other devices (Olm key
//! exchange, verification), queued in each device's inbox and delivered by its `/sync`; other
//! servers' users get them as `m.direct_to_device` EDUs through the server's outbound queue.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::device_keys::server_of;
use crate::api::request::Ctx;
use crate::federation::e2ee_out;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::e2ee as stored;

pub(crate) async fn send(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let (event_type, txn_id) = (ctx.param("eventType"), ctx.param("txnId"));
    let body = ctx.json_object()?;
    let messages = body
        .get("messages")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json("messages must be an object"))?;
    let server_name = ctx.config.server_name.as_str();
    let mut queue = Vec::new();
    let mut recipients = Vec::new();
    let mut remote: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (user, devices) in messages {
        let devices = devices
            .as_object()
            .ok_or_else(|| MatrixError::bad_json(format!("messages.{user} must be an object")))?;
        if devices.values().any(|content| !content.is_object()) {
            return Err(MatrixError::bad_json("message contents must be objects"));
        }
        match server_of(user) {
            Some(server) if server == server_name => {
                for (device, content) in devices {
                    queue.push(json!([user, device, content]));
                }
                recipients.push(user.clone());
            }
            Some(server) => {
                remote
                    .entry(server.to_owned())
                    .or_default()
                    .insert(user.clone(), Value::Object(devices.clone()));
            }
            None => {}
        }
    }
    if queue.is_empty() && remote.is_empty() {
        return Ok(JsonResponse::ok(json!({})));
    }
    // Run even with nothing local: it records the transaction, so a retry sends no EDU twice.
    let (queued, new_txn) = stored::send_to_device(
        &ctx.db(),
        me.user_id.as_str(),
        &me.device_id,
        event_type,
        txn_id,
        &queue,
    )
    .await?;
    if queued > 0 {
        ctx.platform.wakeups.notify(recipients).await;
    }
    if new_txn && !remote.is_empty() {
        let message_id = format!("{}/{}", me.device_id, txn_id);
        e2ee_out::send_to_device(
            &ctx.platform,
            me.user_id.as_str(),
            event_type,
            &message_id,
            remote,
        )
        .await;
    }
    Ok(JsonResponse::ok(json!({})))
}
