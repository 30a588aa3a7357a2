//! State resolution: the state of a room whose graph has forked, from the states at the tips of
//! its branches. The algorithm is ruma's (state resolution v2, and v2.1 from room version 12);
//! version 1 rooms use `resolution_v1.rs`. This module gathers what it needs from the events the caller holds: each state's full auth
//! chain and, for v2.1, the conflicted state subgraph.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::{EventId, OwnedEventId};

use super::{Pdu, RoomVersion};

/// A room state by event id: for each `(event type, state key)`, the event holding it.
pub type StateMap = ruma::state_res::StateMap<OwnedEventId>;

/// Why states could not be resolved (an event the algorithm needs is missing, or ruma refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolutionError(pub String);

/// Resolves `states` into one. `fetch` must know every event of the states and of their auth
/// chains; events it does not know are left out, as the spec asks for events that cannot be
/// verified. One state, or identical states, resolve to themselves without any work.
pub fn resolve(
    version: RoomVersion,
    states: &[&StateMap],
    fetch: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<StateMap, ResolutionError> {
    match states {
        [] => return Ok(StateMap::new()),
        [first, rest @ ..] if rest.iter().all(|s| s == first) => return Ok((*first).clone()),
        _ => {}
    }
    let rules = version.rules();
    let Some(state_res_rules) = rules.state_res.v2_rules() else {
        // Room version 1: the first algorithm.
        return Ok(super::resolution_v1::resolve_v1(
            &rules.authorization,
            states,
            fetch,
        ));
    };
    let auth_chains = states.iter().map(|s| auth_chain(s, &fetch)).collect();
    ruma::state_res::resolve(
        &rules.authorization,
        state_res_rules,
        states.iter().copied(),
        auth_chains,
        |id| fetch(id),
        |conflicted| Some(conflicted_subgraph(conflicted, &fetch)),
    )
    .map_err(|e| ResolutionError(e.to_string()))
}

/// The events of a state and all their auth events, recursively.
pub fn auth_chain(
    state: &StateMap,
    fetch: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> EventIdSet<OwnedEventId> {
    let mut chain = EventIdSet::new();
    let mut stack: Vec<OwnedEventId> = state.values().cloned().collect();
    while let Some(id) = stack.pop() {
        if chain.contains(&id) {
            continue;
        }
        if let Some(pdu) = fetch(&id) {
            stack.extend(pdu.auth_events().iter().cloned());
        }
        chain.insert(id);
    }
    chain
}

/// Room version 12's conflicted state subgraph: the events on an auth-event path from one
/// conflicted event to another, both ends included.
pub fn conflicted_subgraph(
    conflicted: &ruma::state_res::StateMap<Vec<OwnedEventId>>,
    fetch: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> EventIdSet<OwnedEventId> {
    let targets: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
    let mut events: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
    // Every event reachable from a conflicted event through auth events: the candidates.
    let mut stack: Vec<OwnedEventId> = targets.iter().map(|id| (*id).clone()).collect();
    while let Some(id) = stack.pop() {
        if events.contains_key(&id) {
            continue;
        }
        if let Some(pdu) = fetch(&id) {
            stack.extend(pdu.auth_events().iter().cloned());
            events.insert(id, pdu);
        }
    }
    // A candidate is in the subgraph when a path of auth events leads from it to a conflicted
    // event (the candidate is itself below a conflicted event by construction). Memoised.
    fn reaches(
        id: &OwnedEventId,
        events: &HashMap<OwnedEventId, Arc<Pdu>>,
        targets: &HashSet<&OwnedEventId>,
        memo: &mut HashMap<OwnedEventId, bool>,
    ) -> bool {
        if let Some(&known) = memo.get(id) {
            return known;
        }
        memo.insert(id.clone(), false); // auth graphs are acyclic; this only guards bad input
        let hit = events.get(id).is_some_and(|pdu| {
            pdu.auth_events()
                .iter()
                .any(|a| targets.contains(a) || reaches(a, events, targets, memo))
        });
        memo.insert(id.clone(), hit);
        hit
    }
    let mut memo = HashMap::new();
    let mut out = EventIdSet::new();
    for id in events.keys() {
        if targets.contains(id) || reaches(id, &events, &targets, &mut memo) {
            out.insert(id.clone());
        }
    }
    out
}
