//! The `/.well-known/matrix/server` response: the delegation it carries and how long to cache it.
//!
//! The spec: an invalid response (bad JSON, missing or malformed `m.server`, non-200) is "no
//! delegation", never a failure; the body is JSON whatever its `Content-Type`. Responses are
//! cached following their cache headers, 24 hours by default, at most 48 hours; errors for up
//! to an hour.

use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;

use super::http_date;

/// Cache lifetime when a valid response has no cache headers (the spec's recommendation).
pub const DEFAULT_CACHE_SECS: u64 = 24 * 3600;
/// The longest a response is cached, whatever its headers say (the spec's recommendation).
pub const MAX_CACHE_SECS: u64 = 48 * 3600;
/// The longest an error (no valid delegation) is cached (the spec: "up to an hour").
pub const ERROR_CACHE_SECS: u64 = 3600;
/// The shortest a response is cached, even with `no-store` or a past `Expires`: every
/// federation request would otherwise pay for a well-known request first.
pub const MIN_CACHE_SECS: u64 = 300;
/// Larger bodies are not a plausible `{"m.server": ...}` and are treated as invalid.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a well-known request taught us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WellKnown {
    /// The valid `m.server`, if any.
    pub delegation: Option<OwnedServerName>,
    pub cache_secs: u64,
}

impl WellKnown {
    /// The request failed before a response (connection, TLS, timeout): an error.
    pub fn failed() -> Self {
        WellKnown {
            delegation: None,
            cache_secs: ERROR_CACHE_SECS,
        }
    }

    /// A response after redirects. `cache_control` and `expires` are the raw header values,
    /// `now_secs` the current Unix time.
    pub fn from_response(
        status: u16,
        body: &[u8],
        cache_control: Option<&str>,
        expires: Option<&str>,
        now_secs: u64,
    ) -> Self {
        let delegation = if status == 200 {
            parse_body(body)
        } else {
            None
        };
        let from_headers = header_lifetime(cache_control, expires, now_secs);
        let cache_secs = match &delegation {
            Some(_) => from_headers
                .unwrap_or(DEFAULT_CACHE_SECS)
                .min(MAX_CACHE_SECS),
            None => from_headers
                .unwrap_or(ERROR_CACHE_SECS)
                .min(ERROR_CACHE_SECS),
        };
        WellKnown {
            delegation,
            cache_secs: cache_secs.max(MIN_CACHE_SECS),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "m.server")]
    m_server: String,
}

/// The delegated server name of a well-known body, `None` when the body is invalid.
pub fn parse_body(body: &[u8]) -> Option<OwnedServerName> {
    if body.len() > MAX_BODY_BYTES {
        return None;
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    let name = ServerName::parse(body.m_server.trim()).ok()?;
    // Port 0 parses but can never be connected to.
    (name.port() != Some(0)).then_some(name)
}

/// Seconds the headers allow caching for: `max-age` wins over `Expires` (RFC 9111 4.2.1);
/// `no-store`/`no-cache` and a malformed `Expires` mean "already stale" (0).
pub fn header_lifetime(
    cache_control: Option<&str>,
    expires: Option<&str>,
    now_secs: u64,
) -> Option<u64> {
    if let Some(cache_control) = cache_control {
        let mut no_store = false;
        for directive in cache_control.split(',').map(str::trim) {
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            if name.eq_ignore_ascii_case("max-age") {
                // A malformed max-age is stale (RFC 9111 4.2.1); huge values saturate.
                let digits = value.trim().trim_matches('"');
                return Some(
                    if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
                        digits.parse().unwrap_or(u64::MAX)
                    } else {
                        0
                    },
                );
            }
            no_store |=
                name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache");
        }
        if no_store {
            return Some(0);
        }
    }
    expires.map(|expires| http_date::parse(expires).map_or(0, |at| at.saturating_sub(now_secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn ok(body: &str, cc: Option<&str>, expires: Option<&str>) -> WellKnown {
        WellKnown::from_response(200, body.as_bytes(), cc, expires, NOW)
    }

    #[test]
    fn spec_example_is_a_delegation() {
        let wk = ok(r#"{"m.server": "delegated.example.com:1234"}"#, None, None);
        assert_eq!(
            wk.delegation.as_deref().map(|n| n.as_str()),
            Some("delegated.example.com:1234")
        );
        assert_eq!(wk.cache_secs, DEFAULT_CACHE_SECS);
    }

    #[test]
    fn invalid_responses_are_no_delegation_cached_an_hour() {
        for body in [
            "not json",
            "{}",
            r#"{"m.server": 5}"#,
            r#"{"m.server": "bad name!"}"#,
            r#"{"m.server": "example.com:0"}"#,
            r#"{"m.server": "example.com:99999"}"#,
            "[]",
        ] {
            let wk = ok(body, None, None);
            assert_eq!(wk.delegation, None, "{body}");
            assert_eq!(wk.cache_secs, ERROR_CACHE_SECS, "{body}");
        }
        let wk = WellKnown::from_response(404, br#"{"m.server":"a.b"}"#, None, None, NOW);
        assert_eq!(wk.delegation, None);
        assert_eq!(WellKnown::failed().cache_secs, ERROR_CACHE_SECS);
    }

    #[test]
    fn content_type_does_not_matter_and_extra_fields_are_ignored() {
        let wk = ok(r#"{"m.server": "a.example", "other": [1]}"#, None, None);
        assert!(wk.delegation.is_some());
    }

    #[test]
    fn oversized_bodies_are_invalid() {
        let body = format!(
            r#"{{"m.server": "a.example", "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        assert_eq!(parse_body(body.as_bytes()), None);
    }

    #[test]
    fn cache_headers_within_bounds() {
        let body = r#"{"m.server": "a.example"}"#;
        assert_eq!(
            ok(body, Some("public, max-age=3600"), None).cache_secs,
            3600
        );
        assert_eq!(ok(body, Some("max-age=\"7200\""), None).cache_secs, 7200);
        assert_eq!(
            ok(body, Some("max-age=999999999999999999999"), None).cache_secs,
            MAX_CACHE_SECS
        );
        assert_eq!(
            ok(body, Some("max-age=604800"), None).cache_secs,
            MAX_CACHE_SECS
        );
        assert_eq!(ok(body, Some("no-store"), None).cache_secs, MIN_CACHE_SECS);
        assert_eq!(
            ok(body, Some("max-age=abc"), None).cache_secs,
            MIN_CACHE_SECS
        );
        // max-age wins over Expires.
        let later = Some("Sun, 06 Nov 1994 10:49:37 GMT");
        assert_eq!(ok(body, Some("max-age=600"), later).cache_secs, 600);
        assert_eq!(ok(body, None, later).cache_secs, 7200);
        assert_eq!(ok(body, Some("public"), later).cache_secs, 7200);
        // A past or malformed Expires is stale.
        assert_eq!(ok(body, None, Some("0")).cache_secs, MIN_CACHE_SECS);
        assert_eq!(
            ok(body, None, Some("Sat, 05 Nov 1994 08:49:37 GMT")).cache_secs,
            MIN_CACHE_SECS
        );
    }

    #[test]
    fn errors_never_cached_beyond_an_hour() {
        let wk = WellKnown::from_response(404, b"", Some("max-age=86400"), None, NOW);
        assert_eq!(wk.cache_secs, ERROR_CACHE_SECS);
        let wk = WellKnown::from_response(500, b"", Some("max-age=600"), None, NOW);
        assert_eq!(wk.cache_secs, 600);
    }
}
