//! Threads for clients: `GET /v1/rooms/{roomId}/threads`, and the thread summary a root event
//! carries wherever it is served (`unsigned.m.relations.m.thread`: the latest reply, how many
//! replies, whether the reader took part), in `/messages`, `/event`, `/context` and `/sync`.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::ids;
use super::room_read::{self, parse_position, position_token, Access, MAX_PAGE};
use crate::api::request::{Ctx, Requester};
use crate::http::{JsonResponse, MatrixError};
use crate::storage::events::{self, EventRow};
use crate::storage::threads::{self as stored, Summary};
use crate::storage::Db;

/// The events of `rows` that may be thread roots (a reply in a thread is not one).
pub(crate) fn root_ids(rows: &[EventRow]) -> impl Iterator<Item = &str> {
    rows.iter()
        .filter(|r| r.rel_type.as_deref() != Some("m.thread"))
        .map(|r| r.event_id.as_str())
}

/// The summaries of the threads rooted among `rows`, for the reader.
pub(crate) async fn summaries(
    db: &Db,
    rows: &[EventRow],
    me: &Requester,
) -> Result<HashMap<String, Summary>, MatrixError> {
    let roots: Vec<&str> = root_ids(rows).collect();
    stored::summaries(db, &roots, me.user_id.as_str()).await
}

/// Adds each root's summary to its client event (`events[i]` is `rows[i]` as served). A
/// summary whose latest reply the reader may not see is left out.
pub(crate) fn attach(
    summaries: &HashMap<String, Summary>,
    rows: &[EventRow],
    events: &mut [Value],
    access: &Access,
    me: &Requester,
) {
    for (row, event) in rows.iter().zip(events.iter_mut()) {
        let Some(s) = summaries.get(&row.event_id) else {
            continue;
        };
        if !access.can_see(&s.latest) {
            continue;
        }
        let mut latest = [s
            .latest
            .to_client(access.version, me.user_id.as_str(), &me.device_id)];
        room_read::add_memberships(std::slice::from_ref(&s.latest), &mut latest, access);
        let [latest] = latest;
        let thread = json!({
            "latest_event": latest,
            "count": s.count,
            "current_user_participated": s.replied || row.sender == me.user_id.as_str(),
        });
        if !event["unsigned"].is_object() {
            event["unsigned"] = json!({});
        }
        let unsigned = &mut event["unsigned"];
        if !unsigned["m.relations"].is_object() {
            unsigned["m.relations"] = json!({});
        }
        unsigned["m.relations"]["m.thread"] = thread;
    }
}

/// `GET /v1/rooms/{roomId}/threads?include=all|participated&from=..&limit=..`: the room's
/// threads the reader may see, most recently active first.
pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = room_read::access(&db, &room_id, &me).await?;
    let participant = match ctx.query("include").unwrap_or("all") {
        "all" => None,
        "participated" => Some(me.user_id.as_str()),
        _ => {
            return Err(MatrixError::invalid_param(
                "include must be all or participated",
            ))
        }
    };
    let limit = ctx.query_u64("limit")?.unwrap_or(50).clamp(1, MAX_PAGE);
    let before = match ctx.query("from") {
        Some(token) => parse_position(token)?,
        None => i64::MAX,
    };
    let page = stored::threads(&db, room_id.as_str(), participant, before, limit).await?;
    let next = page
        .last()
        .filter(|_| page.len() as u64 == limit)
        .map(|(_, latest)| position_token(*latest));
    let ids: Vec<&str> = page.iter().map(|(root, _)| root.as_str()).collect();
    let mut roots = events::by_ids(&db, room_id.as_str(), &ids).await?;
    roots.retain(|r| access.can_see(r));
    // In the page's order: by latest reply.
    let rank: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    roots.sort_by_key(|r| rank.get(r.event_id.as_str()).copied());
    let chunk = room_read::served_events(&db, &roots, &access, &me).await?;
    let mut body = json!({ "chunk": chunk });
    if let Some(next) = next {
        body["next_batch"] = json!(next);
    }
    Ok(JsonResponse::ok(body))
}
