//! The federation endpoints other servers call. Every one is authenticated with X-Matrix; room
//! events go to the room's Durable Object, which alone decides what enters the room.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{json, Value};

use super::e2ee_in;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::command::RoomCommand;
use crate::runtime::notifier::notify;
use crate::runtime::request::Ctx;
use crate::runtime::rooms;
use crate::storage::{events, remote_keys, rooms as stored, sync as stored_sync, user_data};
use crate::time::now_ms;

fn room_param(ctx: &Ctx, i: usize) -> Result<OwnedRoomId, MatrixError> {
    RoomId::parse(ctx.param(i)).map_err(|_| MatrixError::invalid_param("not a room id"))
}

/// Membership requests must come from the server of the user they are about.
fn user_of_origin(
    ctx: &Ctx,
    i: usize,
    origin: &ruma::ServerName,
) -> Result<ruma::OwnedUserId, MatrixError> {
    let user =
        UserId::parse(ctx.param(i)).map_err(|_| MatrixError::invalid_param("not a user id"))?;
    if user.server_name() != origin {
        return Err(MatrixError::forbidden(
            "The user does not belong to the requesting server",
        ));
    }
    Ok(user)
}

async fn known_room(ctx: &Ctx, room_id: &RoomId) -> Result<crate::rooms::RoomVersion, MatrixError> {
    stored::room_version(&ctx.db()?, room_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))
}

pub(crate) async fn make_join(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    let user = user_of_origin(ctx, 1, &origin)?;
    let version = known_room(ctx, &room_id).await?;
    // The joining server lists the versions it supports (`ver`, repeatable; none means v1).
    let supported = ctx.query_all("ver");
    if !supported.contains(&version.as_str()) {
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
        membership: "join".into(),
    };
    rooms::run(&ctx.env, room_id.as_str(), &command)
        .await
        .map(JsonResponse::ok)
}

pub(crate) async fn make_leave(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    let user = user_of_origin(ctx, 1, &origin)?;
    known_room(ctx, &room_id).await?;
    let command = RoomCommand::MakeMembership {
        room_id: room_id.clone(),
        user_id: user,
        membership: "leave".into(),
    };
    rooms::run(&ctx.env, room_id.as_str(), &command)
        .await
        .map(JsonResponse::ok)
}

/// `send_join` and `send_leave`, v1 (answers `[200, body]`) and v2 (answers `body`).
pub(crate) async fn send_membership(
    ctx: &Ctx,
    v1: bool,
    membership: &str,
) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    known_room(ctx, &room_id).await?;
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
        membership_reply: true,
    };
    let mut reply = rooms::run(&ctx.env, room_id.as_str(), &command).await?;
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
pub(crate) async fn send_transaction(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let db = ctx.db()?;
    let txn = ctx.param(0);
    if let Some(previous) = remote_keys::transaction_response(&db, origin.as_str(), txn).await? {
        return Ok(JsonResponse::ok(
            serde_json::from_str(&previous).unwrap_or(json!({"pdus": {}})),
        ));
    }
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
    let mut results = serde_json::Map::new();
    for pdu in pdus {
        match pdu["room_id"].as_str() {
            Some(room) => by_room.entry(room.to_owned()).or_default().push(pdu),
            None => {
                worker::console_warn!("PDU without room_id from {origin}");
            }
        }
    }
    for (room, pdus) in by_room {
        let room_id = RoomId::parse(&room).ok();
        let version = match &room_id {
            Some(room_id) => known_room(ctx, room_id).await.ok(),
            None => None,
        };
        // Without the room's version the ids of its PDUs (reference hashes) are unknowable:
        // such PDUs get no entry, as in Synapse.
        let (Some(room_id), Some(version)) = (room_id, version) else {
            worker::console_warn!(
                "{} PDU(s) from {origin} for unknown room {room}",
                pdus.len()
            );
            continue;
        };
        let ids: Vec<String> = pdus
            .iter()
            .filter_map(|p| pdu_event_id(p, version))
            .collect();
        let command = RoomCommand::Remote {
            room_id,
            origin: origin.to_string(),
            pdus,
            membership_reply: false,
        };
        let answer = rooms::run(&ctx.env, room.as_str(), &command).await;
        match answer {
            Ok(answer) => {
                if let Some(per_event) = answer["pdus"].as_object() {
                    results.extend(per_event.clone());
                }
            }
            Err(e) => {
                for id in ids {
                    results.insert(id, json!({ "error": e.message }));
                }
            }
        }
    }
    for edu in edus {
        if let Err(e) = receive_edu(ctx, &origin, &edu).await {
            worker::console_warn!("EDU from {origin} refused: {e}");
        }
    }
    let response = json!({ "pdus": results });
    remote_keys::save_transaction(&db, origin.as_str(), txn, &response.to_string()).await?;
    Ok(JsonResponse::ok(response))
}

