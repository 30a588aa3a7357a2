//! Matrix error responses: `{"errcode": "M_...", "error": "..."}` with the status the spec pairs
//! with each code. Handlers return `MatrixError` and never build error bodies by hand, so a client
//! can rely on every failure having this shape.

use serde_json::{json, Value};

use super::JsonResponse;

/// The `errcode`s this server emits. Kept as an enum so a typo cannot reach a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadJson,
    CannotOverwriteMedia,
    Exclusive,
    Forbidden,
    GuestAccessForbidden,
    IncompatibleRoomVersion,
    InvalidParam,
    InvalidRoomState,
    InvalidSignature,
    InvalidUsername,
    LimitExceeded,
    MissingParam,
    MissingToken,
    NotFound,
    NotJson,
    NotYetUploaded,
    RoomInUse,
    TooLarge,
    Unauthorized,
    Unknown,
    UnknownPos,
    UnknownToken,
    Unrecognized,
    UnsupportedRoomVersion,
    UnableToAuthoriseJoin,
    UnableToGrantJoin,
    BadStatus,
    ConnectionFailed,
    ConnectionTimeout,
    UrlNotSet,
    UnknownDevice,
    UserDeactivated,
    UserInUse,
    WrongRoomKeysVersion,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 34] = [
        ErrorCode::BadJson,
        ErrorCode::CannotOverwriteMedia,
        ErrorCode::Exclusive,
        ErrorCode::Forbidden,
        ErrorCode::GuestAccessForbidden,
        ErrorCode::IncompatibleRoomVersion,
        ErrorCode::InvalidParam,
        ErrorCode::InvalidRoomState,
        ErrorCode::InvalidSignature,
        ErrorCode::InvalidUsername,
        ErrorCode::LimitExceeded,
        ErrorCode::MissingParam,
        ErrorCode::MissingToken,
        ErrorCode::NotFound,
        ErrorCode::NotJson,
        ErrorCode::NotYetUploaded,
        ErrorCode::RoomInUse,
        ErrorCode::TooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Unknown,
        ErrorCode::UnknownPos,
        ErrorCode::UnknownToken,
        ErrorCode::Unrecognized,
        ErrorCode::UnsupportedRoomVersion,
        ErrorCode::UnableToAuthoriseJoin,
        ErrorCode::UnableToGrantJoin,
        ErrorCode::BadStatus,
        ErrorCode::ConnectionFailed,
        ErrorCode::ConnectionTimeout,
        ErrorCode::UrlNotSet,
        ErrorCode::UnknownDevice,
        ErrorCode::UserDeactivated,
        ErrorCode::UserInUse,
        ErrorCode::WrongRoomKeysVersion,
    ];

    /// The code for an `errcode` string, for errors that crossed a Durable Object boundary.
    pub fn parse(code: &str) -> ErrorCode {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .unwrap_or(ErrorCode::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "M_BAD_JSON",
            ErrorCode::CannotOverwriteMedia => "M_CANNOT_OVERWRITE_MEDIA",
            ErrorCode::Exclusive => "M_EXCLUSIVE",
            ErrorCode::Forbidden => "M_FORBIDDEN",
            ErrorCode::GuestAccessForbidden => "M_GUEST_ACCESS_FORBIDDEN",
            ErrorCode::IncompatibleRoomVersion => "M_INCOMPATIBLE_ROOM_VERSION",
            ErrorCode::InvalidParam => "M_INVALID_PARAM",
            ErrorCode::InvalidRoomState => "M_INVALID_ROOM_STATE",
            ErrorCode::InvalidSignature => "M_INVALID_SIGNATURE",
            ErrorCode::InvalidUsername => "M_INVALID_USERNAME",
            ErrorCode::LimitExceeded => "M_LIMIT_EXCEEDED",
            ErrorCode::MissingParam => "M_MISSING_PARAM",
            ErrorCode::MissingToken => "M_MISSING_TOKEN",
            ErrorCode::NotFound => "M_NOT_FOUND",
            ErrorCode::NotJson => "M_NOT_JSON",
            ErrorCode::NotYetUploaded => "M_NOT_YET_UPLOADED",
            ErrorCode::RoomInUse => "M_ROOM_IN_USE",
            ErrorCode::TooLarge => "M_TOO_LARGE",
            ErrorCode::Unauthorized => "M_UNAUTHORIZED",
            ErrorCode::Unknown => "M_UNKNOWN",
            ErrorCode::UnknownPos => "M_UNKNOWN_POS",
            ErrorCode::UnknownToken => "M_UNKNOWN_TOKEN",
            ErrorCode::Unrecognized => "M_UNRECOGNIZED",
            ErrorCode::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            ErrorCode::UnableToAuthoriseJoin => "M_UNABLE_TO_AUTHORISE_JOIN",
            ErrorCode::UnableToGrantJoin => "M_UNABLE_TO_GRANT_JOIN",
            ErrorCode::BadStatus => "M_BAD_STATUS",
            ErrorCode::ConnectionFailed => "M_CONNECTION_FAILED",
            ErrorCode::ConnectionTimeout => "M_CONNECTION_TIMEOUT",
            ErrorCode::UrlNotSet => "M_URL_NOT_SET",
            ErrorCode::UnknownDevice => "M_UNKNOWN_DEVICE",
            ErrorCode::UserDeactivated => "M_USER_DEACTIVATED",
            ErrorCode::UserInUse => "M_USER_IN_USE",
            ErrorCode::WrongRoomKeysVersion => "M_WRONG_ROOM_KEYS_VERSION",
        }
    }
}

