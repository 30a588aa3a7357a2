//! `GET /oauth2/authorize` (RFC 6749 section 4.1.1 with PKCE and the Matrix scopes) and the
//! consent page that answers it. The request is checked in the RFC's order: an unknown client
//! or a redirect URI it did not register is shown to the person and never redirected to;
//! every later problem goes back to the client's redirect URI with the RFC's error and `state`.

use url::Url;

use super::browser::{self, Visit};
use super::client_metadata::redirect_uri_registered;
use super::html::{self, escape, hidden};
use super::registration::{find_client, Client};
use super::*;
use crate::accounts::tokens::{new_opaque_id, random_string, token_hash, TOKEN_ALPHABET};
use crate::http::MatrixError;
use crate::storage::oauth::{self as store, Authorization};
use crate::time::now_ms;

/// How long the person has to log in and consent.
const REQUEST_LIFETIME_MS: u64 = 15 * 60 * 1000;
/// How long a code is good for (RFC 6749 recommends at most ten minutes).
pub const CODE_LIFETIME_MS: u64 = 60 * 1000;

/// The client's redirect URI with the answer's parameters, in the query or the fragment.
pub fn callback(redirect_uri: &str, response_mode: &str, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    if response_mode == "fragment" {
        let fragment: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        url.set_fragment(Some(&fragment));
    } else {
        url.query_pairs_mut().extend_pairs(params);
    }
    url.to_string()
}

