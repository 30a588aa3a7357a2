//! `GET /_matrix/federation/v1/version`: which server software answers here.

use serde_json::{json, Value};

pub const SERVER_SOFTWARE: &str = "matrix-edge";

pub fn version() -> Value {
    json!({ "server": { "name": SERVER_SOFTWARE, "version": env!("CARGO_PKG_VERSION") } })
}
