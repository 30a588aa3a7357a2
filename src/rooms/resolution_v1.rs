//! State resolution for room version 1 (spec: rooms/v1, "State resolution"), which ruma does not
//! implement. Later versions use ruma's v2 algorithm (`resolution.rs`).
//!
//! R starts as the union of the states without their conflicts. Conflicted power levels, then
//! join rules, then memberships are settled one slot at a time: candidates in ascending depth
//! (ties: descending SHA-1 of the event id), the first taken, each next one taken while it is
//! allowed by the auth rules in R. Every other conflicted slot takes the deepest candidate
//! (ties: ascending SHA-1) that is allowed in R.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::room_version_rules::AuthorizationRules;
use ruma::state_res::check_state_dependent_auth_rules;
use ruma::{EventId, OwnedEventId};
use sha1::{Digest, Sha1};

use super::resolution::StateMap;
use super::Pdu;

type Slot = (StateEventType, String);

pub fn resolve_v1(
    rules: &AuthorizationRules,
    states: &[&StateMap],
    fetch: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> StateMap {
    let mut candidates: BTreeMap<Slot, BTreeSet<OwnedEventId>> = BTreeMap::new();
    for state in states {
        for (slot, id) in state.iter() {
            candidates
                .entry(slot.clone())
                .or_default()
                .insert(id.clone());
        }
    }
    let mut resolved = StateMap::new();
    let mut conflicted: BTreeMap<Slot, Vec<Arc<Pdu>>> = BTreeMap::new();
    for (slot, ids) in candidates {
        if ids.len() == 1 {
            resolved.insert(slot, ids.into_iter().next().expect("one id"));
        } else {
            // Events that cannot be fetched cannot be checked: they are left out, as the spec
            // asks for events that cannot be verified.
            let events: Vec<Arc<Pdu>> = ids.iter().filter_map(|id| fetch(id)).collect();
            if !events.is_empty() {
                conflicted.insert(slot, events);
            }
        }
    }
    let allowed = |pdu: &Pdu, state: &StateMap| {
        check_state_dependent_auth_rules(rules, pdu, |kind: &StateEventType, key: &str| {
            state
                .get(&(kind.clone(), key.to_owned()))
                .and_then(|id| fetch(id))
        })
        .is_ok()
    };
    for kind in [
        StateEventType::RoomPowerLevels,
        StateEventType::RoomJoinRules,
        StateEventType::RoomMember,
    ] {
        let slots: Vec<Slot> = conflicted
            .keys()
            .filter(|(k, _)| *k == kind)
            .cloned()
            .collect();
        for slot in slots {
            let mut events = conflicted.remove(&slot).expect("listed above");
            events.sort_by(|a, b| {
                a.depth()
                    .cmp(&b.depth())
                    .then_with(|| sha1_of(b.event_id()).cmp(&sha1_of(a.event_id())))
            });
            let mut events = events.into_iter();
            let first = events.next().expect("non-empty");
            resolved.insert(slot.clone(), first.event_id().to_owned());
            for next in events {
                if !allowed(&next, &resolved) {
                    break;
                }
                resolved.insert(slot.clone(), next.event_id().to_owned());
            }
        }
    }
    for (slot, mut events) in conflicted {
        events.sort_by(|a, b| {
            b.depth()
                .cmp(&a.depth())
                .then_with(|| sha1_of(a.event_id()).cmp(&sha1_of(b.event_id())))
        });
        // When none is allowed the spec is silent; the shallowest is kept, as the reference
        // server does, so that servers still agree on the slot.
        let pick = events
            .iter()
            .find(|e| allowed(e, &resolved))
            .or(events.last())
            .expect("non-empty");
        resolved.insert(slot, pick.event_id().to_owned());
    }
    resolved
}

fn sha1_of(id: &EventId) -> [u8; 20] {
    Sha1::digest(id.as_str().as_bytes()).into()
}
