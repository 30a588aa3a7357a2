//! Outbound HTTP as values: what `discovery/` and `federation/outgoing.rs` ask the platform to
//! send, and what comes back.

use std::time::Duration;

use super::Fut;
use crate::discovery::Destination;

/// The methods this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// One outbound request. `url` is absolute for `fetch`; for a socket it is the path and query.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Past this the request is abandoned (and aborted where the platform can).
    pub timeout: Duration,
    /// For a small answer (discovery): refused when its `Content-Length` is larger, before the
    /// body is read, and `timeout` then covers the body too. Without it, `timeout` ends when
    /// the headers arrive and the body takes as long as it takes (a big room's `send_join`).
    pub max_body: Option<usize>,
    /// Whether `fetch` follows redirects itself. URL previews follow them by hand, checking
    /// each hop's address.
    pub follow_redirects: bool,
}

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of this name, compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The network. Errors are text naming what failed; callers decide whose fault it is.
pub trait Http {
    /// A request through the platform's `fetch`: it connects to, and checks the certificate
    /// of, the URL's host.
    fn fetch(&self, request: HttpRequest) -> Fut<'_, Result<HttpResponse, String>>;
    /// A request over a TLS socket to `target`, with the certificate checked against the
    /// delegated name (SRV delegation, where `fetch` cannot split the two; see docs/design.md).
    fn over_socket<'a>(
        &'a self,
        target: &'a Destination,
        request: HttpRequest,
    ) -> Fut<'a, Result<HttpResponse, String>>;
    /// Waits `ms` milliseconds (a timer of the platform's; other requests run meanwhile).
    fn sleep(&self, ms: u64) -> Fut<'_, ()>;
}
