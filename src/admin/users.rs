//! Users: list, details, create or modify, reset password, deactivate, whois, joined rooms.

use serde_json::{json, Value};

use super::{body_bool, local_user, query_backwards, query_bool, query_count, require_admin};
use crate::api::request::{Ctx, Requester};
use crate::client::password::{hash_password, MAX_PASSWORD_BYTES};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::admin::{self as stored, UserFilter, UserRow};
use crate::storage::{accounts, rooms, user_data};

/// A user as `GET /v2/users` lists it (Synapse: `creation_ts` in milliseconds here).
fn listed(row: &UserRow) -> Value {
    json!({
        "name": row.user_id,
        "user_type": null,
        "is_guest": false,
        "admin": row.admin != 0,
        "deactivated": row.deactivated != 0,
        "shadow_banned": false,
        "displayname": row.displayname,
        "avatar_url": row.avatar_url,
        "creation_ts": row.created_ts,
        "erased": row.erased != 0,
        "last_seen_ts": row.last_seen_ts,
        "locked": false,
    })
}

/// A user as `GET /v2/users/{userId}` shows it (Synapse: `creation_ts` in seconds here).
fn details(row: &UserRow) -> Value {
    json!({
        "name": row.user_id,
        "admin": row.admin != 0,
        "deactivated": row.deactivated != 0,
        "locked": false,
        "shadow_banned": false,
        "creation_ts": row.created_ts / 1000,
        "appservice_id": row.appservice_id,
        "consent_server_notice_sent": null,
        "consent_version": null,
        "consent_ts": null,
        "user_type": null,
        "is_guest": false,
        "suspended": false,
        "displayname": row.displayname,
        "avatar_url": row.avatar_url,
        "threepids": [],
        "external_ids": [],
        "erased": row.erased != 0,
        "last_seen_ts": row.last_seen_ts,
    })
}

/// `GET /_synapse/admin/v2/users`.
pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let from = query_count(ctx, "from", 0)?;
    let limit = query_count(ctx, "limit", 100)?;
    let order_column = match ctx.query("order_by").unwrap_or("name") {
        "name" => "user_id",
        "displayname" => "displayname",
        "admin" => "admin",
        "deactivated" => "deactivated",
        "avatar_url" => "avatar_url",
        "creation_ts" => "created_ts",
        "last_seen_ts" => "last_seen_ts",
        // Every user here is a full, unlocked, visible user.
        "is_guest" | "user_type" | "shadow_banned" | "locked" => "user_id",
        other => {
            return Err(MatrixError::invalid_param(format!(
                "Query parameter \"order_by\" must be one of a known sort order, not {other:?}"
            )))
        }
    };
    let filter = UserFilter {
        name: ctx.query("name").filter(|n| !n.is_empty()),
        user_id: ctx.query("user_id").filter(|n| !n.is_empty()),
        include_deactivated: query_bool(ctx, "deactivated")?.unwrap_or(false),
        admins: query_bool(ctx, "admins")?,
        order_column,
        descending: query_backwards(ctx)?,
        from,
        limit,
    };
    query_bool(ctx, "guests")?;
    let (rows, total) = stored::users(&ctx.db(), &filter).await?;
    let mut body = json!({
        "users": rows.iter().map(listed).collect::<Vec<_>>(),
        "total": total,
    });
    if from + limit < total {
        body["next_token"] = json!((from + rows.len() as u64).to_string());
    }
    Ok(JsonResponse::ok(body))
}

/// `GET /_synapse/admin/v2/users/{userId}`.
pub(crate) async fn get(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let user_id = local_user(ctx, "userId", "Can only look up local users")?;
    let row = stored::user(&ctx.db(), user_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("User not found"))?;
    Ok(JsonResponse::ok(details(&row)))
}

