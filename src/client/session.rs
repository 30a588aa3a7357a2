//! Sessions: login, token refresh, logout, whoami.

use serde::Deserialize;
use serde_json::{json, Value};

use super::device_keys::announce_device_change;
use super::password::verify_password;
use crate::accounts::localpart::login_user_id;
use crate::accounts::tokens::{new_access_token, new_device_id, new_refresh_token, token_hash};
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::accounts::{self, Session};
use crate::time::now_ms;

/// How long an access token lives when the client asked for a refresh token.
const REFRESHABLE_TOKEN_LIFETIME_MS: u64 = 60 * 60 * 1000;

/// The session fields `/login` and `/register` share.
#[derive(Default, Deserialize)]
pub(crate) struct SessionRequest {
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
}

pub(crate) struct IssuedSession {
    access_token: String,
    access_hash: String,
    refresh: Option<(String, String)>,
    device_id: String,
    display_name: Option<String>,
    expires_ts: Option<i64>,
}

impl SessionRequest {
    pub fn issue(&self) -> IssuedSession {
        let access_token = new_access_token();
        let refresh = self.refresh_token.then(|| {
            let token = new_refresh_token();
            let hash = token_hash(&token);
            (token, hash)
        });
        IssuedSession {
            access_hash: token_hash(&access_token),
            access_token,
            expires_ts: refresh
                .as_ref()
                .map(|_| (now_ms() + REFRESHABLE_TOKEN_LIFETIME_MS) as i64),
            refresh,
            device_id: self
                .device_id
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(new_device_id),
            display_name: self.initial_device_display_name.clone(),
        }
    }
}

impl IssuedSession {
    pub fn session<'a>(&'a self, user_id: &'a str) -> Session<'a> {
        Session {
            user_id,
            device_id: &self.device_id,
            device_display_name: self.display_name.as_deref(),
            access_token_hash: &self.access_hash,
            refresh_token_hash: self.refresh.as_ref().map(|(_, hash)| hash.as_str()),
            expires_ts: self.expires_ts,
        }
    }

    pub fn response(&self, ctx: &Ctx, user_id: &str) -> Value {
        let mut body = json!({
            "user_id": user_id,
            "access_token": self.access_token,
            "device_id": self.device_id,
            "home_server": ctx.config.server_name.as_str(),
        });
        if let Some((token, _)) = &self.refresh {
            body["refresh_token"] = json!(token);
            body["expires_in_ms"] = json!(REFRESHABLE_TOKEN_LIFETIME_MS);
        }
        body
    }
}

pub(crate) fn login_flows() -> JsonResponse {
    JsonResponse::ok(json!({ "flows": [
        { "type": "m.login.password" },
        { "type": crate::appservice::endpoints::LOGIN_TYPE },
    ] }))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    /// Deprecated top-level user field, still sent by old clients.
    user: Option<String>,
    password: Option<String>,
    #[serde(flatten)]
    session: SessionRequest,
}

pub(crate) async fn login(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let body: LoginBody = ctx.json()?;
    if body.kind == crate::appservice::endpoints::LOGIN_TYPE {
        let user_id =
            crate::appservice::endpoints::login_user(ctx, body.identifier.as_ref()).await?;
        let issued = body.session.issue();
        accounts::start_session(&ctx.db(), &issued.session(&user_id)).await?;
        return Ok(JsonResponse::ok(issued.response(ctx, &user_id)));
    }
    if body.kind != "m.login.password" {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Unknown login type",
        ));
    }
    let user = match &body.identifier {
        Some(identifier) => match identifier.get("type").and_then(Value::as_str) {
            Some("m.id.user") => identifier
                .get("user")
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::bad_json("identifier.user is required"))?
                .to_owned(),
            // No third-party identifiers are ever bound to accounts here.
            Some("m.id.thirdparty") | Some("m.id.phone") => {
                crate::limits::rate::check_auth_ip(ctx, "login").await?;
                return Err(MatrixError::forbidden(
                    "No account is bound to that third-party identifier",
                ));
            }
            _ => {
                return Err(MatrixError::new(
                    400,
                    ErrorCode::Unknown,
                    "Unknown identifier type",
                ))
            }
        },
        None => body
            .user
            .clone()
            .ok_or_else(|| MatrixError::bad_json("identifier is required"))?,
    };
    crate::limits::rate::check_auth_ip(ctx, "login").await?;
    let forbidden = || MatrixError::forbidden("Invalid username or password");
    let user_id = login_user_id(&user, &ctx.config.server_name).ok_or_else(forbidden)?;
    crate::limits::rate::check_auth_user(ctx, "login", user_id.as_str()).await?;
    let db = ctx.db();
    let password = body.password.as_deref().unwrap_or_default();
    if !verify_password(
        &ctx.platform,
        &db,
        user_id.as_str(),
        password,
        ctx.config.password_iterations,
    )
    .await?
    {
        let deactivated = accounts::credentials(&db, user_id.as_str())
            .await?
            .is_some_and(|c| c.deactivated != 0);
        if deactivated {
            return Err(MatrixError::new(
                403,
                ErrorCode::UserDeactivated,
                "This account is deactivated",
            ));
        }
        return Err(forbidden());
    }
    let issued = body.session.issue();
    accounts::start_session(&db, &issued.session(user_id.as_str())).await?;
    Ok(JsonResponse::ok(issued.response(ctx, user_id.as_str())))
}

pub(crate) async fn refresh(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    #[derive(Deserialize)]
    struct Body {
        refresh_token: String,
    }
    let body: Body = ctx.json()?;
    let access = new_access_token();
    let refresh = new_refresh_token();
    let expires = now_ms() + REFRESHABLE_TOKEN_LIFETIME_MS;
    accounts::refresh(
        &ctx.db(),
        &token_hash(&body.refresh_token),
        &token_hash(&access),
        &token_hash(&refresh),
        expires as i64,
    )
    .await?
    .ok_or_else(|| MatrixError::new(401, ErrorCode::UnknownToken, "Unknown refresh token"))?;
    Ok(JsonResponse::ok(json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in_ms": REFRESHABLE_TOKEN_LIFETIME_MS,
    })))
}

pub(crate) async fn logout(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    accounts::delete_devices(&db, me.user_id.as_str(), &[me.device_id]).await?;
    announce_device_change(ctx, &db, &[me.user_id.as_str()]).await;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn logout_all(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    let devices: Vec<String> = accounts::devices(&db, me.user_id.as_str())
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .chain(std::iter::once(me.device_id))
        .collect();
    accounts::delete_devices(&db, me.user_id.as_str(), &devices).await?;
    announce_device_change(ctx, &db, &[me.user_id.as_str()]).await;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn whoami(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let mut body = json!({ "user_id": me.user_id, "is_guest": false });
    // An application service acting without a device has none to report.
    if !me.device_id.is_empty() {
        body["device_id"] = json!(me.device_id);
    }
    Ok(JsonResponse::ok(body))
}
