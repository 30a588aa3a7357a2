//! Rooms: list and search, details, members, state, and deletion (shut down: local members
//! leave, aliases go, optionally blocked) with its status.

use serde_json::{json, Value};

use super::{body_bool, query_backwards, query_bool, query_count, require_admin};
use crate::api::request::{Ctx, Requester};
use crate::client::ids;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::admin::{self as stored, RoomFilter, RoomRow};
use crate::storage::{events, rooms as stored_rooms};
use crate::time::now_ms;

fn listed(row: &RoomRow) -> Value {
    json!({
        "room_id": row.room_id,
        "name": row.name,
        "canonical_alias": row.canonical_alias,
        "joined_members": row.joined_members,
        "joined_local_members": row.joined_local_members,
        "version": row.version,
        "creator": row.creator,
        "encryption": row.encryption,
        "federatable": row.federatable.unwrap_or(1) != 0,
        "public": row.public != 0,
        "join_rules": row.join_rules,
        "guest_access": row.guest_access,
        "history_visibility": row.history_visibility,
        "state_events": row.state_events,
        "room_type": row.room_type,
    })
}

/// `GET /_synapse/admin/v1/rooms`.
pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let from = query_count(ctx, "from", 0)?;
    let limit = query_count(ctx, "limit", 100)?;
    // Synapse's sort orders, with its default direction for each.
    let (order_column, ascending) = match ctx.query("order_by").unwrap_or("name") {
        "name" | "alphabetical" => ("room.name", true),
        "size" | "joined_members" => ("room.joined_members", false),
        "canonical_alias" => ("room.canonical_alias", true),
        "joined_local_members" => ("room.joined_local_members", false),
        "version" => ("room.version", false),
        "creator" => ("room.creator", true),
        "encryption" => ("room.encryption", true),
        "federatable" => ("room.federatable", true),
        "public" => ("room.public", true),
        "join_rules" => ("room.join_rules", true),
        "guest_access" => ("room.guest_access", true),
        "history_visibility" => ("room.history_visibility", true),
        "state_events" => ("room.state_events", false),
        _ => {
            return Err(MatrixError::invalid_param(
                "Query parameter \"order_by\" must be one of the known sort orders",
            ))
        }
    };
    let search_term = ctx.query("search_term");
    if search_term == Some("") {
        return Err(MatrixError::invalid_param(
            "search_term cannot be an empty string",
        ));
    }
    let backwards = query_backwards(ctx)?;
    let filter = RoomFilter {
        search_term,
        public: query_bool(ctx, "public_rooms")?,
        empty: query_bool(ctx, "empty_rooms")?,
        order_column,
        descending: ascending == backwards,
        from,
        limit,
    };
    let (rows, total) = stored::rooms(&ctx.db(), ctx.config.server_name.as_str(), &filter).await?;
    let mut body = json!({
        "offset": from,
        "rooms": rows.iter().map(listed).collect::<Vec<_>>(),
        "total_rooms": total,
    });
    if from + limit < total {
        body["next_batch"] = json!(from + limit);
    }
    if from > 0 {
        body["prev_batch"] = json!(from.saturating_sub(limit));
    }
    Ok(JsonResponse::ok(body))
}

