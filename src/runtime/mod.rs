//! The binding to the Workers runtime: the fetch handler, configuration from `env`, and the
//! conversion of pure `JsonResponse`s into `worker::Response`s with CORS and JSON headers.

pub(crate) mod crypto;
pub(crate) mod destination;
pub(crate) mod discovery;
mod dispatch;
pub(crate) mod http1;
pub(crate) mod notifier;
pub(crate) mod request;
mod room_object;
pub(crate) mod rooms;

// Path segments in federation URLs (room, event and user ids).

use worker::{event, Context, Env, Headers, Request, Response};

use crate::config::Config;
use crate::http::cors::CORS_HEADERS;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::Usage;

/// What a handler produced: a JSON body, or the empty answer to a CORS preflight.
pub(crate) enum Reply {
    Json(JsonResponse),
    Preflight,
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let (reply, usage) = dispatch::dispatch(req, &env).await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => {
            if error.status >= 500 {
                worker::console_error!("{error}");
            }
            Reply::Json(error.into_response())
        }
    };
    into_worker_response(reply, usage)
}

fn into_worker_response(reply: Reply, usage: Option<Usage>) -> worker::Result<Response> {
    let headers = Headers::new();
    if let Some(usage) = usage {
        // For benchmarks and operators: the Worker's own D1 cost (room objects' writes are
        // their own invocations and not included).
        headers.set("X-D1-Queries", &usage.queries.to_string())?;
        headers.set("X-D1-Rows-Read", &usage.rows_read.to_string())?;
        headers.set("X-D1-Rows-Written", &usage.rows_written.to_string())?;
    }
    for (name, value) in CORS_HEADERS {
        headers.set(name, value)?;
    }
    let response = match reply {
        Reply::Preflight => Response::empty()?.with_status(204),
        Reply::Json(json) => {
            headers.set("Content-Type", "application/json")?;
            if let Some(seconds) = json.retry_after_seconds() {
                headers.set("Retry-After", &seconds.to_string())?;
            }
            Response::from_bytes(json.body.to_string().into_bytes())?.with_status(json.status)
        }
    };
    Ok(response.with_headers(headers))
}

/// Reads the deployment settings. A bad setting is the operator's fault: a 500 that names it.
pub(crate) fn config(env: &Env) -> Result<Config, MatrixError> {
    Config::from_lookup(|name| env.var(name).ok().map(|value| value.to_string()))
        .map_err(|e| MatrixError::internal(format!("server misconfigured: {e}")))
}

/// A secret's value, `None` when unset or empty.
pub(crate) fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|value| value.to_string())
        .filter(|value| !value.trim().is_empty())
}
