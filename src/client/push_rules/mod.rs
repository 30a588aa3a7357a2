//! Push rules: the server side of `/_matrix/client/v3/pushrules/...`, with no storage in it.
//!
//! Storage keeps the user's *changes*, not the ruleset: one row per user holds
//! [`StoredPushRules`] as JSON, that is the user's own rules plus, for server-default rules, only
//! the `enabled`/`actions` values the user set away from the default. What clients see is always
//! [`merge`]d from that and the defaults this build ships. So a default rule added by a later spec
//! version reaches existing users on their next read, a default the spec drops disappears, and a
//! user who never touched `.m.rule.message` follows whatever its default actions become.
//!
//! A handler loads the row (an absent row is `StoredPushRules::default()`), wraps it in
//! [`UserPushRules`], calls one operation and, after a successful write, stores
//! [`UserPushRules::stored`] again. Every operation either succeeds whole or leaves the rules as
//! they were, so a failed request never needs a rollback.
//!
//! Rules keep their `actions` and `conditions` as raw JSON: tweaks are passed through to push
//! gateways as clients agreed with them, and condition kinds we do not evaluate must still round
//! trip unchanged.

mod defaults;
mod edit;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use defaults::{default_ruleset, server_defaults};
pub use edit::UserPushRules;

/// The only server-default rule that outranks the user's own rules of its kind.
pub const MASTER_RULE_ID: &str = ".m.rule.master";

/// The five kinds of rule, declared in the order a server checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Override,
    Content,
    Room,
    Sender,
    Underride,
}

impl RuleKind {
    pub const ALL: [RuleKind; 5] = [
        RuleKind::Override,
        RuleKind::Content,
        RuleKind::Room,
        RuleKind::Sender,
        RuleKind::Underride,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Override => "override",
            RuleKind::Content => "content",
            RuleKind::Room => "room",
            RuleKind::Sender => "sender",
            RuleKind::Underride => "underride",
        }
    }

    /// Reads the `{scope}/{kind}` path segments. The spec's paths spell the scope out as
    /// `global` and list the kinds, so anything else is a path no endpoint serves.
    pub fn from_path(scope: &str, kind: &str) -> Result<RuleKind, PushRuleError> {
        if scope != "global" {
            return Err(PushRuleError::Unrecognized);
        }
        RuleKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or(PushRuleError::Unrecognized)
    }
}

/// One push rule in the spec's JSON shape. `conditions` is present on override and underride
/// rules only, `pattern` on content rules only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushRule {
    pub rule_id: String,
    pub default: bool,
    pub enabled: bool,
    pub actions: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Rules by kind, each list in priority order. Serialises with all five kinds present, empty
/// ones as `[]`, as the spec's example ruleset does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ruleset {
    #[serde(rename = "override", default)]
    pub override_: Vec<PushRule>,
    #[serde(default)]
    pub content: Vec<PushRule>,
    #[serde(default)]
    pub room: Vec<PushRule>,
    #[serde(default)]
    pub sender: Vec<PushRule>,
    #[serde(default)]
    pub underride: Vec<PushRule>,
}

impl Ruleset {
    pub fn rules(&self, kind: RuleKind) -> &[PushRule] {
        match kind {
            RuleKind::Override => &self.override_,
            RuleKind::Content => &self.content,
            RuleKind::Room => &self.room,
            RuleKind::Sender => &self.sender,
            RuleKind::Underride => &self.underride,
        }
    }

    pub fn rules_mut(&mut self, kind: RuleKind) -> &mut Vec<PushRule> {
        match kind {
            RuleKind::Override => &mut self.override_,
            RuleKind::Content => &mut self.content,
            RuleKind::Room => &mut self.room,
            RuleKind::Sender => &mut self.sender,
            RuleKind::Underride => &mut self.underride,
        }
    }

