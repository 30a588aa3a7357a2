//! Account creation: `POST /register` (UIA), availability and token validity checks, and the
//! Synapse-compatible shared-secret admin API that `register_new_matrix_user` speaks.

use serde::Deserialize;
use serde_json::{json, Value};

use super::password::hash_password;
use super::session::SessionRequest;
use super::uia::authenticate;
use crate::accounts::localpart::new_user_id;
use crate::accounts::tokens::{new_opaque_id, random_bytes};
use crate::accounts::uia::Purpose;
use crate::api::request::Ctx;
use crate::config::RegistrationMode;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::accounts;

#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    #[serde(flatten)]
    session: SessionRequest,
    #[serde(default)]
    inhibit_login: bool,
}

pub(crate) fn invalid_username(e: crate::accounts::localpart::InvalidUsername) -> MatrixError {
    MatrixError::new(400, ErrorCode::InvalidUsername, e.0)
}

pub(crate) async fn register(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    if ctx.query("kind") == Some("guest") {
        return Err(MatrixError::new(
            403,
            ErrorCode::GuestAccessForbidden,
            "Guest accounts are not supported",
        ));
    }
    let raw = ctx.json_value()?;
    if raw.get("type").and_then(Value::as_str) == Some(crate::appservice::endpoints::LOGIN_TYPE) {
        return crate::appservice::endpoints::register(ctx, &raw).await;
    }
    if ctx.access_token().is_some() {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "An access token should not be provided on requests to /register (except if type is m.login.application_service)",
        ));
    }
    crate::limits::rate::check_auth_ip(ctx, "register").await?;
    let body: RegisterBody =
        serde_json::from_value(raw.clone()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let db = ctx.db();
    // Refuse a bad or taken name before the client goes through UIA stages for nothing.
    let user_id = match &body.username {
        Some(name) => new_user_id(name, &ctx.config.server_name).map_err(invalid_username)?,
        None => {
            let generated: String = random_bytes(8).iter().map(|b| format!("{b:02x}")).collect();
            new_user_id(&format!("u{generated}"), &ctx.config.server_name)
                .map_err(invalid_username)?
        }
    };
    crate::appservice::endpoints::refuse_exclusive_user(ctx, user_id.as_str()).await?;
    if accounts::user_exists(&db, user_id.as_str()).await? {
        return Err(MatrixError::new(
            400,
            ErrorCode::UserInUse,
            "That user id is already taken",
        ));
    }
    if let Some(challenge) = authenticate(ctx, &raw, Purpose::Register, None).await? {
        return Ok(challenge);
    }
    let password_hash = match &body.password {
        Some(password) => {
            Some(hash_password(&ctx.platform, password, ctx.config.password_iterations).await?)
        }
        None => None,
    };
    create_account(
        ctx,
        user_id.as_str(),
        password_hash.as_deref(),
        false,
        (!body.inhibit_login).then_some(&body.session),
    )
    .await
}

/// Creates the account and, unless login is inhibited, its first session; answers as
/// `/register` does.
pub(crate) async fn create_account(
    ctx: &Ctx,
    user_id: &str,
    password_hash: Option<&str>,
    admin: bool,
    session: Option<&SessionRequest>,
) -> Result<JsonResponse, MatrixError> {
    let db = ctx.db();
    let Some(request) = session else {
        accounts::register(&db, user_id, password_hash, admin, None).await?;
        return Ok(JsonResponse::ok(json!({ "user_id": user_id })));
    };
    let issued = request.issue();
    accounts::register(
        &db,
        user_id,
        password_hash,
        admin,
        Some(&issued.session(user_id)),
    )
    .await?;
    Ok(JsonResponse::ok(issued.response(ctx, user_id)))
}

