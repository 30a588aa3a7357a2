//! `GET /_matrix/client/v1/auth_metadata` and its unstable MSC2965 path: the authorization
//! server metadata (RFC 8414) with the Matrix additions (account management, `prompt=create`).

use serde_json::{json, Value};

use super::client_metadata::DEVICE_CODE_GRANT;
use super::*;
use crate::api::request::Ctx;
use crate::config::RegistrationMode;
use crate::http::{JsonResponse, MatrixError};

/// The account management actions the account page (`account.rs`) serves, with the names the
/// spec gave them and the MSC4191 names clients written before v1.15 send.
pub const ACCOUNT_ACTIONS: &[&str] = &[
    "org.matrix.devices_list",
    "org.matrix.device_view",
    "org.matrix.device_delete",
    "org.matrix.cross_signing_reset",
    "org.matrix.sessions_list",
    "org.matrix.session_view",
    "org.matrix.session_end",
];

pub fn metadata(ctx: &Ctx) -> Value {
    let mut body = json!({
        "issuer": url(ctx, "/"),
        "authorization_endpoint": url(ctx, AUTHORIZE_PATH),
        "token_endpoint": url(ctx, TOKEN_PATH),
        "registration_endpoint": url(ctx, REGISTRATION_PATH),
        "revocation_endpoint": url(ctx, REVOCATION_PATH),
        "device_authorization_endpoint": url(ctx, DEVICE_AUTHORIZATION_PATH),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["urn:matrix:client:api:*", "urn:matrix:client:device:*"],
        "account_management_uri": url(ctx, ACCOUNT_PATH),
        "account_management_actions_supported": ACCOUNT_ACTIONS,
    });
    // `prompt=create` opens the registration page: offered only when anyone may register.
    if ctx.config.registration != RegistrationMode::Closed {
        body["prompt_values_supported"] = json!(["create"]);
    }
    body
}

pub(crate) async fn auth_metadata(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    Ok(JsonResponse::ok(metadata(ctx)))
}
