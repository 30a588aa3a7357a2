//! Account data, global and per room, and room tags (stored as the `m.tag` room account data).

use serde_json::{json, Map, Value};

use super::ids;
use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::user_data;

/// (room id or "", type) from the path, after checking it names the requester.
fn target(ctx: &Ctx, me: &Requester, per_room: bool) -> Result<(String, String), MatrixError> {
    ctx.own_user_param("userId", me)?;
    if per_room {
        let room = ids::room_id(ctx.param("roomId"))?;
        Ok((room.to_string(), ctx.param("type").to_owned()))
    } else {
        Ok((String::new(), ctx.param("type").to_owned()))
    }
}

pub(crate) async fn get(ctx: &Ctx, per_room: bool) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let (room, kind) = target(ctx, &me, per_room)?;
    user_data::account_data(&ctx.db(), me.user_id.as_str(), &room, &kind)
        .await?
        .map(JsonResponse::ok)
        .ok_or_else(|| MatrixError::not_found("No account data of that type"))
}

pub(crate) async fn put(ctx: &Ctx, per_room: bool) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let (room, kind) = target(ctx, &me, per_room)?;
    // These two have their own endpoints, which keep their semantics (spec: 405 M_BAD_JSON).
    if kind == "m.fully_read" || kind == "m.push_rules" {
        return Err(MatrixError::new(
            405,
            ErrorCode::BadJson,
            format!("{kind} cannot be set through account data"),
        ));
    }
    let content = Value::Object(ctx.json_object()?);
    store(ctx, &me, &room, &kind, &content).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn store(
    ctx: &Ctx,
    me: &Requester,
    room: &str,
    kind: &str,
    content: &Value,
) -> Result<(), MatrixError> {
    user_data::set_account_data(&ctx.db(), me.user_id.as_str(), room, kind, content).await?;
    ctx.platform
        .wakeups
        .notify(vec![me.user_id.to_string()])
        .await;
    Ok(())
}

async fn tags(ctx: &Ctx, me: &Requester, room: &str) -> Result<Map<String, Value>, MatrixError> {
    Ok(
        user_data::account_data(&ctx.db(), me.user_id.as_str(), room, "m.tag")
            .await?
            .and_then(|v| v.get("tags").and_then(Value::as_object).cloned())
            .unwrap_or_default(),
    )
}

pub(crate) async fn get_tags(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let room = ids::room_id(ctx.param("roomId"))?;
    Ok(JsonResponse::ok(
        json!({ "tags": tags(ctx, &me, room.as_str()).await? }),
    ))
}

pub(crate) async fn put_tag(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let room = ids::room_id(ctx.param("roomId"))?;
    let body = ctx.json_object()?;
    if body.get("order").is_some_and(|o| !o.is_number()) {
        return Err(MatrixError::bad_json("order must be a number"));
    }
    let mut all = tags(ctx, &me, room.as_str()).await?;
    all.insert(ctx.param("tag").to_owned(), Value::Object(body));
    store(ctx, &me, room.as_str(), "m.tag", &json!({ "tags": all })).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn delete_tag(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let room = ids::room_id(ctx.param("roomId"))?;
    let mut all = tags(ctx, &me, room.as_str()).await?;
    all.remove(ctx.param("tag"));
    store(ctx, &me, room.as_str(), "m.tag", &json!({ "tags": all })).await?;
    Ok(JsonResponse::ok(json!({})))
}
