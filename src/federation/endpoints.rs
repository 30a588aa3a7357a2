//! The federation endpoints other servers call. Every one is authenticated with X-Matrix; room
//! events go to the room's object (`platform.rooms`), which alone decides what enters the room.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{json, Value};

use super::acl::ServerAcl;
use super::e2ee_in;
use crate::api::request::Ctx;
use crate::client::directory::{directory_page, directory_request};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::command::{MembershipReply, RoomCommand};
use crate::rooms::visibility::redacted_pdu;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::events::{self, EventRow};
use crate::storage::state_groups::{self, At};
use crate::storage::{remote_keys, rooms as stored, sync as stored_sync, user_data, Db};
use crate::time::now_ms;

/// The route's `{roomId}`.
fn room_param(ctx: &Ctx) -> Result<OwnedRoomId, MatrixError> {
    RoomId::parse(ctx.param("roomId")).map_err(|_| MatrixError::invalid_param("not a room id"))
}

/// Membership requests must come from the server of the user they are about (the route's
/// `{userId}`).
fn user_of_origin(ctx: &Ctx, origin: &ruma::ServerName) -> Result<ruma::OwnedUserId, MatrixError> {
    let user = UserId::parse(ctx.param("userId"))
        .map_err(|_| MatrixError::invalid_param("not a user id"))?;
    if user.server_name() != origin {
        return Err(MatrixError::forbidden(
            "The user does not belong to the requesting server",
        ));
    }
    Ok(user)
}

async fn known_room(ctx: &Ctx, room_id: &RoomId) -> Result<crate::rooms::RoomVersion, MatrixError> {
    stored::room_version(&ctx.db(), room_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))
}

/// Whether the room's server ACL lets `server` take part (spec: "Server Access Control Lists");
/// a room without one lets everyone in.
async fn acl_allows(
    db: &Db,
    room_id: &str,
    server: &ruma::ServerName,
) -> Result<bool, MatrixError> {
    Ok(
        events::current_state_content(db, room_id, "m.room.server_acl", "")
            .await?
            .is_none_or(|acl| ServerAcl::from_content(&acl).allows(server.as_str())),
    )
}

fn banned() -> MatrixError {
    MatrixError::forbidden("Your server is denied by the room's server ACL")
}

pub(super) async fn require_acl(
    ctx: &Ctx,
    room_id: &RoomId,
    origin: &ruma::ServerName,
) -> Result<(), MatrixError> {
    if acl_allows(&ctx.db(), room_id.as_str(), origin).await? {
        Ok(())
    } else {
        Err(banned())
    }
}

/// `make_join`, `make_leave` and `make_knock`: a template of the user's membership event.
pub(crate) async fn make_membership(
    ctx: &Ctx,
    membership: &str,
) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    let user = user_of_origin(ctx, &origin)?;
    let version = known_room(ctx, &room_id).await?;
    require_acl(ctx, &room_id, &origin).await?;
    // A joining or knocking server lists the versions it supports (`ver`, repeatable; none
    // means v1).
    let mut supported = ctx.query_all("ver");
    if supported.is_empty() {
        supported.push("1");
    }
    if membership != "leave" && !supported.contains(&version.as_str()) {
        return Err(MatrixError::new(
            400,
            ErrorCode::IncompatibleRoomVersion,
            "Your server does not support this room's version",
        )
        .with("room_version", json!(version.as_str())));
    }
    let command = RoomCommand::MakeMembership {
        room_id: room_id.clone(),
        user_id: user,
        membership: membership.into(),
    };
    ctx.platform
        .rooms
        .command(room_id.as_str(), &command)
        .await
        .map(JsonResponse::ok)
}

