//! Requests to other servers: where to send them (server discovery), signed with X-Matrix, with
//! a time limit. Pure: the
//! platform's [`Http`](crate::platform::Http) port does the sending.

use std::time::Duration;

use ruma::ServerName;
use serde_json::Value;

use super::xmatrix::authorization;
use crate::platform::{HttpRequest, HttpResponse, Method, Platform};
use crate::storage::signing_keys;

/// How long one federation request may take before we give up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(20_000);

#[derive(Debug)]
pub struct FederationError(pub String);

impl std::fmt::Display for FederationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: impl std::fmt::Display) -> FederationError {
    FederationError(what.to_string())
}

/// Sends a request and returns the status and the JSON body (`Null` when not JSON).
pub async fn request(
    platform: &Platform,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    signed: bool,
) -> Result<(u16, Value), FederationError> {
    let (status, text) =
        request_text(platform, destination, method, path_and_query, body, signed).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Sends a request and returns the status and the body as text, for an answer too big to
/// hold as a JSON tree (a big room's `send_join`).
pub async fn request_text(
    platform: &Platform,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    signed: bool,
) -> Result<(u16, String), FederationError> {
    let limits = Limits {
        timeout: REQUEST_TIMEOUT,
        max_body: None,
    };
    let response = request_raw(
        platform,
        destination,
        method,
        path_and_query,
        body,
        signed,
        limits,
    )
    .await?;
    Ok((response.status, response.text()))
}

/// How long a request may take and how big its answer may be (media: `max_body` refuses a
/// file over the limit from its `Content-Length`, and the timeout then covers the body too).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub max_body: Option<usize>,
}

/// Sends a request and returns the whole answer, headers and bytes.
pub async fn request_raw(
    platform: &Platform,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    signed: bool,
    limits: Limits,
) -> Result<HttpResponse, FederationError> {
    let mut headers = Vec::new();
    if signed {
        let config = platform.config().map_err(|e| err(e.message))?;
        let keys = signing_keys::server_keys(platform)
            .await
            .map_err(|e| err(e.message))?;
        let value = authorization(
            &config.server_name,
            destination,
            &keys.current,
            method.as_str(),
            path_and_query,
            body,
        )
        .map_err(err)?;
        headers.push(("Authorization".to_owned(), value));
    }
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    // Where to connect, and which name the certificate and Host header carry (spec: resolving
    // server names). When the two differ (SRV delegation to another name), `fetch` cannot do
    // it and a TLS socket with our small HTTP/1.1 client does.
    let target = crate::discovery::resolver::resolve(platform, destination)
        .await
        .map_err(|e| err(format!("{destination} cannot be resolved: {e}")))?;
    let body = body.map(|body| body.to_string().into_bytes());
    if target.needs_socket() {
        // The port adds the Host header (`target.host_header`).
        let request = HttpRequest {
            method,
            url: path_and_query.to_owned(),
            headers,
            body,
            timeout: limits.timeout,
            max_body: limits.max_body,
            follow_redirects: true,
        };
        platform
            .http
            .over_socket(&target, request)
            .await
            .map_err(|e| err(format!("{}: {e}", target.authority())))
    } else {
        let url = target.https_url(path_and_query);
        let request = HttpRequest {
            method,
            url: url.clone(),
            headers,
            body,
            timeout: limits.timeout,
            max_body: limits.max_body,
            follow_redirects: true,
        };
        platform
            .http
            .fetch(request)
            .await
            .map_err(|e| err(format!("{url}: {e}")))
    }
}

/// A signed request on behalf of a client or a room: an unreachable server is the client's
/// 502 with the server named, so each caller only handles the answer.
pub async fn signed(
    platform: &Platform,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), crate::http::MatrixError> {
    let (status, text) = signed_text(platform, destination, method, path_and_query, body).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// `signed`, with the body as text (see `request_text`).
pub async fn signed_text(
    platform: &Platform,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
) -> Result<(u16, String), crate::http::MatrixError> {
    request_text(platform, destination, method, path_and_query, body, true)
        .await
        .map_err(|e| {
            crate::http::MatrixError::new(
                502,
                crate::http::ErrorCode::Unknown,
                format!("{destination} could not be reached: {e}"),
            )
        })
}
