//! Reading rooms: state, members, messages, context, single events, relations. Every read
//! checks the reader's membership and applies history visibility per event.

use ruma::RoomId;
use serde_json::{json, Map, Value};

use super::{backfill, ids, threads};
use crate::api::request::{Ctx, Requester};
use crate::http::{JsonResponse, MatrixError};
use crate::rooms::visibility::MembershipHistory;
use crate::rooms::RoomVersion;
use crate::storage::events::{self, EventRow};
use crate::storage::{rooms as stored, Db};
use crate::sync::filter::EventFilter;
use crate::sync::token::StreamPosition;

/// Most events one page may ask for: bounds the CPU one request can use.
pub(crate) const MAX_PAGE: u64 = 1000;

pub(crate) struct Access {
    pub version: RoomVersion,
    pub history: MembershipHistory,
}

impl Access {
    pub fn can_see(&self, row: &EventRow) -> bool {
        self.history
            .can_see(row.position(), &row.history_visibility)
    }

    /// The position up to which the reader sees state: now while joined, else when they left.
    pub fn state_position(&self) -> Result<Option<u64>, MatrixError> {
        match self.history.0.last() {
            Some((_, m)) if m == "join" => Ok(None),
            Some((at, m)) if m == "leave" || m == "ban" => Ok(Some(*at)),
            _ => Err(MatrixError::forbidden("You are not in this room")),
        }
    }
}

fn not_in_room() -> MatrixError {
    MatrixError::forbidden("You are not in this room")
}

pub(crate) async fn access(
    db: &Db,
    room_id: &RoomId,
    me: &Requester,
) -> Result<Access, MatrixError> {
    let (version, forgotten) = stored::room_version_for(db, room_id.as_str(), me.user_id.as_str())
        .await?
        .ok_or_else(not_in_room)?;
    // A forgotten room's history is gone for the user until they join again (spec: forget).
    if forgotten {
        return Err(MatrixError::forbidden("You have forgotten this room"));
    }
    let history = events::membership_history(db, room_id.as_str(), me.user_id.as_str()).await?;
    if history.0.is_empty() {
        return Err(not_in_room());
    }
    Ok(Access { version, history })
}

/// Access for reading single events: a user who was never in the room (or forgot it) still
/// reads world-readable events, as a peeker; anything else is then 404 (`visible_event`).
async fn event_access(db: &Db, room_id: &RoomId, me: &Requester) -> Result<Access, MatrixError> {
    match access(db, room_id, me).await {
        Ok(access) => Ok(access),
        Err(_) => {
            let version = stored::room_version(db, room_id.as_str())
                .await?
                .ok_or_else(|| MatrixError::not_found("Event not found"))?;
            Ok(Access {
                version,
                history: MembershipHistory(Vec::new()),
            })
        }
    }
}

/// The room's state as the reader may see it: current while joined, else as they left it.
pub(crate) async fn visible_state(
    db: &Db,
    room_id: &str,
    access: &Access,
) -> Result<Vec<EventRow>, MatrixError> {
    match access.state_position()? {
        None => events::current_state(db, room_id).await,
        Some(at) => events::state_at(db, room_id, at).await,
    }
}

/// `rows` as served to the reader in a timeline: each with the reader's membership at it
/// (`unsigned.membership`, MSC4115), thread roots with their thread's summary.
pub(crate) async fn served_events(
    db: &Db,
    rows: &[EventRow],
    access: &Access,
    me: &Requester,
) -> Result<Vec<Value>, MatrixError> {
    let mut out: Vec<Value> = rows
        .iter()
        .map(|r| r.to_client(access.version, me.user_id.as_str(), &me.device_id))
        .collect();
    add_memberships(rows, &mut out, access);
    let found = threads::summaries(db, rows, me).await?;
    threads::attach(&found, rows, &mut out, access, me);
    Ok(out)
}

/// Sets `unsigned.membership` of each served event (`events[i]` is `rows[i]`): the reader's
/// membership at the event, `leave` when they had none.
pub(crate) fn add_memberships(rows: &[EventRow], events: &mut [Value], access: &Access) {
    for (row, event) in rows.iter().zip(events.iter_mut()) {
        let membership = access.history.at(row.position()).unwrap_or("leave");
        if !event["unsigned"].is_object() {
            event["unsigned"] = json!({});
        }
        event["unsigned"]["membership"] = json!(membership);
    }
}