pub(crate) async fn available(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    crate::limits::rate::check_auth_ip(ctx, "register").await?;
    let username = ctx
        .query("username")
        .ok_or_else(|| MatrixError::missing_param("username is required"))?;
    let user_id = new_user_id(username, &ctx.config.server_name).map_err(invalid_username)?;
    crate::appservice::endpoints::refuse_exclusive_user(ctx, user_id.as_str()).await?;
    if accounts::user_exists(&ctx.db(), user_id.as_str()).await? {
        return Err(MatrixError::new(
            400,
            ErrorCode::UserInUse,
            "That user id is already taken",
        ));
    }
    Ok(JsonResponse::ok(json!({ "available": true })))
}

pub(crate) async fn token_validity(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    crate::limits::rate::check_auth_ip(ctx, "register").await?;
    // The spec's 403 says registration is not permitted at all; an open server permits it
    // without tokens, so there every token is merely invalid.
    if ctx.config.registration == RegistrationMode::Closed {
        return Err(MatrixError::forbidden(
            "Registration is disabled on this server",
        ));
    }
    let token = ctx
        .query("token")
        .ok_or_else(|| MatrixError::missing_param("token is required"))?;
    let valid = ctx.config.registration == RegistrationMode::Token
        && (ctx.platform.secret("REGISTRATION_TOKEN").as_deref() == Some(token)
            || crate::storage::admin::token(&ctx.db(), token)
                .await?
                .is_some_and(|t| t.is_valid(crate::time::now_ms())));
    Ok(JsonResponse::ok(json!({ "valid": valid })))
}

// --- Shared-secret registration (Synapse admin API) -------------------------------------------

/// How long a nonce stays usable (Synapse uses the same minute).
const NONCE_LIFETIME_MS: u64 = 60_000;

fn shared_secret(ctx: &Ctx) -> Result<String, MatrixError> {
    ctx.platform
        .secret("REGISTRATION_SHARED_SECRET")
        .ok_or_else(|| MatrixError::bad_json("Shared secret registration is not enabled"))
}

pub(crate) async fn admin_nonce(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    shared_secret(ctx)?;
    let nonce = new_opaque_id();
    accounts::save_nonce(&ctx.db(), &nonce).await?;
    Ok(JsonResponse::ok(json!({ "nonce": nonce })))
}

#[derive(Deserialize)]
struct AdminRegisterBody {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    mac: String,
    displayname: Option<String>,
    user_type: Option<String>,
}

pub(crate) async fn admin_register(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let secret = shared_secret(ctx)?;
    let body: AdminRegisterBody = ctx.json()?;
    // The MAC covers nonce, username, password, admin flag and user type, NUL-separated.
    let mut message = [
        body.nonce.as_str(),
        &body.username,
        &body.password,
        if body.admin { "admin" } else { "notadmin" },
    ]
    .join("\0");
    if let Some(user_type) = &body.user_type {
        message.push('\0');
        message.push_str(user_type);
    }
    let mac = ctx
        .platform
        .crypto
        .hmac_sha1(secret.as_bytes(), message.as_bytes())
        .await?;
    let expected: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    if !accounts::take_nonce(&ctx.db(), &body.nonce, NONCE_LIFETIME_MS).await? {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Unrecognised nonce",
        ));
    }
    if !constant_time_eq(
        expected.as_bytes(),
        body.mac.to_ascii_lowercase().as_bytes(),
    ) {
        return Err(MatrixError::forbidden("HMAC incorrect"));
    }
    let user_id = new_user_id(&body.username.to_lowercase(), &ctx.config.server_name)
        .map_err(invalid_username)?;
    let hash = hash_password(
        &ctx.platform,
        &body.password,
        ctx.config.password_iterations,
    )
    .await?;
    let session = SessionRequest::default();
    let mut response = create_account(
        ctx,
        user_id.as_str(),
        Some(&hash),
        body.admin,
        Some(&session),
    )
    .await?;
    if let Some(name) = body.displayname {
        crate::storage::user_data::set_profile_field(
            &ctx.db(),
            user_id.as_str(),
            "displayname",
            Some(&name),
        )
        .await?;
    }
    response.body["home_server"] = Value::String(ctx.config.server_name.to_string());
    Ok(response)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
