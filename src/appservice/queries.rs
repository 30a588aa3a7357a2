//! What the server asks of a service: does an alias or a user in its namespace exist? Asked
//! when a client looks up an alias or a user this server does not know (spec, Application
//! Service API, "Querying"); the service creates it (with its `as_token`) before answering 200.

use std::time::Duration;

use super::AppService;
use crate::platform::{HttpRequest, HttpResponse, Method, Platform};

/// How long a query may take before the lookup answers as if the service knew nothing.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

fn encode(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request to the service with its `hs_token` (as a header, as the spec now says).
pub(crate) async fn call(
    platform: &Platform,
    service: &AppService,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let base = service
        .file
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or("the service has no url")?;
    let mut headers = vec![(
        "Authorization".to_owned(),
        format!("Bearer {}", service.file.hs_token),
    )];
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    platform
        .http
        .fetch(HttpRequest {
            method,
            url: format!("{}{path}", base.trim_end_matches('/')),
            headers,
            body,
            timeout,
            max_body: Some(1 << 20),
            follow_redirects: true,
        })
        .await
}

/// What a query asks about: an alias (`/rooms/`) or a user (`/users/`).
#[derive(Clone, Copy)]
pub(crate) enum Query {
    Alias,
    User,
}

/// Asks the services whose namespaces hold this id; true once one answers 200.
pub(crate) async fn ask(
    platform: &Platform,
    services: &[std::rc::Rc<AppService>],
    query: Query,
    id: &str,
) -> bool {
    let (segment, interested): (&str, fn(&AppService, &str) -> bool) = match query {
        Query::Alias => ("rooms", AppService::is_interested_in_alias),
        Query::User => ("users", AppService::is_interested_in_user),
    };
    for service in services.iter().filter(|s| interested(s, id)) {
        let path = format!("/_matrix/app/v1/{segment}/{}", encode(id));
        match call(platform, service, Method::Get, &path, None, QUERY_TIMEOUT).await {
            Ok(response) if response.status == 200 => return true,
            Ok(_) => {}
            Err(e) => crate::log_warn!("{segment} query to {} failed: {e}", service.id()),
        }
    }
    false
}

/// For a handler: asks the services about an unknown local alias of their namespaces.
pub(crate) async fn ask_for_alias(
    ctx: &crate::api::request::Ctx,
    alias: &str,
) -> Result<bool, crate::http::MatrixError> {
    let services = super::all(&ctx.db(), ctx.config.server_name.as_str()).await?;
    if !services.iter().any(|s| s.is_interested_in_alias(alias)) {
        return Ok(false);
    }
    Ok(ask(&ctx.platform, &services, Query::Alias, alias).await)
}

/// Whether a local user exists; one that does not but lies in a service's namespace is asked
/// of the service first (which may create it), as when a client invites a bridged user.
pub(crate) async fn local_user_exists(
    ctx: &crate::api::request::Ctx,
    user_id: &str,
) -> Result<bool, crate::http::MatrixError> {
    let db = ctx.db();
    if crate::storage::accounts::user_exists(&db, user_id).await? {
        return Ok(true);
    }
    let services = super::all(&db, ctx.config.server_name.as_str()).await?;
    if !services.iter().any(|s| s.is_interested_in_user(user_id)) {
        return Ok(false);
    }
    if !ask(&ctx.platform, &services, Query::User, user_id).await {
        return Ok(false);
    }
    crate::storage::accounts::user_exists(&db, user_id).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(
            super::encode("#bridge_x:example.org"),
            "%23bridge_x%3Aexample.org"
        );
    }
}
