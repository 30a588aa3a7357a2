//! The push rule endpoints as operations on one user's stored rules.
//!
//! Request bodies come in as JSON and responses go out as JSON, so a handler only routes: it
//! parses the path with [`RuleKind::from_path`], calls one method here and serialises the result
//! or the [`PushRuleError`].

use ruma::{RoomId, UserId};
use serde_json::{json, Map, Value};

use super::{
    merge, server_defaults, DefaultRuleChange, PushRule, PushRuleError, RuleKind, Ruleset,
    StoredPushRules,
};

/// One user's push rules: the current defaults plus what the user stored.
#[derive(Clone, Debug)]
pub struct UserPushRules {
    defaults: Ruleset,
    stored: StoredPushRules,
}

impl UserPushRules {
    /// Drops stored changes to defaults that no longer exist, so the next write sheds them.
    pub fn new(defaults: Ruleset, mut stored: StoredPushRules) -> Self {
        for (kind, changes) in stored.defaults.iter_mut() {
            changes.retain(|rule_id, _| defaults.get(*kind, rule_id).is_some());
        }
        stored.defaults.retain(|_, changes| !changes.is_empty());
        Self { defaults, stored }
    }

    /// With this build's server defaults for `user_id`.
    pub fn for_user(user_id: &UserId, stored: StoredPushRules) -> Self {
        Self::new(server_defaults(user_id), stored)
    }

    /// What to write back to storage after a successful change.
    pub fn stored(&self) -> &StoredPushRules {
        &self.stored
    }

    pub fn into_stored(self) -> StoredPushRules {
        self.stored
    }

    /// The user's full ruleset, defaults merged in.
    pub fn ruleset(&self) -> Ruleset {
        merge(&self.defaults, &self.stored)
    }

    /// `GET /pushrules/`: `{"global": ruleset}`.
    pub fn get_all(&self) -> Value {
        json!({ "global": self.ruleset().to_json() })
    }

    /// `GET /pushrules/global/{kind}/{ruleId}`.
    pub fn get(&self, kind: RuleKind, rule_id: &str) -> Result<Value, PushRuleError> {
        Ok(json!(self.find(kind, rule_id)?))
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}` with its `before`/`after` query parameters.
    ///
    /// A new rule is enabled and, without `before`/`after`, becomes the user's most important
    /// rule of its kind; an updated one keeps its `enabled` state and, without them, its place.
    /// With both, `before` decides the place, as the spec says; `after` must still exist.
    pub fn put(
        &mut self,
        kind: RuleKind,
        rule_id: &str,
        body: &Value,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<(), PushRuleError> {
        check_new_rule_id(kind, rule_id)?;
        let mut rule = parse_rule(kind, rule_id, body)?;

        let mut rules = self.stored.user.rules(kind).to_vec();
        let old_at = rules.iter().position(|r| r.rule_id == rule_id);
        if let Some(at) = old_at {
            rule.enabled = rules.remove(at).enabled;
        }
        let anchor = |id: &str| -> Result<usize, PushRuleError> {
            if id.starts_with('.') {
                return Err(PushRuleError::InvalidParam(format!(
                    "cannot place a rule relative to the server-default rule {id}"
                )));
            }
            rules
                .iter()
                .position(|r| r.rule_id == id)
                .ok_or_else(|| PushRuleError::Unknown(format!("before/after rule not found: {id}")))
        };
        let after_at = after.map(anchor).transpose()?;
        let before_at = before.map(anchor).transpose()?;
        let at = match (before_at, after_at) {
            (Some(at), _) => at,
            (None, Some(at)) => at + 1,
            (None, None) => old_at.unwrap_or(0),
        };
        rules.insert(at, rule);
        *self.stored.user.rules_mut(kind) = rules;
        Ok(())
    }

    /// A room was replaced by an upgrade and the user joins its successor: each enabled rule of
    /// the user's named after the old room (the room rule, and the override rules clients make
    /// to mute a room, whose `room_id` condition names it) gets a twin for the new room, just
    /// after it, unless the user already has one. True when anything was added.
    pub fn copy_room_rules(&mut self, old: &RoomId, new: &RoomId) -> bool {
        let mut changed = false;
        for kind in RuleKind::ALL {
            let rules = self.stored.user.rules_mut(kind);
            if rules.iter().any(|r| r.rule_id == new.as_str()) {
                continue;
            }
            let Some(at) = rules
                .iter()
                .position(|r| r.rule_id == old.as_str() && r.enabled)
            else {
                continue;
            };
            let mut twin = rules[at].clone();
            twin.rule_id = new.to_string();
            for condition in twin.conditions.iter_mut().flatten() {
                if condition["key"] == "room_id" && condition["pattern"] == old.as_str() {
                    condition["pattern"] = json!(new);
                }
            }
            rules.insert(at + 1, twin);
            changed = true;
        }
        changed
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`. Server-default rules cannot be deleted.
    pub fn delete(&mut self, kind: RuleKind, rule_id: &str) -> Result<(), PushRuleError> {
        let rules = self.stored.user.rules_mut(kind);
        if let Some(at) = rules.iter().position(|r| r.rule_id == rule_id) {
            rules.remove(at);
            return Ok(());
        }
        if self.defaults.get(kind, rule_id).is_some() {
            return Err(PushRuleError::InvalidParam(
                "server-default rules cannot be deleted".into(),
            ));
        }
        Err(not_found())
    }

