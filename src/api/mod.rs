//! The server's one entry point above the runtime: a request in plain values goes in, is routed
//! to its row in `routes.rs`, and a JSON answer or a Matrix error comes out. The runtime only
//! converts to and from the platform's request and response types.

pub(crate) mod request;
pub(crate) mod routes;

use crate::http::route::{route, Routed};
use crate::http::{JsonResponse, MatrixError, MediaResponse};
use crate::platform::Platform;
use crate::storage::Usage;

pub use request::IncomingRequest;

/// What a handler produced: a JSON body, media bytes, or the empty answer to a CORS preflight.
pub enum Reply {
    Json(JsonResponse),
    Media(MediaResponse),
    Preflight,
}

impl From<JsonResponse> for Reply {
    fn from(json: JsonResponse) -> Self {
        Reply::Json(json)
    }
}

impl From<MediaResponse> for Reply {
    fn from(media: MediaResponse) -> Self {
        Reply::Media(media)
    }
}

/// The answer to one request, and what it cost in D1 when the deployment asks for it to be shown.
async fn handle(
    platform: Platform,
    request: IncomingRequest,
) -> (Result<Reply, MatrixError>, Option<Usage>) {
    let (handler, params) = match route(routes::ROUTES, &request.method, &request.path) {
        Ok(Routed::Preflight) => return (Ok(Reply::Preflight), None),
        Ok(Routed::Endpoint { target, params }) => (target, params),
        Err(e) => return (Err(e), None),
    };
    let config = match platform.config() {
        Ok(config) => config,
        Err(e) => return (Err(e), None),
    };
    let declared = request
        .headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.as_str());
    let size = crate::limits::body::check(
        &request.method,
        &request.path,
        &config,
        request.body.len(),
        declared,
    );
    if let Err(e) = size {
        return (Err(e), None);
    }
    let show_usage = config.expose_d1_usage;
    let ctx = request::Ctx::new(request, platform, config, params);
    let reply = handler(&ctx).await;
    (reply, show_usage.then(|| ctx.usage.get()))
}

/// The answer as the runtime sends it: errors become their Matrix JSON body (5xx logged).
// Natively only the tests call it (runtime/ is wasm32 only).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) async fn respond(
    platform: Platform,
    request: IncomingRequest,
) -> (Reply, Option<Usage>) {
    let (reply, usage) = handle(platform, request).await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => {
            if error.status >= 500 {
                crate::log_error!("{error}");
            }
            Reply::Json(error.into_response())
        }
    };
    (reply, usage)
}