async fn known_room(ctx: &Ctx) -> Result<RoomRow, MatrixError> {
    let room_id = ctx.param("roomId");
    stored::room(&ctx.db(), ctx.config.server_name.as_str(), room_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room not found"))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}`.
pub(crate) async fn get(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let row = known_room(ctx).await?;
    let db = ctx.db();
    let members = stored::joined_members(&db, &row.room_id).await?;
    let server_suffix = format!(":{}", ctx.config.server_name);
    let local: Vec<String> = members
        .into_iter()
        .filter(|m| m.ends_with(&server_suffix))
        .collect();
    let tombstone =
        events::current_state_content(&db, &row.room_id, "m.room.tombstone", "").await?;
    // Forgetting is per user here; no room counts as forgotten by the whole server.
    let forgotten = false;
    let mut body = listed(&row);
    body["avatar"] = json!(row.avatar);
    body["topic"] = json!(row.topic);
    body["joined_local_devices"] = json!(stored::count_devices(&db, &local).await?);
    body["forgotten"] = json!(forgotten);
    body["tombstoned"] = json!(tombstone.is_some());
    body["replacement_room"] = tombstone
        .as_ref()
        .and_then(|c| c.get("replacement_room").cloned())
        .unwrap_or(Value::Null);
    Ok(JsonResponse::ok(body))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/members`.
pub(crate) async fn members(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let row = known_room(ctx).await?;
    let members = stored::joined_members(&ctx.db(), &row.room_id).await?;
    Ok(JsonResponse::ok(
        json!({ "members": members, "total": members.len() }),
    ))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/state`.
pub(crate) async fn state(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let row = known_room(ctx).await?;
    let db = ctx.db();
    let version = stored_rooms::room_version(&db, &row.room_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room not found"))?;
    let state: Vec<Value> = events::current_state(&db, &row.room_id)
        .await?
        .iter()
        .map(|e| e.to_client(version, "", ""))
        .collect();
    Ok(JsonResponse::ok(json!({ "state": state })))
}

fn legal_room_id(ctx: &Ctx) -> Result<ruma::OwnedRoomId, MatrixError> {
    let raw = ctx.param("roomId");
    ids::room_id(raw).map_err(|_| {
        MatrixError::new(
            400,
            ErrorCode::Unknown,
            format!("{raw} is not a legal room ID"),
        )
    })
}

/// `DELETE /_synapse/admin/v2/rooms/{roomId}` (and v1, which answers with the result at
/// once). Every local member leaves, the local aliases are removed, the room is unpublished
/// and, with `block`, nobody here may join it again. The work is done before answering: a
/// small server's rooms have few local members.
pub(crate) async fn delete(ctx: &Ctx, v2: bool) -> Result<JsonResponse, MatrixError> {
    let me = require_admin(ctx).await?;
    let body = ctx.json_object()?;
    let block = body_bool(&body, "block", false)?;
    let purge = body_bool(&body, "purge", true)?;
    body_bool(&body, "force_purge", false)?;
    let room_id = legal_room_id(ctx)?;
    let db = ctx.db();
    let delete_id = crate::accounts::tokens::new_opaque_id();
    let known = stored_rooms::room_version(&db, room_id.as_str())
        .await?
        .is_some();
    if !known && !block {
        let error = format!("Unknown room id {room_id}");
        if !v2 {
            return Err(MatrixError::not_found(error));
        }
        stored::save_deletion(
            &db,
            &delete_id,
            room_id.as_str(),
            "failed",
            &Value::Null,
            Some(&error),
            false,
            now_ms(),
        )
        .await?;
        return Ok(JsonResponse::ok(json!({ "delete_id": delete_id })));
    }
    if block {
        stored::block_room(&db, room_id.as_str(), me.user_id.as_str()).await?;
    }
    let mut kicked = Vec::new();
    let mut failed = Vec::new();
    let local_aliases = if known {
        let suffix = format!(":{}", ctx.config.server_name);
        let members: Vec<String> = stored::joined_members(&db, room_id.as_str())
            .await?
            .into_iter()
            .filter(|m| m.ends_with(&suffix))
            .collect();
        for member in members {
            let Ok(user_id) = ruma::UserId::parse(&member) else {
                continue;
            };
            let acting_as = Requester {
                user_id,
                device_id: String::new(),
                admin: false,
                appservice: None,
            };
            match crate::client::membership::leave_room(ctx, &room_id, &acting_as, None).await {
                Ok(()) => kicked.push(member),
                Err(e) => {
                    crate::log_warn!("admin room deletion: {member} could not leave: {e}");
                    failed.push(member);
                }
            }
        }
        stored::remove_aliases(&db, room_id.as_str()).await?
    } else {
        Vec::new()
    };
    let result = json!({
        "kicked_users": kicked,
        "failed_to_kick_users": failed,
        "local_aliases": local_aliases,
        "new_room_id": null,
    });
    stored::save_deletion(
        &db,
        &delete_id,
        room_id.as_str(),
        "complete",
        &result,
        None,
        purge,
        now_ms(),
    )
    .await?;
    if v2 {
        Ok(JsonResponse::ok(json!({ "delete_id": delete_id })))
    } else {
        Ok(JsonResponse::ok(result))
    }
}

fn status_entry(row: &stored::DeletionRow) -> Value {
    let mut entry = json!({
        "delete_id": row.delete_id,
        "room_id": row.room_id,
        "status": row.status,
        "shutdown_room": row.result(),
    });
    if let Some(error) = &row.error {
        entry["error"] = json!(error);
    }
    entry
}

/// `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`.
pub(crate) async fn delete_status_by_room(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let room_id = legal_room_id(ctx)?;
    let rows = stored::deletions_of_room(&ctx.db(), room_id.as_str()).await?;
    if rows.is_empty() {
        return Err(MatrixError::not_found(format!(
            "No delete task for room_id '{room_id}' found"
        )));
    }
    Ok(JsonResponse::ok(
        json!({ "results": rows.iter().map(status_entry).collect::<Vec<_>>() }),
    ))
}

/// `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`.
pub(crate) async fn delete_status(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let delete_id = ctx.param("deleteId");
    let row = stored::deletion(&ctx.db(), delete_id)
        .await?
        .ok_or_else(|| MatrixError::not_found(format!("delete id '{delete_id}' not found")))?;
    Ok(JsonResponse::ok(status_entry(&row)))
}