/// Deactivates an account as the admin API does: leaves its rooms, ends its sessions, and
/// with `erase` marks it erased.
async fn deactivate_user(ctx: &Ctx, user: &ruma::UserId, erase: bool) -> Result<(), MatrixError> {
    let db = ctx.db();
    let acting_as = Requester {
        user_id: user.to_owned(),
        device_id: String::new(),
        admin: false,
        appservice: None,
    };
    let sharing = crate::storage::e2ee::users_sharing_rooms(&db, &[user.as_str()]).await?;
    crate::client::membership::leave_all_rooms(ctx, &acting_as).await?;
    accounts::deactivate(&db, user.as_str()).await?;
    if erase {
        stored::set_erased(&db, user.as_str()).await?;
    }
    ctx.platform.wakeups.notify(sharing).await;
    Ok(())
}

/// A boolean field of the body, with Synapse's wording when it is something else.
fn typed_bool(
    body: &serde_json::Map<String, Value>,
    name: &str,
    default: bool,
) -> Result<bool, MatrixError> {
    match body.get(name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            format!("'{name}' parameter is not of type boolean"),
        )),
    }
}

fn password_field(body: &serde_json::Map<String, Value>) -> Result<Option<&str>, MatrixError> {
    match body.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if p.len() <= MAX_PASSWORD_BYTES => Ok(Some(p)),
        Some(_) => Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Invalid password",
        )),
    }
}

fn optional_string<'a>(
    body: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Option<&'a str>>, MatrixError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s))),
        Some(_) => Err(MatrixError::bad_json(format!("{name} must be a string"))),
    }
}

/// `PUT /_synapse/admin/v2/users/{userId}`: creates the user (201) or modifies it (200).
pub(crate) async fn put(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = require_admin(ctx).await?;
    let body = ctx.json_object()?;
    let user_id = local_user(
        ctx,
        "userId",
        "This endpoint can only be used with local users",
    )?;
    if body.get("user_type").is_some_and(|t| !t.is_null()) {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Invalid user type",
        ));
    }
    let set_admin = body_bool(&body, "admin", false)?;
    let password = password_field(&body)?;
    let logout_devices = typed_bool(&body, "logout_devices", true)?;
    let deactivate = typed_bool(&body, "deactivated", false)?;
    let lock = typed_bool(&body, "locked", false)?;
    if lock {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Locking users is not supported by this server",
        ));
    }
    let displayname = optional_string(&body, "displayname")?;
    let avatar_url = optional_string(&body, "avatar_url")?;
    let db = ctx.db();
    let existing = stored::user(&db, user_id.as_str()).await?;
    let status = match existing {
        Some(user) => {
            if let Some(name) = displayname {
                user_data::set_profile_field(&db, user_id.as_str(), "displayname", name).await?;
            }
            if let Some(url) = avatar_url {
                user_data::set_profile_field(&db, user_id.as_str(), "avatar_url", url).await?;
            }
            if body.contains_key("admin") && set_admin != (user.admin != 0) {
                if user_id == me.user_id && !set_admin {
                    return Err(MatrixError::new(
                        400,
                        ErrorCode::Unknown,
                        "You may not demote yourself.",
                    ));
                }
                stored::set_admin(&db, user_id.as_str(), set_admin).await?;
            }
            if let Some(password) = password {
                let hash =
                    hash_password(&ctx.platform, password, ctx.config.password_iterations).await?;
                accounts::set_password(&db, user_id.as_str(), &hash).await?;
                if logout_devices {
                    stored::logout_all(&db, user_id.as_str()).await?;
                }
            }
            if body.contains_key("deactivated") {
                if deactivate && user.deactivated == 0 {
                    deactivate_user(ctx, &user_id, false).await?;
                } else if !deactivate && user.deactivated != 0 {
                    stored::reactivate(&db, user_id.as_str()).await?;
                    if let Some(password) = password {
                        let hash =
                            hash_password(&ctx.platform, password, ctx.config.password_iterations)
                                .await?;
                        accounts::set_password(&db, user_id.as_str(), &hash).await?;
                    }
                }
            }
            200
        }
        None => {
            crate::accounts::localpart::new_user_id(user_id.localpart(), &ctx.config.server_name)
                .map_err(crate::client::register::invalid_username)?;
            crate::appservice::endpoints::refuse_exclusive_user(ctx, user_id.as_str()).await?;
            let hash = match password {
                Some(p) => {
                    Some(hash_password(&ctx.platform, p, ctx.config.password_iterations).await?)
                }
                None => None,
            };
            accounts::register(&db, user_id.as_str(), hash.as_deref(), set_admin, None).await?;
            if let Some(name) = displayname.flatten() {
                user_data::set_profile_field(&db, user_id.as_str(), "displayname", Some(name))
                    .await?;
            }
            if let Some(Some(url)) = avatar_url {
                user_data::set_profile_field(&db, user_id.as_str(), "avatar_url", Some(url))
                    .await?;
            }
            if deactivate {
                deactivate_user(ctx, &user_id, false).await?;
            }
            201
        }
    };
    let row = stored::user(&db, user_id.as_str())
        .await?
        .ok_or_else(|| MatrixError::internal("the user just written is missing"))?;
    Ok(JsonResponse::new(status, details(&row)))
}

