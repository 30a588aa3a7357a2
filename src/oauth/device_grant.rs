//! The device authorization grant (RFC 8628), for devices that cannot show our pages (a TV, a
//! command-line client) and for signing in by QR code: `POST /oauth2/device_authorization`
//! hands the device a device code to poll the token endpoint with (`token.rs`) and a short user
//! code; the person types or scans it at `/oauth2/device`, logs in and approves.

use serde_json::json;

use super::browser::{self, Visit};
use super::client_metadata::DEVICE_CODE_GRANT;
use super::html::{self, escape, hidden};
use super::registration::{find_client, Client};
use super::token::DEVICE_POLL_INTERVAL_S;
use super::*;
use crate::accounts::tokens::{random_string, token_hash, TOKEN_ALPHABET};
use crate::http::MatrixError;
use crate::storage::oauth::{self as store, DeviceGrant, NewDeviceGrant};
use crate::time::now_ms;

/// How long the person has to approve.
const GRANT_LIFETIME_MS: u64 = 10 * 60 * 1000;
/// User codes: consonants only (no words, nothing to confuse with digits), 8 of them, about
/// 34 bits; guessing is further bounded by the login and the short lifetime.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// A user code as typed: case and the dash (or spaces) do not matter.
pub fn normalize_user_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `BCDFGHJK` shown as `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LEN {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

pub(crate) async fn device_authorization(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let form = Form::parse(ctx);
    let client_id = form.get("client_id").unwrap_or_default();
    let Some(client) = find_client(ctx, client_id).await? else {
        return Ok(oauth_error(401, "invalid_client", "unknown client_id"));
    };
    if !client.allows(DEVICE_CODE_GRANT) {
        return Ok(oauth_error(
            400,
            "unauthorized_client",
            "this client did not register the device code grant",
        ));
    }
    let grant = match scope::parse(form.get("scope").unwrap_or_default()) {
        Ok(grant) => grant,
        Err(scope::InvalidScope(why)) => return Ok(oauth_error(400, "invalid_scope", why)),
    };
    let device_code = random_string(TOKEN_ALPHABET, 43);
    let device_code_hash = token_hash(&device_code);
    // A collision with a live code is rare; drawing again a few times makes it vanish.
    for _ in 0..3 {
        let user_code = random_string(USER_CODE_ALPHABET, USER_CODE_LEN);
        let stored = store::create_device_grant(
            &ctx.db(),
            &NewDeviceGrant {
                device_code_hash: &device_code_hash,
                user_code: &user_code,
                client_id,
                scope: &grant.scope,
                device_id: &grant.device_id,
                expires_ts: (now_ms() + GRANT_LIFETIME_MS) as i64,
            },
        )
        .await?;
        if stored {
            let shown = display_user_code(&user_code);
            return Ok(oauth_json(
                200,
                &json!({
                    "device_code": device_code,
                    "user_code": shown,
                    "verification_uri": url(ctx, DEVICE_PAGE_PATH),
                    "verification_uri_complete":
                        format!("{}?user_code={}", url(ctx, DEVICE_PAGE_PATH), encode(&shown)),
                    "expires_in": GRANT_LIFETIME_MS / 1000,
                    "interval": DEVICE_POLL_INTERVAL_S,
                }),
            ));
        }
    }
    Err(MatrixError::internal("could not draw a free user code"))
}

fn enter_code_body(error: Option<&str>) -> String {
    format!(
        r#"<div class="card">{}<form method="get" action="{DEVICE_PAGE_PATH}">
<label for="user_code">Code shown on your device</label><input id="user_code" name="user_code" autocomplete="off" autocapitalize="characters" required>
<button type="submit">Continue</button></form></div>"#,
        error
            .map(|e| format!(r#"<p class="error">{}</p>"#, escape(e)))
            .unwrap_or_default()
    )
}

fn approve_body(visit: &Visit, client: &Client, grant: &DeviceGrant, user_id: &str) -> String {
    let fields = format!(
        "{}{}",
        visit.csrf_field(),
        hidden("user_code", &grant.user_code)
    );
    format!(
        r#"<div class="card"><p><strong>{name}</strong> on another device wants to sign in to your account <strong>{user}</strong>.</p>
<p class="muted">Code: <code>{code}</code><br>App: {uri}<br>New session: <code>{device}</code></p>
<p>Only allow it if you started this on your own device and the code matches. The device will be able to do everything you can do on this server.</p>
{buttons}</div>"#,
        name = escape(&client.display_name()),
        user = escape(user_id),
        code = escape(&display_user_code(&grant.user_code)),
        uri = escape(&client.client_uri),
        device = escape(&grant.device_id),
        buttons = html::deny_or_allow(DEVICE_PAGE_PATH, &fields),
    )
}

pub(crate) async fn device_page(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let server = ctx.config.server_name.as_str();
    let visit = browser::visit(ctx).await?;
    let cookie = visit.set_cookie.as_deref();
    let typed = ctx.query("user_code").unwrap_or_default();
    let Some(user_id) = visit.user_id.clone() else {
        let next = if typed.is_empty() {
            DEVICE_PAGE_PATH.to_owned()
        } else {
            format!("{DEVICE_PAGE_PATH}?user_code={}", encode(typed))
        };
        return Ok(html::redirect(
            &format!("{LOGIN_PATH}?next={}", encode(&next)),
            cookie,
        ));
    };
    if typed.is_empty() {
        return Ok(html::page(
            200,
            "Sign in a device",
            server,
            &enter_code_body(None),
            cookie,
        ));
    }
    let grant = store::pending_device_grant(&ctx.db(), &normalize_user_code(typed)).await?;
    let client = match &grant {
        Some(grant) => find_client(ctx, &grant.client_id).await?,
        None => None,
    };
    let (Some(grant), Some(client)) = (grant, client) else {
        return Ok(html::page(
            400,
            "Sign in a device",
            server,
            &enter_code_body(Some(
                "That code is unknown or has expired. Check it, or start again on your device.",
            )),
            cookie,
        ));
    };
    Ok(html::page(
        200,
        "Allow this device?",
        server,
        &approve_body(&visit, &client, &grant, &user_id),
        cookie,
    ))
}

pub(crate) async fn device_submit(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let server = ctx.config.server_name.as_str();
    let (form, _, user_id) = match browser::signed_in(ctx).await? {
        Ok(signed_in) => signed_in,
        Err(answer) => return Ok(answer),
    };
    let user_id = user_id.as_str();
    let code = normalize_user_code(form.get("user_code").unwrap_or_default());
    let approved = form.get("decision") == Some("allow");
    if !store::answer_device_grant(&ctx.db(), &code, user_id, approved).await? {
        return Ok(html::error_page(
            400,
            server,
            "That code is unknown, has expired or was already answered.",
        ));
    }
    let message = if approved {
        "Done. Go back to your device: it is signing in."
    } else {
        "The device was not allowed to sign in."
    };
    Ok(html::page(
        200,
        if approved {
            "Device allowed"
        } else {
            "Device denied"
        },
        server,
        &format!(r#"<div class="card"><p class="notice">{message}</p></div>"#),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_read_back_however_typed() {
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(normalize_user_code("bcdf-ghjk"), "BCDFGHJK");
        assert_eq!(normalize_user_code(" BCDF GHJK "), "BCDFGHJK");
    }
}
