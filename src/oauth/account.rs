//! The account management page (`account_management_uri`, MSC4191 / spec v1.15): the person's
//! devices with a sign-out button each, a password change, signing out everywhere, and the
//! approval of a cross-signing reset that the UIA stage `m.oauth` waits for
//! (`client/uia.rs`). Clients open it with `?action=...` (`metadata::ACCOUNT_ACTIONS`), and
//! `device_id` for the actions on one device, which is then shown first.

use super::browser::{self, Visit};
use super::html::{self, escape, hidden};
use super::*;
use crate::client::device_keys::announce_device_change;
use crate::client::password::{hash_password, verify_password};
use crate::http::MatrixError;
use crate::storage::{accounts, oauth as store};
use crate::time::now_ms;

/// How long an approved cross-signing reset stays approved.
pub const CROSS_SIGNING_RESET_WINDOW_MS: u64 = 10 * 60 * 1000;

/// The account page's address for an action, as UIA's `m.oauth` stage hands it to clients.
pub fn action_url(ctx: &Ctx, action: &str) -> String {
    format!("{}?action={}", url(ctx, ACCOUNT_PATH), encode(action))
}

fn post_form(visit: &Visit, action: &str, fields: &str, label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="{action}">{}{fields}<button class="{class}" type="submit">{label}</button></form>"#,
        visit.csrf_field()
    )
}

fn format_ts(ts: Option<i64>) -> String {
    match ts {
        Some(ts) => {
            let days = ts / 86_400_000;
            // Days since 1970 to a civil date (Howard Hinnant's algorithm).
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let day = doy - (153 * mp + 2) / 5 + 1;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let year = yoe + era * 400 + i64::from(month <= 2);
            format!("{year:04}-{month:02}-{day:02}")
        }
        None => "never".into(),
    }
}

