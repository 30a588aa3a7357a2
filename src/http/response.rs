//! A JSON response before it is handed to the runtime.

use serde_json::Value;

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
}
