//! The headers media is served with (spec: "Serving inline content" and the content
//! repository's `Content-Security-Policy` recommendation).

/// The spec's recommended policy: the bytes can never run as a page of our origin.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';";

/// The types the spec lists as safe to serve `inline`: a client only ever renders them as what
/// they claim to be.
const INLINE_TYPES: [&str; 26] = [
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The content type as stored: what the uploader said, or `application/octet-stream` when it
/// said nothing usable (the spec's "reasonably close" rules).
pub fn stored_content_type(declared: Option<&str>) -> String {
    match declared.map(str::trim) {
        Some(t) if !t.is_empty() && t.len() <= 255 && t.contains('/') && t.is_ascii() => {
            t.to_owned()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

/// Whether a type may be served `inline`: its essence (without parameters), case-insensitively,
/// is on the spec's list.
pub fn is_inline_safe(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// `Content-Disposition` for a download: `inline` only for safe types, with the file name
/// (RFC 6266: a plain quoted name when it is printable ASCII, `filename*` in UTF-8 otherwise).
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline_safe(content_type) {
        "inline"
    } else {
        "attachment"
    };
    match filename.filter(|name| !name.is_empty()) {
        None => kind.to_owned(),
        Some(name)
            if name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
        {
            format!("{kind}; filename=\"{name}\"")
        }
        Some(name) => format!("{kind}; filename*=utf-8''{}", percent_encode(name)),
    }
}

/// RFC 5987 `attr-char` kept, everything else percent-encoded.
fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The headers every media answer carries besides its type and disposition.
pub fn common() -> Vec<(String, String)> {
    vec![
        (
            "Content-Security-Policy".into(),
            CONTENT_SECURITY_POLICY.into(),
        ),
        ("Cross-Origin-Resource-Policy".into(), "cross-origin".into()),
        ("X-Content-Type-Options".into(), "nosniff".into()),
        // Media never changes once stored.
        (
            "Cache-Control".into(),
            "private, max-age=31536000, immutable".into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_types_are_inline_and_others_attachments() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("Text/Plain; charset=utf-8", Some("a.txt")),
            "inline; filename=\"a.txt\""
        );
        assert_eq!(
            content_disposition("text/html", Some("x.html")),
            "attachment; filename=\"x.html\""
        );
        assert_eq!(content_disposition("image/svg", None), "attachment");
    }

    #[test]
    fn names_outside_printable_ascii_use_the_utf8_form() {
        assert_eq!(
            content_disposition("image/png", Some("☃.png")),
            "inline; filename*=utf-8''%E2%98%83.png"
        );
        assert_eq!(
            content_disposition("image/png", Some("a\"b")),
            "inline; filename*=utf-8''a%22b"
        );
    }

    #[test]
    fn a_missing_or_odd_type_is_octet_stream() {
        assert_eq!(stored_content_type(None), "application/octet-stream");
        assert_eq!(stored_content_type(Some("  ")), "application/octet-stream");
        assert_eq!(stored_content_type(Some("png")), "application/octet-stream");
        assert_eq!(stored_content_type(Some("image/png")), "image/png");
    }
}