fn client_events(rows: &[EventRow], access: &Access, me: &Requester) -> Vec<Value> {
    rows.iter()
        .map(|row| row.to_client(access.version, me.user_id.as_str(), &me.device_id))
        .collect()
}

pub(crate) async fn state(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    let rows = visible_state(&db, room_id.as_str(), &access).await?;
    Ok(JsonResponse::ok(Value::Array(client_events(
        &rows, &access, &me,
    ))))
}

pub(crate) async fn state_event(ctx: &Ctx, state_key: &str) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let kind = ctx.param("eventType");
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    let rows = visible_state(&db, room_id.as_str(), &access).await?;
    let row = rows
        .iter()
        .find(|r| r.kind == kind && r.state_key.as_deref() == Some(state_key))
        .ok_or_else(|| MatrixError::not_found("No such state event"))?;
    let event = row.to_client(access.version, me.user_id.as_str(), &me.device_id);
    if ctx.query("format") == Some("event") {
        return Ok(JsonResponse::ok(event));
    }
    Ok(JsonResponse::ok(event["content"].clone()))
}

/// A pagination token: ours are `t<position>`; sync tokens (`s...`) are accepted too, since
/// clients paginate from `prev_batch` and `next_batch`.
/// A pagination token's position: `t<n>`, or a sync token's event position. Below zero are
/// events backfilled from other servers (`t-12`).
pub(crate) fn parse_position(token: &str) -> Result<i64, MatrixError> {
    if let Some(n) = token.strip_prefix('t').and_then(|n| n.parse().ok()) {
        return Ok(n);
    }
    StreamPosition::parse(token)
        .map(|p| p.events as i64)
        .ok_or_else(|| MatrixError::invalid_param("unknown pagination token"))
}

pub(crate) fn position_token(position: i64) -> String {
    format!("t{position}")
}

/// The `dir` query parameter: `b` (the default) or `f`. True for backwards.
fn backwards(ctx: &Ctx) -> Result<bool, MatrixError> {
    match ctx.query("dir").unwrap_or("b") {
        "b" => Ok(true),
        "f" => Ok(false),
        _ => Err(MatrixError::invalid_param("dir must be b or f")),
    }
}

/// Tokens sit between events (`t<n>` is just after the event at n): the position of the token
/// just past `row` when paging in the given direction.
fn position_past(row: &EventRow, backwards: bool) -> i64 {
    if backwards {
        row.signed_position() - 1
    } else {
        row.signed_position()
    }
}

pub(crate) async fn members(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    let rows = match ctx.query("at") {
        Some(at) => {
            let at = parse_position(at)?.max(0) as u64;
            let limit = access.state_position()?.unwrap_or(u64::MAX).min(at);
            events::state_at(&db, room_id.as_str(), limit).await?
        }
        None => visible_state(&db, room_id.as_str(), &access).await?,
    };
    let wanted = ctx.query("membership");
    let unwanted = ctx.query("not_membership");
    let chunk: Vec<Value> = client_events(&rows, &access, &me)
        .into_iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter(|e| {
            let m = e["content"]["membership"].as_str().unwrap_or_default();
            wanted.is_none_or(|w| w == m) && unwanted.is_none_or(|u| u != m)
        })
        .collect();
    Ok(JsonResponse::ok(json!({ "chunk": chunk })))
}

pub(crate) async fn joined_members(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    // Who is in the room now is for those in it now (spec: joined_members), not for former
    // members reading the state they could once see.
    let membership = stored::membership(&db, room_id.as_str(), me.user_id.as_str()).await?;
    if membership.as_deref() != Some("join") {
        return Err(MatrixError::forbidden("You are not in this room"));
    }
    let rows = visible_state(&db, room_id.as_str(), &access).await?;
    let mut joined = Map::new();
    for event in client_events(&rows, &access, &me) {
        if event["type"] == "m.room.member" && event["content"]["membership"] == "join" {
            if let Some(user) = event["state_key"].as_str() {
                joined.insert(
                    user.to_owned(),
                    json!({
                        "display_name": event["content"]["displayname"],
                        "avatar_url": event["content"]["avatar_url"],
                    }),
                );
            }
        }
    }
    Ok(JsonResponse::ok(json!({ "joined": joined })))
}

pub(crate) async fn joined_rooms(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let rooms = stored::rooms_with_membership(&ctx.db(), me.user_id.as_str(), "join").await?;
    Ok(JsonResponse::ok(json!({ "joined_rooms": rooms })))
}

