//! The content repository: media ids and where their bytes live, the rules for serving them
//! (content type, disposition, ranges), thumbnails, the federation `multipart/mixed` format and
//! URL previews. Pure; the handlers are `client/media.rs` and `federation/media.rs`, the SQL is
//! `storage/media.rs`, the bytes go through the `BlobStore` port (R2 in the Worker).

pub mod config;
pub mod headers;
pub mod memory;
pub mod multipart;
pub mod preview;
pub mod range;
pub(crate) mod repository;
pub mod thumbnail;

#[cfg(test)]
mod endpoint_tests;

use crate::accounts::tokens::{random_string, TOKEN_ALPHABET};

/// A new media id: 24 characters of `[A-Za-z0-9]`, about 143 bits, so ids cannot be guessed.
pub fn new_media_id() -> String {
    random_string(TOKEN_ALPHABET, 24)
}

/// The spec's media id grammar (`[A-Za-z0-9_-]+`): anything else is refused before it reaches
/// a key or a URL (the content repository's security considerations).
pub fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where an original's bytes live in the object store.
pub fn blob_key(origin: &str, media_id: &str) -> String {
    format!("media/{origin}/{media_id}")
}

/// Where one thumbnail's bytes live.
pub fn thumbnail_key(
    origin: &str,
    media_id: &str,
    width: u32,
    height: u32,
    method: &str,
) -> String {
    format!(
        "{}{width}x{height}-{method}",
        thumbnails_prefix(origin, media_id)
    )
}

/// What the keys of one piece of media's thumbnails start with (and no other media's).
pub fn thumbnails_prefix(origin: &str, media_id: &str) -> String {
    format!("thumbnail/{origin}/{media_id}/")
}

/// Whether a request carries an upload's body, which the runtime hands on unread
/// (`POST /_matrix/media/v3/upload`, `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`).
pub fn is_upload(method: &str, path: &str) -> bool {
    // Called for every request: no allocation.
    let upload = ["/_matrix/media/v3/upload", "/_matrix/media/r0/upload"]
        .iter()
        .filter_map(|prefix| path.strip_prefix(prefix))
        .any(|rest| rest.is_empty() || rest.starts_with('/'));
    upload && (method.eq_ignore_ascii_case("POST") || method.eq_ignore_ascii_case("PUT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_long_random_and_valid() {
        let a = new_media_id();
        let b = new_media_id();
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(valid_media_id(&a));
    }

    #[test]
    fn media_ids_outside_the_grammar_are_refused() {
        for bad in ["", "../etc", "a/b", "a.b", "é", "a b", "%2e%2e"] {
            assert!(!valid_media_id(bad), "{bad}");
        }
        assert!(valid_media_id("abc_DEF-123"));
    }

    #[test]
    fn only_upload_paths_stream() {
        assert!(is_upload("POST", "/_matrix/media/v3/upload"));
        assert!(is_upload("PUT", "/_matrix/media/v3/upload/example.org/abc"));
        assert!(!is_upload("GET", "/_matrix/media/v3/upload"));
        assert!(!is_upload("POST", "/_matrix/media/v3/uploads"));
        assert!(!is_upload("POST", "/_matrix/media/v1/create"));
    }
}
