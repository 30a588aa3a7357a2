//! The binding to the Workers runtime, and the only module that names a `worker` type: the fetch
//! handler, the Durable Object classes, and the ports of `platform/` implemented with D1,
//! Durable Objects, `fetch`, sockets and WebCrypto. It converts requests and answers and calls
//! `api::respond`; everything it binds compiles and is tested natively (docs/design.md).

mod appservice;
mod crypto;
mod d1;
mod destination;
mod http1;
mod media;
mod notifier;
mod ports;
mod pusher;
mod room_object;

use worker::{event, Context, Env, Headers, Request, Response};

use crate::api::{IncomingRequest, Reply};
use crate::http::cors::CORS_HEADERS;
use crate::platform::log::{self, Level};
use crate::storage::Usage;

pub(crate) use ports::platform;

/// Posts `body` to the Durable Object of class `binding` named `name`, for the queues that are
/// only ever poked (application services, pushers); the answer says nothing.
async fn post_to_object(
    env: &Env,
    binding: &str,
    name: &str,
    url: &str,
    body: String,
) -> worker::Result<()> {
    let stub = env
        .durable_object(binding)?
        .id_from_name(name)?
        .get_stub()?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(body.into()));
    let request = Request::new_with_init(url, &init)?;
    stub.fetch_with_request(request).await.map(|_| ())
}

fn console(level: Level, message: &str) {
    match level {
        Level::Info => worker::console_log!("{message}"),
        Level::Warn => worker::console_warn!("{message}"),
        Level::Error => worker::console_error!("{message}"),
    }
}

/// Log lines go to the Workers console; installed by every entry point (fetch, objects).
pub(crate) fn install_logging() {
    log::install(console);
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    install_logging();
    let platform = platform(&env);
    let request = match incoming(req, &platform).await {
        Ok(request) => request,
        Err(error) => return into_worker_response(Reply::Json(error.into_response()), None),
    };
    let (reply, usage) = crate::api::respond(platform, request).await;
    into_worker_response(reply, usage)
}

/// The request in plain values. Only a malformed URL fails here. A body declared larger than
/// its route allows is left unread: `api` answers 413 from the declared length.
async fn incoming(
    mut req: Request,
    platform: &crate::platform::Platform,
) -> Result<IncomingRequest, crate::http::MatrixError> {
    let url = req
        .url()
        .map_err(|_| crate::http::MatrixError::bad_json("malformed URL"))?;
    let header_list: Vec<(String, String)> = req.headers().entries().collect();
    let header = |name: &str| {
        header_list
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (authorization, ip) = (header("authorization"), header("cf-connecting-ip"));
    let method = req.method().to_string();
    let path = req.path();
    // An upload with a declared length goes to R2 as the stream it arrived as (R2 needs the
    // length up front); everything else is read here.
    let declared = header("content-length").and_then(|l| l.trim().parse::<u64>().ok());
    let too_large = match (declared, platform.config()) {
        (Some(length), Ok(config)) => {
            length > crate::limits::body::max_bytes(&method, &path, &config)
        }
        _ => false,
    };
    let streamed = crate::media::is_upload(&method, &path) && declared.is_some();
    let body_stream = if streamed || too_large {
        req.inner().body()
    } else {
        None
    };
    let (body, body_stream) = match body_stream {
        Some(stream) => (Vec::new(), Some(media::opaque_stream(stream))),
        _ => (req.bytes().await.unwrap_or_default(), None),
    };
    Ok(IncomingRequest {
        method,
        path,
        uri: url[worker::url::Position::BeforePath..].to_owned(),
        query: url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        authorization,
        ip,
        body,
        body_stream,
        headers: header_list,
    })
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
        Reply::Media(media) => {
            for (name, value) in &media.headers {
                headers.set(name, value)?;
            }
            media::response(media.body)?.with_status(media.status)
        }
    };
    Ok(response.with_headers(headers))
}
