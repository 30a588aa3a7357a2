//! `POST /oauth2/token` (RFC 6749 section 3.2): exchanges an authorization code (with its PKCE
//! verifier), a refresh token, or an approved device code (RFC 8628) for tokens. The tokens
//! are the server's ordinary access and refresh tokens (`storage/accounts.rs`), recorded as
//! belonging to the client (`oauth_sessions`), so a refresh or a revocation by another client
//! is refused. Refresh rotates: the old refresh token works until the new tokens are first
//! used, as `/refresh` does, so an answer lost on the way costs the client nothing.

use serde_json::json;

use super::client_metadata::DEVICE_CODE_GRANT;
use super::registration::find_client;
use super::*;
use crate::accounts::tokens::{new_access_token, new_refresh_token, token_hash};
use crate::client::device_keys::announce_device_change;
use crate::http::MatrixError;
use crate::storage::accounts::{self, Session};
use crate::storage::oauth::{self as store, CodeUse};
use crate::time::now_ms;

/// The least time between two polls of a device code (RFC 8628 section 3.5).
pub const DEVICE_POLL_INTERVAL_S: u64 = 5;

fn invalid_grant(description: &str) -> MediaResponse {
    oauth_error(400, "invalid_grant", description)
}

fn token_response(access: &str, refresh: &str, scope: &str) -> MediaResponse {
    oauth_json(
        200,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME_MS / 1000,
            "refresh_token": refresh,
            "scope": scope,
        }),
    )
}

/// Starts the OAuth session of `device_id` with fresh tokens and answers them.
async fn issue(
    ctx: &Ctx,
    user_id: &str,
    device_id: &str,
    client_id: &str,
    scope: &str,
) -> Result<MediaResponse, MatrixError> {
    let client_name = find_client(ctx, client_id)
        .await?
        .map(|client| client.display_name());
    let (access, refresh) = (new_access_token(), new_refresh_token());
    let (access_hash, refresh_hash) = (token_hash(&access), token_hash(&refresh));
    let session = Session {
        user_id,
        device_id,
        device_display_name: client_name.as_deref(),
        access_token_hash: &access_hash,
        refresh_token_hash: Some(&refresh_hash),
        expires_ts: Some((now_ms() + ACCESS_TOKEN_LIFETIME_MS) as i64),
    };
    store::start_session(&ctx.db(), &session, client_id, scope).await?;
    Ok(token_response(&access, &refresh, scope))
}

/// Ends a device's session: its tokens, the device and its keys, like a logout.
pub(crate) async fn end_session(
    ctx: &Ctx,
    user_id: &str,
    device_id: &str,
) -> Result<(), MatrixError> {
    let db = ctx.db();
    accounts::delete_devices(&db, user_id, &[device_id.to_owned()]).await?;
    announce_device_change(ctx, &db, &[user_id]).await;
    Ok(())
}

pub(crate) async fn token(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let form = Form::parse(ctx);
    match form.get("grant_type") {
        Some("authorization_code") => authorization_code(ctx, &form).await,
        Some("refresh_token") => refresh_token(ctx, &form).await,
        Some(DEVICE_CODE_GRANT) => device_code(ctx, &form).await,
        Some(_) => Ok(oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be authorization_code, refresh_token or the device code grant",
        )),
        None => Ok(oauth_error(
            400,
            "invalid_request",
            "grant_type is required",
        )),
    }
}

