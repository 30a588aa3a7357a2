//! Room aliases, the public room directory of local rooms, and the user directory.

use ruma::events::StateEventType;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ids;
use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::power::PowerLevels;
use crate::rooms::state::RoomState;
use crate::storage::{directory as stored_dir, rooms as stored, Db};
use crate::time::now_ms;

fn local_alias(ctx: &Ctx) -> Result<ruma::OwnedRoomAliasId, MatrixError> {
    let alias = ids::alias(ctx.param("roomAlias"))?;
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
    let db = ctx.db();
    crate::appservice::endpoints::check_alias(ctx, &me, alias.as_str(), true).await?;
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
    let alias = ids::alias(ctx.param("roomAlias"))?;
    let room = match stored::alias_room(&ctx.db(), alias.as_str()).await? {
        Some(room) => Some(room),
        // An alias of a service's namespace may be created by the service when asked.
        None if crate::appservice::queries::ask_for_alias(ctx, alias.as_str()).await? => {
            stored::alias_room(&ctx.db(), alias.as_str()).await?
        }
        None => None,
    }
    .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(JsonResponse::ok(
        json!({ "room_id": room, "servers": [ctx.config.server_name] }),
    ))
}

pub(crate) async fn delete_alias(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let alias = local_alias(ctx)?;
    let db = ctx.db();
    let (room_id, creator) = stored_dir::alias_owner(&db, alias.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    crate::appservice::endpoints::check_alias(ctx, &me, alias.as_str(), false).await?;
    let service_owns = me
        .appservice
        .as_ref()
        .is_some_and(|s| s.is_interested_in_alias(alias.as_str()));
    if !service_owns
        && creator != me.user_id.as_str()
        && !me.admin
        && !may_publish(&db, &room_id, &me).await?
    {
        return Err(MatrixError::forbidden("You may not remove this alias"));
    }
    stored_dir::delete_alias(&db, alias.as_str()).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn room_aliases(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    super::room_read::access(&db, &room_id, &me).await?;
    let aliases = stored_dir::aliases_of(&db, room_id.as_str()).await?;
    Ok(JsonResponse::ok(json!({ "aliases": aliases })))
}

pub(crate) async fn get_visibility(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let published = stored_dir::published(&ctx.db(), room_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
    Ok(JsonResponse::ok(
        json!({ "visibility": if published { "public" } else { "private" } }),
    ))
}

pub(crate) async fn set_visibility(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
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
    let db = ctx.db();
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

/// `GET /publicRooms`, or with `post` the filtered `POST /publicRooms`.
pub(crate) async fn public_rooms(ctx: &Ctx, post: bool) -> Result<JsonResponse, MatrixError> {
    if post {
        ctx.requester().await?;
    }
    let request = directory_request(ctx, post)?;
    if let Some(server) = request["server"].as_str().or(ctx.query("server")) {
        if server != ctx.config.server_name.as_str() {
            return Err(MatrixError::not_found(
                "Directories of other servers are not available yet",
            ));
        }
    }
    directory_page(ctx, &request).await
}

/// What a directory listing asks for: the body of a `POST`, or the query of a `GET` (`limit`
/// and `since`, also accepted next to a body).
pub(crate) fn directory_request(ctx: &Ctx, post: bool) -> Result<Value, MatrixError> {
    let mut request = if post {
        Value::Object(ctx.json_object()?)
    } else {
        json!({})
    };
    if request.get("limit").is_none() {
        if let Some(limit) = ctx.query_u64("limit")? {
            request["limit"] = json!(limit);
        }
    }
    if request.get("since").is_none() {
        if let Some(since) = ctx.query("since") {
            request["since"] = json!(since);
        }
    }
    Ok(request)
}

/// One page of our public room directory, for clients and other servers alike.
pub(crate) async fn directory_page(
    ctx: &Ctx,
    request: &Value,
) -> Result<JsonResponse, MatrixError> {
    let rooms = stored_dir::public_room_summaries(&ctx.db()).await?;
    crate::client::public_rooms::page(rooms, request).map(JsonResponse::ok)
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
    let mut results =
        stored_dir::search_users(&ctx.db(), me.user_id.as_str(), &body.search_term, limit + 1)
            .await?;
    let limited = results.len() as u64 > limit;
    results.truncate(limit as usize);
    Ok(JsonResponse::ok(
        json!({ "results": results, "limited": limited }),
    ))
}
