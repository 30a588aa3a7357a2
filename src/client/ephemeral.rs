//! Typing notifications, read receipts and read markers: room data outside the event graph,
//! kept in D1 streams that /sync reads, with a wake-up for the room's local members.

use serde::Deserialize;
use serde_json::{json, Value};

use super::ids;
use crate::api::request::{Ctx, Requester};
use crate::http::{JsonResponse, MatrixError};
use crate::storage::{events, rooms as stored, user_data, Db};
use crate::time::now_ms;

/// Longest a typing notification lasts without being renewed.
const MAX_TYPING_MS: u64 = 120_000;

async fn joined_room(ctx: &Ctx, db: &Db, me: &Requester) -> Result<ruma::OwnedRoomId, MatrixError> {
    let room_id = ids::room_id(ctx.param("roomId"))?;
    if stored::membership(db, room_id.as_str(), me.user_id.as_str())
        .await?
        .as_deref()
        != Some("join")
    {
        return Err(MatrixError::forbidden("You are not in this room"));
    }
    Ok(room_id)
}

async fn wake_room(ctx: &Ctx, db: &Db, room_id: &str) -> Result<(), MatrixError> {
    let members = crate::storage::sync::local_members(db, room_id).await?;
    ctx.platform.wakeups.notify(members).await;
    Ok(())
}

/// Sends an EDU about this room to every other server with members in it.
async fn tell_other_servers(
    ctx: &Ctx,
    db: &Db,
    room_id: &str,
    edu: serde_json::Value,
) -> Result<(), MatrixError> {
    let us = ctx.config.server_name.as_str();
    for server in crate::storage::sync::remote_servers(db, room_id, us).await? {
        if let Ok(server) = ruma::ServerName::parse(&server) {
            ctx.platform
                .queue
                .enqueue(&server, vec![], vec![edu.clone()])
                .await;
        }
    }
    Ok(())
}

pub(crate) async fn typing(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    if ctx.param("userId") != me.user_id.as_str() {
        return Err(MatrixError::forbidden(
            "You can only set your own typing state",
        ));
    }
    #[derive(Deserialize)]
    struct Body {
        typing: bool,
        timeout: Option<u64>,
    }
    let body: Body = ctx.json()?;
    let db = ctx.db();
    let room_id = joined_room(ctx, &db, &me).await?;
    let expires = if body.typing {
        now_ms() + body.timeout.unwrap_or(30_000).min(MAX_TYPING_MS)
    } else {
        0
    };
    user_data::set_typing(&db, room_id.as_str(), me.user_id.as_str(), expires).await?;
    wake_room(ctx, &db, room_id.as_str()).await?;
    let edu = json!({ "edu_type": "m.typing", "content": {
        "room_id": room_id, "user_id": me.user_id, "typing": body.typing } });
    tell_other_servers(ctx, &db, room_id.as_str(), edu).await?;
    Ok(JsonResponse::ok(json!({})))
}

async fn set_receipt(
    ctx: &Ctx,
    db: &Db,
    me: &Requester,
    room_id: &str,
    receipt_type: &str,
    event_id: &str,
    thread_id: &str,
) -> Result<(), MatrixError> {
    let in_room = events::event(db, event_id)
        .await?
        .is_some_and(|e| e.room_id == room_id);
    if !in_room {
        return Err(MatrixError::not_found("No such event in this room"));
    }
    match receipt_type {
        "m.read" | "m.read.private" => {
            user_data::set_receipt(
                db,
                room_id,
                me.user_id.as_str(),
                receipt_type,
                thread_id,
                event_id,
            )
            .await?;
            if receipt_type == "m.read" {
                wake_room(ctx, db, room_id).await?;
                let mut data = json!({ "ts": now_ms() });
                if !thread_id.is_empty() {
                    data["thread_id"] = json!(thread_id);
                }
                let edu = json!({ "edu_type": "m.receipt", "content": { room_id: { "m.read": {
                    me.user_id.as_str(): { "event_ids": [event_id], "data": data } } } } });
                tell_other_servers(ctx, db, room_id, edu).await?;
            } else {
                ctx.platform
                    .wakeups
                    .notify(vec![me.user_id.to_string()])
                    .await;
            }
        }
        "m.fully_read" => {
            super::account_data::store(
                ctx,
                me,
                room_id,
                "m.fully_read",
                &json!({ "event_id": event_id }),
            )
            .await?;
        }
        other => {
            return Err(MatrixError::invalid_param(format!(
                "unknown receipt type {other}"
            )))
        }
    }
    Ok(())
}

pub(crate) async fn receipt(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    let room_id = joined_room(ctx, &db, &me).await?;
    let body = ctx.json_object()?;
    let thread_id = match body.get("thread_id") {
        None => "",
        Some(Value::String(t)) if ctx.param("receiptType") != "m.fully_read" => t.as_str(),
        Some(_) => {
            return Err(MatrixError::invalid_param(
                "thread_id must be a string, and not for m.fully_read",
            ))
        }
    };
    set_receipt(
        ctx,
        &db,
        &me,
        room_id.as_str(),
        ctx.param("receiptType"),
        ctx.param("eventId"),
        thread_id,
    )
    .await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn read_markers(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    let room_id = joined_room(ctx, &db, &me).await?;
    let body = ctx.json_object()?;
    for kind in ["m.fully_read", "m.read", "m.read.private"] {
        if let Some(value) = body.get(kind) {
            let event_id = value
                .as_str()
                .ok_or_else(|| MatrixError::bad_json(format!("{kind} must be an event id")))?;
            set_receipt(ctx, &db, &me, room_id.as_str(), kind, event_id, "").await?;
        }
    }
    Ok(JsonResponse::ok(json!({})))
}
