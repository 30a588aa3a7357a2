//! `GET /_matrix/client/versions`.
//!
//! Honest by construction: a spec version is listed only once every endpoint it requires is
//! served. Clients use this list to decide what to call, so claiming a version we do not serve
//! turns into broken features on their side. Until the client-server API lands, the list is empty.

use serde_json::{json, Value};

/// Spec versions whose client-server API this server implements in full.
pub const SUPPORTED_VERSIONS: &[&str] = &[];

/// Unstable features this server really serves, each with `true`.
pub const UNSTABLE_FEATURES: &[&str] = &[];

pub fn versions() -> Value {
    let unstable: serde_json::Map<String, Value> = UNSTABLE_FEATURES
        .iter()
        .map(|name| (name.to_string(), Value::Bool(true)))
        .collect();
    json!({ "versions": SUPPORTED_VERSIONS, "unstable_features": unstable })
}
