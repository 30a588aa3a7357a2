//! Server discovery: from a server name to where and how to connect, exactly as the
//! server-server spec's "Resolving server names" section says.
//!
//! This module is pure. [`Resolution`] is a state machine that `resolver` drives: it asks
//! for the lookups it needs ([`Step::NeedWellKnown`], [`Step::NeedSrv`]), `resolver` performs
//! them through the platform's HTTP port (HTTPS `fetch`, DNS-over-HTTPS), caches the outcome,
//! and feeds the parsed answers back, until the machine yields a [`Destination`]. Parsing of the
//! answers ([`well_known`], [`srv`]) and their cache lifetimes live here too, so every branch is
//! unit-tested natively.
//!
//! Plain A/AAAA resolution is not done here: the platform connects to a hostname and resolves
//! it.

pub mod http1;
pub mod http_date;
mod resolution;
pub(crate) mod resolver;
pub mod srv;
pub mod well_known;

pub use resolution::{Resolution, Step};

use serde::{Deserialize, Serialize};

/// The port a server listens on for federation when nothing says otherwise.
pub const DEFAULT_FEDERATION_PORT: u16 = 8448;

/// Where to connect for a server name, and what to present there.
///
/// `connect_host` is a hostname or a bare IP address (IPv6 without brackets).
/// `host_header` is the value of the `Host` header the spec asks for, and `tls_server_name`
/// the name the server's certificate must be valid for (a bare IP address for IP literals).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub connect_host: String,
    pub connect_port: u16,
    pub host_header: String,
    pub tls_server_name: String,
}

impl Destination {
    /// True when the certificate must be checked against another name than the host connected
    /// to (SRV delegation to a differently named target). `fetch` connects to and verifies the
    /// URL's host, so such a destination needs a TLS socket with an expected server hostname.
    ///
    /// The `Host` header's host part always equals `tls_server_name` (see the resolution), so
    /// comparing the certificate name is enough. `fetch` sends the URL's port in `Host` where the
    /// spec sometimes omits it; servers route on the host, so that difference does not matter.
    pub fn needs_socket(&self) -> bool {
        !self
            .tls_server_name
            .eq_ignore_ascii_case(&self.connect_host)
    }

    /// `host:port` for a URL, with IPv6 addresses in brackets.
    pub fn authority(&self) -> String {
        if self.connect_host.contains(':') {
            format!("[{}]:{}", self.connect_host, self.connect_port)
        } else {
            format!("{}:{}", self.connect_host, self.connect_port)
        }
    }

    /// The `https` URL of `path` (which starts with `/`) on this destination, for `fetch`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority())
    }
}

/// Why a server name could not be resolved. Every variant is about the remote side or the
/// DNS resolver, never a bug here, and is cached (with back-off) like the spec's errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryError {
    /// The DNS-over-HTTPS resolver failed or answered with an error status.
    Dns(String),
    /// An SRV record with target "." says the service is decidedly not available (RFC 2782).
    ServiceUnavailable(String),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Dns(cause) => write!(f, "DNS-over-HTTPS lookup failed: {cause}"),
            DiscoveryError::ServiceUnavailable(name) => {
                write!(f, "SRV record {name} says the service is not available")
            }
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// First back-off after a failed resolution; it doubles with each consecutive failure.
pub const FIRST_BACKOFF_SECS: u64 = 60;

/// How long a failed resolution is cached after `failures` consecutive failures: 60 s, 120 s,
/// 240 s, ... up to the hour the spec recommends for errors ("exponentially back off").
pub fn backoff_secs(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF_SECS << doublings).min(well_known::ERROR_CACHE_SECS)
}

/// Strips the brackets of an IPv6 literal host (`[::1]` -> `::1`); other hosts unchanged.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(connect: &str, tls: &str) -> Destination {
        Destination {
            connect_host: connect.into(),
            connect_port: 8448,
            host_header: tls.into(),
            tls_server_name: tls.into(),
        }
    }

    #[test]
    fn socket_only_when_the_certificate_name_differs() {
        assert!(!dest("example.org", "example.org").needs_socket());
        assert!(!dest("Example.ORG", "example.org").needs_socket());
        assert!(dest("matrix.example.org", "example.org").needs_socket());
    }

    #[test]
    fn failures_back_off_up_to_an_hour() {
        assert_eq!(backoff_secs(0), 60);
        assert_eq!(backoff_secs(1), 60);
        assert_eq!(backoff_secs(2), 120);
        assert_eq!(backoff_secs(6), 1920);
        assert_eq!(backoff_secs(7), 3600);
        assert_eq!(backoff_secs(u32::MAX), 3600);
    }

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(dest("::1", "::1").https_url("/x"), "https://[::1]:8448/x");
        assert_eq!(dest("1.2.3.4", "1.2.3.4").authority(), "1.2.3.4:8448");
    }
}
