//! Push rules checked against the spec's text: the predefined rules and their order, and each
//! endpoint's effect and errors.

use ruma::user_id;
use serde_json::{json, Value};

use super::*;

const ALICE: &str = "@alice:example.org";

fn alice() -> UserPushRules {
    UserPushRules::for_user(user_id!("@alice:example.org"), StoredPushRules::default())
}

fn ids(rules: &UserPushRules, kind: RuleKind) -> Vec<String> {
    let ruleset = rules.ruleset();
    ruleset
        .rules(kind)
        .iter()
        .map(|r| r.rule_id.clone())
        .collect()
}

fn put(
    rules: &mut UserPushRules,
    kind: RuleKind,
    id: &str,
    before: Option<&str>,
    after: Option<&str>,
) {
    let body = json!({ "actions": ["notify"], "conditions": [], "pattern": "cake*" });
    rules.put(kind, id, &body, before, after).unwrap();
}

#[test]
fn defaults_are_the_spec_rules_in_spec_order() {
    let rules = alice();
    assert_eq!(
        ids(&rules, RuleKind::Override),
        [
            ".m.rule.master",
            ".m.rule.suppress_notices",
            ".m.rule.invite_for_me",
            ".m.rule.member_event",
            ".m.rule.is_user_mention",
            ".m.rule.is_room_mention",
            ".m.rule.tombstone",
            ".m.rule.reaction",
            ".m.rule.room.server_acl",
            ".m.rule.suppress_edits",
        ]
    );
    assert_eq!(
        ids(&rules, RuleKind::Underride),
        [
            ".m.rule.call",
            ".m.rule.encrypted_room_one_to_one",
            ".m.rule.room_one_to_one",
            ".m.rule.message",
            ".m.rule.encrypted",
        ]
    );
    for kind in [RuleKind::Content, RuleKind::Room, RuleKind::Sender] {
        assert!(ids(&rules, kind).is_empty(), "{kind:?}");
    }
}

