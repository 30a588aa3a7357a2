//! Maps a method and a path to a route row. Pure and generic over what a row carries (the API's
//! rows carry their handler, see `api/routes.rs`), so the 404-versus-405 rules and the path
//! parameter decoding are unit-tested without a runtime.
//!
//! Patterns are written as the spec writes them, with `{name}` for a path parameter that matches
//! exactly one segment. Parameters arrive percent-decoded (room ids, event ids and aliases carry
//! `!`, `$`, `#` and `:` that clients encode) and are read by name.

use std::collections::HashMap;

use super::MatrixError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

/// One row: a method, a pattern, and what the row leads to.
pub struct Route<T> {
    pub method: Method,
    pub pattern: &'static str,
    pub target: T,
}

/// The path parameters of a routed request, by the names of the pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }
}

/// What a request is, once routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed<T> {
    /// A CORS preflight: answered with the CORS headers and no body, whatever the path.
    Preflight,
    Endpoint {
        target: T,
        params: Params,
    },
}

/// Routes `method` (as sent, any case) and `path` (the URL path, still percent-encoded).
/// Client paths are written with `v3`; `r0` requests are served by the same rows.
pub fn route<T: Copy>(
    routes: &[Route<T>],
    method: &str,
    path: &str,
) -> Result<Routed<T>, MatrixError> {
    route_among(routes, |_| 0..routes.len(), method, path)
}

/// How many leading path segments group the rows of a `RouteIndex` ("", "_matrix", "client",
/// "v3", "rooms"): enough to split the client API's rows into small groups.
const KEY_SEGMENTS: usize = 5;

/// The first `KEY_SEGMENTS` segments of a path or pattern, `None` when it has fewer.
fn key(path: &str) -> Option<&str> {
    let mut slashes = path.match_indices('/').map(|(at, _)| at);
    // Segments are what the slashes separate: the first is the empty one before the leading
    // slash, and the key ends where the slash after its last segment is (or the path ends).
    for _ in 0..KEY_SEGMENTS - 1 {
        slashes.next()?;
    }
    Some(&path[..slashes.next().unwrap_or(path.len())])
}

/// The rows of a table grouped by their first `KEY_SEGMENTS` segments, built once per isolate,
/// so that a request tries only the rows that could match its path: a row whose leading
/// segments are all literal matches only paths that begin with exactly those segments. Rows
/// with a parameter among them, or fewer segments, are tried for every path. The rows tried
/// keep the table's order, so the answer is the one `route` gives (tested against it).
pub struct RouteIndex {
    by_key: HashMap<&'static str, Vec<usize>>,
    anywhere: Vec<usize>,
}

impl RouteIndex {
    pub fn new<T>(routes: &[Route<T>]) -> Self {
        let mut index = RouteIndex {
            by_key: HashMap::new(),
            anywhere: Vec::new(),
        };
        for (row, route) in routes.iter().enumerate() {
            match key(route.pattern).filter(|key| !key.contains('{')) {
                Some(key) => index.by_key.entry(key).or_default().push(row),
                None => index.anywhere.push(row),
            }
        }
        index
    }

    /// `route` over the rows that could match.
    pub fn route<T: Copy>(
        &self,
        routes: &[Route<T>],
        method: &str,
        path: &str,
    ) -> Result<Routed<T>, MatrixError> {
        let rows = |path: &str| {
            let keyed = key(path).and_then(|key| self.by_key.get(key));
            merge(keyed.map_or(&[][..], Vec::as_slice), &self.anywhere)
        };
        route_among(routes, rows, method, path)
    }
}

/// Two ascending lists of row numbers as one ascending sequence.
fn merge<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x <= y => a.next().copied(),
        (_, Some(_)) => b.next().copied(),
        (Some(_), None) => a.next().copied(),
        (None, None) => None,
    })
}

