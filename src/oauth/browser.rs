//! The browser's session with the server's pages: one cookie naming a row of
//! `oauth_browser_sessions`, which holds the CSRF token every form must send back and, once
//! the person has logged in, their user id. The cookie is `HttpOnly`, `SameSite=Lax`, and on an
//! https deployment `Secure` with the `__Host-` prefix (bound to this host, path `/`); a plain
//! http development server drops those two, as browsers refuse them there.

use crate::accounts::tokens::{new_opaque_id, random_string, token_hash, TOKEN_ALPHABET};
use crate::api::request::Ctx;
use crate::http::{MatrixError, MediaResponse};
use crate::storage::oauth as store;
use crate::time::now_ms;

use super::html;

/// A browser session lasts a day: long enough to come back to the account page, short enough
/// that a forgotten browser does not stay signed in.
const LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;

fn secure(ctx: &Ctx) -> bool {
    ctx.config.public_baseurl.as_url().starts_with("https://")
}

fn cookie_name(ctx: &Ctx) -> &'static str {
    if secure(ctx) {
        "__Host-matrix_edge_session"
    } else {
        "matrix_edge_session"
    }
}

fn set_cookie(ctx: &Ctx, value: &str, max_age_s: u64) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{}",
        cookie_name(ctx),
        if secure(ctx) { "; Secure" } else { "" }
    )
}

/// The session cookie's value, if the request has one.
fn cookie(ctx: &Ctx) -> Option<String> {
    let name = cookie_name(ctx);
    ctx.header("cookie")?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// One page view's session.
pub struct Visit {
    session_hash: String,
    pub csrf: String,
    pub user_id: Option<String>,
    /// Set when this view started or replaced the session: the response must carry it.
    pub set_cookie: Option<String>,
}

impl Visit {
    /// The hidden field every form of the page carries.
    pub fn csrf_field(&self) -> String {
        html::hidden("csrf", &self.csrf)
    }
}

async fn load(ctx: &Ctx) -> Result<Option<Visit>, MatrixError> {
    let Some(value) = cookie(ctx) else {
        return Ok(None);
    };
    let session_hash = token_hash(&value);
    Ok(store::browser_session(&ctx.db(), &session_hash)
        .await?
        .map(|s| Visit {
            session_hash,
            csrf: s.csrf,
            user_id: s.user_id,
            set_cookie: None,
        }))
}

async fn start(ctx: &Ctx, user_id: Option<&str>, old: Option<&str>) -> Result<Visit, MatrixError> {
    let value = random_string(TOKEN_ALPHABET, 32);
    let session_hash = token_hash(&value);
    let csrf = new_opaque_id();
    store::create_browser_session(
        &ctx.db(),
        &session_hash,
        &csrf,
        user_id,
        (now_ms() + LIFETIME_MS) as i64,
        old,
    )
    .await?;
    Ok(Visit {
        session_hash,
        csrf,
        user_id: user_id.map(str::to_owned),
        set_cookie: Some(set_cookie(ctx, &value, LIFETIME_MS / 1000)),
    })
}

/// The session of a page view (a GET): the existing one, or a new anonymous one.
pub async fn visit(ctx: &Ctx) -> Result<Visit, MatrixError> {
    match load(ctx).await? {
        Some(visit) => Ok(visit),
        None => start(ctx, None, None).await,
    }
}

/// A submitted form and its session, only if the form sent back its CSRF token: otherwise a
/// 403 page, and the caller changes nothing.
pub async fn submitted(
    ctx: &Ctx,
) -> Result<Result<(super::Form, Visit), MediaResponse>, MatrixError> {
    let form = super::Form::parse(ctx);
    Ok(match submit(ctx, &form).await? {
        Ok(visit) => Ok((form, visit)),
        Err(refused) => Err(refused),
    })
}

/// A submitted form from a browser that is signed in, with the user; otherwise the answer that
/// refuses it (403 without the CSRF token, the login page when signed out).
pub async fn signed_in(
    ctx: &Ctx,
) -> Result<Result<(super::Form, Visit, String), MediaResponse>, MatrixError> {
    let (form, visit) = match submitted(ctx).await? {
        Ok(submitted) => submitted,
        Err(refused) => return Ok(Err(refused)),
    };
    Ok(match visit.user_id.clone() {
        Some(user_id) => Ok((form, visit, user_id)),
        None => Err(html::redirect(super::LOGIN_PATH, None)),
    })
}

/// The session of a form submission, only if the form sent back its CSRF token: otherwise a
/// 403 page, and the caller changes nothing.
async fn submit(
    ctx: &Ctx,
    form: &super::Form,
) -> Result<Result<Visit, MediaResponse>, MatrixError> {
    let refused = || {
        html::error_page(
            403,
            ctx.config.server_name.as_str(),
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        )
    };
    let Some(visit) = load(ctx).await? else {
        return Ok(Err(refused()));
    };
    let sent = form.get("csrf").unwrap_or_default();
    let matches = sent.len() == visit.csrf.len()
        && sent
            .bytes()
            .zip(visit.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    Ok(if matches { Ok(visit) } else { Err(refused()) })
}

/// Logs the browser in as `user_id`: a new session id and CSRF token replace the old ones.
pub async fn log_in(ctx: &Ctx, old: &Visit, user_id: &str) -> Result<Visit, MatrixError> {
    start(ctx, Some(user_id), Some(&old.session_hash)).await
}

/// Ends this browser's session; the answer's cookie clears it.
pub async fn log_out(ctx: &Ctx, visit: &Visit) -> Result<String, MatrixError> {
    store::end_browser_session(&ctx.db(), &visit.session_hash).await?;
    Ok(set_cookie(ctx, "", 0))
}
