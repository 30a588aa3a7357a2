//! Profiles: displayname and avatar_url. Setting one also updates the user's membership event
//! in every room they are joined to, as the spec asks.

use serde_json::{json, Map, Value};

use super::ids;
use super::membership::profile_content;
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::platform::Method;
use crate::rooms::builder::EventTemplate;
use crate::rooms::command::send_event;
use crate::rooms::create::member_content;
use crate::storage::{rooms as stored, user_data};

const FIELDS: [&str; 2] = ["displayname", "avatar_url"];

async fn profile_of(ctx: &Ctx, user: &str) -> Result<Map<String, Value>, MatrixError> {
    let user_id = ids::user_id(user)?;
    if user_id.server_name() != ctx.config.server_name {
        return remote_profile(ctx, &user_id).await;
    }
    let profile = user_data::profile(&ctx.db(), user_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown user"))?;
    let mut out = Map::new();
    if let Some(name) = profile.displayname {
        out.insert("displayname".into(), json!(name));
    }
    if let Some(url) = profile.avatar_url {
        out.insert("avatar_url".into(), json!(url));
    }
    Ok(out)
}

/// A profile of another server's user, asked of that server (`/query/profile`).
async fn remote_profile(ctx: &Ctx, user: &ruma::UserId) -> Result<Map<String, Value>, MatrixError> {
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        crate::http::route::percent_encode(user.as_str())
    );
    let (status, body) = crate::federation::outgoing::signed(
        &ctx.platform,
        user.server_name(),
        Method::Get,
        &path,
        None,
    )
    .await?;
    match (status, body) {
        (200, Value::Object(map)) => Ok(map
            .into_iter()
            .filter(|(k, v)| FIELDS.contains(&k.as_str()) && v.is_string())
            .collect()),
        (404, _) => Err(MatrixError::not_found("Unknown user")),
        (status, _) => Err(MatrixError::new(
            502,
            ErrorCode::Unknown,
            format!("{} answered {status}", user.server_name()),
        )),
    }
}

pub(crate) async fn get_profile(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    Ok(JsonResponse::ok(Value::Object(
        profile_of(ctx, ctx.param("userId")).await?,
    )))
}

pub(crate) async fn get_field(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let field = ctx.param("keyName");
    let profile = profile_of(ctx, ctx.param("userId")).await?;
    let value = profile
        .get(field)
        .ok_or_else(|| MatrixError::not_found(format!("No {field} is set")))?;
    Ok(JsonResponse::ok(json!({ field: value })))
}

pub(crate) async fn set_field(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let field = ctx.param("keyName");
    if !FIELDS.contains(&field) {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unrecognized,
            "Only displayname and avatar_url can be set",
        ));
    }
    let body = ctx.json_object()?;
    let value = match body.get(field) {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(MatrixError::bad_json(format!("{field} must be a string"))),
    };
    if value.is_some_and(|v| v.len() > 256 * 4) {
        return Err(MatrixError::new(
            400,
            ErrorCode::TooLarge,
            format!("{field} is too long"),
        ));
    }
    let db = ctx.db();
    user_data::set_profile_field(&db, me.user_id.as_str(), field, value).await?;
    let content = member_content("join", profile_content(&db, &me.user_id).await?, false);
    for room in stored::rooms_with_membership(&db, me.user_id.as_str(), "join").await? {
        let room_id = ids::room_id(&room)?;
        let event = EventTemplate::state("m.room.member", me.user_id.as_str(), content.clone());
        // A room where the update is refused (e.g. power levels forbid it) keeps the old name.
        if let Err(e) = send_event(&ctx.platform, &room_id, &me.user_id, event, None).await {
            crate::log_warn!("profile update not sent to {room}: {e}");
        }
    }
    Ok(JsonResponse::ok(json!({})))
}
