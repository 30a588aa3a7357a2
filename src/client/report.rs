//! Reporting content (spec: "Reporting content"): `POST /rooms/{roomId}/report/{eventId}`
//! and `POST /rooms/{roomId}/report`. Reports are stored for the server's admins
//! (`storage/reports.rs`); nothing is sent anywhere.

use serde::Deserialize;
use serde_json::json;

use super::{ids, room_read};
use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::events;
use crate::storage::reports::{self, Report};
use crate::storage::rooms as stored;

/// The longest reason kept; longer ones are refused rather than cut.
const MAX_REASON_BYTES: usize = 4096;

#[derive(Deserialize)]
struct Body {
    reason: Option<String>,
    /// -100 (most offensive) to 0; dropped from the spec in v1.15 but still sent by clients.
    score: Option<i64>,
}

fn body(ctx: &Ctx) -> Result<Body, MatrixError> {
    let body: Body = serde_json::from_value(ctx.json_value()?)
        .map_err(|e| MatrixError::bad_json(format!("invalid report: {e}")))?;
    if body.score.is_some_and(|s| !(-100..=0).contains(&s)) {
        return Err(MatrixError::invalid_param(
            "score must be between -100 and 0",
        ));
    }
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REASON_BYTES)
    {
        return Err(MatrixError::invalid_param("reason is too long"));
    }
    Ok(body)
}

/// An event the reporter may see: anything else is 404, whether it exists or not (spec).
pub(crate) async fn event(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let body = body(ctx)?;
    let db = ctx.db();
    let not_found = || MatrixError::not_found("The event was not found or you cannot see it");
    let access = room_read::access(&db, &room_id, &me)
        .await
        .map_err(|_| not_found())?;
    let event_id = ctx.param("eventId");
    let row = events::event(&db, event_id).await?.ok_or_else(not_found)?;
    if row.room_id != room_id.as_str() || !access.can_see(&row) {
        return Err(not_found());
    }
    let report = Report {
        room_id: room_id.as_str(),
        event_id: Some(event_id),
        user_id: me.user_id.as_str(),
        reason: body.reason.as_deref(),
        score: body.score,
    };
    reports::store(&db, &report).await?;
    Ok(JsonResponse::ok(json!({})))
}

/// A room this server knows; the reporter need not be in it (spec).
pub(crate) async fn room(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let body = body(ctx)?;
    let db = ctx.db();
    if stored::room_version(&db, room_id.as_str()).await?.is_none() {
        return Err(MatrixError::not_found("Unknown room"));
    }
    let report = Report {
        room_id: room_id.as_str(),
        event_id: None,
        user_id: me.user_id.as_str(),
        reason: body.reason.as_deref(),
        score: None,
    };
    reports::store(&db, &report).await?;
    Ok(JsonResponse::ok(json!({})))
}
