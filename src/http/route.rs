//! Maps a method and a path to an endpoint. Pure, so the 404-versus-405 rules and the path
//! parameter decoding are unit-tested without a runtime.
//!
//! Patterns are written as the spec writes them, with `{name}` for a path parameter that matches
//! exactly one segment. Parameters arrive percent-decoded (room ids, event ids and aliases carry
//! `!`, `$`, `#` and `:` that clients encode).

use super::MatrixError;

/// Every endpoint the server answers. Adding one means adding a row to `ROUTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    WellKnownServer,
    WellKnownClient,
    WellKnownSupport,
    ClientVersions,
    FederationVersion,
    ServerKeys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

struct Route {
    method: Method,
    pattern: &'static str,
    endpoint: Endpoint,
}

const fn get(pattern: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method: Method::Get,
        pattern,
        endpoint,
    }
}

const ROUTES: &[Route] = &[
    get("/.well-known/matrix/server", Endpoint::WellKnownServer),
    get("/.well-known/matrix/client", Endpoint::WellKnownClient),
    get("/.well-known/matrix/support", Endpoint::WellKnownSupport),
    get("/_matrix/client/versions", Endpoint::ClientVersions),
    get(
        "/_matrix/federation/v1/version",
        Endpoint::FederationVersion,
    ),
    get("/_matrix/key/v2/server", Endpoint::ServerKeys),
];

/// What a request is, once routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// A CORS preflight: answered with the CORS headers and no body, whatever the path.
    Preflight,
    Endpoint {
        endpoint: Endpoint,
        params: Vec<String>,
    },
}

/// Routes `method` (as sent, any case) and `path` (the URL path, still percent-encoded).
pub fn route(method: &str, path: &str) -> Result<Routed, MatrixError> {
    let method = match method.to_ascii_uppercase().as_str() {
        "OPTIONS" => return Ok(Routed::Preflight),
        // HEAD is GET without a body; the runtime drops the body.
        "GET" | "HEAD" => Some(Method::Get),
        "PUT" => Some(Method::Put),
        "POST" => Some(Method::Post),
        "DELETE" => Some(Method::Delete),
        _ => None,
    };
    let mut path_known = false;
    for route in ROUTES {
        let Some(params) = match_pattern(route.pattern, path) else {
            continue;
        };
        path_known = true;
        if Some(route.method) == method {
            return Ok(Routed::Endpoint {
                endpoint: route.endpoint,
                params,
            });
        }
    }
    Err(if path_known {
        MatrixError::method_not_allowed()
    } else {
        MatrixError::unrecognized_path()
    })
}

/// Matches one pattern; returns the decoded parameters in order.
fn match_pattern(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
                let decoded = percent_decode(s)?;
                if decoded.is_empty() {
                    return None;
                }
                params.push(decoded);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ErrorCode;

    #[test]
    fn known_paths_route_to_their_endpoint() {
        assert_eq!(
            route("GET", "/_matrix/key/v2/server").unwrap(),
            Routed::Endpoint {
                endpoint: Endpoint::ServerKeys,
                params: vec![]
            }
        );
        assert_eq!(
            route("head", "/.well-known/matrix/client").unwrap(),
            Routed::Endpoint {
                endpoint: Endpoint::WellKnownClient,
                params: vec![]
            }
        );
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405() {
        let unknown = route("GET", "/_matrix/client/v3/nothing").unwrap_err();
        assert_eq!(
            (unknown.status, unknown.code),
            (404, ErrorCode::Unrecognized)
        );
        let wrong = route("POST", "/_matrix/client/versions").unwrap_err();
        assert_eq!((wrong.status, wrong.code), (405, ErrorCode::Unrecognized));
        let odd = route("BREW", "/_matrix/client/versions").unwrap_err();
        assert_eq!(odd.status, 405);
        assert_eq!(
            route("GET", "/_matrix/client/versions/")
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn preflight_is_answered_for_any_path() {
        assert_eq!(
            route("OPTIONS", "/_matrix/client/v3/anything").unwrap(),
            Routed::Preflight
        );
    }

    #[test]
    fn parameters_are_percent_decoded() {
        assert_eq!(
            match_pattern("/rooms/{roomId}/x", "/rooms/%21abc%3Aexample.org/x").unwrap(),
            vec!["!abc:example.org"]
        );
        assert!(match_pattern("/rooms/{roomId}/x", "/rooms//x").is_none());
        assert!(match_pattern("/rooms/{roomId}", "/rooms/%zz").is_none());
        assert!(match_pattern("/rooms/{roomId}", "/rooms/%ff").is_none());
    }
}