#[test]
fn default_rules_have_the_spec_json_shapes() {
    let global = default_ruleset(user_id!("@alice:example.org"));
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(global[kind].is_array(), "{kind} missing");
    }
    let rule = |kind: &str, id: &str| -> Value {
        let found = global[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule_id"] == id);
        found.cloned().unwrap()
    };
    let sound = |value: &str| json!({ "set_tweak": "sound", "value": value });
    let highlight = json!({ "set_tweak": "highlight" });
    let is_two = json!({ "kind": "room_member_count", "is": "2" });
    let event_match =
        |key: &str, pattern: &str| json!({ "kind": "event_match", "key": key, "pattern": pattern });
    let spec_rule = |id: &str, enabled: bool, conditions: Value, actions: Value| json!({ "rule_id": id, "default": true, "enabled": enabled, "conditions": conditions, "actions": actions });

    assert_eq!(
        rule("override", ".m.rule.master"),
        spec_rule(".m.rule.master", false, json!([]), json!([]))
    );
    assert_eq!(
        rule("override", ".m.rule.invite_for_me"),
        spec_rule(
            ".m.rule.invite_for_me",
            true,
            json!([
                event_match("type", "m.room.member"),
                event_match("content.membership", "invite"),
                event_match("state_key", ALICE)
            ]),
            json!(["notify", sound("default")]),
        )
    );
    assert_eq!(
        rule("override", ".m.rule.is_user_mention"),
        spec_rule(
            ".m.rule.is_user_mention",
            true,
            json!([{ "kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ALICE }]),
            json!(["notify", sound("default"), highlight]),
        )
    );
    assert_eq!(
        rule("override", ".m.rule.is_room_mention"),
        spec_rule(
            ".m.rule.is_room_mention",
            true,
            json!([
                { "kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true },
                { "kind": "sender_notification_permission", "key": "room" },
            ]),
            json!(["notify", highlight]),
        )
    );
    assert_eq!(
        rule("override", ".m.rule.suppress_edits"),
        spec_rule(
            ".m.rule.suppress_edits",
            true,
            json!([{ "kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace" }]),
            json!([]),
        )
    );
    assert_eq!(
        rule("underride", ".m.rule.call"),
        spec_rule(
            ".m.rule.call",
            true,
            json!([event_match("type", "m.call.invite")]),
            json!(["notify", sound("ring")])
        )
    );
    assert_eq!(
        rule("underride", ".m.rule.encrypted_room_one_to_one"),
        spec_rule(
            ".m.rule.encrypted_room_one_to_one",
            true,
            json!([is_two, event_match("type", "m.room.encrypted")]),
            json!(["notify", sound("default")]),
        )
    );
    assert_eq!(
        rule("underride", ".m.rule.message"),
        spec_rule(
            ".m.rule.message",
            true,
            json!([event_match("type", "m.room.message")]),
            json!(["notify"])
        )
    );
}

#[test]
fn user_rules_go_after_master_and_before_other_defaults() {
    let mut rules = alice();
    put(&mut rules, RuleKind::Override, "mine", None, None);
    put(&mut rules, RuleKind::Underride, "low", None, None);
    assert_eq!(
        ids(&rules, RuleKind::Override)[..3],
        [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    );
    assert_eq!(
        ids(&rules, RuleKind::Underride)[..2],
        ["low", ".m.rule.call"]
    );
    let got = rules.get(RuleKind::Override, "mine").unwrap();
    assert_eq!(
        got,
        json!({ "rule_id": "mine", "default": false, "enabled": true, "actions": ["notify"], "conditions": [] })
    );
    assert_eq!(rules.get_all()["global"], rules.ruleset().to_json());
}

#[test]
fn put_orders_with_before_and_after() {
    let mut rules = alice();
    let content = RuleKind::Content;
    put(&mut rules, content, "a", None, None);
    put(&mut rules, content, "b", None, None); // new rules go first: b, a
    assert_eq!(ids(&rules, content), ["b", "a"]);
    put(&mut rules, content, "c", None, Some("a"));
    assert_eq!(ids(&rules, content), ["b", "a", "c"]);
    put(&mut rules, content, "d", Some("a"), None);
    assert_eq!(ids(&rules, content), ["b", "d", "a", "c"]);
    // Both given: `before` decides.
    put(&mut rules, content, "e", Some("b"), Some("c"));
    assert_eq!(ids(&rules, content), ["e", "b", "d", "a", "c"]);
    // Moving an existing rule; updating without a position keeps its place.
    put(&mut rules, content, "e", None, Some("c"));
    assert_eq!(ids(&rules, content), ["b", "d", "a", "c", "e"]);
    put(&mut rules, content, "d", None, None);
    assert_eq!(ids(&rules, content), ["b", "d", "a", "c", "e"]);
}

#[test]
fn put_rejects_bad_positions_without_changing_anything() {
    let mut rules = alice();
    put(&mut rules, RuleKind::Override, "a", None, None);
    let before = rules.stored().clone();
    let body = json!({ "actions": [] });
    let err = rules
        .put(RuleKind::Override, "b", &body, Some("missing"), None)
        .unwrap_err();
    assert_eq!((err.status(), err.errcode()), (400, "M_UNKNOWN"));
    let err = rules
        .put(RuleKind::Override, "b", &body, None, Some(".m.rule.master"))
        .unwrap_err();
    assert_eq!((err.status(), err.errcode()), (400, "M_INVALID_PARAM"));
    let err = rules
        .put(RuleKind::Override, "a", &body, Some("a"), None)
        .unwrap_err();
    assert_eq!(err.errcode(), "M_UNKNOWN");
    let err = rules
        .put(RuleKind::Underride, "b", &body, Some("a"), None)
        .unwrap_err();
    assert_eq!(
        err.errcode(),
        "M_UNKNOWN",
        "anchors are looked up in the same kind only"
    );
    assert_eq!(rules.stored(), &before);
}

#[test]
fn put_rejects_bad_rule_ids_and_bodies() {
    let mut rules = alice();
    let ok = json!({ "actions": ["notify"] });
    for (kind, id) in [
        (RuleKind::Override, ".m.rule.master"),
        (RuleKind::Override, ".mine"),
        (RuleKind::Override, "a/b"),
        (RuleKind::Override, "a\\b"),
        (RuleKind::Room, "not-a-room"),
        (RuleKind::Sender, "!room:example.org"),
    ] {
        let err = rules.put(kind, id, &ok, None, None).unwrap_err();
        assert_eq!(
            (err.status(), err.errcode()),
            (400, "M_INVALID_PARAM"),
            "{id}"
        );
    }
    for body in [
        json!({}),
        json!({ "actions": "notify" }),
        json!({ "actions": [1] }),
        json!({ "actions": [], "conditions": [{ "key": "type" }] }),
        json!([]),
    ] {
        let err = rules
            .put(RuleKind::Override, "x", &body, None, None)
            .unwrap_err();
        assert_eq!((err.status(), err.errcode()), (400, "M_BAD_JSON"), "{body}");
    }
    let err = rules
        .put(RuleKind::Content, "x", &ok, None, None)
        .unwrap_err();
    assert_eq!(err.errcode(), "M_BAD_JSON", "content rules need a pattern");

    rules
        .put(RuleKind::Room, "!room:example.org", &ok, None, None)
        .unwrap();
    rules
        .put(RuleKind::Sender, "@bob:example.org", &ok, None, None)
        .unwrap();
    let room = rules.get(RuleKind::Room, "!room:example.org").unwrap();
    assert_eq!(
        room,
        json!({ "rule_id": "!room:example.org", "default": false, "enabled": true, "actions": ["notify"] })
    );
}

#[test]
fn historical_actions_round_trip() {
    let mut rules = alice();
    let body = json!({ "actions": ["dont_notify", "coalesce"], "pattern": "x" });
    rules
        .put(RuleKind::Content, "quiet", &body, None, None)
        .unwrap();
    assert_eq!(
        rules.actions(RuleKind::Content, "quiet").unwrap(),
        json!({ "actions": ["dont_notify", "coalesce"] })
    );
}

#[test]
fn delete_removes_user_rules_only() {
    let mut rules = alice();
    put(&mut rules, RuleKind::Override, "mine", None, None);
    rules.delete(RuleKind::Override, "mine").unwrap();
    assert_eq!(
        rules.get(RuleKind::Override, "mine").unwrap_err().errcode(),
        "M_NOT_FOUND"
    );
    assert_eq!(
        rules
            .delete(RuleKind::Override, "mine")
            .unwrap_err()
            .status(),
        404
    );
    let err = rules
        .delete(RuleKind::Override, ".m.rule.master")
        .unwrap_err();
    assert_eq!((err.status(), err.errcode()), (400, "M_INVALID_PARAM"));
    assert!(rules.get(RuleKind::Override, ".m.rule.master").is_ok());
}

#[test]
fn enabling_and_disabling_default_and_user_rules() {
    let mut rules = alice();
    let master = ".m.rule.master";
    assert_eq!(
        rules.enabled(RuleKind::Override, master).unwrap(),
        json!({ "enabled": false })
    );
    rules
        .set_enabled(RuleKind::Override, master, &json!({ "enabled": true }))
        .unwrap();
    assert_eq!(
        rules.enabled(RuleKind::Override, master).unwrap(),
        json!({ "enabled": true })
    );
    assert_eq!(
        rules.stored().defaults[&RuleKind::Override][master].enabled,
        Some(true)
    );
    // Back to the default value: nothing left to store.
    rules
        .set_enabled(RuleKind::Override, master, &json!({ "enabled": false }))
        .unwrap();
    assert_eq!(rules.stored(), &StoredPushRules::default());

    put(&mut rules, RuleKind::Content, "cake", None, None);
    rules
        .set_enabled(RuleKind::Content, "cake", &json!({ "enabled": false }))
        .unwrap();
    put(&mut rules, RuleKind::Content, "cake", None, None);
    assert_eq!(
        rules.enabled(RuleKind::Content, "cake").unwrap(),
        json!({ "enabled": false }),
        "update keeps enabled"
    );

    let err = rules
        .set_enabled(RuleKind::Content, "cake", &json!({ "enabled": "no" }))
        .unwrap_err();
    assert_eq!(err.errcode(), "M_BAD_JSON");
    let err = rules
        .set_enabled(
            RuleKind::Room,
            "!nope:example.org",
            &json!({ "enabled": true }),
        )
        .unwrap_err();
    assert_eq!(err.errcode(), "M_NOT_FOUND");
    let err = rules.enabled(RuleKind::Underride, master).unwrap_err();
    assert_eq!(err.errcode(), "M_NOT_FOUND", "rules are per kind");
}

#[test]
fn actions_update_default_and_user_rules() {
    let mut rules = alice();
    let message = ".m.rule.message";
    let loud = json!({ "actions": ["notify", { "set_tweak": "sound", "value": "bing" }] });
    rules
        .set_actions(RuleKind::Underride, message, &loud)
        .unwrap();
    assert_eq!(rules.actions(RuleKind::Underride, message).unwrap(), loud);
    let rule = rules.get(RuleKind::Underride, message).unwrap();
    assert_eq!(
        rule["default"], true,
        "a changed default rule is still a default rule"
    );

    put(&mut rules, RuleKind::Override, "mine", None, None);
    rules
        .set_actions(RuleKind::Override, "mine", &json!({ "actions": [] }))
        .unwrap();
    assert_eq!(
        rules.actions(RuleKind::Override, "mine").unwrap(),
        json!({ "actions": [] })
    );
    let err = rules
        .set_actions(RuleKind::Override, "mine", &json!({}))
        .unwrap_err();
    assert_eq!(err.errcode(), "M_BAD_JSON");
}

#[test]
fn stored_changes_survive_a_round_trip_and_follow_new_defaults() {
    let mut rules = alice();
    put(&mut rules, RuleKind::Override, "mine", None, None);
    rules
        .set_enabled(
            RuleKind::Override,
            ".m.rule.master",
            &json!({ "enabled": true }),
        )
        .unwrap();
    let row = serde_json::to_string(rules.stored()).unwrap();
    let stored: StoredPushRules = serde_json::from_str(&row).unwrap();
    assert_eq!(&stored, rules.stored());

    // A later build ships one default more and one fewer: the user gets the new one, and the
    // change to the dropped one is shed.
    let mut defaults = server_defaults(user_id!("@alice:example.org"));
    defaults.override_.retain(|r| r.rule_id != ".m.rule.master");
    let mut new_rule = defaults.override_[0].clone();
    new_rule.rule_id = ".m.rule.new".into();
    defaults.override_.push(new_rule);
    let later = UserPushRules::new(defaults, stored);
    assert!(later.stored().defaults.is_empty());
    assert_eq!(ids(&later, RuleKind::Override)[0], "mine");
    assert_eq!(
        ids(&later, RuleKind::Override).last().unwrap(),
        ".m.rule.new"
    );
}

#[test]
fn paths_outside_the_spec_are_unrecognized() {
    assert_eq!(
        RuleKind::from_path("global", "override"),
        Ok(RuleKind::Override)
    );
    assert_eq!(
        RuleKind::from_path("global", "sender"),
        Ok(RuleKind::Sender)
    );
    for (scope, kind) in [
        ("device", "override"),
        ("global", "postcontent"),
        ("global", ""),
    ] {
        let err = RuleKind::from_path(scope, kind).unwrap_err();
        assert_eq!((err.status(), err.errcode()), (404, "M_UNRECOGNIZED"));
        assert_eq!(err.to_json()["errcode"], "M_UNRECOGNIZED");
    }
}

#[test]
fn an_upgraded_rooms_rules_are_copied_to_its_successor_once() {
    let old = ruma::room_id!("!old:example.org");
    let new = ruma::room_id!("!new:example.org");
    let mut rules = alice();
    rules
        .put(
            RuleKind::Room,
            old.as_str(),
            &json!({ "actions": ["dont_notify"] }),
            None,
            None,
        )
        .unwrap();
    let mute = json!({
        "actions": [],
        "conditions": [{ "kind": "event_match", "key": "room_id", "pattern": old.as_str() }],
    });
    rules
        .put(RuleKind::Override, old.as_str(), &mute, None, None)
        .unwrap();
    // A disabled rule stays behind: the user turned it off.
    rules
        .put(RuleKind::Underride, old.as_str(), &mute, None, None)
        .unwrap();
    rules
        .set_enabled(
            RuleKind::Underride,
            old.as_str(),
            &json!({ "enabled": false }),
        )
        .unwrap();
    assert!(rules.copy_room_rules(old, new));
    assert!(rules.get(RuleKind::Underride, new.as_str()).is_err());
    let room: Value = rules.get(RuleKind::Room, new.as_str()).unwrap();
    assert_eq!(room["actions"], json!(["dont_notify"]));
    let copied: Value = rules.get(RuleKind::Override, new.as_str()).unwrap();
    assert_eq!(copied["conditions"][0]["pattern"], new.as_str());
    // The old room's rules stay as they were.
    let kept: Value = rules.get(RuleKind::Override, old.as_str()).unwrap();
    assert_eq!(kept["conditions"][0]["pattern"], old.as_str());
    assert_eq!(ids(&rules, RuleKind::Room), [old.as_str(), new.as_str()]);
    // Joining again copies nothing, and keeps a rule the user changed for the new room.
    rules
        .put(
            RuleKind::Room,
            new.as_str(),
            &json!({ "actions": ["notify"] }),
            None,
            None,
        )
        .unwrap();
    assert!(!rules.copy_room_rules(old, new));
    assert_eq!(
        rules.get(RuleKind::Room, new.as_str()).unwrap()["actions"],
        json!(["notify"])
    );
}
