//! Registration tokens: the admin API's list, create, read, update and delete. The
//! `m.login.registration_token` stage accepts these next to the `REGISTRATION_TOKEN` secret.

use serde_json::{json, Value};

use super::{query_bool, require_admin};
use crate::accounts::tokens::random_bytes;
use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::admin as stored;
use crate::time::now_ms;

const ALLOWED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

fn random_token(length: usize) -> String {
    random_bytes(length)
        .iter()
        .map(|b| ALLOWED[*b as usize % ALLOWED.len()] as char)
        .collect()
}

/// `uses_allowed`: a non-negative integer or null.
fn uses_allowed(value: &Value) -> Result<Option<i64>, MatrixError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0) => Ok(n.as_i64()),
        _ => Err(MatrixError::invalid_param(
            "uses_allowed must be a non-negative integer or null",
        )),
    }
}

/// `expiry_time`: an integer (ms since the epoch, not in the past) or null.
fn expiry_time(value: &Value) -> Result<Option<i64>, MatrixError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_i64().is_some() => {
            let at = n.as_i64().unwrap_or_default();
            if at < now_ms() as i64 {
                return Err(MatrixError::invalid_param(
                    "expiry_time must not be in the past",
                ));
            }
            Ok(Some(at))
        }
        _ => Err(MatrixError::invalid_param(
            "expiry_time must be an integer or null",
        )),
    }
}

/// `GET /_synapse/admin/v1/registration_tokens` (`valid=true|false` filters).
pub(crate) async fn list(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let valid = query_bool(ctx, "valid")?;
    let now = now_ms();
    let tokens: Vec<Value> = stored::tokens(&ctx.db())
        .await?
        .iter()
        .filter(|t| valid.is_none_or(|v| t.is_valid(now) == v))
        .map(stored::TokenRow::to_json)
        .collect();
    Ok(JsonResponse::ok(json!({ "registration_tokens": tokens })))
}

/// `POST /_synapse/admin/v1/registration_tokens/new`.
pub(crate) async fn create(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let body = ctx.json_object()?;
    let token = match body.get("token") {
        Some(Value::String(token)) => {
            if token.is_empty() || token.len() > 64 {
                return Err(MatrixError::invalid_param(
                    "token must not be empty and must not be longer than 64 characters",
                ));
            }
            if !token.bytes().all(|b| ALLOWED.contains(&b)) {
                return Err(MatrixError::invalid_param(
                    "token must consist only of characters matched by the regex [A-Za-z0-9-_]",
                ));
            }
            token.clone()
        }
        Some(_) => return Err(MatrixError::invalid_param("token must be a string")),
        None => {
            let length = match body.get("length") {
                None => 16,
                Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or_default(),
                Some(_) => return Err(MatrixError::invalid_param("length must be an integer")),
            };
            if !(1..=64).contains(&length) {
                return Err(MatrixError::invalid_param(
                    "length must be greater than zero and not greater than 64",
                ));
            }
            random_token(length as usize)
        }
    };
    let uses = uses_allowed(body.get("uses_allowed").unwrap_or(&Value::Null))?;
    let expiry = expiry_time(body.get("expiry_time").unwrap_or(&Value::Null))?;
    if !stored::create_token(&ctx.db(), &token, uses, expiry).await? {
        return Err(MatrixError::invalid_param(format!(
            "Token already exists: {token}"
        )));
    }
    Ok(JsonResponse::ok(json!({
        "token": token,
        "uses_allowed": uses,
        "pending": 0,
        "completed": 0,
        "expiry_time": expiry,
    })))
}

fn no_such(token: &str) -> MatrixError {
    MatrixError::not_found(format!("No such registration token: {token}"))
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`.
pub(crate) async fn get(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let token = ctx.param("token");
    let row = stored::token(&ctx.db(), token)
        .await?
        .ok_or_else(|| no_such(token))?;
    Ok(JsonResponse::ok(row.to_json()))
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`.
pub(crate) async fn update(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let token = ctx.param("token");
    let body = ctx.json_object()?;
    let uses = body.get("uses_allowed").map(uses_allowed).transpose()?;
    let expiry = body.get("expiry_time").map(expiry_time).transpose()?;
    let db = ctx.db();
    if stored::token(&db, token).await?.is_none() {
        return Err(no_such(token));
    }
    stored::update_token(&db, token, uses, expiry).await?;
    let row = stored::token(&db, token)
        .await?
        .ok_or_else(|| no_such(token))?;
    Ok(JsonResponse::ok(row.to_json()))
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`.
pub(crate) async fn delete(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let token = ctx.param("token");
    if stored::delete_token(&ctx.db(), token).await? {
        Ok(JsonResponse::ok(json!({})))
    } else {
        Err(no_such(token))
    }
}
