//! Requests to other servers: where to send them, signed with X-Matrix, with a time limit.

use ruma::ServerName;
use serde_json::Value;
use worker::{AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit};

use super::xmatrix::authorization;
use crate::storage::signing_keys;

/// How long one federation request may take before we give up on it.
const REQUEST_TIMEOUT_MS: u64 = 20_000;

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
    env: &Env,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    signed: bool,
) -> Result<(u16, Value), FederationError> {
    let (status, text) =
        request_text(env, destination, method, path_and_query, body, signed).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Sends a request and returns the status and the body as text, for an answer too big to
/// hold as a JSON tree (a big room's `send_join`).
pub async fn request_text(
    env: &Env,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    signed: bool,
) -> Result<(u16, String), FederationError> {
    let headers = Headers::new();
    if signed {
        let config = crate::runtime::config(env).map_err(|e| err(e.message))?;
        let keys = signing_keys::server_keys(env)
            .await
            .map_err(|e| err(e.message))?;
        let value = authorization(
            &config.server_name,
            destination,
            &keys.current,
            method.as_ref(),
            path_and_query,
            body,
        )
        .map_err(err)?;
        headers.set("Authorization", &value).map_err(err)?;
    }
    // Where to connect, and which name the certificate and Host header carry (spec: resolving
    // server names). When the two differ (SRV delegation to another name), `fetch` cannot do
    // it and a TLS socket with our small HTTP/1.1 client does.
    let target = crate::runtime::discovery::resolve(env, destination)
        .await
        .map_err(|e| err(format!("{destination} cannot be resolved: {e}")))?;
    if target.needs_socket() {
        return over_socket(&target, method, path_and_query, &headers, body).await;
    }
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(err)?;
        init.with_body(Some(body.to_string().into()));
    }
    init.with_headers(headers);
    let url = target.https_url(path_and_query);
    let request = Request::new_with_init(&url, &init).map_err(err)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = fetch.send_with_signal(&signal);
    let timeout = Delay::from(std::time::Duration::from_millis(REQUEST_TIMEOUT_MS));
    futures::pin_mut!(send);
    let mut response = match futures::future::select(send, timeout).await {
        futures::future::Either::Left((result, _)) => {
            result.map_err(|e| err(format!("{url}: {e}")))?
        }
        futures::future::Either::Right(_) => {
            controller.abort();
            return Err(err(format!(
                "{url}: no answer within {REQUEST_TIMEOUT_MS} ms"
            )));
        }
    };
    let status = response.status_code();
    let text = response.text().await.map_err(err)?;
    Ok((status, text))
}

/// The same request over a TLS socket checked against the delegated name.
async fn over_socket(
    target: &crate::discovery::Destination,
    method: Method,
    path_and_query: &str,
    headers: &Headers,
    body: Option<&Value>,
) -> Result<(u16, String), FederationError> {
    let authorization = headers.get("Authorization").ok().flatten();
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(value) = authorization.as_deref() {
        extra.push(("Authorization", value));
    }
    let text = body.map(Value::to_string).unwrap_or_default();
    if body.is_some() {
        extra.push(("Content-Type", "application/json"));
    }
    let request = crate::discovery::http1::Request {
        method: method.as_ref(),
        path: path_and_query,
        host: &target.host_header,
        headers: &extra,
        body: text.as_bytes(),
    };
    let response = crate::runtime::http1::send(
        target,
        &request,
        std::time::Duration::from_millis(REQUEST_TIMEOUT_MS),
    )
    .await
    .map_err(|e| err(format!("{}: {e}", target.authority())))?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// A signed request on behalf of a client or a room: an unreachable server is the client's
/// 502 with the server named, so each caller only handles the answer.
pub async fn signed(
    env: &Env,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), crate::http::MatrixError> {
    let (status, text) = signed_text(env, destination, method, path_and_query, body).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// `signed`, with the body as text (see `request_text`).
pub async fn signed_text(
    env: &Env,
    destination: &ServerName,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
) -> Result<(u16, String), crate::http::MatrixError> {
    request_text(env, destination, method, path_and_query, body, true)
        .await
        .map_err(|e| {
            crate::http::MatrixError::new(
                502,
                crate::http::ErrorCode::Unknown,
                format!("{destination} could not be reached: {e}"),
            )
        })
}