/// `send_join` and `send_leave`, v1 (answers `[200, body]`) and v2 (answers `body`), and
/// `send_knock` (v1, answers `body`: the room's stripped state).
pub(crate) async fn send_membership(
    ctx: &Ctx,
    v1: bool,
    membership: &str,
) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    known_room(ctx, &room_id).await?;
    require_acl(ctx, &room_id, &origin).await?;
    let event = ctx.json_value()?;
    let sender = event["sender"].as_str().and_then(|s| UserId::parse(s).ok());
    if sender.as_ref().is_none_or(|s| s.server_name() != origin)
        || event["state_key"] != event["sender"]
        || event["content"]["membership"] != membership
    {
        return Err(MatrixError::bad_json(format!(
            "not a {membership} event of a user of your server"
        )));
    }
    let command = RoomCommand::Remote {
        room_id: room_id.clone(),
        origin: origin.to_string(),
        pdus: vec![event],
        membership_reply: Some(if membership == "knock" {
            MembershipReply::StrippedState
        } else {
            MembershipReply::StateAndAuthChain
        }),
    };
    let mut reply = ctx
        .platform
        .rooms
        .command(room_id.as_str(), &command)
        .await?;
    if membership == "leave" {
        reply = json!({});
    }
    Ok(JsonResponse::ok(if v1 {
        json!([200, reply])
    } else {
        reply
    }))
}

/// `PUT /send/{txnId}`: PDUs to their rooms, EDUs to the ephemeral streams. A transaction id
/// seen before from the same origin gets the first answer again.
///
/// The hot path of inbound federation, in D1 round trips: the X-Matrix key comes from the
/// isolate's key cache; one batch then reads the transaction id, the backoff to the origin and
/// each room's version and server ACL (`remote_keys::transaction_start`); each room's object
/// persists its PDUs; one write keeps the answer.
pub(crate) async fn send_transaction(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let db = ctx.db();
    let txn = ctx.param("txnId");
    let body = ctx.json_object()?;
    let pdus = body
        .get("pdus")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let edus = body
        .get("edus")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if pdus.len() > 50 || edus.len() > 100 {
        return Err(MatrixError::bad_json(
            "a transaction carries at most 50 PDUs and 100 EDUs",
        ));
    }
    let mut by_room: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pdu in pdus {
        match pdu["room_id"].as_str() {
            Some(room) => by_room.entry(room.to_owned()).or_default().push(pdu),
            None => {
                crate::log_warn!("PDU without room_id from {origin}");
            }
        }
    }
    let rooms: Vec<&str> = by_room.keys().map(String::as_str).collect();
    let start = remote_keys::transaction_start(&db, origin.as_str(), txn, &rooms).await?;
    if start.retry_ts.is_some_and(|at| at > now_ms()) {
        // Our queue to the origin is waiting out a backoff: the server is evidently up again.
        ctx.platform.queue.wake(&origin).await;
    }
    if let Some(previous) = start.previous {
        return Ok(JsonResponse::ok(
            serde_json::from_str(&previous).unwrap_or(json!({"pdus": {}})),
        ));
    }
    let mut results = serde_json::Map::new();
    for (room, pdus) in by_room {
        // PDUs of rooms we do not know are ignored: without the room version they have no id.
        let (Ok(room_id), Some((version, acl))) = (RoomId::parse(&room), start.rooms.get(&room))
        else {
            crate::log_warn!("{} PDUs for unknown room {room} from {origin}", pdus.len());
            continue;
        };
        let version = *version;
        // A PDU from a server the room's ACL denies is ignored, with an error for it.
        let allowed = acl
            .as_ref()
            .is_none_or(|acl| ServerAcl::from_content(acl).allows(origin.as_str()));
        let answer = if allowed {
            let ids = pdu_ids(&pdus, version);
            let command = RoomCommand::Remote {
                room_id: room_id.clone(),
                origin: origin.to_string(),
                pdus,
                membership_reply: None,
            };
            ctx.platform
                .rooms
                .command(room.as_str(), &command)
                .await
                .map_err(|e| (e, ids))
        } else {
            Err((banned(), pdu_ids(&pdus, version)))
        };
        match answer {
            Ok(answer) => {
                if let Some(per_event) = answer["pdus"].as_object() {
                    results.extend(per_event.clone());
                }
            }
            Err((e, ids)) => {
                for id in ids {
                    results.insert(id, json!({ "error": e.message }));
                }
            }
        }
    }
    for edu in edus {
        if let Err(e) = receive_edu(ctx, &origin, &edu).await {
            crate::log_warn!("EDU from {origin} refused: {e}");
        }
    }
    let response = json!({ "pdus": results });
    remote_keys::save_transaction(&db, origin.as_str(), txn, &response.to_string()).await?;
    Ok(JsonResponse::ok(response))
}

