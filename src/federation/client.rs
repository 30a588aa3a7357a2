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

/// The base URL for a server. Names with an explicit port, and IP literals, are used as they
/// are (spec resolution steps 1 and 2), which is all a local federation of test servers needs;
/// `.well-known` delegation and SRV go through `runtime::discovery` once it is wired in.
pub fn base_url(server: &ServerName) -> String {
    match server.port() {
        Some(port) => format!("https://{}:{port}", server.host()),
        None => format!("https://{}:8448", server.host()),
    }
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
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(err)?;
        init.with_body(Some(body.to_string().into()));
    }
    init.with_headers(headers);
    let url = format!("{}{path_and_query}", base_url(destination));
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
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}
