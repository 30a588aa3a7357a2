//! Writing events: messages (idempotent per device and transaction id), state, redactions.

use serde_json::{json, Value};

use super::ids;
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::builder::EventTemplate;
use crate::rooms::command::send_event;

/// A room that does not exist and a room the user is not in look the same to the client.
fn not_in_room(e: MatrixError) -> MatrixError {
    if e.code == ErrorCode::NotFound {
        MatrixError::forbidden("You are not in this room")
    } else {
        e
    }
}

/// A room's create event is made by `createRoom` (or an upgrade) and never again: sent into an
/// existing room it could only be refused by the auth rules, so it is refused here, plainly.
fn not_a_create_event(kind: &str) -> Result<(), MatrixError> {
    if kind == "m.room.create" {
        return Err(MatrixError::new(
            400,
            ErrorCode::BadJson,
            "m.room.create is sent only by createRoom",
        ));
    }
    Ok(())
}

pub(crate) async fn send_message(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Send).await?;
    not_a_create_event(ctx.param("eventType"))?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let content = Value::Object(ctx.json_object()?);
    let template = EventTemplate::message(ctx.param("eventType"), content);
    let transaction = Some((me.device_id.clone(), ctx.param("txnId").to_owned()));
    let event_id = send_event(&ctx.platform, &room_id, &me.user_id, template, transaction)
        .await
        .map_err(not_in_room)?;
    Ok(JsonResponse::ok(json!({ "event_id": event_id })))
}

pub(crate) async fn put_state(ctx: &Ctx, state_key: &str) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Send).await?;
    not_a_create_event(ctx.param("eventType"))?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let content = Value::Object(ctx.json_object()?);
    let template = EventTemplate::state(ctx.param("eventType"), state_key, content);
    let event_id = send_event(&ctx.platform, &room_id, &me.user_id, template, None)
        .await
        .map_err(not_in_room)?;
    Ok(JsonResponse::ok(json!({ "event_id": event_id })))
}

pub(crate) async fn redact(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Send).await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let target = ctx.param("eventId");
    let body = ctx.json_object()?;
    let mut content = json!({ "redacts": target });
    if let Some(reason) = body.get("reason") {
        content["reason"] = reason.clone();
    }
    let template = EventTemplate::message("m.room.redaction", content);
    let transaction = Some((
        me.device_id.clone(),
        format!("redact:{}", ctx.param("txnId")),
    ));
    let event_id = send_event(&ctx.platform, &room_id, &me.user_id, template, transaction)
        .await
        .map_err(not_in_room)?;
    Ok(JsonResponse::ok(json!({ "event_id": event_id })))
}
