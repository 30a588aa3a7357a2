//! Request body sizes, per route: a body over its route's limit is refused with 413
//! `M_TOO_LARGE` before any handler runs, and when it declares its length, before it is read.
//!
//! Every JSON body in the spec is small; the few that legitimately carry many items get more
//! room. Media uploads are bounded by `MAX_UPLOAD_BYTES` (their bodies go to R2 unread).

use crate::config::Config;
use crate::http::{ErrorCode, MatrixError};

/// Any JSON request: a PDU is at most 64 KiB, a client event's content less.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;
/// Requests that carry many items: a federation transaction (50 PDUs of up to 64 KiB and 100
/// EDUs), to-device messages for every device of many users, key backup uploads.
pub const BULK_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Path prefixes whose requests are bulk (`r0` client paths are routed as `v3`).
const BULK_PREFIXES: [&str; 5] = [
    "/_matrix/federation/v1/send/",
    "/_matrix/client/v3/sendToDevice/",
    "/_matrix/client/r0/sendToDevice/",
    "/_matrix/client/v3/room_keys/",
    "/_matrix/client/r0/room_keys/",
];

/// The largest body a request to `path` may carry.
pub fn max_bytes(method: &str, path: &str, config: &Config) -> u64 {
    if crate::media::is_upload(method, path) {
        config.media.max_upload_bytes
    } else if BULK_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
        BULK_MAX_BYTES
    } else {
        DEFAULT_MAX_BYTES
    }
}

/// 413 `M_TOO_LARGE` when the body read (`read`) or the length declared (`declared`,
/// `Content-Length`, for a body left unread) is over the route's limit.
pub fn check(
    method: &str,
    path: &str,
    config: &Config,
    read: usize,
    declared: Option<&str>,
) -> Result<(), MatrixError> {
    let limit = max_bytes(method, path, config);
    let declared = declared
        .and_then(|d| d.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if read as u64 > limit || declared > limit {
        return Err(MatrixError::new(
            413,
            ErrorCode::TooLarge,
            format!("The request body is larger than this endpoint's limit of {limit} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|name| (name == "SERVER_NAME").then(|| "x.org".to_owned())).unwrap()
    }

    #[test]
    fn json_bodies_are_small_bulk_ones_bigger_uploads_by_the_media_limit() {
        let c = config();
        assert_eq!(
            max_bytes(
                "PUT",
                "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1",
                &c
            ),
            DEFAULT_MAX_BYTES
        );
        assert_eq!(
            max_bytes("PUT", "/_matrix/federation/v1/send/txn1", &c),
            BULK_MAX_BYTES
        );
        assert_eq!(
            max_bytes(
                "PUT",
                "/_matrix/client/v3/sendToDevice/m.room.encrypted/1",
                &c
            ),
            BULK_MAX_BYTES
        );
        assert_eq!(
            max_bytes("POST", "/_matrix/media/v3/upload", &c),
            c.media.max_upload_bytes
        );
        // The federation send_join is one PDU, not a transaction.
        assert_eq!(
            max_bytes("PUT", "/_matrix/federation/v2/send_join/!r:x/$e", &c),
            DEFAULT_MAX_BYTES
        );
    }

    #[test]
    fn over_the_limit_read_or_declared_is_413_too_large() {
        let c = config();
        let path = "/_matrix/client/v3/createRoom";
        assert!(check("POST", path, &c, 1000, Some("1000")).is_ok());
        let limit = DEFAULT_MAX_BYTES as usize;
        assert!(check("POST", path, &c, limit, None).is_ok());
        for (read, declared) in [(limit + 1, None), (0, Some("1048577"))] {
            let error = check("POST", path, &c, read, declared).unwrap_err();
            assert_eq!((error.status, error.code), (413, ErrorCode::TooLarge));
        }
        // A malformed declaration is not a size; what is read still counts.
        assert!(check("POST", path, &c, 10, Some("lots")).is_ok());
    }
}