/// `POST /_synapse/admin/v1/reset_password/{userId}`.
pub(crate) async fn reset_password(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let user_id = ruma::UserId::parse(ctx.param("userId"))
        .map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
    let body = ctx.json_object()?;
    let password = match body.get("new_password") {
        None => {
            return Err(MatrixError::missing_param(
                "Missing params: ['new_password']",
            ))
        }
        Some(Value::String(p)) if p.len() <= MAX_PASSWORD_BYTES => p,
        Some(_) => {
            return Err(MatrixError::new(
                400,
                ErrorCode::Unknown,
                "Invalid password",
            ))
        }
    };
    let logout_devices = body_bool(&body, "logout_devices", true)?;
    let db = ctx.db();
    if user_id.server_name() != ctx.config.server_name
        || !accounts::user_exists(&db, user_id.as_str()).await?
    {
        return Err(MatrixError::not_found("User not found"));
    }
    let hash = hash_password(&ctx.platform, password, ctx.config.password_iterations).await?;
    accounts::set_password(&db, user_id.as_str(), &hash).await?;
    if logout_devices {
        stored::logout_all(&db, user_id.as_str()).await?;
    }
    Ok(JsonResponse::ok(json!({})))
}

/// `POST /_synapse/admin/v1/deactivate/{userId}`.
pub(crate) async fn deactivate(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let user_id = local_user(ctx, "userId", "Can only deactivate local users")?;
    if !accounts::user_exists(&ctx.db(), user_id.as_str()).await? {
        return Err(MatrixError::not_found("User not found"));
    }
    let body = ctx.json_object()?;
    let erase = body_bool(&body, "erase", false)?;
    deactivate_user(ctx, &user_id, erase).await?;
    Ok(JsonResponse::ok(
        json!({ "id_server_unbind_result": "success" }),
    ))
}

/// `GET /_synapse/admin/v1/whois/{userId}` (also the spec's `/_matrix/client/v3/admin/whois`):
/// admins may ask about anyone, users about themselves.
pub(crate) async fn whois(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let user_id = ruma::UserId::parse(ctx.param("userId"))
        .map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
    if user_id != me.user_id && !me.admin {
        return Err(MatrixError::forbidden("You are not a server admin"));
    }
    if user_id.server_name() != ctx.config.server_name {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Can only whois a local user",
        ));
    }
    let connections: Vec<Value> = stored::connections(&ctx.db(), user_id.as_str())
        .await?
        .into_iter()
        .map(|c| json!({ "ip": c.last_seen_ip, "last_seen": c.last_seen_ts, "user_agent": null }))
        .collect();
    Ok(JsonResponse::ok(json!({
        "user_id": user_id,
        "devices": { "": { "sessions": [{ "connections": connections }] } },
    })))
}

/// `GET /_synapse/admin/v1/users/{userId}/joined_rooms`.
pub(crate) async fn joined_rooms(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let user_id = ctx.param("userId");
    let joined = rooms::rooms_with_membership(&ctx.db(), user_id, "join").await?;
    Ok(JsonResponse::ok(
        json!({ "total": joined.len(), "joined_rooms": joined }),
    ))
}
