//! Joining a room another server holds: the state and auth chain its `send_join` answer carries
//! are checked here before any of it is stored (spec: "every event in the state and auth chain
//! is checked against its own auth events"). Signatures and hashes are checked before this, by
//! `verify`, since they need the other servers' keys.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::OwnedEventId;

use super::auth::authorize;
use super::Pdu;

/// The room's events in the order to store them: the auth chain's events that the state has
/// superseded first, then the current state, each part in depth order, so that the latest event
/// of every state slot is the one stored last.
pub fn check_state_and_auth_chain(
    state: Vec<Arc<Pdu>>,
    auth_chain: Vec<Arc<Pdu>>,
) -> Result<Vec<(Arc<Pdu>, bool)>, String> {
    let mut by_id: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
    for pdu in auth_chain.iter().chain(&state) {
        by_id.insert(pdu.event_id().to_owned(), pdu.clone());
    }
    if !by_id
        .values()
        .any(|p| p.kind().to_string() == "m.room.create")
    {
        return Err("the answer has no create event".into());
    }
    for pdu in by_id.values() {
        check_by_own_auth_events(pdu, &by_id)?;
    }
    let state_ids: HashSet<OwnedEventId> = state.iter().map(|p| p.event_id().to_owned()).collect();
    let order =
        |a: &Arc<Pdu>, b: &Arc<Pdu>| (a.depth(), a.event_id()).cmp(&(b.depth(), b.event_id()));
    let mut superseded: Vec<Arc<Pdu>> = by_id
        .values()
        .filter(|p| !state_ids.contains(p.event_id()))
        .cloned()
        .collect();
    superseded.sort_by(order);
    let mut current = state;
    current.sort_by(order);
    Ok(superseded
        .into_iter()
        .map(|p| (p, false))
        .chain(current.into_iter().map(|p| (p, true)))
        .collect())
}

/// Authorises an event against its own auth events only: the state they describe stands in for
/// the state before the event.
pub(crate) fn check_by_own_auth_events(
    pdu: &Pdu,
    by_id: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> Result<(), String> {
    let mut auth_state: HashMap<(StateEventType, String), Arc<Pdu>> = HashMap::new();
    // From v12 the create event is never cited, yet every check needs it.
    if let Some(create) = by_id
        .values()
        .find(|p| p.kind().to_string() == "m.room.create")
    {
        auth_state.insert((StateEventType::RoomCreate, String::new()), create.clone());
    }
    for id in pdu.auth_events() {
        let event = by_id.get(id).ok_or_else(|| {
            format!(
                "{} cites {id}, which the answer does not carry",
                pdu.event_id()
            )
        })?;
        if let Some(key) = event.state_key() {
            auth_state.insert(
                (event.kind().to_string().into(), key.to_owned()),
                event.clone(),
            );
        }
    }
    authorize(
        pdu,
        pdu.version(),
        |id| by_id.get(id).cloned(),
        |kind, key| auth_state.get(&(kind.clone(), key.to_owned())).cloned(),
    )
    .map_err(|e| format!("{}: {e}", pdu.event_id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::rooms::builder::EventTemplate;
    use crate::rooms::engine::{LocalServer, RoomEngine};
    use crate::rooms::RoomVersion;
    use ruma::{ServerName, UserId};
    use serde_json::json;

    fn room() -> (Vec<Arc<Pdu>>, Vec<Arc<Pdu>>) {
        let key = SigningKey::generate();
        let server = LocalServer {
            name: <&ServerName>::try_from("remote.example").unwrap(),
            key: &key,
        };
        let alice = UserId::parse("@alice:remote.example").unwrap();
        let mut engine = RoomEngine::new(RoomVersion::V12, None);
        let mut all = Vec::new();
        for template in [
            EventTemplate::state("m.room.create", "", json!({"room_version": "12"})),
            EventTemplate::state(
                "m.room.member",
                alice.as_str(),
                json!({"membership": "join"}),
            ),
            EventTemplate::state("m.room.power_levels", "", json!({"users": {}})),
            EventTemplate::state("m.room.join_rules", "", json!({"join_rule": "public"})),
            EventTemplate::state("m.room.power_levels", "", json!({"users": {}, "ban": 60})),
        ] {
            all.push(
                engine
                    .create_local(&alice, template, 1, &server)
                    .unwrap()
                    .pdu,
            );
        }
        let state: Vec<Arc<Pdu>> = engine.state().events().cloned().collect();
        (state, all)
    }

    #[test]
    fn a_valid_answer_is_ordered_with_superseded_state_first() {
        let (state, all) = room();
        let ordered = check_state_and_auth_chain(state, all.clone()).unwrap();
        assert_eq!(ordered.len(), 5);
        let first_pl = all[2].event_id();
        let position = |id: &ruma::EventId| {
            ordered
                .iter()
                .position(|(p, _)| p.event_id() == id)
                .unwrap()
        };
        assert!(position(first_pl) < position(all[4].event_id()));
        assert!(
            !ordered[position(first_pl)].1,
            "the superseded power levels are not current state"
        );
    }

    #[test]
    fn an_answer_missing_an_auth_event_is_refused() {
        let (state, mut all) = room();
        all.remove(0);
        let state: Vec<Arc<Pdu>> = state
            .into_iter()
            .filter(|p| p.kind().to_string() != "m.room.create")
            .collect();
        assert!(check_state_and_auth_chain(state, all).is_err());
    }
}