/// The ids of PDUs as the room version computes them (v3+ PDUs do not carry theirs).
fn pdu_ids(pdus: &[Value], version: RoomVersion) -> Vec<String> {
    pdus.iter()
        .filter_map(|p| crate::signing::to_canonical_object(p.clone()).ok())
        .filter_map(|o| Pdu::from_json(o, version).ok())
        .map(|p| p.event_id().to_string())
        .collect()
}

/// A remote user in one of our rooms, on the server that sent the EDU.
async fn remote_member(
    ctx: &Ctx,
    origin: &ruma::ServerName,
    room: &str,
    user: &str,
) -> Result<bool, MatrixError> {
    let from_origin = UserId::parse(user).is_ok_and(|u| u.server_name() == origin);
    Ok(from_origin && stored::membership(&ctx.db(), room, user).await?.as_deref() == Some("join"))
}

async fn receive_edu(ctx: &Ctx, origin: &ruma::ServerName, edu: &Value) -> Result<(), MatrixError> {
    let db = ctx.db();
    let content = &edu["content"];
    match edu["edu_type"].as_str() {
        Some("m.typing") => {
            let (Some(room), Some(user)) =
                (content["room_id"].as_str(), content["user_id"].as_str())
            else {
                return Err(MatrixError::bad_json("m.typing needs room_id and user_id"));
            };
            if !remote_member(ctx, origin, room, user).await? {
                return Err(MatrixError::forbidden("not a member from this origin"));
            }
            if !acl_allows(&db, room, origin).await? {
                return Err(banned());
            }
            let typing = content["typing"].as_bool().unwrap_or(false);
            let expires = if typing { now_ms() + 30_000 } else { 0 };
            user_data::set_typing(&db, room, user, expires).await?;
            ctx.platform
                .wakeups
                .notify(stored_sync::local_members(&db, room).await?)
                .await;
        }
        Some("m.receipt") => {
            let Some(rooms) = content.as_object() else {
                return Err(MatrixError::bad_json("m.receipt content must be an object"));
            };
            for (room, by_type) in rooms {
                let Some(read) = by_type["m.read"].as_object() else {
                    continue;
                };
                if !acl_allows(&db, room, origin).await? {
                    continue;
                }
                for (user, receipt) in read {
                    if !remote_member(ctx, origin, room, user).await? {
                        continue;
                    }
                    let thread = receipt["data"]["thread_id"].as_str().unwrap_or_default();
                    for event_id in receipt["event_ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        user_data::set_receipt(&db, room, user, "m.read", thread, event_id).await?;
                    }
                }
                ctx.platform
                    .wakeups
                    .notify(stored_sync::local_members(&db, room).await?)
                    .await;
            }
        }
        Some("m.device_list_update") => e2ee_in::device_list_update(ctx, origin, content).await?,
        Some("m.signing_key_update") => e2ee_in::signing_key_update(ctx, origin, content).await?,
        Some("m.direct_to_device") => e2ee_in::direct_to_device(ctx, origin, content).await?,
        Some("m.presence") => crate::client::presence::receive(ctx, origin, content).await?,
        _ => {}
    }
    Ok(())
}

pub(crate) async fn query_profile(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    let user = ctx
        .query("user_id")
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| MatrixError::invalid_param("user_id is required"))?;
    if user.server_name() != ctx.config.server_name {
        return Err(MatrixError::invalid_param(
            "That user is not on this server",
        ));
    }
    let profile = user_data::profile(&ctx.db(), user.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown user"))?;
    let mut out = serde_json::Map::new();
    for (field, value) in [
        ("displayname", profile.displayname),
        ("avatar_url", profile.avatar_url),
    ] {
        if ctx.query("field").is_none_or(|f| f == field) {
            if let Some(value) = value {
                out.insert(field.into(), json!(value));
            }
        }
    }
    Ok(JsonResponse::ok(Value::Object(out)))
}