async fn authorization_code(ctx: &Ctx, form: &Form) -> Result<MediaResponse, MatrixError> {
    let (Some(code), Some(redirect_uri), Some(client_id), Some(verifier)) = (
        form.get("code"),
        form.get("redirect_uri"),
        form.get("client_id"),
        form.get("code_verifier"),
    ) else {
        return Ok(oauth_error(
            400,
            "invalid_request",
            "code, redirect_uri, client_id and code_verifier are required",
        ));
    };
    let request = match store::use_code(&ctx.db(), &token_hash(code)).await? {
        CodeUse::First(request) => request,
        CodeUse::Reused { user_id, device_id } => {
            // Someone holds a copy of a spent code: the session it started may be theirs.
            crate::log_warn!("an authorization code was used twice; ending {user_id} {device_id}");
            end_session(ctx, &user_id, &device_id).await?;
            return Ok(invalid_grant("the code was already used"));
        }
        CodeUse::Unknown => return Ok(invalid_grant("unknown code")),
    };
    // The code is spent whatever follows: a wrong verifier is a guess, and gets no second try.
    if request.client_id != client_id {
        return Ok(invalid_grant("the code was issued to another client"));
    }
    if request.redirect_uri != redirect_uri {
        return Ok(invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if request
        .code_expires_ts
        .is_none_or(|ts| ts <= now_ms() as i64)
    {
        return Ok(invalid_grant("the code has expired"));
    }
    if !pkce::verify(verifier, &request.code_challenge) {
        return Ok(invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    let Some(user_id) = request.user_id.as_deref() else {
        return Ok(invalid_grant("unknown code"));
    };
    issue(ctx, user_id, &request.device_id, client_id, &request.scope).await
}

async fn refresh_token(ctx: &Ctx, form: &Form) -> Result<MediaResponse, MatrixError> {
    let (Some(refresh), Some(client_id)) = (form.get("refresh_token"), form.get("client_id"))
    else {
        return Ok(oauth_error(
            400,
            "invalid_request",
            "refresh_token and client_id are required",
        ));
    };
    let db = ctx.db();
    let refresh_hash = token_hash(refresh);
    let Some((user_id, device_id)) = store::refresh_token_owner(&db, &refresh_hash).await? else {
        return Ok(invalid_grant("unknown refresh token"));
    };
    let Some(session) = store::session(&db, &user_id, &device_id)
        .await?
        .filter(|s| s.client_id == client_id)
    else {
        return Ok(invalid_grant(
            "the refresh token was issued to another client",
        ));
    };
    let (access, new_refresh) = (new_access_token(), new_refresh_token());
    let rotated = accounts::refresh(
        &db,
        &refresh_hash,
        &token_hash(&access),
        &token_hash(&new_refresh),
        (now_ms() + ACCESS_TOKEN_LIFETIME_MS) as i64,
    )
    .await?;
    if rotated.is_none() {
        return Ok(invalid_grant("unknown refresh token"));
    }
    Ok(token_response(&access, &new_refresh, &session.scope))
}

async fn device_code(ctx: &Ctx, form: &Form) -> Result<MediaResponse, MatrixError> {
    let (Some(device_code), Some(client_id)) = (form.get("device_code"), form.get("client_id"))
    else {
        return Ok(oauth_error(
            400,
            "invalid_request",
            "device_code and client_id are required",
        ));
    };
    let db = ctx.db();
    let code_hash = token_hash(device_code);
    let Some(grant) = store::poll_device_grant(&db, &code_hash).await? else {
        return Ok(invalid_grant("unknown device code"));
    };
    if grant.client_id != client_id {
        return Ok(invalid_grant(
            "the device code was issued to another client",
        ));
    }
    let now = now_ms() as i64;
    if grant.expires_ts <= now {
        store::forget_device_grant(&db, &code_hash).await?;
        return Ok(oauth_error(
            400,
            "expired_token",
            "the device code has expired",
        ));
    }
    match grant.status.as_str() {
        "approved" => {
            let Some(user_id) = grant.user_id.as_deref() else {
                return Ok(invalid_grant("unknown device code"));
            };
            if !store::take_approved_grant(&db, &code_hash).await? {
                return Ok(invalid_grant("the device code was already used"));
            }
            issue(ctx, user_id, &grant.device_id, client_id, &grant.scope).await
        }
        "denied" => {
            store::forget_device_grant(&db, &code_hash).await?;
            Ok(oauth_error(
                400,
                "access_denied",
                "the user denied the request",
            ))
        }
        _ if now - grant.last_poll_ts < (DEVICE_POLL_INTERVAL_S * 1000) as i64 => Ok(oauth_error(
            400,
            "slow_down",
            "poll no more often than the interval",
        )),
        _ => Ok(oauth_error(
            400,
            "authorization_pending",
            "the user has not answered yet",
        )),
    }
}