    /// `GET .../enabled`: `{"enabled": bool}`.
    pub fn enabled(&self, kind: RuleKind, rule_id: &str) -> Result<Value, PushRuleError> {
        Ok(json!({ "enabled": self.find(kind, rule_id)?.enabled }))
    }

    /// `PUT .../enabled` with `{"enabled": bool}`; default rules included.
    pub fn set_enabled(
        &mut self,
        kind: RuleKind,
        rule_id: &str,
        body: &Value,
    ) -> Result<(), PushRuleError> {
        let enabled = body
            .get("enabled")
            .and_then(Value::as_bool)
            .ok_or_else(|| PushRuleError::BadJson("`enabled` must be a boolean".into()))?;
        self.change(kind, rule_id, |rule| rule.enabled = enabled)
    }

    /// `GET .../actions`: `{"actions": [...]}`.
    pub fn actions(&self, kind: RuleKind, rule_id: &str) -> Result<Value, PushRuleError> {
        Ok(json!({ "actions": self.find(kind, rule_id)?.actions }))
    }

    /// `PUT .../actions` with `{"actions": [...]}`; the spec allows this on default rules too.
    pub fn set_actions(
        &mut self,
        kind: RuleKind,
        rule_id: &str,
        body: &Value,
    ) -> Result<(), PushRuleError> {
        let actions = parse_actions(body.get("actions"))?;
        self.change(kind, rule_id, |rule| rule.actions = actions)
    }

    fn find(&self, kind: RuleKind, rule_id: &str) -> Result<PushRule, PushRuleError> {
        self.ruleset()
            .get(kind, rule_id)
            .cloned()
            .ok_or_else(not_found)
    }

    /// Applies `edit` to a user rule in place, or to a default rule as a stored change that
    /// keeps only the fields now differing from the default.
    fn change(
        &mut self,
        kind: RuleKind,
        rule_id: &str,
        edit: impl FnOnce(&mut PushRule),
    ) -> Result<(), PushRuleError> {
        if let Some(rule) = self
            .stored
            .user
            .rules_mut(kind)
            .iter_mut()
            .find(|r| r.rule_id == rule_id)
        {
            edit(rule);
            return Ok(());
        }
        let default = self.defaults.get(kind, rule_id).ok_or_else(not_found)?;
        let mut rule = self.find(kind, rule_id)?;
        edit(&mut rule);
        let change = DefaultRuleChange {
            enabled: (rule.enabled != default.enabled).then_some(rule.enabled),
            actions: (rule.actions != default.actions).then_some(rule.actions),
        };
        let changes = self.stored.defaults.entry(kind).or_default();
        if change.is_empty() {
            changes.remove(rule_id);
        } else {
            changes.insert(rule_id.to_owned(), change);
        }
        self.stored
            .defaults
            .retain(|_, changes| !changes.is_empty());
        Ok(())
    }
}

