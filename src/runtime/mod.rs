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

use worker::{event, Context, Env, Request, Response, ResponseBuilder};

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
    let request = incoming(req, &platform).await;
    let (reply, usage) = crate::api::respond(platform, request).await;
    into_worker_response(reply, usage)
}

/// The request in plain values, with as few calls out of wasm as it takes: every request pays
/// for them. A body declared larger than its route allows is left unread: `api` answers 413
/// from the declared length.
async fn incoming(mut req: Request, platform: &crate::platform::Platform) -> IncomingRequest {
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
    let uri = path_and_query(&req.inner().url());
    let query = match uri.split_once('?') {
        Some((_, query)) => worker::url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        None => Vec::new(),
    };
    // An upload with a declared length goes to R2 as the stream it arrived as (R2 needs the
    // length up front); everything else is read here.
    let declared = header("content-length").and_then(|l| l.trim().parse::<u64>().ok());
    let too_large = match declared {
        Some(length) => platform
            .config()
            .is_ok_and(|config| length > crate::limits::body::max_bytes(&method, &path, &config)),
        None => false,
    };
    let streamed = crate::media::is_upload(&method, &path) && declared.is_some();
    // A request without a body (every GET) has no stream: nothing to read and nothing to wait
    // for, where reading it would still cost a promise and a copy out of the runtime.
    let (body, body_stream) = match req.inner().body() {
        None => (Vec::new(), None),
        Some(stream) if streamed || too_large => (Vec::new(), Some(media::opaque_stream(stream))),
        Some(_) => (req.bytes().await.unwrap_or_default(), None),
    };
    IncomingRequest {
        method,
        path,
        uri,
        query,
        authorization,
        ip,
        body,
        body_stream,
        headers: header_list,
    }
}

/// The path and query of a URL as the runtime serialized it (`scheme://host/path?query`):
/// the first `/` after the host starts the path, which a special scheme never leaves empty.
fn path_and_query(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url[after_scheme + i..].to_owned(),
        None => "/".to_owned(),
    }
}

/// The answer as a runtime response, its headers set on the response's own header list (a
/// `Response::from_bytes` would make a list of its own first, and a content type to replace).
fn into_worker_response(reply: Reply, usage: Option<Usage>) -> worker::Result<Response> {
    let mut response = ResponseBuilder::new();
    if let Some(usage) = usage {
        // For benchmarks and operators: the Worker's own D1 cost (room objects' writes are
        // their own invocations and not included).
        response = response
            .with_header("X-D1-Queries", &usage.queries.to_string())?
            .with_header("X-D1-Rows-Read", &usage.rows_read.to_string())?
            .with_header("X-D1-Rows-Written", &usage.rows_written.to_string())?;
    }
    for (name, value) in CORS_HEADERS {
        response = response.with_header(name, value)?;
    }
    Ok(match reply {
        Reply::Preflight => response.with_status(204).empty(),
        Reply::Json(json) => {
            response = response.with_header("Content-Type", "application/json")?;
            if let Some(seconds) = json.retry_after_seconds() {
                response = response.with_header("Retry-After", &seconds.to_string())?;
            }
            response
                .with_status(json.status)
                .fixed(json.body.to_string().into_bytes())
        }
        Reply::Media(media) => {
            for (name, value) in &media.headers {
                response = response.with_header(name, value)?;
            }
            media::response(response.with_status(media.status), media.body)?
        }
    })
}