/// The extra fields (next to `errcode` and `error`) that errors of this server carry.
const EXTRA_FIELDS: [&str; 4] = [
    "retry_after_ms",
    "soft_logout",
    "room_version",
    "current_version",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    /// Fields some codes carry next to `errcode` and `error` (`retry_after_ms`, `soft_logout`).
    pub extra: Vec<(&'static str, Value)>,
}

impl MatrixError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, field: &'static str, value: Value) -> Self {
        self.extra.push((field, value));
        self
    }

    /// The request body is not JSON (400 `M_NOT_JSON`).
    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::NotJson, message)
    }

    /// The body is JSON but not of the expected shape (400 `M_BAD_JSON`).
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::BadJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::MissingParam, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorCode::Forbidden, message)
    }

    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(429, ErrorCode::LimitExceeded, "Too many requests")
            .with("retry_after_ms", json!(retry_after_ms))
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

    /// The error an answer's body describes, for errors that crossed a Durable Object boundary:
    /// the status, the code, the message and every extra field this server emits survive.
    pub fn from_response(status: u16, body: &Value) -> Self {
        let mut error = Self::new(
            status,
            ErrorCode::parse(body["errcode"].as_str().unwrap_or_default()),
            body["error"].as_str().unwrap_or_default(),
        );
        for field in EXTRA_FIELDS {
            if let Some(value) = body.get(field) {
                error = error.with(field, value.clone());
            }
        }
        error
    }

    pub fn into_response(self) -> JsonResponse {
        let mut body = json!({ "errcode": self.code.as_str(), "error": self.message });
        for (field, value) in self.extra {
            body[field] = value;
        }
        JsonResponse::new(self.status, body)
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
    fn an_error_survives_its_own_response_body() {
        let error = MatrixError::limit_exceeded(1500).with("soft_logout", json!(true));
        let body = error.clone().into_response().body;
        assert_eq!(MatrixError::from_response(429, &body), error);
    }

    #[test]
    fn every_code_parses_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn error_body_has_errcode_and_error() {
        let response = MatrixError::method_not_allowed().into_response();
        assert_eq!(response.status, 405);
        assert_eq!(response.body["errcode"], "M_UNRECOGNIZED");
        assert!(response.body["error"].as_str().unwrap().contains("Method"));
    }
}
