//! A response before it is handed to the runtime: JSON, or media bytes with their headers.

use serde_json::Value;

use crate::platform::Body;

/// Media bytes (a download, a thumbnail, a federation `multipart/mixed` answer) with the
/// headers that describe them.
#[derive(Debug)]
pub struct MediaResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JsonResponse {
    pub status: u16,
    pub body: Value,
}

impl JsonResponse {
    pub fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }

    pub fn ok(body: Value) -> Self {
        Self::new(200, body)
    }

    /// The `Retry-After` header's seconds for a 429 (spec v1.10: homeservers SHOULD send it; the
    /// body's `retry_after_ms` is deprecated). Rounded up, so a client never retries too early.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        if self.status != 429 {
            return None;
        }
        self.body
            .get("retry_after_ms")
            .and_then(Value::as_u64)
            .map(|ms| ms.div_ceil(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_only_on_429() {
        let limited = JsonResponse::new(429, json!({ "retry_after_ms": 1500 }));
        assert_eq!(limited.retry_after_seconds(), Some(2));
        let exact = JsonResponse::new(429, json!({ "retry_after_ms": 2000 }));
        assert_eq!(exact.retry_after_seconds(), Some(2));
        assert_eq!(
            JsonResponse::new(429, json!({})).retry_after_seconds(),
            None
        );
        let other = JsonResponse::new(400, json!({ "retry_after_ms": 1500 }));
        assert_eq!(other.retry_after_seconds(), None);
    }
}
