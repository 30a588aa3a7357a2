//! HTTP/1.1 framing for the few federation requests that cannot go through `fetch`: those whose
//! certificate name differs from the host connected to (see [`super::Destination::needs_socket`]).
//!
//! Pure: the runtime writes [`encode_request`]'s bytes to a TLS socket and feeds what it reads
//! to [`parse_response`] until it reports a complete response. Requests always carry
//! `Connection: close`, so one socket serves one request and no connection state is kept.

/// A response head larger than this is refused: no federation response needs it.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A response body larger than this is refused, to stay inside the isolate's memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Malformed input on either side of the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http1Error(pub String);

impl std::fmt::Display for Http1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/1.1: {}", self.0)
    }
}

impl std::error::Error for Http1Error {}

fn error<T>(message: impl Into<String>) -> Result<T, Http1Error> {
    Err(Http1Error(message.into()))
}

/// One request. `path` is the request target (`/_matrix/...`), `host` the `Host` header value.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The bytes of `request`. Framing headers (`Host`, `Content-Length`, `Connection`,
/// `Transfer-Encoding`) are ours; callers' copies are refused rather than silently doubled,
/// and CR or LF in any field is refused (header injection).
pub fn encode_request(request: &Request<'_>) -> Result<Vec<u8>, Http1Error> {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !token(request.method) {
        return error(format!("bad method {:?}", request.method));
    }
    if !request.path.starts_with('/') || request.path.bytes().any(|b| !b.is_ascii_graphic()) {
        return error(format!("bad request target {:?}", request.path));
    }
    if !clean(request.host) || request.host.is_empty() {
        return error("bad Host value");
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        request.method, request.path, request.host
    );
    for (name, value) in request.headers {
        let framing = ["host", "content-length", "connection", "transfer-encoding"];
        if !token(name) || !clean(value) || framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            return error(format!("refused header {name:?}"));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !request.body.is_empty() || !matches!(request.method, "GET" | "HEAD" | "DELETE" | "OPTIONS")
    {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(request.body);
    Ok(bytes)
}

fn clean(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where reading stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Read more (or report end of stream with `eof = true`).
    Incomplete,
    Complete(Response),
}

/// Parses everything read so far. `eof` says the peer closed the connection, which ends a
/// body that has neither `Content-Length` nor chunked encoding.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Progress, Http1Error> {
    let mut rest = buf;
    loop {
        let Some(end) = find(rest, b"\r\n\r\n") else {
            if rest.len() > MAX_HEAD_BYTES {
                return error("response head too large");
            }
            return if eof {
                error("connection closed before the response head")
            } else {
                Ok(Progress::Incomplete)
            };
        };
        if end > MAX_HEAD_BYTES {
            return error("response head too large");
        }
        let head = std::str::from_utf8(&rest[..end])
            .map_err(|_| Http1Error("response head is not UTF-8".into()))?;
        let (status, headers) = parse_head(head)?;
        let body = &rest[end + 4..];
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) && status != 101 {
            rest = body;
            continue;
        }
        let response = |body: Vec<u8>| Response {
            status,
            headers: headers.clone(),
            body,
        };
        return match body_framing(status, &headers)? {
            Framing::Empty => Ok(Progress::Complete(response(Vec::new()))),
            Framing::Length(length) if body.len() >= length => {
                Ok(Progress::Complete(response(body[..length].to_vec())))
            }
            Framing::Length(_) if eof => error("connection closed before the end of the body"),
            Framing::Length(_) => Ok(Progress::Incomplete),
            Framing::Chunked => match dechunk(body)? {
                Some(decoded) => Ok(Progress::Complete(response(decoded))),
                None if eof => error("connection closed inside a chunked body"),
                None => Ok(Progress::Incomplete),
            },
            Framing::UntilClose if body.len() > MAX_BODY_BYTES => error("response body too large"),
            Framing::UntilClose if eof => Ok(Progress::Complete(response(body.to_vec()))),
            Framing::UntilClose => Ok(Progress::Incomplete),
        };
    }
}

fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>), Http1Error> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return error(format!("bad status line {status_line:?}"));
    }
    let status = code
        .parse::<u16>()
        .map_err(|_| Http1Error(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return error(format!("bad header line {line:?}"));
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return error(format!("bad header name {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok((status, headers))
}

enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// RFC 9112 section 6.3, for responses to requests other than HEAD and CONNECT.
fn body_framing(status: u16, headers: &[(String, String)]) -> Result<Framing, Http1Error> {
    if status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(coding) = values("transfer-encoding").next_back() {
        // Only chunked is framed by us; anything else as final coding runs until close.
        let last = coding.rsplit(',').next().unwrap_or_default().trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in values("content-length").flat_map(|v| v.split(',')) {
        let parsed: usize = value
            .trim()
            .parse()
            .map_err(|_| Http1Error(format!("bad Content-Length {value:?}")))?;
        if length.is_some_and(|l| l != parsed) {
            return error("conflicting Content-Length values");
        }
        length = Some(parsed);
    }
    match length {
        Some(l) if l > MAX_BODY_BYTES => error("response body too large"),
        Some(l) => Ok(Framing::Length(l)),
        None => Ok(Framing::UntilClose),
    }
}

/// The decoded body, or `None` while the last chunk has not arrived. Trailers are skipped.
/// Chunks are located first and copied only once complete: the runtime calls this after every
/// read, so copying each time would be quadratic in the body size.
fn dechunk(all: &[u8]) -> Result<Option<Vec<u8>>, Http1Error> {
    let mut data = all;
    let mut chunks = Vec::new();
    let mut total = 0usize;
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return if data.len() > 1024 {
                error("bad chunk size line")
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&data[..line_end])
            .map_err(|_| Http1Error("bad chunk size line".into()))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Http1Error(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // The trailer section: empty, or header lines up to an empty line.
            let ended = data.starts_with(b"\r\n") || find(data, b"\r\n\r\n").is_some();
            return Ok(ended.then(|| chunks.concat()));
        }
        total = total.saturating_add(size);
        if total > MAX_BODY_BYTES {
            return error("response body too large");
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        if &data[size..size + 2] != b"\r\n" {
            return error("chunk not followed by CRLF");
        }
        chunks.push(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