/// Routes among the rows `rows` gives for the path (after the `r0` alias), in table order.
fn route_among<T: Copy, I: Iterator<Item = usize>>(
    routes: &[Route<T>],
    rows: impl Fn(&str) -> I,
    method: &str,
    path: &str,
) -> Result<Routed<T>, MatrixError> {
    let method = match method.to_ascii_uppercase().as_str() {
        "OPTIONS" => return Ok(Routed::Preflight),
        // HEAD is GET without a body; the runtime drops the body.
        "GET" | "HEAD" => Some(Method::Get),
        "PUT" => Some(Method::Put),
        "POST" => Some(Method::Post),
        "DELETE" => Some(Method::Delete),
        _ => None,
    };
    // Older clients still call the r0 paths; they are the v3 endpoints under another name.
    let aliased;
    let path = match path.strip_prefix("/_matrix/client/r0/") {
        Some(rest) => {
            aliased = format!("/_matrix/client/v3/{rest}");
            aliased.as_str()
        }
        None => path,
    };
    let mut path_known = false;
    for route in rows(path).map(|row| &routes[row]) {
        let Some(params) = match_pattern(route.pattern, path) else {
            continue;
        };
        path_known = true;
        if Some(route.method) == method {
            return Ok(Routed::Endpoint {
                target: route.target,
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

/// Matches one pattern; returns the decoded parameters by name. Every request tries the rows
/// in order, so a row is ruled out as cheaply as possible: by its literal start (most rows
/// differ from the path there), then by its shape, and only a row that fits decodes anything.
fn match_pattern(pattern: &'static str, path: &str) -> Option<Params> {
    let literal_end = pattern.find('{').unwrap_or(pattern.len());
    if literal_end == pattern.len() {
        return (pattern == path).then(Params::default);
    }
    if !path.starts_with(&pattern[..literal_end]) {
        return None;
    }
    let is_param = |p: &str| p.starts_with('{') && p.ends_with('}');
    if pattern.split('/').count() != path.split('/').count() {
        return None;
    }
    // An empty segment never fills a parameter; a non-empty one never decodes to empty.
    let fits = pattern.split('/').zip(path.split('/')).all(|(p, s)| {
        if is_param(p) {
            !s.is_empty()
        } else {
            p == s
        }
    });
    if !fits {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.split('/').zip(path.split('/')) {
        if is_param(p) {
            params.push((&p[1..p.len() - 1], percent_decode(s)?));
        }
    }
    Some(Params(params))
}

/// Encodes everything but RFC 3986's unreserved characters, for ids in paths and query values
/// of requests we send.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `from_str_radix` alone would also take "+f".
            let hex = segment
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
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

    const fn row(method: Method, pattern: &'static str, target: u8) -> Route<u8> {
        Route {
            method,
            pattern,
            target,
        }
    }

    const ROUTES: &[Route<u8>] = &[
        row(Method::Get, "/_matrix/key/v2/server", 1),
        row(Method::Get, "/_matrix/client/versions", 2),
        row(Method::Post, "/_matrix/client/v3/login", 3),
        row(
            Method::Get,
            "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
            4,
        ),
        row(
            Method::Get,
            "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
            4,
        ),
    ];

    fn target(method: &str, path: &str) -> (u8, Params) {
        match route(ROUTES, method, path).unwrap() {
            Routed::Endpoint { target, params } => (target, params),
            Routed::Preflight => panic!("a preflight"),
        }
    }

    #[test]
    fn known_paths_route_to_their_row() {
        assert_eq!(target("GET", "/_matrix/key/v2/server").0, 1);
        assert_eq!(target("head", "/_matrix/client/versions").0, 2);
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405() {
        let unknown = route(ROUTES, "GET", "/_matrix/client/v3/nothing").unwrap_err();
        assert_eq!(
            (unknown.status, unknown.code),
            (404, ErrorCode::Unrecognized)
        );
        let wrong = route(ROUTES, "POST", "/_matrix/client/versions").unwrap_err();
        assert_eq!((wrong.status, wrong.code), (405, ErrorCode::Unrecognized));
        let odd = route(ROUTES, "BREW", "/_matrix/client/versions").unwrap_err();
        assert_eq!(odd.status, 405);
        let slash = route(ROUTES, "GET", "/_matrix/client/versions/").unwrap_err();
        assert_eq!(slash.status, 404);
    }

    #[test]
    fn r0_paths_are_the_v3_endpoints() {
        assert_eq!(target("POST", "/_matrix/client/r0/login").0, 3);
    }

    #[test]
    fn an_empty_state_key_matches_with_and_without_the_trailing_slash() {
        for path in [
            "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.name/",
            "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.name",
        ] {
            let (target, params) = target("GET", path);
            assert_eq!(target, 4);
            assert_eq!(params.get("roomId"), "!r:x");
            assert_eq!(params.get("eventType"), "m.room.name");
            assert_eq!(params.get("stateKey"), "");
        }
    }

    #[test]
    fn preflight_is_answered_for_any_path() {
        assert_eq!(
            route(ROUTES, "OPTIONS", "/_matrix/client/v3/anything").unwrap(),
            Routed::Preflight
        );
    }

    #[test]
    fn encoding_round_trips_through_decoding() {
        let id = "!r:example.org/$x y";
        assert_eq!(percent_encode(id), "%21r%3Aexample.org%2F%24x%20y");
        assert_eq!(percent_decode(&percent_encode(id)).unwrap(), id);
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let params = match_pattern("/rooms/{roomId}/x", "/rooms/%21abc%3Aexample.org/x").unwrap();
        assert_eq!(params.get("roomId"), "!abc:example.org");
        assert!(match_pattern("/rooms/{roomId}/x", "/rooms//x").is_none());
        assert!(match_pattern("/rooms/{roomId}", "/rooms/%zz").is_none());
        assert!(match_pattern("/rooms/{roomId}", "/rooms/%ff").is_none());
    }

    #[test]
    fn the_key_is_the_first_five_segments() {
        assert_eq!(
            key("/_matrix/client/v3/rooms/x/y"),
            Some("/_matrix/client/v3/rooms")
        );
        assert_eq!(
            key("/_matrix/client/v3/sync"),
            Some("/_matrix/client/v3/sync")
        );
        assert_eq!(key("/_matrix/client/v3/"), Some("/_matrix/client/v3/"));
        assert_eq!(key("/_matrix/client/versions"), None);
        assert_eq!(key("/nope"), None);
        assert_eq!(key(""), None);
    }

    #[test]
    fn merged_rows_keep_the_table_order() {
        assert_eq!(
            merge(&[1, 4, 5], &[0, 2, 9]).collect::<Vec<_>>(),
            [0, 1, 2, 4, 5, 9]
        );
        assert_eq!(merge(&[], &[3]).collect::<Vec<_>>(), [3]);
        assert_eq!(merge(&[3], &[]).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_row_matches_its_whole_path_and_nothing_else() {
        assert!(match_pattern("/rooms/{roomId}/x", "/rooms/a/x/").is_none());
        assert!(match_pattern("/rooms/{roomId}/x", "/rooms/a").is_none());
        assert!(match_pattern("/rooms/{roomId}/x", "/rooms/a/y").is_none());
        assert!(match_pattern("/rooms/{roomId}/x", "/roomsa/x").is_none());
        assert!(match_pattern("/rooms/{roomId}/x", "/room/a/x").is_none());
        assert!(match_pattern("/rooms/x", "/rooms/x/").is_none());
        assert_eq!(
            match_pattern("/rooms/x", "/rooms/x"),
            Some(Params::default())
        );
        let params = match_pattern("/a/{b}/c/{d}", "/a/%2F/c/d%20e").unwrap();
        assert_eq!((params.get("b"), params.get("d")), ("/", "d e"));
    }

    /// Found by the percent_decode fuzz target (src/fuzz/api.rs): a sign is not a hex digit.
    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        assert_eq!(percent_decode("%+f"), None);
        assert_eq!(percent_decode("%-1"), None);
        assert_eq!(percent_decode("%4a").as_deref(), Some("J"));
    }
}