fn event_filter(ctx: &Ctx) -> Result<EventFilter, MatrixError> {
    match ctx.query("filter") {
        Some(raw) => serde_json::from_str(raw)
            .map_err(|e| MatrixError::bad_json(format!("invalid filter: {e}"))),
        None => Ok(EventFilter::default()),
    }
}

/// Member events of the given senders, for lazy-loading clients.
async fn members_of(
    db: &Db,
    room_id: &RoomId,
    senders: &[&str],
    access: &Access,
    me: &Requester,
) -> Result<Vec<Value>, MatrixError> {
    let state = visible_state(db, room_id.as_str(), access).await?;
    let rows: Vec<EventRow> = state
        .into_iter()
        .filter(|r| {
            r.kind == "m.room.member"
                && r.state_key.as_deref().is_some_and(|k| senders.contains(&k))
        })
        .collect();
    Ok(client_events(&rows, access, me))
}

pub(crate) async fn messages(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    let filter = event_filter(ctx)?;
    let limit = ctx.query_u64("limit")?.unwrap_or(10).clamp(1, MAX_PAGE);
    let backwards = backwards(ctx)?;
    let to = ctx.query("to").map(parse_position).transpose()?;
    let from = match ctx.query("from") {
        Some(token) => parse_position(token)?,
        None if backwards => crate::storage::sync::current_position(&db).await?.events as i64,
        None => 0,
    };
    // Tokens sit between events: `t<n>` is just after the event at position n.
    let page = || async {
        if backwards {
            events::timeline_backwards(&db, room_id.as_str(), to.unwrap_or(i64::MIN), from, limit)
                .await
        } else {
            let before = to.map_or(i64::MAX, |t| t + 1);
            events::timeline_forwards(&db, room_id.as_str(), from + 1, before, limit).await
        }
    };
    let mut rows = page().await?;
    // Paging back past the oldest event we hold of a room joined over federation: ask the
    // room's other servers for the history before it, then read the page again.
    if backwards && (rows.len() as u64) < limit && to.is_none() {
        let fetched = backfill::fill(&ctx.platform, &db, &room_id, limit).await?;
        if fetched > 0 {
            rows = page().await?;
        }
    }
    // `end` is omitted only when the page holds nothing: the start (or end) of the room was
    // reached. A page cut short (by the room's start, or with every event filtered out) still
    // carries it, so a client pages on until a page is empty (as Synapse does; a short page is
    // not proof of the start when a filter or `to` cut it).
    let end = rows.last().map(|r| position_past(r, backwards));
    let shown: Vec<EventRow> = rows
        .into_iter()
        .filter(|r| access.can_see(r) && filter.allows_event(r))
        .collect();
    let chunk = served_events(&db, &shown, &access, &me).await?;
    let mut body = json!({ "chunk": chunk, "start": position_token(from) });
    if let Some(end) = end {
        body["end"] = json!(position_token(end));
    }
    if filter.lazy_load_members {
        let mut senders: Vec<&str> = shown.iter().map(|r| r.sender.as_str()).collect();
        senders.sort();
        senders.dedup();
        body["state"] = json!(members_of(&db, &room_id, &senders, &access, &me).await?);
    }
    Ok(JsonResponse::ok(body))
}

async fn visible_event(
    ctx: &Ctx,
    db: &Db,
    room_id: &RoomId,
    access: &Access,
) -> Result<EventRow, MatrixError> {
    let not_found = || MatrixError::not_found("Event not found");
    let row = events::event(db, ctx.param("eventId"))
        .await?
        .ok_or_else(not_found)?;
    if row.room_id != room_id.as_str() || !access.can_see(&row) {
        return Err(not_found());
    }
    Ok(row)
}

/// `GET /v1/rooms/{roomId}/timestamp_to_event?ts=..&dir=f|b`, for members.
pub(crate) async fn timestamp_to_event(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    access(&db, &room_id, &me).await?;
    event_at_timestamp(ctx, &db, &room_id).await
}

/// The answer of `timestamp_to_event` (client and federation): the room's event closest to
/// `ts` in direction `dir`, or 404 when there is none.
pub(crate) async fn event_at_timestamp(
    ctx: &Ctx,
    db: &Db,
    room_id: &RoomId,
) -> Result<JsonResponse, MatrixError> {
    let ts = ctx
        .query_u64("ts")?
        .ok_or_else(|| MatrixError::missing_param("ts is required"))?;
    let forwards = match ctx.query("dir") {
        Some("f") => true,
        Some("b") => false,
        Some(_) => return Err(MatrixError::invalid_param("dir must be f or b")),
        None => return Err(MatrixError::missing_param("dir is required")),
    };
    let (event_id, origin_server_ts) =
        events::closest_to_timestamp(db, room_id.as_str(), ts, forwards)
            .await?
            .ok_or_else(|| MatrixError::not_found("No event found in that direction"))?;
    Ok(JsonResponse::ok(
        json!({ "event_id": event_id, "origin_server_ts": origin_server_ts }),
    ))
}

