//! `required_state`: which current state events a room config asks for. Two request shapes are
//! accepted: the array of `[type, state_key]` pairs that Synapse and matrix-rust-sdk use (with
//! `"*"` for any, `"$ME"` for the requester and `"$LAZY"` for lazily loaded members), and the
//! newer `{include, exclude, lazy_members}` object of MSC4186.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::http::MatrixError;

/// The state key part of a pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Any,
    Exact(String),
    /// The requesting user's id.
    Me,
}

/// One `(type, state_key)` pattern; a `None` type matches every type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    pub kind: Option<String>,
    pub key: Key,
}

impl Pattern {
    fn matches(&self, kind: &str, state_key: &str, me: &str) -> bool {
        self.kind.as_deref().is_none_or(|k| k == kind)
            && match &self.key {
                Key::Any => true,
                Key::Exact(k) => k == state_key,
                Key::Me => state_key == me,
            }
    }
}

/// One room config's `required_state`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spec {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
    /// Members who sent (or are the subject of) the timeline's events are included.
    pub lazy_members: bool,
}

impl Spec {
    fn matches(&self, kind: &str, state_key: &str, me: &str) -> bool {
        self.include.iter().any(|p| p.matches(kind, state_key, me))
            && !self.exclude.iter().any(|p| p.matches(kind, state_key, me))
    }

    /// Whether it asks for the reader's own member event whoever the reader is (`$ME`, or a
    /// wildcard state key), not by their user id.
    pub fn wants_own_member(&self) -> bool {
        const NOBODY: &str = "\u{0}";
        self.matches("m.room.member", NOBODY, NOBODY)
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Spec {
        let mut spec = Spec::default();
        for (kind, key) in pairs {
            let kind = (kind != "*").then_some(kind);
            let key = match key.as_str() {
                "*" => Key::Any,
                "$ME" => Key::Me,
                "$LAZY" if kind.as_deref() == Some("m.room.member") => {
                    spec.lazy_members = true;
                    continue;
                }
                _ => Key::Exact(key),
            };
            spec.include.push(Pattern { kind, key });
        }
        spec.include.sort();
        spec.include.dedup();
        spec
    }
}

impl<'de> Deserialize<'de> for Spec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Element {
            #[serde(rename = "type")]
            kind: Option<String>,
            state_key: Option<String>,
        }
        #[derive(Deserialize)]
        struct Object {
            #[serde(default)]
            include: Vec<Element>,
            #[serde(default)]
            exclude: Vec<Element>,
            #[serde(default)]
            lazy_members: bool,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Pairs(Vec<(String, String)>),
            Object(Object),
        }
        let pattern = |e: Element| Pattern {
            kind: e.kind,
            key: e.state_key.map_or(Key::Any, Key::Exact),
        };
        Ok(match Shape::deserialize(d)? {
            Shape::Pairs(pairs) => Spec::from_pairs(pairs),
            Shape::Object(o) => Spec {
                include: o.include.into_iter().map(pattern).collect(),
                exclude: o.exclude.into_iter().map(pattern).collect(),
                lazy_members: o.lazy_members,
            },
        })
    }
}

/// The union of the `required_state` of every rule a room matches (MSC4186 "combining room
/// configs"): an event is wanted if any of them wants it. Kept sorted and deduplicated so two
/// equal unions compare and serialise equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredState(Vec<Spec>);

impl RequiredState {
    pub fn add(&mut self, spec: &Spec) {
        if !self.0.contains(spec) {
            self.0.push(spec.clone());
            self.0.sort();
        }
    }

    pub fn lazy_members(&self) -> bool {
        self.0.iter().any(|s| s.lazy_members)
    }

    /// Whether the state event `(kind, state_key)` is asked for (lazy members aside).
    pub fn wants(&self, kind: &str, state_key: &str, me: &str) -> bool {
        self.0.iter().any(|s| s.matches(kind, state_key, me))
    }

