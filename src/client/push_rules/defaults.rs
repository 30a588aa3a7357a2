//! The server-default rules, taken from ruma rather than written out again.
//!
//! `ruma::push::Ruleset::server_default` lists exactly the spec's predefined rules (v1.17 on,
//! after the legacy body-matching mention rules were removed), in the spec's order; its unstable
//! poll and thread rules sit behind cargo features we do not enable. We convert through JSON so
//! the rest of the module handles one plain shape for defaults and user rules alike.

use ruma::UserId;
use serde_json::Value;

use super::{merge, Ruleset, StoredPushRules};

/// The predefined rules for `user_id` (some match on the user's own id).
pub fn server_defaults(user_id: &UserId) -> Ruleset {
    let ruma_rules = ruma::push::Ruleset::server_default(user_id);
    // Both ends are plain serde types of the same JSON shape; a failure here is a bug in this
    // file, caught by the tests, so an empty ruleset is only a last resort.
    serde_json::to_value(ruma_rules)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

/// The `global` ruleset of a user who changed nothing, as `GET /pushrules/global/` returns it.
pub fn default_ruleset(user_id: &UserId) -> Value {
    merge(&server_defaults(user_id), &StoredPushRules::default()).to_json()
}