async fn render(
    ctx: &Ctx,
    visit: &Visit,
    user_id: &str,
    notice: Option<&str>,
    status: u16,
) -> Result<MediaResponse, MatrixError> {
    let db = ctx.db();
    let mut devices = accounts::devices(&db, user_id).await?;
    let focus = ctx.query("device_id").unwrap_or_default();
    // The device an action names comes first.
    devices.sort_by_key(|d| d.device_id != focus);
    let action = ctx.query("action").unwrap_or_default();
    let mut body = String::new();
    if let Some(notice) = notice {
        body.push_str(&format!(r#"<p class="notice">{}</p>"#, escape(notice)));
    }
    if action == "org.matrix.cross_signing_reset" {
        body.push_str(&format!(
            r#"<div class="card"><h2>Reset your identity</h2><p>An app asked to replace your cross-signing keys. Do this only if you started it: your other devices and contacts will have to verify you again.</p>{}</div>"#,
            post_form(visit, &format!("{ACCOUNT_PATH}/cross_signing_reset"), "", "Allow the reset for 10 minutes", "danger")
        ));
    }
    body.push_str(&format!(
        r#"<div class="card"><h2>Signed in as</h2><p><code>{}</code></p>{}</div>"#,
        escape(user_id),
        post_form(visit, LOGOUT_PATH, "", "Sign out of this page", "secondary")
    ));
    let items: String = devices
        .iter()
        .map(|d| {
            format!(
                r#"<li><strong>{name}</strong><br><span class="muted"><code>{id}</code> · last seen {seen}</span>{form}</li>"#,
                name = escape(d.display_name.as_deref().unwrap_or("Unnamed session")),
                id = escape(&d.device_id),
                seen = format_ts(d.last_seen_ts),
                form = post_form(
                    visit,
                    &format!("{ACCOUNT_PATH}/devices/delete"),
                    &hidden("device_id", &d.device_id),
                    "Sign out this device",
                    "secondary"
                ),
            )
        })
        .collect();
    body.push_str(&format!(
        r#"<div class="card" id="devices"><h2>Devices ({})</h2><ul class="devices">{}</ul></div>"#,
        devices.len(),
        if items.is_empty() {
            "<li class=\"muted\">No devices are signed in.</li>".into()
        } else {
            items
        }
    ));
    body.push_str(&format!(
        r#"<div class="card"><h2>Change password</h2><form method="post" action="{ACCOUNT_PATH}/password">{}
<label for="current">Current password</label><input id="current" name="current_password" type="password" autocomplete="current-password" required>
<label for="new">New password</label><input id="new" name="new_password" type="password" autocomplete="new-password" minlength="8" required>
<button type="submit">Change password</button></form></div>"#,
        visit.csrf_field()
    ));
    body.push_str(&format!(
        r#"<div class="card"><h2>Sign out everywhere</h2><p class="muted">Every device and every browser is signed out of this account.</p>{}</div>"#,
        post_form(visit, &format!("{ACCOUNT_PATH}/sign_out_everywhere"), "", "Sign out everywhere", "danger")
    ));
    Ok(html::page(
        status,
        "Your account",
        ctx.config.server_name.as_str(),
        &body,
        visit.set_cookie.as_deref(),
    ))
}

/// The page's own address with its query, to come back to after logging in.
fn here(ctx: &Ctx) -> String {
    let query: String = ["action", "device_id"]
        .iter()
        .filter_map(|k| ctx.query(k).map(|v| format!("{k}={}", encode(v))))
        .collect::<Vec<_>>()
        .join("&");
    if query.is_empty() {
        ACCOUNT_PATH.to_owned()
    } else {
        format!("{ACCOUNT_PATH}?{query}")
    }
}

pub(crate) async fn page(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let visit = browser::visit(ctx).await?;
    let Some(user_id) = visit.user_id.clone() else {
        return Ok(html::redirect(
            &format!("{LOGIN_PATH}?next={}", encode(&here(ctx))),
            visit.set_cookie.as_deref(),
        ));
    };
    render(ctx, &visit, &user_id, None, 200).await
}

pub(crate) async fn delete_device(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (form, visit, user_id) = match browser::signed_in(ctx).await? {
        Ok(signed_in) => signed_in,
        Err(answer) => return Ok(answer),
    };
    let device = form.get("device_id").unwrap_or_default().to_owned();
    let db = ctx.db();
    let known = accounts::devices(&db, &user_id)
        .await?
        .iter()
        .any(|d| d.device_id == device);
    if !known {
        return render(ctx, &visit, &user_id, Some("No such device."), 400).await;
    }
    accounts::delete_devices(&db, &user_id, std::slice::from_ref(&device)).await?;
    announce_device_change(ctx, &db, &[user_id.as_str()]).await;
    render(
        ctx,
        &visit,
        &user_id,
        Some(&format!("Device {device} is signed out.")),
        200,
    )
    .await
}

pub(crate) async fn change_password(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (form, visit, user_id) = match browser::signed_in(ctx).await? {
        Ok(signed_in) => signed_in,
        Err(answer) => return Ok(answer),
    };
    if let Err(e) = crate::limits::rate::check_auth_user(ctx, "login", &user_id).await {
        if e.status == 429 {
            return render(
                ctx,
                &visit,
                &user_id,
                Some("Too many attempts. Wait a minute."),
                429,
            )
            .await;
        }
        return Err(e);
    }
    let db = ctx.db();
    let iterations = ctx.config.password_iterations;
    let current = form.get("current_password").unwrap_or_default();
    if !verify_password(&ctx.platform, &db, &user_id, current, iterations).await? {
        return render(
            ctx,
            &visit,
            &user_id,
            Some("The current password is wrong; nothing changed."),
            400,
        )
        .await;
    }
    let new = form.get("new_password").unwrap_or_default();
    if new.chars().count() < 8 {
        return render(
            ctx,
            &visit,
            &user_id,
            Some("Choose a password of at least 8 characters."),
            400,
        )
        .await;
    }
    let hash = match hash_password(&ctx.platform, new, iterations).await {
        Ok(hash) => hash,
        Err(e) if e.status < 500 => {
            return render(ctx, &visit, &user_id, Some(&e.message), 400).await
        }
        Err(e) => return Err(e),
    };
    accounts::set_password(&db, &user_id, &hash).await?;
    render(
        ctx,
        &visit,
        &user_id,
        Some("Your password is changed."),
        200,
    )
    .await
}

pub(crate) async fn sign_out_everywhere(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (_, visit, user_id) = match browser::signed_in(ctx).await? {
        Ok(signed_in) => signed_in,
        Err(answer) => return Ok(answer),
    };
    let db = ctx.db();
    let devices: Vec<String> = accounts::devices(&db, &user_id)
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    accounts::delete_devices(&db, &user_id, &devices).await?;
    announce_device_change(ctx, &db, &[user_id.as_str()]).await;
    store::end_browser_sessions(&db, &user_id).await?;
    let cookie = browser::log_out(ctx, &visit).await?;
    Ok(html::redirect(LOGIN_PATH, Some(&cookie)))
}

pub(crate) async fn allow_cross_signing_reset(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (_, visit, user_id) = match browser::signed_in(ctx).await? {
        Ok(signed_in) => signed_in,
        Err(answer) => return Ok(answer),
    };
    store::allow_cross_signing_reset(
        &ctx.db(),
        &user_id,
        (now_ms() + CROSS_SIGNING_RESET_WINDOW_MS) as i64,
    )
    .await?;
    render(
        ctx,
        &visit,
        &user_id,
        Some("Approved for 10 minutes: go back to your app and continue the reset."),
        200,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(format_ts(Some(0)), "1970-01-01");
        assert_eq!(format_ts(Some(951_782_400_000)), "2000-02-29");
        assert_eq!(format_ts(Some(1_798_761_600_000)), "2027-01-01");
        assert_eq!(format_ts(None), "never");
    }
}