    /// The slots to read from the current state, before `exclude` is applied: `(type, key)`
    /// with `None` for a wildcard.
    pub fn slots<'a>(&'a self, me: &'a str) -> Vec<(Option<&'a str>, Option<&'a str>)> {
        let mut slots: Vec<(Option<&str>, Option<&str>)> = self
            .0
            .iter()
            .flat_map(|s| &s.include)
            .map(|p| {
                let key = match &p.key {
                    Key::Any => None,
                    Key::Exact(k) => Some(k.as_str()),
                    Key::Me => Some(me),
                };
                (p.kind.as_deref(), key)
            })
            .collect();
        slots.sort();
        slots.dedup();
        slots
    }

    /// A stable text for this union, stored per room so a changed config is noticed.
    pub fn fingerprint(&self) -> String {
        let specs: Vec<Value> = self
            .0
            .iter()
            .map(|s| {
                let patterns = |ps: &[Pattern]| -> Vec<Value> {
                    ps.iter()
                        .map(|p| {
                            let key = match &p.key {
                                Key::Any => Value::Null,
                                Key::Exact(k) => Value::String(k.clone()),
                                Key::Me => Value::String("$ME".into()),
                            };
                            serde_json::json!([p.kind, key])
                        })
                        .collect()
                };
                serde_json::json!([patterns(&s.include), patterns(&s.exclude), s.lazy_members])
            })
            .collect();
        Value::Array(specs).to_string()
    }
}

/// A `required_state` that cannot be understood is the client's error.
pub fn parse(value: Option<&Value>) -> Result<Spec, MatrixError> {
    match value {
        None | Some(Value::Null) => Ok(Spec::default()),
        Some(v) => Spec::deserialize(v)
            .map_err(|e| MatrixError::bad_json(format!("invalid required_state: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "@me:x";

    fn spec(v: Value) -> Spec {
        parse(Some(&v)).unwrap()
    }

    #[test]
    fn pairs_with_wildcards_me_and_lazy() {
        let s = spec(json!([
            ["m.room.name", ""],
            ["m.room.member", "$LAZY"],
            ["m.room.member", "$ME"],
            ["*", "tag"]
        ]));
        assert!(s.lazy_members);
        let mut all = RequiredState::default();
        all.add(&s);
        assert!(all.wants("m.room.name", "", ME));
        assert!(!all.wants("m.room.name", "x", ME));
        assert!(all.wants("m.room.member", ME, ME));
        assert!(
            !all.wants("m.room.member", "@other:x", ME),
            "lazy is not all"
        );
        assert!(all.wants("anything", "tag", ME));
        assert_eq!(
            all.slots(ME),
            vec![
                (None, Some("tag")),
                (Some("m.room.member"), Some(ME)),
                (Some("m.room.name"), Some(""))
            ]
        );
        let star = spec(json!([["*", "*"]]));
        let mut everything = RequiredState::default();
        everything.add(&star);
        assert!(everything.wants("m.room.member", "@other:x", ME));
        assert_eq!(everything.slots(ME), vec![(None, None)]);
    }

    #[test]
    fn object_shape_with_exclude_and_union() {
        let s = spec(json!({
            "include": [{}],
            "exclude": [{"type": "m.room.create", "state_key": ""}],
            "lazy_members": true
        }));
        let mut u = RequiredState::default();
        u.add(&s);
        assert!(u.wants("m.room.topic", "", ME));
        assert!(!u.wants("m.room.create", "", ME));
        assert!(u.lazy_members());
        // Another rule asking for the create event wins the union.
        u.add(&spec(json!([["m.room.create", ""]])));
        assert!(u.wants("m.room.create", "", ME));
        let mut other_order = RequiredState::default();
        other_order.add(&spec(json!([["m.room.create", ""]])));
        other_order.add(&s);
        assert_eq!(u.fingerprint(), other_order.fingerprint());
    }

    #[test]
    fn malformed_is_bad_json() {
        assert!(parse(Some(&json!([["only one"]]))).is_err());
        assert!(parse(Some(&json!("text"))).is_err());
        assert!(parse(None).unwrap().include.is_empty());
    }
}
