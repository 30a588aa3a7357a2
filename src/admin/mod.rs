//! The Synapse-compatible admin API under `/_synapse/admin`: the subset that `synadm` and the
//! synapse-admin web panel call (server version, users, rooms, registration tokens, media).
//! Answers follow Synapse's field names and status codes, as those tools parse them. Only server
//! admins may call it (`403 M_FORBIDDEN` for everyone else, with nothing changed); admins are
//! made by shared-secret registration with `admin: true` or by `PUT /v2/users/{userId}`.

pub mod media;
pub mod reports;
pub mod rooms;
#[cfg(test)]
mod tests;
pub mod tokens;
pub mod users;

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, JsonResponse, MatrixError};

/// The requester, if a server admin.
pub(crate) async fn require_admin(ctx: &Ctx) -> Result<Requester, MatrixError> {
    let me = ctx.requester().await?;
    if !me.admin {
        return Err(MatrixError::forbidden("You are not a server admin"));
    }
    Ok(me)
}

/// A user id from the path that must be one of ours (`message` as Synapse words it).
pub(crate) fn local_user(ctx: &Ctx, name: &str, message: &str) -> Result<OwnedUserId, MatrixError> {
    let user_id = UserId::parse(ctx.param(name))
        .map_err(|_| MatrixError::invalid_param(format!("Invalid user id: {}", ctx.param(name))))?;
    if user_id.server_name() != ctx.config.server_name {
        return Err(MatrixError::new(400, ErrorCode::Unknown, message));
    }
    Ok(user_id)
}

/// A non-negative integer query parameter with a default (Synapse's `parse_integer`).
pub(crate) fn query_count(ctx: &Ctx, name: &str, default: u64) -> Result<u64, MatrixError> {
    match ctx.query(name) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| {
            MatrixError::invalid_param(format!(
                "Query parameter {name:?} must be a non-negative integer"
            ))
        }),
    }
}

/// A boolean query parameter (`true` / `false`, as Synapse's `parse_boolean`).
pub(crate) fn query_bool(ctx: &Ctx, name: &str) -> Result<Option<bool>, MatrixError> {
    match ctx.query(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(MatrixError::invalid_param(format!(
            "Boolean query parameter {name:?} must be one of ['true', 'false']"
        ))),
    }
}

/// `dir`: `f` (default) or `b`; true for backwards.
pub(crate) fn query_backwards(ctx: &Ctx) -> Result<bool, MatrixError> {
    match ctx.query("dir") {
        None | Some("f") => Ok(false),
        Some("b") => Ok(true),
        Some(_) => Err(MatrixError::invalid_param(
            "Query parameter \"dir\" must be one of ['b', 'f']",
        )),
    }
}

/// A field of the body that must be a boolean when given.
pub(crate) fn body_bool(
    body: &serde_json::Map<String, Value>,
    name: &str,
    default: bool,
) -> Result<bool, MatrixError> {
    match body.get(name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(MatrixError::bad_json(format!(
            "Param '{name}' must be a boolean, if given"
        ))),
    }
}

/// `GET /_synapse/admin/v1/server_version`.
pub(crate) async fn server_version(_ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    Ok(JsonResponse::ok(json!({
        "server_version": format!("matrix-edge {}", env!("CARGO_PKG_VERSION")),
    })))
}