pub(crate) async fn query_directory(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    let alias = ctx
        .query("room_alias")
        .ok_or_else(|| MatrixError::invalid_param("room_alias is required"))?;
    let room = stored::alias_room(&ctx.db(), alias)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(JsonResponse::ok(
        json!({ "room_id": room, "servers": [ctx.config.server_name] }),
    ))
}

/// `GET` and `POST /publicRooms`: our public room directory, as our clients see it.
pub(crate) async fn public_rooms(ctx: &Ctx, post: bool) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    let request = directory_request(ctx, post)?;
    directory_page(ctx, &request).await
}

/// `GET /timestamp_to_event/{roomId}?ts=..&dir=f|b`: for servers in the room the ACL admits.
pub(crate) async fn timestamp_to_event(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    room_reader(ctx, &room_id, &origin).await?;
    crate::client::room_read::event_at_timestamp(ctx, &ctx.db(), &room_id).await
}

/// Whether the server shares the room: only servers with a joined member may read its events.
async fn server_in_room(
    ctx: &Ctx,
    room_id: &str,
    server: &ruma::ServerName,
) -> Result<bool, MatrixError> {
    let members = stored_sync::members_of_server(&ctx.db(), room_id, server.as_str()).await?;
    Ok(members > 0)
}

/// The check before any room-wide read (state, auth chains, backfill, missing events): the
/// asking server has a joined member in the room (403 otherwise), and the room's ACL lets it in.
/// Membership comes first, so that servers outside the room learn nothing of its ACL.
async fn room_reader(
    ctx: &Ctx,
    room_id: &RoomId,
    origin: &ruma::ServerName,
) -> Result<RoomVersion, MatrixError> {
    if !server_in_room(ctx, room_id.as_str(), origin).await? {
        return Err(MatrixError::forbidden("Your server is not in this room"));
    }
    require_acl(ctx, room_id, origin).await?;
    known_room(ctx, room_id).await
}

/// Events as `origin` may see them (history visibility at each event and its users'
/// memberships then): in full, or redacted when it may not, as lists over federation show them.
async fn as_seen_by(
    db: &Db,
    room_id: &str,
    version: RoomVersion,
    origin: &ruma::ServerName,
    rows: Vec<EventRow>,
) -> Result<Vec<Value>, MatrixError> {
    let memberships = events::server_memberships(db, room_id, origin.as_str()).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let pdu: Value = serde_json::from_str(&row.pdu).unwrap_or(Value::Null);
            let visible = memberships.may_see(
                row.position(),
                &row.kind,
                row.state_key.as_deref(),
                &pdu["content"],
                &row.history_visibility,
            );
            if visible {
                pdu
            } else {
                redacted_pdu(pdu, version)
            }
        })
        .collect())
}

