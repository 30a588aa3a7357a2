//! Room aliases, the public room directory of local rooms, and the user directory.

use ruma::events::StateEventType;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ids;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::power::PowerLevels;
use crate::rooms::state::RoomState;
use crate::runtime::request::{Ctx, Requester};
use crate::storage::{directory as stored_dir, rooms as stored, Db};
use crate::time::now_ms;

fn local_alias(ctx: &Ctx) -> Result<ruma::OwnedRoomAliasId, MatrixError> {
    let alias = ids::alias(ctx.param(0))?;
    if alias.server_name() != ctx.config.server_name {
        return Err(MatrixError::invalid_param(
            "Aliases of other servers cannot be managed here",
        ));
    }
    Ok(alias)
}

/// Whether the user may change what the room publishes: the power to set its canonical alias.
async fn may_publish(db: &Db, room_id: &str, me: &Requester) -> Result<bool, MatrixError> {
    let Some((version, current)) = stored::current_state(db, room_id).await? else {
        return Ok(false);
    };
    if stored::membership(db, room_id, me.user_id.as_str())
        .await?
        .as_deref()
        != Some("join")
    {
        return Ok(false);
    }
    let mut state = RoomState::default();
    for pdu in current {
        state.apply(pdu);
    }
    let levels = PowerLevels::from_state(&state, version);
    Ok(levels.user_level(&me.user_id)
        >= levels.event_level(&StateEventType::RoomCanonicalAlias.to_string(), true))
}

pub(crate) async fn put_alias(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let alias = local_alias(ctx)?;
    #[derive(Deserialize)]
    struct Body {
        room_id: String,
    }
    let body: Body = ctx.json()?;
    let room_id = ids::room_id(&body.room_id)?;
    let db = ctx.db()?;
    if stored::membership(&db, room_id.as_str(), me.user_id.as_str())
        .await?
        .as_deref()
        != Some("join")
    {
        return Err(MatrixError::forbidden("You are not in this room"));
    }
    if !stored_dir::create_alias(
        &db,
        alias.as_str(),
        room_id.as_str(),
        me.user_id.as_str(),
        now_ms(),
    )
    .await?
    {
        return Err(MatrixError::new(
            409,
            ErrorCode::Unknown,
            "Room alias already exists",
        ));
    }
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn get_alias(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let alias = ids::alias(ctx.param(0))?;
    let room = stored::alias_room(&ctx.db()?, alias.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(JsonResponse::ok(
        json!({ "room_id": room, "servers": [ctx.config.server_name] }),
    ))
}

pub(crate) async fn delete_alias(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let alias = local_alias(ctx)?;
    let db = ctx.db()?;
    let (room_id, creator) = stored_dir::alias_owner(&db, alias.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    if creator != me.user_id.as_str() && !me.admin && !may_publish(&db, &room_id, &me).await? {
        return Err(MatrixError::forbidden("You may not remove this alias"));
    }
    stored_dir::delete_alias(&db, alias.as_str()).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn room_aliases(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param(0))?;
    let db = ctx.db()?;
    super::room_read::access(&db, &room_id, &me).await?;
    let aliases = stored_dir::aliases_of(&db, room_id.as_str()).await?;
    Ok(JsonResponse::ok(json!({ "aliases": aliases })))
}

pub(crate) async fn get_visibility(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let room_id = ids::room_id(ctx.param(0))?;
    let published = stored_dir::published(&ctx.db()?, room_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
    Ok(JsonResponse::ok(
        json!({ "visibility": if published { "public" } else { "private" } }),
    ))
}

pub(crate) async fn set_visibility(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param(0))?;
    #[derive(Deserialize)]
    struct Body {
        visibility: String,
    }
    let body: Body = ctx.json()?;
    let publish = match body.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => {
            return Err(MatrixError::invalid_param(
                "visibility must be public or private",
            ))
        }
    };
    let db = ctx.db()?;
    if stored_dir::published(&db, room_id.as_str())
        .await?
        .is_none()
    {
        return Err(MatrixError::not_found("Unknown room"));
    }
    if !me.admin && !may_publish(&db, room_id.as_str(), &me).await? {
        return Err(MatrixError::forbidden(
            "You may not change this room's visibility",
        ));
    }
    stored_dir::set_published(&db, room_id.as_str(), publish).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn public_rooms(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let body = if ctx.endpoint == crate::http::route::Endpoint::PublicRoomsFiltered {
        ctx.requester().await?;
        ctx.json_value()?
    } else {
        json!({})
    };
    if let Some(server) = body
        .get("server")
        .and_then(Value::as_str)
        .or(ctx.query("server"))
    {
        if server != ctx.config.server_name.as_str() {
            return Err(MatrixError::not_found(
                "Directories of other servers are not available yet",
            ));
        }
    }
    let limit = match body.get("limit").and_then(Value::as_u64) {
        Some(n) => Some(n),
        None => ctx.query_u64("limit")?,
    }
    .unwrap_or(100)
    .clamp(1, 500);
    let since = body
        .get("since")
        .and_then(Value::as_str)
        .or(ctx.query("since"))
        .map(|s| {
            s.strip_prefix('o')
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| MatrixError::invalid_param("bad since token"))
        })
        .transpose()?
        .unwrap_or(0);
    let term = body
        .pointer("/filter/generic_search_term")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    let db = ctx.db()?;
    let all = stored_dir::public_room_summaries(&db).await?;
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|room| {
            term.as_deref().is_none_or(|t| {
                ["name", "topic", "canonical_alias", "room_id"]
                    .iter()
                    .any(|f| {
                        room[*f]
                            .as_str()
                            .is_some_and(|v| v.to_lowercase().contains(t))
                    })
            })
        })
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(since as usize)
        .take(limit as usize)
        .collect();
    let mut out = json!({ "chunk": page, "total_room_count_estimate": total });
    if since as usize + (limit as usize) < total {
        out["next_batch"] = json!(format!("o{}", since + limit));
    }
    if since > 0 {
        out["prev_batch"] = json!(format!("o{}", since.saturating_sub(limit)));
    }
    Ok(JsonResponse::ok(out))
}

pub(crate) async fn search_users(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    #[derive(Deserialize)]
    struct Body {
        search_term: String,
        limit: Option<u64>,
    }
    let body: Body = ctx.json()?;
    let limit = body.limit.unwrap_or(10).clamp(1, 100);
    let mut results = stored_dir::search_users(
        &ctx.db()?,
        me.user_id.as_str(),
        &body.search_term,
        limit + 1,
    )
    .await?;
    let limited = results.len() as u64 > limit;
    results.truncate(limit as usize);
    Ok(JsonResponse::ok(
        json!({ "results": results, "limited": limited }),
    ))
}