pub(crate) async fn event(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = event_access(&db, &room_id, &me).await?;
    let row = visible_event(ctx, &db, &room_id, &access).await?;
    let mut event = served_events(&db, std::slice::from_ref(&row), &access, &me).await?;
    Ok(JsonResponse::ok(event.pop().unwrap_or_default()))
}

pub(crate) async fn context(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    let filter = event_filter(ctx)?;
    let row = visible_event(ctx, &db, &room_id, &access).await?;
    let limit = ctx.query_u64("limit")?.unwrap_or(10).min(MAX_PAGE);
    let (before_n, after_n) = (limit / 2 + limit % 2, limit / 2);
    let at = row.signed_position();
    let before =
        events::timeline_backwards(&db, room_id.as_str(), i64::MIN, at - 1, before_n.max(1))
            .await?;
    let after =
        events::timeline_forwards(&db, room_id.as_str(), at + 1, i64::MAX, after_n.max(1)).await?;
    let keep = |rows: &[EventRow], n: u64| -> Vec<EventRow> {
        rows.iter()
            .take(n as usize)
            .filter(|r| access.can_see(r) && filter.allows_event(r))
            .cloned()
            .collect()
    };
    // One summary lookup for the event and both sides.
    let mut shown = vec![row];
    let before_shown = keep(&before, before_n);
    let after_shown = keep(&after, after_n);
    let (n_before, n_after) = (before_shown.len(), after_shown.len());
    shown.extend(before_shown);
    shown.extend(after_shown);
    let mut served = served_events(&db, &shown, &access, &me).await?;
    let events_after = served.split_off(1 + n_before);
    let events_before = served.split_off(1);
    debug_assert_eq!(events_after.len(), n_after);
    let event = served.pop().unwrap_or_default();
    let start = before[..before.len().min(before_n as usize)]
        .last()
        .map_or(at - 1, |r| r.signed_position() - 1);
    let end = after[..after.len().min(after_n as usize)]
        .last()
        .map_or(at, |r| r.signed_position());
    // A reader who has left sees the state as it was when they left, not later.
    let state_end = end.max(0) as u64;
    let state_end = access
        .state_position()?
        .map_or(state_end, |left| left.min(state_end));
    let state_rows = events::state_at(&db, room_id.as_str(), state_end).await?;
    Ok(JsonResponse::ok(json!({
        "event": event,
        "events_before": events_before,
        "events_after": events_after,
        "start": position_token(start),
        "end": position_token(end),
        "state": client_events(&state_rows, &access, &me),
    })))
}

pub(crate) async fn relations(
    ctx: &Ctx,
    rel_type: Option<&str>,
    event_type: Option<&str>,
) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    let access = access(&db, &room_id, &me).await?;
    visible_event(ctx, &db, &room_id, &access).await?;
    let limit = ctx.query_u64("limit")?.unwrap_or(50).clamp(1, MAX_PAGE);
    let backwards = backwards(ctx)?;
    // The same tokens as /messages and /sync (the spec allows theirs here), read the same way:
    // a page holds the positions between the two tokens, in `(after, up_to]`.
    let from = ctx.query("from").map(parse_position).transpose()?;
    let to = ctx.query("to").map(parse_position).transpose()?;
    let (after, up_to) = if backwards {
        (to.unwrap_or(i64::MIN), from.unwrap_or(i64::MAX))
    } else {
        (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX))
    };
    let page = events::RelationsPage {
        rel_type,
        event_type,
        after,
        up_to,
        backwards,
        limit,
    };
    let rows = events::relations(&db, room_id.as_str(), ctx.param("eventId"), &page).await?;
    let next = rows
        .last()
        .filter(|_| rows.len() as u64 == limit)
        .map(|r| position_past(r, backwards));
    let shown: Vec<EventRow> = rows.into_iter().filter(|r| access.can_see(r)).collect();
    let mut body = json!({ "chunk": client_events(&shown, &access, &me) });
    if let Some(next) = next {
        body["next_batch"] = json!(position_token(next));
    }
    Ok(JsonResponse::ok(body))
}
