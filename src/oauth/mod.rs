//! OAuth 2.0 served by the Worker itself (spec v1.15, "OAuth 2.0 API"; MSC2964-2967, MSC4191,
//! RFC 6749, 7009, 7591, 7636, 8628): clients discover us at `auth_metadata`, register
//! themselves, send the person to our pages to log in or register and consent, and exchange
//! the code for the same access and refresh tokens a password login gets, so they work
//! everywhere and logging a device out revokes them. docs/oauth.md describes the flow.
//!
//! Modules, one job each: `metadata` (discovery), `client_metadata` (registration rules) and
//! `registration` (the endpoint), `scope`, `pkce`, `authorize` (the request and the consent
//! page), `login` (login and registration pages), `token`, `revoke`, `device_grant`,
//! `account` (account management), `browser` (cookie and CSRF) and `html` (page rendering).

pub(crate) mod account;
pub(crate) mod authorize;
pub(crate) mod browser;
pub mod client_metadata;
pub(crate) mod device_grant;
pub(crate) mod html;
pub(crate) mod login;
pub(crate) mod metadata;
pub mod pkce;
pub(crate) mod registration;
pub(crate) mod revoke;
pub mod scope;
pub(crate) mod token;

#[cfg(test)]
mod tests;

use serde_json::{json, Value};

use crate::api::request::Ctx;
use crate::http::MediaResponse;
use crate::platform::Body;

/// Where the endpoints and pages live, below the public base URL.
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
pub const TOKEN_PATH: &str = "/oauth2/token";
pub const REGISTRATION_PATH: &str = "/oauth2/registration";
pub const REVOCATION_PATH: &str = "/oauth2/revoke";
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth2/device_authorization";
pub const DEVICE_PAGE_PATH: &str = "/oauth2/device";
pub const LOGIN_PATH: &str = "/oauth2/login";
pub const REGISTER_PATH: &str = "/oauth2/register";
pub const CONSENT_PATH: &str = "/oauth2/consent";
pub const LOGOUT_PATH: &str = "/oauth2/logout";
pub const ACCOUNT_PATH: &str = "/account";

/// How long an access token from the token endpoint lives; the refresh token renews it.
pub const ACCESS_TOKEN_LIFETIME_MS: u64 = 60 * 60 * 1000;

/// An `application/x-www-form-urlencoded` body (the token, revocation and device endpoints,
/// and every form of the pages).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(ctx: &Ctx) -> Self {
        let bytes = match ctx.raw_body().0 {
            Body::Bytes(bytes) => bytes,
            _ => Vec::new(),
        };
        Form(
            url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A field's value; a field sent twice counts as absent (RFC 6749 section 3.1: parameters
    /// must not repeat).
    pub fn get(&self, name: &str) -> Option<&str> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let first = values.next()?;
        values.next().is_none().then_some(first.1.as_str())
    }
}

/// A JSON answer of the OAuth endpoints: never cached, as RFC 6749 section 5.1 requires of
/// anything that carries tokens.
pub fn oauth_json(status: u16, body: &Value) -> MediaResponse {
    MediaResponse {
        status,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Cache-Control".into(), "no-store".into()),
            ("Pragma".into(), "no-cache".into()),
        ],
        body: Body::Bytes(body.to_string().into_bytes()),
    }
}

/// An OAuth error (RFC 6749 section 5.2): `error` is the RFC's code.
pub fn oauth_error(status: u16, error: &str, description: &str) -> MediaResponse {
    oauth_json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// An absolute URL of this server.
pub(crate) fn url(ctx: &Ctx, path: &str) -> String {
    format!("{}{path}", ctx.config.public_baseurl.as_url())
}

/// A path of ours to return to after a page, from a `next` field: only our own pages, never
/// another site (an open redirect would let anyone send a person anywhere from our login).
pub fn local_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if (next.starts_with("/oauth2/") || next.starts_with(ACCOUNT_PATH))
                && !next.contains("//")
                && !next.contains('\\')
                && !next.bytes().any(|b| b.is_ascii_control()) =>
        {
            next.to_owned()
        }
        _ => ACCOUNT_PATH.to_owned(),
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