    pub fn get(&self, kind: RuleKind, rule_id: &str) -> Option<&PushRule> {
        self.rules(kind).iter().find(|rule| rule.rule_id == rule_id)
    }

    /// The ruleset as `GET /pushrules/global/` returns it.
    pub fn to_json(&self) -> Value {
        json!(self)
    }
}

/// What one user's storage row holds (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredPushRules {
    /// The user's own rules (`default: false`), each kind in priority order.
    #[serde(default)]
    pub user: Ruleset,
    /// The user's changes to server-default rules, by kind, then rule id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<RuleKind, BTreeMap<String, DefaultRuleChange>>,
}

/// The fields a user may change on a server-default rule; `None` keeps the default's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DefaultRuleChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Value>>,
}

impl DefaultRuleChange {
    fn is_empty(&self) -> bool {
        self.enabled.is_none() && self.actions.is_none()
    }

    fn apply(&self, rule: &mut PushRule) {
        if let Some(enabled) = self.enabled {
            rule.enabled = enabled;
        }
        if let Some(actions) = &self.actions {
            rule.actions = actions.clone();
        }
    }
}

/// The user's full ruleset: in each kind the user's rules come before the server-default ones,
/// except `.m.rule.master`, which stays first of all (spec: "Predefined Rules"). Changes to
/// defaults that no longer exist are ignored.
pub fn merge(defaults: &Ruleset, stored: &StoredPushRules) -> Ruleset {
    let mut merged = Ruleset::default();
    for kind in RuleKind::ALL {
        let changes = stored.defaults.get(&kind);
        let (master, rest): (Vec<PushRule>, Vec<PushRule>) = defaults
            .rules(kind)
            .iter()
            .map(|rule| {
                let mut rule = rule.clone();
                if let Some(change) = changes.and_then(|c| c.get(&rule.rule_id)) {
                    change.apply(&mut rule);
                }
                rule
            })
            .partition(|rule| rule.rule_id == MASTER_RULE_ID);
        let out = merged.rules_mut(kind);
        out.extend(master);
        out.extend(stored.user.rules(kind).iter().cloned());
        out.extend(rest);
    }
    merged
}

/// Why a push rule request failed; each maps to one Matrix error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushRuleError {
    /// 404 `M_NOT_FOUND`: no such rule.
    NotFound(String),
    /// 400 `M_INVALID_PARAM`: a rule id or query parameter the spec forbids.
    InvalidParam(String),
    /// 400 `M_BAD_JSON`: the body is JSON but lacks a required key or has a wrong type.
    BadJson(String),
    /// 400 `M_UNKNOWN`: `before`/`after` names no user rule of that kind. The spec's own example
    /// for this case uses `M_UNKNOWN`, so we do too.
    Unknown(String),
    /// 404 `M_UNRECOGNIZED`: a scope other than `global` or a kind outside the spec's five.
    Unrecognized,
}

impl PushRuleError {
    pub fn status(&self) -> u16 {
        match self {
            PushRuleError::NotFound(_) | PushRuleError::Unrecognized => 404,
            _ => 400,
        }
    }

    pub fn errcode(&self) -> &'static str {
        match self {
            PushRuleError::NotFound(_) => "M_NOT_FOUND",
            PushRuleError::InvalidParam(_) => "M_INVALID_PARAM",
            PushRuleError::BadJson(_) => "M_BAD_JSON",
            PushRuleError::Unknown(_) => "M_UNKNOWN",
            PushRuleError::Unrecognized => "M_UNRECOGNIZED",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            PushRuleError::NotFound(m)
            | PushRuleError::InvalidParam(m)
            | PushRuleError::BadJson(m)
            | PushRuleError::Unknown(m) => m,
            PushRuleError::Unrecognized => "Unrecognized request",
        }
    }

    /// The error body, `{"errcode": ..., "error": ...}`.
    pub fn to_json(&self) -> Value {
        json!({ "errcode": self.errcode(), "error": self.message() })
    }
}
