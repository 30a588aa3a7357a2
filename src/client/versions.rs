//! `GET /_matrix/client/versions`.
//!
//! Clients use this list to decide what to call. We list the versions whose accounts, rooms,
//! sync, messaging and media endpoints we serve, up to v1.11 (authenticated media, served by
//! `client/media.rs`). v1.12 and later are not listed yet. Still missing from these versions:
//! third-party ids, search and room upgrades.

use serde_json::{json, Value};

/// Spec versions whose core client-server API this server serves (see the module comment).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11",
];

/// Unstable features this server really serves, each with `true`.
pub const UNSTABLE_FEATURES: &[&str] = &[
    // `use_state_after` in /sync.
    "org.matrix.msc4222",
    // Simplified sliding sync (MSC4186), at its unstable path: src/sync/sliding/.
    "org.matrix.simplified_msc3575",
    // OAuth 2.0 server metadata discovery, at both paths (src/oauth/metadata.rs). MSC3861, the
    // umbrella that makes OAuth the only login, is not advertised: password login stays.
    "org.matrix.msc2965",
];

pub fn versions() -> Value {
    let unstable: serde_json::Map<String, Value> = UNSTABLE_FEATURES
        .iter()
        .map(|name| (name.to_string(), Value::Bool(true)))
        .collect();
    json!({ "versions": SUPPORTED_VERSIONS, "unstable_features": unstable })
}