/// A PDU's id as its room version defines it: the `event_id` field before version 3, the
/// reference hash from then on.
fn pdu_event_id(pdu: &Value, version: crate::rooms::RoomVersion) -> Option<String> {
    let rules = version.rules();
    if rules.event_format.require_event_id {
        return pdu["event_id"].as_str().map(str::to_owned);
    }
    let object = crate::signing::to_canonical_object(pdu.clone()).ok()?;
    crate::signing::event::reference_hash(&object, &rules)
        .ok()
        .map(|hash| format!("${hash}"))
}

/// A remote user in one of our rooms, on the server that sent the EDU.
async fn remote_member(
    ctx: &Ctx,
    origin: &ruma::ServerName,
    room: &str,
    user: &str,
) -> Result<bool, MatrixError> {
    let from_origin = UserId::parse(user).is_ok_and(|u| u.server_name() == origin);
    Ok(from_origin && stored::membership(&ctx.db()?, room, user).await?.as_deref() == Some("join"))
}

async fn receive_edu(ctx: &Ctx, origin: &ruma::ServerName, edu: &Value) -> Result<(), MatrixError> {
    let db = ctx.db()?;
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
            let typing = content["typing"].as_bool().unwrap_or(false);
            let expires = if typing { now_ms() + 30_000 } else { 0 };
            user_data::set_typing(&db, room, user, expires).await?;
            notify(&ctx.env, stored_sync::local_members(&db, room).await?).await;
        }
        Some("m.receipt") => {
            let Some(rooms) = content.as_object() else {
                return Err(MatrixError::bad_json("m.receipt content must be an object"));
            };
            for (room, by_type) in rooms {
                let Some(read) = by_type["m.read"].as_object() else {
                    continue;
                };
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
                notify(&ctx.env, stored_sync::local_members(&db, room).await?).await;
            }
        }
        Some("m.device_list_update") => e2ee_in::device_list_update(ctx, origin, content).await?,
        Some("m.signing_key_update") => e2ee_in::signing_key_update(ctx, origin, content).await?,
        Some("m.direct_to_device") => e2ee_in::direct_to_device(ctx, origin, content).await?,
        // Presence arrives with the presence work.
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
    let profile = user_data::profile(&ctx.db()?, user.as_str())
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
    let room = stored::alias_room(&ctx.db()?, alias)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(JsonResponse::ok(
        json!({ "room_id": room, "servers": [ctx.config.server_name] }),
    ))
}

/// Whether the server shares the room: only servers with a joined member may read its events.
async fn server_in_room(
    ctx: &Ctx,
    room_id: &str,
    server: &ruma::ServerName,
) -> Result<bool, MatrixError> {
    let members = stored_sync::members_of_server(&ctx.db()?, room_id, server.as_str()).await?;
    Ok(members > 0)
}

pub(crate) async fn event(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let not_found = || MatrixError::not_found("Event not found");
    let row = events::event(&ctx.db()?, ctx.param(0))
        .await?
        .ok_or_else(not_found)?;
    if !server_in_room(ctx, &row.room_id, &origin).await? {
        return Err(not_found());
    }
    Ok(JsonResponse::ok(json!({
        "origin": ctx.config.server_name,
        "origin_server_ts": now_ms(),
        "pdus": [serde_json::from_str::<Value>(&row.pdu).unwrap_or(Value::Null)],
    })))
}

/// `/state` and `/state_ids` at an event: the room's state after the event's predecessors.
pub(crate) async fn state(ctx: &Ctx, ids_only: bool) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    let db = ctx.db()?;
    if !server_in_room(ctx, room_id.as_str(), &origin).await? {
        return Err(MatrixError::forbidden("Your server is not in this room"));
    }
    let event_id = ctx
        .query("event_id")
        .ok_or_else(|| MatrixError::missing_param("event_id is required"))?;
    let at = events::event(&db, event_id)
        .await?
        .filter(|row| row.room_id == room_id.as_str())
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    // Local rooms are linear: the state before an event is the state at the previous position.
    let state = events::state_at(&db, room_id.as_str(), at.position() - 1).await?;
    let version = known_room(ctx, &room_id).await?;
    let mut chain: BTreeMap<String, Value> = BTreeMap::new();
    let mut todo: Vec<String> = Vec::new();
    for row in &state {
        let pdu = stored::parse_pdu(&row.pdu, version)?;
        todo.extend(pdu.auth_events().iter().map(|e| e.to_string()));
    }
    while let Some(id) = todo.pop() {
        if chain.contains_key(&id) {
            continue;
        }
        if let Some(row) = events::event(&db, &id).await? {
            let pdu = stored::parse_pdu(&row.pdu, version)?;
            todo.extend(pdu.auth_events().iter().map(|e| e.to_string()));
            chain.insert(id, serde_json::from_str(&row.pdu).unwrap_or(Value::Null));
        }
    }
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