fn not_found() -> PushRuleError {
    PushRuleError::NotFound("The push rule was not found.".into())
}

/// The spec reserves ids starting with `.` for server defaults and forbids `/` and `\`; room and
/// sender rules are named by the room or user they apply to.
fn check_new_rule_id(kind: RuleKind, rule_id: &str) -> Result<(), PushRuleError> {
    let invalid = |why: &str| Err(PushRuleError::InvalidParam(why.to_owned()));
    if rule_id.is_empty() {
        return invalid("rule_id must not be empty");
    }
    if rule_id.starts_with('.') {
        return invalid("rule ids starting with '.' are reserved for server-default rules");
    }
    if rule_id.contains(['/', '\\']) {
        return invalid("rule ids cannot contain '/' or '\\'");
    }
    match kind {
        RuleKind::Room if RoomId::parse(rule_id).is_err() => {
            invalid("the rule_id of a room rule must be a room id")
        }
        RuleKind::Sender if UserId::parse(rule_id).is_err() => {
            invalid("the rule_id of a sender rule must be a user id")
        }
        _ => Ok(()),
    }
}

/// A new user rule from a `PUT` body, keeping only the keys its kind has.
fn parse_rule(kind: RuleKind, rule_id: &str, body: &Value) -> Result<PushRule, PushRuleError> {
    let body = body
        .as_object()
        .ok_or_else(|| PushRuleError::BadJson("the body must be a JSON object".into()))?;
    let mut rule = PushRule {
        rule_id: rule_id.to_owned(),
        default: false,
        enabled: true,
        actions: parse_actions(body.get("actions"))?,
        conditions: None,
        pattern: None,
    };
    match kind {
        RuleKind::Override | RuleKind::Underride => {
            rule.conditions = Some(parse_conditions(body)?);
        }
        RuleKind::Content => {
            let pattern = body.get("pattern").and_then(Value::as_str).ok_or_else(|| {
                PushRuleError::BadJson("content rules need a string `pattern`".into())
            })?;
            rule.pattern = Some(pattern.to_owned());
        }
        RuleKind::Room | RuleKind::Sender => {}
    }
    Ok(rule)
}

/// `actions` is required; each action is a string or an object. The historical `dont_notify`
/// and `coalesce` are kept as given: the spec has servers ignore them, which evaluation does
/// (neither notifies, src/push/evaluate.rs), and clients that set them read them back as they
/// wrote them, as from other servers.
fn parse_actions(actions: Option<&Value>) -> Result<Vec<Value>, PushRuleError> {
    let bad = || PushRuleError::BadJson("`actions` must be an array of strings and objects".into());
    let actions = actions.and_then(Value::as_array).ok_or_else(bad)?;
    if !actions.iter().all(|a| a.is_string() || a.is_object()) {
        return Err(bad());
    }
    Ok(actions.clone())
}

/// Missing `conditions` means none (a rule with no conditions always matches); present ones
/// must be objects with a string `kind`, the part every condition shares.
fn parse_conditions(body: &Map<String, Value>) -> Result<Vec<Value>, PushRuleError> {
    let conditions = match body.get("conditions") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(conditions)) => conditions,
        Some(_) => {
            return Err(PushRuleError::BadJson(
                "`conditions` must be an array".into(),
            ))
        }
    };
    if conditions
        .iter()
        .any(|c| !c.get("kind").is_some_and(Value::is_string))
    {
        return Err(PushRuleError::BadJson(
            "each condition must be an object with a string `kind`".into(),
        ));
    }
    Ok(conditions.clone())
}
