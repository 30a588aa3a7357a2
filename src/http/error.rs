//! Matrix error responses: `{"errcode": "M_...", "error": "..."}` with the status the spec pairs
//! with each code. Handlers return `MatrixError` and never build error bodies by hand, so a client
//! can rely on every failure having this shape.

use serde_json::json;

use super::JsonResponse;

/// The `errcode`s this server emits. Kept as an enum so a typo cannot reach a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadJson,
    Forbidden,
    LimitExceeded,
    MissingToken,
    NotFound,
    NotJson,
    TooLarge,
    Unauthorized,
    Unknown,
    UnknownToken,
    Unrecognized,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "M_BAD_JSON",
            ErrorCode::Forbidden => "M_FORBIDDEN",
            ErrorCode::LimitExceeded => "M_LIMIT_EXCEEDED",
            ErrorCode::MissingToken => "M_MISSING_TOKEN",
            ErrorCode::NotFound => "M_NOT_FOUND",
            ErrorCode::NotJson => "M_NOT_JSON",
            ErrorCode::TooLarge => "M_TOO_LARGE",
            ErrorCode::Unauthorized => "M_UNAUTHORIZED",
            ErrorCode::Unknown => "M_UNKNOWN",
            ErrorCode::UnknownToken => "M_UNKNOWN_TOKEN",
            ErrorCode::Unrecognized => "M_UNRECOGNIZED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

impl MatrixError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// No endpoint lives at this path (spec: 404 `M_UNRECOGNIZED`).
    pub fn unrecognized_path() -> Self {
        Self::new(404, ErrorCode::Unrecognized, "Unrecognized request")
    }

    /// The path exists but not for this method (spec: 405 `M_UNRECOGNIZED`).
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            ErrorCode::Unrecognized,
            "Method not allowed for this endpoint",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorCode::NotFound, message)
    }

    /// A fault on our side (bad deployment settings, a storage failure). The message is logged
    /// and shown; it must never carry secrets.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrorCode::Unknown, message)
    }

    pub fn into_response(self) -> JsonResponse {
        JsonResponse::new(
            self.status,
            json!({ "errcode": self.code.as_str(), "error": self.message }),
        )
    }
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.code.as_str(),
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_errcode_and_error() {
        let response = MatrixError::method_not_allowed().into_response();
        assert_eq!(response.status, 405);
        assert_eq!(response.body["errcode"], "M_UNRECOGNIZED");
        assert!(response.body["error"].as_str().unwrap().contains("Method"));
    }
}
