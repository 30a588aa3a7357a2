//! The login and registration pages. They sign the browser in (`browser.rs`) and go on to
//! `next` (the consent page, the device page or the account page). Both count attempts with the
//! same per-address and per-user limits as `/login` and `/register`, and registration honours
//! `REGISTRATION` (open, token or closed) as `/register` does.

use super::browser::{self, Visit};
use super::html::{self, escape, hidden};
use super::*;
use crate::accounts::localpart::{login_user_id, new_user_id};
use crate::client::password::{hash_password, verify_password};
use crate::config::RegistrationMode;
use crate::http::{ErrorCode, MatrixError};
use crate::storage::accounts;

fn error_box(message: Option<&str>) -> String {
    message
        .map(|m| format!(r#"<p class="error">{}</p>"#, escape(m)))
        .unwrap_or_default()
}

/// A rate limit as the page shows it; other errors stay errors.
fn limited(error: MatrixError) -> Result<String, MatrixError> {
    if error.status == 429 {
        Ok("Too many attempts from here. Wait a minute and try again.".into())
    } else {
        Err(error)
    }
}

fn login_form(
    ctx: &Ctx,
    visit: &Visit,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> MediaResponse {
    let register = if ctx.config.registration == RegistrationMode::Closed {
        String::new()
    } else {
        format!(
            r#"<p class="muted">No account yet? <a href="{REGISTER_PATH}?next={}">Create one</a>.</p>"#,
            encode(next)
        )
    };
    let body = format!(
        r#"<div class="card">{error}<form method="post" action="{LOGIN_PATH}">{csrf}{next}
<label for="username">Username</label><input id="username" name="username" autocomplete="username" autocapitalize="none" required value="{username}">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></div>{register}"#,
        error = error_box(error),
        csrf = visit.csrf_field(),
        next = hidden("next", next),
        username = escape(username),
    );
    html::page(
        if error.is_some() { 400 } else { 200 },
        &format!("Sign in to {}", ctx.config.server_name),
        ctx.config.server_name.as_str(),
        &body,
        visit.set_cookie.as_deref(),
    )
}

pub(crate) async fn login_page(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let visit = browser::visit(ctx).await?;
    let next = local_next(ctx.query("next"));
    let username = ctx.query("username").unwrap_or_default();
    Ok(login_form(ctx, &visit, &next, username, None))
}

pub(crate) async fn login_submit(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (form, visit) = match browser::submitted(ctx).await? {
        Ok(submitted) => submitted,
        Err(refused) => return Ok(refused),
    };
    let next = local_next(form.get("next"));
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    if let Err(e) = crate::limits::rate::check_auth_ip(ctx, "login").await {
        return Ok(login_form(ctx, &visit, &next, username, Some(&limited(e)?)));
    }
    let wrong = "Wrong username or password.";
    let Some(user_id) = login_user_id(username, &ctx.config.server_name) else {
        return Ok(login_form(ctx, &visit, &next, username, Some(wrong)));
    };
    if let Err(e) = crate::limits::rate::check_auth_user(ctx, "login", user_id.as_str()).await {
        return Ok(login_form(ctx, &visit, &next, username, Some(&limited(e)?)));
    }
    let ok = verify_password(
        &ctx.platform,
        &ctx.db(),
        user_id.as_str(),
        password,
        ctx.config.password_iterations,
    )
    .await?;
    if !ok {
        return Ok(login_form(ctx, &visit, &next, username, Some(wrong)));
    }
    let signed_in = browser::log_in(ctx, &visit, user_id.as_str()).await?;
    Ok(html::redirect(&next, signed_in.set_cookie.as_deref()))
}

fn register_form(
    ctx: &Ctx,
    visit: &Visit,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> MediaResponse {
    let server = ctx.config.server_name.as_str();
    if ctx.config.registration == RegistrationMode::Closed {
        return html::page(
            403,
            "Registration is closed",
            server,
            &format!(
                r#"<div class="card"><p>This server does not take new accounts. Ask its administrator for one.</p><p><a href="{LOGIN_PATH}?next={}">Sign in</a> instead.</p></div>"#,
                encode(next)
            ),
            visit.set_cookie.as_deref(),
        );
    }
    let token = if ctx.config.registration == RegistrationMode::Token {
        r#"<label for="token">Registration token</label><input id="token" name="registration_token" autocomplete="off" required>"#
    } else {
        ""
    };
    let body = format!(
        r#"<div class="card">{error}<form method="post" action="{REGISTER_PATH}">{csrf}{next_field}
<label for="username">Username</label><input id="username" name="username" autocomplete="username" autocapitalize="none" required value="{username}">
<p class="muted">Your address will be @username:{server}. Use a-z, 0-9 and . _ = - / +</p>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="new-password" minlength="8" required>
<label for="password2">Password again</label><input id="password2" name="password2" type="password" autocomplete="new-password" minlength="8" required>
{token}<button type="submit">Create account</button></form></div>
<p class="muted">Have an account? <a href="{LOGIN_PATH}?next={next_query}">Sign in</a>.</p>"#,
        error = error_box(error),
        csrf = visit.csrf_field(),
        next_field = hidden("next", next),
        next_query = encode(next),
        username = escape(username),
        server = escape(server),
    );
    html::page(
        if error.is_some() { 400 } else { 200 },
        "Create an account",
        server,
        &body,
        visit.set_cookie.as_deref(),
    )
}

pub(crate) async fn register_page(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let visit = browser::visit(ctx).await?;
    let next = local_next(ctx.query("next"));
    Ok(register_form(ctx, &visit, &next, "", None))
}

/// The shortest password the page accepts.
const MIN_PASSWORD_CHARS: usize = 8;

/// Whether the registration token is good; a token made with the admin API counts one use.
async fn token_accepted(ctx: &Ctx, given: &str) -> Result<bool, MatrixError> {
    if given.is_empty() {
        return Ok(false);
    }
    if ctx.platform.secret("REGISTRATION_TOKEN").as_deref() == Some(given) {
        return Ok(true);
    }
    crate::storage::admin::use_token(&ctx.db(), given, crate::time::now_ms()).await
}

pub(crate) async fn register_submit(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (form, visit) = match browser::submitted(ctx).await? {
        Ok(submitted) => submitted,
        Err(refused) => return Ok(refused),
    };
    let next = local_next(form.get("next"));
    let username = form
        .get("username")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let fail = |message: &str| Ok(register_form(ctx, &visit, &next, &username, Some(message)));
    if ctx.config.registration == RegistrationMode::Closed {
        return Ok(register_form(ctx, &visit, &next, "", None));
    }
    if let Err(e) = crate::limits::rate::check_auth_ip(ctx, "register").await {
        return fail(&limited(e)?);
    }
    let user_id = match new_user_id(&username, &ctx.config.server_name) {
        Ok(user_id) => user_id,
        Err(invalid) => return fail(&format!("That username cannot be used: {}.", invalid.0)),
    };
    let password = form.get("password").unwrap_or_default();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return fail("Choose a password of at least 8 characters.");
    }
    if form.get("password2") != Some(password) {
        return fail("The two passwords differ.");
    }
    if let Err(e) = crate::appservice::endpoints::refuse_exclusive_user(ctx, user_id.as_str()).await
    {
        return fail(&e.message);
    }
    let db = ctx.db();
    if accounts::user_exists(&db, user_id.as_str()).await? {
        return fail("That username is taken.");
    }
    if ctx.config.registration == RegistrationMode::Token
        && !token_accepted(ctx, form.get("registration_token").unwrap_or_default()).await?
    {
        return fail("That registration token is not valid.");
    }
    let hash = match hash_password(&ctx.platform, password, ctx.config.password_iterations).await {
        Ok(hash) => hash,
        Err(e) if e.status < 500 => return fail(&e.message),
        Err(e) => return Err(e),
    };
    match accounts::register(&db, user_id.as_str(), Some(&hash), false, None).await {
        Ok(()) => {}
        Err(e) if e.code == ErrorCode::UserInUse => return fail("That username is taken."),
        Err(e) => return Err(e),
    }
    let signed_in = browser::log_in(ctx, &visit, user_id.as_str()).await?;
    Ok(html::redirect(&next, signed_in.set_cookie.as_deref()))
}

pub(crate) async fn logout_submit(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (_, visit) = match browser::submitted(ctx).await? {
        Ok(submitted) => submitted,
        Err(refused) => return Ok(refused),
    };
    let cookie = browser::log_out(ctx, &visit).await?;
    Ok(html::redirect(LOGIN_PATH, Some(&cookie)))
}
