//! Push rule evaluation: for one event and one local user, what the user's rules say.
//!
//! The matching itself is ruma's (`ruma::push::Ruleset::get_actions`): it implements every
//! condition kind of the spec (`event_match` with the glob and word-boundary rules,
//! `event_property_is`, `event_property_contains`, `contains_display_name`,
//! `room_member_count`, `sender_notification_permission`) and never matches the user's own
//! events. This module only feeds it: the user's merged ruleset (src/client/push_rules/), and
//! what the room says at the event ([`RoomFacts`]), computed once per event for all users.

use std::collections::BTreeMap;

use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde_json::Value;

use crate::client::push_rules::{merge, server_defaults, StoredPushRules};

/// What the room says at the event, the same for every user evaluated.
#[derive(Clone, Debug)]
pub struct RoomFacts {
    pub room_id: OwnedRoomId,
    /// Joined members (the spec's `room_member_count`).
    pub member_count: u64,
    /// The sender's power level.
    pub sender_level: i64,
    /// `notifications` of the room's power levels (`room` defaults to 50).
    pub notifications: Value,
}

/// One local user to evaluate the event for.
pub struct Recipient {
    pub user_id: OwnedUserId,
    /// The user's display name in the room (their member event's), for `contains_display_name`.
    pub display_name: String,
    /// The user's stored rule changes (absent: they changed nothing).
    pub stored: Option<StoredPushRules>,
}

/// What the rules decided for a user who is to be notified.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub highlight: bool,
    /// The matching rule's actions, as the spec's JSON (tweaks included), for /notifications
    /// and the push gateway.
    pub actions: Vec<Value>,
}

/// The user's full ruleset as ruma reads it. A stored ruleset ruma cannot read (it never
/// should: the push rule endpoints validate what they store) falls back to the defaults rather
/// than silencing the user.
pub fn ruleset_for(user_id: &UserId, stored: Option<&StoredPushRules>) -> Ruleset {
    // Most users never change a rule: ruma builds their ruleset directly, the merge below (two
    // JSON round trips, most of the cost of an evaluation) is only for those who did.
    let Some(stored) = stored.filter(|s| **s != StoredPushRules::default()) else {
        return Ruleset::server_default(user_id);
    };
    let defaults = server_defaults(user_id);
    let merged = merge(&defaults, stored);
    serde_json::from_value(merged.to_json()).unwrap_or_else(|e| {
        crate::log_warn!("push rules of {user_id} unreadable ({e}); using the defaults");
        Ruleset::server_default(user_id)
    })
}

fn int(level: i64) -> Int {
    Int::new(level).unwrap_or(if level < 0 { Int::MIN } else { Int::MAX })
}

/// The condition context of `recipient` in the room.
pub fn context(facts: &RoomFacts, recipient: &Recipient, sender: &UserId) -> PushConditionRoomCtx {
    let member_count = UInt::new(facts.member_count).unwrap_or(UInt::MAX);
    // Only the sender's level is ever asked for (`sender_notification_permission`), and
    // `sender_level` already counts v12 creators as above every level.
    let users = BTreeMap::from([(sender.to_owned(), int(facts.sender_level))]);
    let notifications: NotificationPowerLevels =
        serde_json::from_value(facts.notifications.clone()).unwrap_or_default();
    let rules = RoomPowerLevelsRules::new(
        &ruma::room_version_rules::AuthorizationRules::V1,
        Vec::new(),
    );
    let power = PushConditionPowerLevelsCtx::new(users, int(0), notifications, rules);
    PushConditionRoomCtx::new(
        facts.room_id.clone(),
        member_count,
        recipient.user_id.clone(),
        recipient.display_name.clone(),
    )
    .with_power_levels(power)
}

/// Evaluates `event` (the client-format or PDU JSON: `type`, `content`, `sender`, `state_key`)
/// for one user. `None` when the user is not to be notified (no rule matched, the rule says
/// nothing or `dont_notify`, or the user sent it).
pub async fn evaluate(
    event: &Raw<Value>,
    sender: &UserId,
    facts: &RoomFacts,
    recipient: &Recipient,
) -> Option<Decision> {
    if recipient.user_id == sender {
        return None;
    }
    let ruleset = ruleset_for(&recipient.user_id, recipient.stored.as_ref());
    let ctx = context(facts, recipient, sender);
    let actions = ruleset.get_actions(event, &ctx).await;
    decision(actions)
}

/// Turns matched actions into a decision: only `notify` stores a notification.
pub fn decision(actions: &[Action]) -> Option<Decision> {
    if !actions.iter().any(Action::should_notify) {
        return None;
    }
    Some(Decision {
        highlight: actions.iter().any(Action::is_highlight),
        actions: actions
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect(),
    })
}