fn error_callback(
    redirect_uri: &str,
    response_mode: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> MediaResponse {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    html::redirect(&callback(redirect_uri, response_mode, &params), None)
}

pub(crate) async fn authorize(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let server = ctx.config.server_name.as_str();
    let client_id = ctx.query("client_id").unwrap_or_default();
    let Some(client) = find_client(ctx, client_id).await? else {
        return Ok(html::error_page(
            400,
            server,
            "The app that sent you here is not registered with this server.",
        ));
    };
    let redirect_uri = ctx.query("redirect_uri").unwrap_or_default();
    if !redirect_uri_registered(redirect_uri, &client.redirect_uris) {
        return Ok(html::error_page(
            400,
            server,
            "The app asked to return you to an address it did not register. Nothing was sent to it.",
        ));
    }
    let state = ctx.query("state");
    let response_mode = match ctx.query("response_mode") {
        None | Some("query") => "query",
        Some("fragment") => "fragment",
        Some(_) => {
            return Ok(error_callback(
                redirect_uri,
                "query",
                state,
                "invalid_request",
                "response_mode must be query or fragment",
            ))
        }
    };
    let fail = |error: &str, description: &str| {
        Ok(error_callback(
            redirect_uri,
            response_mode,
            state,
            error,
            description,
        ))
    };
    if ctx.query("response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    if !client.allows("authorization_code") {
        return fail(
            "unauthorized_client",
            "this client did not register the authorization code grant",
        );
    }
    if ctx.query("code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        );
    }
    let code_challenge = ctx.query("code_challenge").unwrap_or_default();
    if !pkce::valid_challenge(code_challenge) {
        return fail(
            "invalid_request",
            "code_challenge must be a base64url SHA-256",
        );
    }
    let grant = match scope::parse(ctx.query("scope").unwrap_or_default()) {
        Ok(grant) => grant,
        Err(scope::InvalidScope(why)) => return fail("invalid_scope", why),
    };
    let authorization = Authorization {
        id: new_opaque_id(),
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        response_mode: response_mode.to_owned(),
        state: state.map(str::to_owned),
        scope: grant.scope,
        device_id: grant.device_id,
        code_challenge: code_challenge.to_owned(),
        expires_ts: (now_ms() + REQUEST_LIFETIME_MS) as i64,
        user_id: None,
        code_expires_ts: None,
    };
    store::create_authorization(&ctx.db(), &authorization).await?;
    let consent = format!("{CONSENT_PATH}?id={}", encode(&authorization.id));
    let visit = browser::visit(ctx).await?;
    let location = if ctx.query("prompt") == Some("create") {
        format!("{REGISTER_PATH}?next={}", encode(&consent))
    } else if visit.user_id.is_some() {
        consent
    } else {
        // `login_hint=mxid:@alice:example.org` fills in the username.
        let hint = ctx
            .query("login_hint")
            .and_then(|h| h.strip_prefix("mxid:"))
            .map(|h| format!("&username={}", encode(h)))
            .unwrap_or_default();
        format!("{LOGIN_PATH}?next={}{hint}", encode(&consent))
    };
    Ok(html::redirect(&location, visit.set_cookie.as_deref()))
}

fn consent_body(visit: &Visit, client: &Client, request: &Authorization, user_id: &str) -> String {
    let fields = format!("{}{}", visit.csrf_field(), hidden("id", &request.id));
    format!(
        r#"<div class="card"><p><strong>{name}</strong> wants to sign in to your account <strong>{user}</strong>.</p>
<p class="muted">App: <a href="{uri}" rel="noreferrer">{uri}</a><br>New session: <code>{device}</code><br>It returns you to <code>{redirect}</code>.</p>
<p>If you allow it, the app can do everything you can do on this server: read and send messages, join rooms, change settings.</p>
{buttons}</div>
<form method="post" action="{LOGOUT_PATH}">{csrf}<button class="secondary" type="submit">Not {user}? Sign out</button></form>"#,
        name = escape(&client.display_name()),
        user = escape(user_id),
        uri = escape(&client.client_uri),
        device = escape(&request.device_id),
        redirect = escape(&request.redirect_uri),
        buttons = html::deny_or_allow(CONSENT_PATH, &fields),
        csrf = visit.csrf_field(),
    )
}

pub(crate) async fn consent_page(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let server = ctx.config.server_name.as_str();
    let id = ctx.query("id").unwrap_or_default();
    let visit = browser::visit(ctx).await?;
    let Some(user_id) = visit.user_id.clone() else {
        let next = format!("{CONSENT_PATH}?id={}", encode(id));
        return Ok(html::redirect(
            &format!("{LOGIN_PATH}?next={}", encode(&next)),
            visit.set_cookie.as_deref(),
        ));
    };
    let request = store::pending_authorization(&ctx.db(), id).await?;
    let client = match &request {
        Some(request) => find_client(ctx, &request.client_id).await?,
        None => None,
    };
    let (Some(request), Some(client)) = (request, client) else {
        return Ok(html::error_page(
            400,
            server,
            "This sign-in request has expired or was already answered. Start again from the app.",
        ));
    };
    Ok(html::page(
        200,
        "Allow access?",
        server,
        &consent_body(&visit, &client, &request, &user_id),
        visit.set_cookie.as_deref(),
    ))
}

pub(crate) async fn consent_submit(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let server = ctx.config.server_name.as_str();
    let (form, _, user_id) = match browser::signed_in(ctx).await? {
        Ok(signed_in) => signed_in,
        Err(answer) => return Ok(answer),
    };
    let user_id = user_id.as_str();
    let db = ctx.db();
    let id = form.get("id").unwrap_or_default();
    let Some(request) = store::pending_authorization(&db, id).await? else {
        return Ok(html::error_page(
            400,
            server,
            "This sign-in request has expired or was already answered. Start again from the app.",
        ));
    };
    let state = request.state.as_deref();
    if form.get("decision") != Some("allow") {
        store::forget_authorization(&db, id).await?;
        return Ok(error_callback(
            &request.redirect_uri,
            &request.response_mode,
            state,
            "access_denied",
            "the user denied the request",
        ));
    }
    let code = random_string(TOKEN_ALPHABET, 43);
    let expires = (now_ms() + CODE_LIFETIME_MS) as i64;
    if !store::consent(&db, id, user_id, &token_hash(&code), expires).await? {
        return Ok(html::error_page(
            400,
            server,
            "This sign-in request was already answered.",
        ));
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = state {
        params.push(("state", state));
    }
    Ok(html::redirect(
        &callback(&request.redirect_uri, &request.response_mode, &params),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_carry_parameters_in_the_chosen_part() {
        assert_eq!(
            callback(
                "http://127.0.0.1:8000/cb?x=1",
                "query",
                &[("code", "a b"), ("state", "s")]
            ),
            "http://127.0.0.1:8000/cb?x=1&code=a+b&state=s"
        );
        assert_eq!(
            callback(
                "com.example.app:/cb",
                "fragment",
                &[("code", "c"), ("state", "s&t")]
            ),
            "com.example.app:/cb#code=c&state=s%26t"
        );
    }
}
