//! Where the state at each event is kept: state groups (migrations/0010_state_groups.sql has
//! the invariants). This module decides which groups an accepted event needs; storage writes
//! them and reads them back.
//!
//! Most events need none: a message with one predecessor shares that predecessor's group. A
//! state event gets a group holding one slot on top of the state before it; a merge of several
//! branches first gets a group for the resolved state before it. Every `MAX_CHAIN` generations a
//! group is stored in full, so reading any state walks a bounded number of groups.

use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::OwnedEventId;

use super::resolution::StateMap;
use super::Pdu;

/// Parents a read may walk before it reaches a full group.
pub const MAX_CHAIN: u32 = 16;

/// A state and the stored group that holds it (`id` is `None` while no group holds it, for
/// rooms written before state groups existed).
#[derive(Clone, Debug)]
pub struct GroupRef {
    pub id: Option<String>,
    pub chain: u32,
    pub state: Arc<StateMap>,
}

impl GroupRef {
    pub fn unstored(state: Arc<StateMap>) -> Self {
        Self {
            id: None,
            chain: MAX_CHAIN,
            state,
        }
    }
}

/// A slot of a state as stored: `(event type, state key, event id)`.
pub type Entry = (String, String, String);

/// A group to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGroup {
    pub id: String,
    pub parent: Option<String>,
    pub full: bool,
    pub entries: Vec<Entry>,
    pub chain: u32,
}

/// The groups an event brings and the group that holds the state after it.
#[derive(Clone, Debug)]
pub struct Placement {
    pub groups: Vec<NewGroup>,
    pub after: GroupRef,
}

/// The id of the group holding the resolved state before a merge event.
pub fn before_group_id(event_id: &str) -> String {
    format!("before:{event_id}")
}

/// Decides the groups for `pdu`. `base` is the state after its first predecessor, when that is
/// all there is before it (one predecessor, nothing resolved); `before` and `after` are the
/// states before and after it.
pub fn place(
    pdu: &Pdu,
    base: Option<&GroupRef>,
    before: &Arc<StateMap>,
    after: &Arc<StateMap>,
) -> Placement {
    let mut groups = Vec::new();
    // The predecessor's group serves as the state before when it holds exactly that state.
    let stored_base =
        base.filter(|b| b.id.is_some() && (Arc::ptr_eq(&b.state, before) || *b.state == **before));
    let before_ref = match stored_base {
        Some(base) => base.clone(),
        None => {
            let id = before_group_id(pdu.event_id().as_str());
            let group = derive(id.clone(), base, before);
            let chain = group.chain;
            groups.push(group);
            GroupRef {
                id: Some(id),
                chain,
                state: before.clone(),
            }
        }
    };
    if pdu.state_key().is_none() {
        return Placement {
            groups,
            after: before_ref,
        };
    }
    let id = pdu.event_id().to_string();
    let group = derive(id.clone(), Some(&before_ref), after);
    let chain = group.chain;
    groups.push(group);
    Placement {
        groups,
        after: GroupRef {
            id: Some(id),
            chain,
            state: after.clone(),
        },
    }
}

/// A group for `state` on top of `parent`: the differing slots, or everything when there is no
/// stored parent or the chain would grow too long.
fn derive(id: String, parent: Option<&GroupRef>, state: &StateMap) -> NewGroup {
    match parent {
        Some(GroupRef {
            id: Some(parent_id),
            chain,
            state: parent_state,
        }) if *chain < MAX_CHAIN => NewGroup {
            id,
            parent: Some(parent_id.clone()),
            full: false,
            entries: diff(parent_state, state),
            chain: chain + 1,
        },
        _ => NewGroup {
            id,
            parent: parent.and_then(|p| p.id.clone()),
            full: true,
            entries: entries(state),
            chain: 0,
        },
    }
}

/// The slots of `to` that differ from `from`. A slot `to` lacks is written with an empty event
/// id (state resolution can drop a slot no candidate passes the auth rules for).
pub fn diff(from: &StateMap, to: &StateMap) -> Vec<Entry> {
    let mut out: Vec<Entry> = changed_slots(from, to)
        .into_iter()
        .map(|((kind, key), id)| {
            (
                kind.to_string(),
                key,
                id.map(|id| id.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A state slot and the event holding it, `None` for an emptied slot.
pub type SlotChange = ((StateEventType, String), Option<OwnedEventId>);

/// The slots that differ between two states, as changes that turn `from` into `to`.
pub fn changed_slots(from: &StateMap, to: &StateMap) -> Vec<SlotChange> {
    let mut out: Vec<SlotChange> = to
        .iter()
        .filter(|(slot, id)| from.get(*slot) != Some(*id))
        .map(|(slot, id)| (slot.clone(), Some(id.clone())))
        .collect();
    out.extend(
        from.keys()
            .filter(|slot| !to.contains_key(*slot))
            .map(|slot| (slot.clone(), None)),
    );
    out
}

pub fn entries(state: &StateMap) -> Vec<Entry> {
    diff(&StateMap::new(), state)
}

/// Applies stored entries to a state, oldest group first (an empty event id removes the slot).
pub fn apply_entries(state: &mut StateMap, entries: &[Entry]) {
    for (kind, key, id) in entries {
        let slot = (StateEventType::from(kind.as_str()), key.clone());
        match OwnedEventId::try_from(id.as_str()) {
            Ok(id) => {
                state.insert(slot, id);
            }
            Err(_) => {
                state.remove(&slot);
            }
        }
    }
}

/// The state after `pdu`, given the state before it.
pub fn after(before: &Arc<StateMap>, pdu: &Pdu) -> Arc<StateMap> {
    match pdu.state_key() {
        None => before.clone(),
        Some(key) => {
            let mut state = (**before).clone();
            state.insert(
                (pdu.kind().to_string().into(), key.to_owned()),
                pdu.event_id().to_owned(),
            );
            Arc::new(state)
        }
    }
}
