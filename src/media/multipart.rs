//! The federation media answer: `multipart/mixed` with two parts, a JSON object (metadata,
//! today always `{}`) and the media itself or a `Location` to fetch it from (spec, federation
//! "Content Repository").

use crate::accounts::tokens::{random_string, TOKEN_ALPHABET};

/// The framing around the media bytes of an answer we serve.
pub struct Frame {
    pub content_type: String,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Frames media of `content_type` (with its `disposition`) for a federation answer. The
/// boundary is random, so no file can contain it by accident or design.
pub fn frame(content_type: &str, disposition: &str) -> Frame {
    let boundary = random_string(TOKEN_ALPHABET, 32);
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
    );
    Frame {
        content_type: format!("multipart/mixed; boundary={boundary}"),
        head: head.into_bytes(),
        tail: format!("\r\n--{boundary}--\r\n").into_bytes(),
    }
}

/// The media part of an answer from another server.
#[derive(Debug, PartialEq, Eq)]
pub enum MediaPart {
    Bytes {
        content_type: Option<String>,
        disposition: Option<String>,
        body: Vec<u8>,
    },
    /// The server sent a URL to fetch the bytes from instead.
    Location(String),
}

/// Parses an answer of `content_type` (`multipart/mixed; boundary=...`). `None` when it is not
/// the two-part shape the spec requires.
pub fn parse(content_type: &str, body: &[u8]) -> Option<MediaPart> {
    let boundary = content_type
        .split(';')
        .skip(1)
        .filter_map(|param| param.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())?;
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/mixed")
        || boundary.is_empty()
    {
        return None;
    }
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    // Skip the preamble up to the first delimiter.
    let start = find(rest, &delimiter)?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break; // the closing delimiter
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))?;
        let end = find(rest, &delimiter)?;
        // The CRLF before a delimiter belongs to the delimiter.
        let mut part = &rest[..end];
        part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        parts.push(part);
        rest = &rest[end + delimiter.len()..];
        if parts.len() > 2 {
            return None;
        }
    }
    let [metadata, media] = parts.as_slice() else {
        return None;
    };
    let (meta_headers, meta_body) = split_part(metadata)?;
    let _ = meta_headers;
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(meta_body).ok()?;
    let (headers, body) = split_part(media)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if let Some(location) = header("location") {
        return Some(MediaPart::Location(location));
    }
    Some(MediaPart::Bytes {
        content_type: header("content-type"),
        disposition: header("content-disposition"),
        body: body.to_vec(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A part's headers, as trimmed (name, value) pairs.
type PartHeaders = Vec<(String, String)>;

/// A part's headers and body.
fn split_part(part: &[u8]) -> Option<(PartHeaders, &[u8])> {
    let (head, body) = match find(part, b"\r\n\r\n") {
        Some(i) => (&part[..i], &part[i + 4..]),
        None => match find(part, b"\n\n") {
            Some(i) => (&part[..i], &part[i + 2..]),
            // A part with no headers at all.
            None if part.starts_with(b"\r\n") => (&part[..0], &part[2..]),
            None => return None,
        },
    };
    let head = std::str::from_utf8(head).ok()?;
    let headers = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_frame_we_parse_back() {
        let frame = frame("image/png", "inline; filename=\"a.png\"");
        let bytes = b"\x89PNG\r\n--not-a-boundary\r\n\x00\xff".to_vec();
        let answer = [frame.head.clone(), bytes.clone(), frame.tail.clone()].concat();
        assert_eq!(
            parse(&frame.content_type, &answer),
            Some(MediaPart::Bytes {
                content_type: Some("image/png".into()),
                disposition: Some("inline; filename=\"a.png\"".into()),
                body: bytes,
            })
        );
    }

    #[test]
    fn a_location_part_is_a_redirect() {
        let body = "--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b--\r\n";
        assert_eq!(
            parse("multipart/mixed; boundary=b", body.as_bytes()),
            Some(MediaPart::Location("https://cdn.example/x".into()))
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        assert_eq!(parse("application/json", b"{}"), None);
        assert_eq!(
            parse("multipart/mixed; boundary=b", b"--b\r\n\r\n{}\r\n--b--"),
            None
        );
        let not_json =
            "--b\r\nContent-Type: application/json\r\n\r\nnope\r\n--b\r\n\r\nxx\r\n--b--";
        assert_eq!(
            parse("multipart/mixed; boundary=b", not_json.as_bytes()),
            None
        );
    }
}
