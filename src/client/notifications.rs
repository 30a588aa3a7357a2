//! `GET /notifications`: the events that notified the user (spec: "Listing Notifications"),
//! newest first, from what the push rule evaluation stored in the events' rows (src/push/).
//! `from` is the `next_token` of the previous page: a position, notifications before it
//! follow. A page looks through at most `storage::push::NOTIFICATION_WINDOW` positions.

use serde_json::{json, Value};

use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::rooms::RoomVersion;
use crate::storage::push as stored;

const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;

pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let before = match ctx.query("from") {
        None | Some("") => u64::MAX,
        Some(from) => from
            .parse::<u64>()
            .map_err(|_| MatrixError::invalid_param("from is not a token of this endpoint"))?,
    };
    let limit = match ctx.query("limit") {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .parse::<u64>()
            .map_err(|_| MatrixError::invalid_param("limit must be a non-negative integer"))?
            .clamp(1, MAX_LIMIT),
    };
    let highlight_only = ctx.query("only") == Some("highlight");
    let (rows, older) = stored::notifications(
        &ctx.db(),
        me.user_id.as_str(),
        before,
        limit + 1,
        highlight_only,
    )
    .await?;
    let more = rows.len() as u64 > limit;
    let mut next_token = None;
    let mut notifications = Vec::new();
    for row in rows.into_iter().take(limit as usize) {
        next_token = Some(row.event.stream_ordering.to_string());
        let Some(version) = RoomVersion::parse(&row.room_version) else {
            continue;
        };
        let actions: Value = serde_json::from_str(&row.actions).unwrap_or(json!([]));
        notifications.push(json!({
            "actions": actions,
            "event": row.event.to_client(version, me.user_id.as_str(), &me.device_id),
            "read": row.read != 0,
            "room_id": row.event.room_id,
            "ts": row.ts,
        }));
    }
    let mut out = json!({ "notifications": notifications });
    if more {
        out["next_token"] = json!(next_token);
    } else if let Some(older) = older {
        // The page looked through a bounded stretch of the stream and older events remain:
        // the next page goes on from below it (it may hold fewer than `limit`, or none).
        out["next_token"] = json!(older.to_string());
    }
    Ok(JsonResponse::ok(out))
}