/// `GET /event/{eventId}`: servers outside the event's room get 403; servers in it get the
/// event, redacted if history visibility hides it from them.
pub(crate) async fn event(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let db = ctx.db();
    let row = events::event(&db, ctx.param("eventId"))
        .await?
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let room_id = row.room_id.clone();
    if !server_in_room(ctx, &room_id, &origin).await? {
        return Err(MatrixError::forbidden("Your server is not in this room"));
    }
    let version = stored::room_version(&db, &room_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let pdus = as_seen_by(&db, &room_id, version, &origin, vec![row]).await?;
    Ok(JsonResponse::ok(json!({
        "origin": ctx.config.server_name,
        "origin_server_ts": now_ms(),
        "pdus": pdus,
    })))
}

/// `/state` and `/state_ids` at an event: the room's state after the event's predecessors.
pub(crate) async fn state(ctx: &Ctx, ids_only: bool) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    let db = ctx.db();
    room_reader(ctx, &room_id, &origin).await?;
    let event_id = ctx
        .query("event_id")
        .ok_or_else(|| MatrixError::missing_param("event_id is required"))?;
    let at = events::event(&db, event_id)
        .await?
        .filter(|row| row.room_id == room_id.as_str())
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let state = match state_groups::state_at(&db, event_id, At::Before).await? {
        Some(group) => {
            let ids: Vec<&str> = group.state.values().map(|id| id.as_str()).collect();
            events::by_ids(&db, room_id.as_str(), &ids).await?
        }
        // The create event: nothing before it.
        None if at.kind == "m.room.create" => Vec::new(),
        // Stored before state groups existed, when local rooms were linear: the state at the
        // previous position.
        None => events::state_at(&db, room_id.as_str(), at.position() - 1).await?,
    };
    let chain = auth_chain(&db, room_id.as_str(), &state).await?;
    if ids_only {
        return Ok(JsonResponse::ok(json!({
            "pdu_ids": state.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(),
            "auth_chain_ids": chain.keys().collect::<Vec<_>>(),
        })));
    }
    Ok(JsonResponse::ok(json!({
        "pdus": state.iter().map(|r| serde_json::from_str::<Value>(&r.pdu).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "auth_chain": chain.into_values().collect::<Vec<_>>(),
    })))
}

/// The auth chain of some events, as the federation answers carry it: event id to PDU.
async fn auth_chain(
    db: &Db,
    room_id: &str,
    events: &[events::EventRow],
) -> Result<BTreeMap<String, Value>, MatrixError> {
    let from: Vec<&str> = events.iter().map(|r| r.event_id.as_str()).collect();
    let mut chain = events::auth_chain(db, room_id, &from).await?;
    // From v12 on no event cites the create event, yet it authorises every one of them: the
    // auth chain still holds it (MSC4291), and a server checking the chain needs it.
    if let Some(create_id) = implied_create_event(room_id) {
        let holds = |id: &str| from.contains(&id) || chain.iter().any(|r| r.event_id == id);
        if !from.is_empty() && !holds(&create_id) {
            chain.extend(events::event(db, &create_id).await?);
        }
    }
    Ok(chain
        .into_iter()
        .map(|row| {
            let pdu = serde_json::from_str(&row.pdu).unwrap_or(Value::Null);
            (row.event_id, pdu)
        })
        .collect())
}

/// The create event's id of a room whose id is derived from it (`!hash`, no server part).
fn implied_create_event(room_id: &str) -> Option<String> {
    let hash = room_id.strip_prefix('!')?;
    (!hash.contains(':')).then(|| format!("${hash}"))
}

/// An event by id from a room, for walking the graph (`None` for unknown ones or other rooms').
async fn room_event(
    db: &Db,
    room_id: &str,
    id: &str,
) -> Result<Option<(EventRow, Value)>, MatrixError> {
    Ok(events::event(db, id)
        .await?
        .filter(|row| row.room_id == room_id)
        .and_then(|row| serde_json::from_str(&row.pdu).ok().map(|pdu| (row, pdu))))
}

fn ids_of(value: &Value, field: &str) -> Vec<String> {
    value[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Most events one graph walk returns: the bound on work per request.
const MAX_WALK: usize = 100;
/// Most `latest_events` of one `get_missing_events` looked at (Synapse asks with one).
const MAX_LATEST_EVENTS: usize = 10;

/// Walks `prev_events` back from `from`, stopping at `stop`, collecting at most `limit` (and
/// `MAX_WALK`): one query, however long the chain.
async fn walk_back(
    db: &Db,
    room_id: &str,
    from: Vec<String>,
    stop: &[String],
    limit: usize,
    min_depth: u64,
) -> Result<Vec<EventRow>, MatrixError> {
    let from: Vec<&str> = from.iter().map(String::as_str).collect();
    let stop: Vec<&str> = stop.iter().map(String::as_str).collect();
    events::walk_back(db, room_id, &from, &stop, limit.min(MAX_WALK), min_depth).await
}

/// `POST /get_missing_events/{roomId}`: the events between what the asking server has
/// (`earliest_events`) and what it saw referenced (`latest_events`), oldest first, redacted
/// where history visibility hides them from the asking server.
pub(crate) async fn get_missing_events(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    let version = room_reader(ctx, &room_id, &origin).await?;
    let body = ctx.json_value()?;
    let mut latest = ids_of(&body, "latest_events");
    // One lookup per latest event: a stranger's list of thousands would be thousands of D1
    // queries. A server asks about the event it just received, so a few is all it needs.
    latest.truncate(MAX_LATEST_EVENTS);
    let earliest = ids_of(&body, "earliest_events");
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    let min_depth = body["min_depth"].as_u64().unwrap_or(0);
    let db = ctx.db();
    // The latest events themselves are known to the asker; what it misses are their ancestors.
    let mut start = Vec::new();
    for id in &latest {
        if let Some((_, pdu)) = room_event(&db, room_id.as_str(), id).await? {
            start.extend(
                crate::rooms::pdu::ref_ids(&pdu, "prev_events")
                    .into_iter()
                    .map(str::to_owned),
            );
        }
    }
    let rows = walk_back(&db, room_id.as_str(), start, &earliest, limit, min_depth).await?;
    let mut found = as_seen_by(&db, room_id.as_str(), version, &origin, rows).await?;
    found.sort_by_key(|p| p["depth"].as_u64().unwrap_or(0));
    Ok(JsonResponse::ok(json!({ "events": found })))
}

/// `GET /backfill/{roomId}?v=..&limit=..`: history before (and including) the given events,
/// redacted where history visibility hides them from the asking server.
pub(crate) async fn backfill(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    let version = room_reader(ctx, &room_id, &origin).await?;
    let from: Vec<String> = ctx.query_all("v").into_iter().map(str::to_owned).collect();
    let limit = ctx.query_u64("limit")?.unwrap_or(10) as usize;
    let db = ctx.db();
    let rows = walk_back(&db, room_id.as_str(), from, &[], limit, 0).await?;
    let pdus = as_seen_by(&db, room_id.as_str(), version, &origin, rows).await?;
    Ok(JsonResponse::ok(json!({
        "origin": ctx.config.server_name,
        "origin_server_ts": now_ms(),
        "pdus": pdus,
    })))
}

/// `GET /event_auth/{roomId}/{eventId}`: the event's full auth chain.
pub(crate) async fn event_auth(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    room_reader(ctx, &room_id, &origin).await?;
    let db = ctx.db();
    let event = events::event(&db, ctx.param("eventId"))
        .await?
        .filter(|row| row.room_id == room_id.as_str())
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let chain = auth_chain(&db, room_id.as_str(), &[event]).await?;
    Ok(JsonResponse::ok(
        json!({ "auth_chain": chain.into_values().collect::<Vec<_>>() }),
    ))
}

/// `GET /hierarchy/{roomId}`: a space we hold and its children, for a server whose users may
/// see it (the room is public, knockable or world-readable, or one of its users is in it).
pub(crate) async fn hierarchy(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    /// Children summarised per request at most.
    const MAX_CHILDREN: usize = 50;
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx)?;
    let suggested_only = crate::client::hierarchy::suggested_only(ctx)?;
    let db = ctx.db();
    let unknown = || MatrixError::not_found("Unknown room, or not visible to your server");
    let loaded =
        crate::client::hierarchy::load_rooms(&db, &[room_id.to_string()], "", origin.as_str())
            .await?;
    let root = loaded
        .get(room_id.as_str())
        .cloned()
        .flatten()
        .filter(|r| r.accessible())
        .ok_or_else(unknown)?;
    require_acl(ctx, &room_id, &origin).await?;
    let children: Vec<String> = root
        .followed(suggested_only)
        .take(MAX_CHILDREN)
        .map(|c| c.room_id.clone())
        .collect();
    let children =
        crate::client::hierarchy::load_rooms(&db, &children, "", origin.as_str()).await?;
    Ok(JsonResponse::ok(
        crate::rooms::hierarchy::federation_answer(&root, &children, suggested_only),
    ))
}