/// Events by id from a room, for walking the graph (`None` for unknown ones or other rooms').
async fn room_pdu(
    db: &crate::storage::Db,
    room_id: &str,
    id: &str,
) -> Result<Option<Value>, MatrixError> {
    Ok(events::event(db, id)
        .await?
        .filter(|row| row.room_id == room_id)
        .and_then(|row| serde_json::from_str(&row.pdu).ok()))
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

/// Walks `prev_events` back from `from`, stopping at `stop`, collecting at most `limit`.
async fn walk_back(
    db: &crate::storage::Db,
    room_id: &str,
    from: Vec<String>,
    stop: &[String],
    limit: usize,
    min_depth: u64,
) -> Result<Vec<Value>, MatrixError> {
    let mut seen: std::collections::HashSet<String> = stop.iter().cloned().collect();
    let mut queue: std::collections::VecDeque<String> = from.into();
    let mut found = Vec::new();
    while let Some(id) = queue.pop_front() {
        if found.len() >= limit.min(MAX_WALK) {
            break;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(pdu) = room_pdu(db, room_id, &id).await? else {
            continue;
        };
        if pdu["depth"].as_u64().unwrap_or(0) < min_depth {
            continue;
        }
        queue.extend(ids_of(&pdu, "prev_events"));
        found.push(pdu);
    }
    Ok(found)
}

/// `POST /get_missing_events/{roomId}`: the events between what the asking server has
/// (`earliest_events`) and what it saw referenced (`latest_events`), oldest first.
pub(crate) async fn get_missing_events(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    if !server_in_room(ctx, room_id.as_str(), &origin).await? {
        return Err(MatrixError::forbidden("Your server is not in this room"));
    }
    let body = ctx.json_value()?;
    let latest = ids_of(&body, "latest_events");
    let earliest = ids_of(&body, "earliest_events");
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    let min_depth = body["min_depth"].as_u64().unwrap_or(0);
    let db = ctx.db()?;
    // The latest events themselves are known to the asker; what it misses are their ancestors.
    let mut start = Vec::new();
    for id in &latest {
        if let Some(pdu) = room_pdu(&db, room_id.as_str(), id).await? {
            start.extend(ids_of(&pdu, "prev_events"));
        }
    }
    let mut found = walk_back(&db, room_id.as_str(), start, &earliest, limit, min_depth).await?;
    found.sort_by_key(|p| p["depth"].as_u64().unwrap_or(0));
    Ok(JsonResponse::ok(json!({ "events": found })))
}

/// `GET /backfill/{roomId}?v=..&limit=..`: history before (and including) the given events.
pub(crate) async fn backfill(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    if !server_in_room(ctx, room_id.as_str(), &origin).await? {
        return Err(MatrixError::forbidden("Your server is not in this room"));
    }
    let from: Vec<String> = ctx.query_all("v").into_iter().map(str::to_owned).collect();
    let limit = ctx.query_u64("limit")?.unwrap_or(10) as usize;
    let pdus = walk_back(&ctx.db()?, room_id.as_str(), from, &[], limit, 0).await?;
    Ok(JsonResponse::ok(json!({
        "origin": ctx.config.server_name,
        "origin_server_ts": now_ms(),
        "pdus": pdus,
    })))
}

/// `GET /event_auth/{roomId}/{eventId}`: the event's full auth chain.
pub(crate) async fn event_auth(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = room_param(ctx, 0)?;
    if !server_in_room(ctx, room_id.as_str(), &origin).await? {
        return Err(MatrixError::forbidden("Your server is not in this room"));
    }
    let db = ctx.db()?;
    let event = room_pdu(&db, room_id.as_str(), ctx.param(1))
        .await?
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let mut chain: BTreeMap<String, Value> = BTreeMap::new();
    let mut todo = ids_of(&event, "auth_events");
    while let Some(id) = todo.pop() {
        if chain.contains_key(&id) {
            continue;
        }
        if let Some(pdu) = room_pdu(&db, room_id.as_str(), &id).await? {
            todo.extend(ids_of(&pdu, "auth_events"));
            chain.insert(id, pdu);
        }
    }
    Ok(JsonResponse::ok(
        json!({ "auth_chain": chain.into_values().collect::<Vec<_>>() }),
    ))
}
