//! The server's one entry point above the runtime: a request in plain values goes in, is routed
//! to its row in `routes.rs`, and a JSON answer or a Matrix error comes out. The runtime only
//! converts to and from the platform's request and response types.

pub(crate) mod request;
pub(crate) mod routes;

use crate::http::route::{RouteIndex, Routed};
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

thread_local! {
    /// The route table grouped once per isolate: a request tries only the rows that could match.
    static ROUTE_INDEX: RouteIndex = RouteIndex::new(routes::ROUTES);
}

/// The answer to one request, and what it cost in D1 when the deployment asks for it to be shown.
async fn handle(
    platform: Platform,
    request: IncomingRequest,
) -> (Result<Reply, MatrixError>, Option<Usage>) {
    let routed =
        ROUTE_INDEX.with(|index| index.route(routes::ROUTES, &request.method, &request.path));
    let (handler, params) = match routed {
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

#[cfg(test)]
mod tests {
    use crate::http::route::{route, Route, RouteIndex};

    /// The index answers every path exactly as trying every row does: each row's own path (its
    /// parameters filled), the same with `r0`, a trailing slash and one segment more, under
    /// every method.
    #[test]
    fn the_route_index_answers_as_the_whole_table() {
        let rows: Vec<Route<usize>> = super::routes::ROUTES
            .iter()
            .enumerate()
            .map(|(row, r)| Route {
                method: r.method,
                pattern: r.pattern,
                target: row,
            })
            .collect();
        let index = RouteIndex::new(&rows);
        let mut paths = vec!["/".to_owned(), "/nope".to_owned(), String::new()];
        for row in &rows {
            let path: Vec<&str> = row
                .pattern
                .split('/')
                .map(|s| if s.starts_with('{') { "x%21y" } else { s })
                .collect();
            let path = path.join("/");
            paths.push(path.replace("/_matrix/client/v3/", "/_matrix/client/r0/"));
            paths.push(format!("{path}/"));
            paths.push(format!("{path}/more"));
            paths.push(path);
        }
        for path in &paths {
            for method in ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "BREW"] {
                let whole = route(&rows, method, path);
                let indexed = index.route(&rows, method, path);
                match (whole, indexed) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{method} {path}"),
                    (Err(a), Err(b)) => {
                        assert_eq!((a.status, a.code), (b.status, b.code), "{method} {path}")
                    }
                    (a, b) => panic!("{method} {path}: {:?} against {:?}", a.is_ok(), b.is_ok()),
                }
            }
        }
        assert!(paths.len() > 800, "the table has its rows");
    }
}
