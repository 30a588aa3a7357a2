//! Event reports users made (`POST /rooms/{roomId}/report/{eventId}`, client/report.rs):
//! `GET /_synapse/admin/v1/event_reports`, paged and filtered as Synapse's.

use serde_json::json;

use super::{query_backwards, query_count, require_admin};
use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::reports::{self as stored, ReportPage};

/// `GET /_synapse/admin/v1/event_reports?from=&limit=&dir=&room_id=&user_id=`: newest first
/// unless `dir=f`.
pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let page = ReportPage {
        from: query_count(ctx, "from", 0)?,
        limit: query_count(ctx, "limit", 100)?,
        backwards: match ctx.query("dir") {
            None => true,
            Some(_) => query_backwards(ctx)?,
        },
        room_id: ctx.query("room_id"),
        user_id: ctx.query("user_id"),
    };
    let (rows, total) = stored::event_reports(&ctx.db(), &page).await?;
    let reports: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "received_ts": r.received_ts,
                "room_id": r.room_id,
                "event_id": r.event_id,
                "user_id": r.user_id,
                "reason": r.reason,
                "score": r.score,
                "sender": r.sender,
            })
        })
        .collect();
    let mut body = json!({ "event_reports": reports, "total": total });
    let next = page.from + rows.len() as u64;
    if next < total {
        body["next_token"] = json!(next);
    }
    Ok(JsonResponse::ok(body))
}
