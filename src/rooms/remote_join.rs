//! Joining a room another server holds: the state and auth chain its `send_join` answer carries
//! are checked here before any of it is stored (spec: "every event in the state and auth chain
//! is checked against its own auth events"). Signatures and hashes are checked before this, by
//! `verify`, since they need the other servers' keys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{EventId, OwnedEventId};

use super::auth::authorize;
use super::Pdu;

/// The room's events in the order to store them: the auth chain's events that the state has
/// superseded first, then the current state, each part in depth order, so that the latest event
/// of every state slot is the one stored last. Every event must pass: one that does not fails
/// the whole answer (for answers whose every event the caller needs).
pub fn check_state_and_auth_chain(
    state: Vec<Arc<Pdu>>,
    auth_chain: Vec<Arc<Pdu>>,
) -> Result<Vec<(Arc<Pdu>, bool)>, String> {
    let checked = authorised_part(state, auth_chain)?;
    match checked.dropped.into_iter().next() {
        Some((_, why)) => Err(why),
        None => Ok(checked.ordered),
    }
}

/// What `authorised_part` keeps of an answer, and what it leaves out and why.
pub struct CheckedAnswer {
    /// The events that pass, in the order of `check_state_and_auth_chain`; `true` marks the
    /// events of the state.
    pub ordered: Vec<(Arc<Pdu>, bool)>,
    pub dropped: Vec<(OwnedEventId, String)>,
}

/// The part of a state and auth chain that passes the auth rules, each event checked against
/// its own auth events once those have passed (spec, "Checks performed on receipt of a PDU":
/// an event that fails is rejected, and so is one that cites it or cites an event the answer
/// lacks). Events are taken in the order of the auth graph, so a hostile `depth` cannot make a
/// good event wait for its own auth events; events in a cycle never pass. The answer as a whole
/// fails only without its create event.
pub fn authorised_part(
    state: Vec<Arc<Pdu>>,
    auth_chain: Vec<Arc<Pdu>>,
) -> Result<CheckedAnswer, String> {
    let mut by_id: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
    for pdu in auth_chain.iter().chain(&state) {
        by_id.insert(pdu.event_id().to_owned(), pdu.clone());
    }
    let is_create = |p: &Pdu| p.kind().to_string() == "m.room.create";
    if !by_id.values().any(|p| is_create(p)) {
        return Err("the answer has no create event".into());
    }
    // Kahn's walk of the auth graph: an event is looked at once every auth event of it that the
    // answer carries has been decided. The create event goes first: from v12 nothing cites it,
    // yet every check needs it.
    let mut waiting: HashMap<&EventId, usize> = HashMap::new();
    let mut dependants: HashMap<&EventId, Vec<&EventId>> = HashMap::new();
    let mut ready: VecDeque<&EventId> = VecDeque::new();
    let mut sorted: Vec<&Arc<Pdu>> = by_id.values().collect();
    sorted.sort_by_cached_key(|p| (!is_create(p), p.depth(), p.event_id().to_owned()));
    for pdu in &sorted {
        let id = pdu.event_id();
        let cited: HashSet<&EventId> = pdu
            .auth_events()
            .iter()
            .map(|a| a.as_ref())
            .filter(|a| by_id.contains_key(*a))
            .collect();
        for auth in &cited {
            dependants.entry(*auth).or_default().push(id);
        }
        if cited.is_empty() {
            ready.push_back(id);
        } else {
            waiting.insert(id, cited.len());
        }
    }
    let mut accepted: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
    let mut create: Option<Arc<Pdu>> = None;
    let mut dropped: Vec<(OwnedEventId, String)> = Vec::new();
    while let Some(id) = ready.pop_front() {
        let pdu = &by_id[id];
        let verdict = match pdu
            .auth_events()
            .iter()
            .find(|a| !accepted.contains_key(*a))
        {
            Some(missing) if by_id.contains_key(missing) => {
                Err(format!("{id} cites {missing}, which was rejected"))
            }
            Some(missing) => Err(format!(
                "{id} cites {missing}, which the answer does not carry"
            )),
            None if is_create(pdu) => check_with_create(pdu, Some(pdu), &accepted),
            None if create.is_none() => Err(format!("{id}: the room's create event was rejected")),
            None => check_with_create(pdu, create.as_ref(), &accepted),
        };
        match verdict {
            Ok(()) => {
                if is_create(pdu) && create.is_none() {
                    create = Some(pdu.clone());
                }
                accepted.insert(id.to_owned(), pdu.clone());
            }
            Err(why) => dropped.push((id.to_owned(), why)),
        }
        for next in dependants.get(id).into_iter().flatten() {
            if let Some(count) = waiting.get_mut(next) {
                *count -= 1;
                if *count == 0 {
                    waiting.remove(next);
                    ready.push_back(next);
                }
            }
        }
    }
    let mut cyclic: Vec<&EventId> = waiting.into_keys().collect();
    cyclic.sort();
    for id in cyclic {
        dropped.push((id.to_owned(), format!("{id} is in a cycle of auth events")));
    }
    if create.is_none() {
        let why = dropped
            .iter()
            .find(|(id, _)| by_id.get(id).is_some_and(|p| is_create(p)))
            .map(|(_, why)| why.clone())
            .unwrap_or_default();
        return Err(format!("the answer's create event does not pass: {why}"));
    }
    let order =
        |a: &Arc<Pdu>, b: &Arc<Pdu>| (a.depth(), a.event_id()).cmp(&(b.depth(), b.event_id()));
    let state_ids: HashSet<OwnedEventId> = state.iter().map(|p| p.event_id().to_owned()).collect();
    let mut superseded: Vec<Arc<Pdu>> = accepted
        .values()
        .filter(|p| !state_ids.contains(p.event_id()))
        .cloned()
        .collect();
    superseded.sort_by(order);
    let mut current: Vec<Arc<Pdu>> = state
        .into_iter()
        .filter(|p| accepted.contains_key(p.event_id()))
        .collect();
    current.sort_by(order);
    current.dedup_by(|a, b| a.event_id() == b.event_id());
    Ok(CheckedAnswer {
        ordered: superseded
            .into_iter()
            .map(|p| (p, false))
            .chain(current.into_iter().map(|p| (p, true)))
            .collect(),
        dropped,
    })
}

/// Authorises an event against its own auth events only: the state they describe stands in for
/// the state before the event.
pub(crate) fn check_by_own_auth_events(
    pdu: &Pdu,
    by_id: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> Result<(), String> {
    let create = by_id
        .values()
        .find(|p| p.kind().to_string() == "m.room.create");
    check_with_create(pdu, create, by_id)
}

/// `check_by_own_auth_events` with the room's create event already found.
fn check_with_create(
    pdu: &Pdu,
    create: Option<&Arc<Pdu>>,
    by_id: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> Result<(), String> {
    let mut auth_state: HashMap<(StateEventType, String), Arc<Pdu>> = HashMap::new();
    // From v12 the create event is never cited, yet every check needs it.
    if let Some(create) = create {
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

    /// `pdu` with `change` applied to its JSON: another event (another id), unsigned, which
    /// these checks do not look at.
    fn variant(pdu: &Pdu, change: impl FnOnce(&mut serde_json::Value)) -> Arc<Pdu> {
        let mut json = crate::signing::event::into_json(pdu.json().clone());
        change(&mut json);
        let object = crate::signing::to_canonical_object(json).unwrap();
        Arc::new(Pdu::from_json(object, pdu.version()).unwrap())
    }

    fn ids(checked: &CheckedAnswer) -> Vec<&ruma::EventId> {
        checked.ordered.iter().map(|(p, _)| p.event_id()).collect()
    }

    #[test]
    fn an_event_failing_its_auth_rules_is_dropped_with_what_cites_it_and_the_rest_kept() {
        let (state, all) = room();
        let (create, alice, first_pl, join_rules, pl) =
            (&all[0], &all[1], &all[2], &all[3], &all[4]);
        // A stranger's power levels, in the place of the room's current ones.
        let mallory = variant(pl, |e| {
            e["sender"] = json!("@mallory:remote.example");
            e["content"]["ban"] = json!(0);
        });
        // An event that cites it: rejected with it.
        let follower = variant(join_rules, |e| {
            e["auth_events"] = json!([alice.event_id(), mallory.event_id()]);
            e["content"]["join_rule"] = json!("invite");
            e["state_key"] = json!("other");
        });
        let state: Vec<Arc<Pdu>> = state
            .into_iter()
            .filter(|p| p.event_id() != pl.event_id())
            .chain([mallory.clone(), follower.clone()])
            .collect();
        let chain = vec![create.clone(), alice.clone(), first_pl.clone()];
        let checked = authorised_part(state.clone(), chain.clone()).unwrap();
        let dropped: Vec<&ruma::EventId> = checked.dropped.iter().map(|(id, _)| &**id).collect();
        assert_eq!(dropped, [mallory.event_id(), follower.event_id()]);
        assert!(
            checked.dropped[1].1.contains("rejected"),
            "{:?}",
            checked.dropped
        );
        let kept = ids(&checked);
        assert_eq!(kept.len(), 4, "{kept:?}");
        for event in [create, alice, first_pl, join_rules] {
            assert!(kept.contains(&event.event_id()), "{} kept", event.kind());
        }
        // The strict form refuses the same answer as a whole.
        assert!(check_state_and_auth_chain(state, chain).is_err());
    }

    #[test]
    fn an_event_citing_what_the_answer_lacks_is_dropped() {
        let (state, all) = room();
        let absent = variant(&all[1], |e| e["origin_server_ts"] = json!(2));
        let orphan = variant(&all[3], |e| {
            e["auth_events"] = json!([all[4].event_id(), absent.event_id()]);
        });
        let state: Vec<Arc<Pdu>> = state
            .into_iter()
            .filter(|p| p.event_id() != all[3].event_id())
            .chain([orphan.clone()])
            .collect();
        let checked = authorised_part(state, all[..3].to_vec()).unwrap();
        assert_eq!(checked.dropped.len(), 1);
        assert_eq!(checked.dropped[0].0, orphan.event_id());
        assert!(checked.dropped[0].1.contains("does not carry"));
        assert!(!ids(&checked).contains(&orphan.event_id()));
    }

    #[test]
    fn events_are_checked_in_auth_order_whatever_their_depth_says() {
        let (_, all) = room();
        // The join rules claim to be older than the power levels they cite.
        let early = variant(&all[3], |e| e["depth"] = json!(0));
        let state = vec![
            all[0].clone(),
            all[1].clone(),
            all[4].clone(),
            early.clone(),
        ];
        let checked = authorised_part(state, all[..3].to_vec()).unwrap();
        assert!(checked.dropped.is_empty(), "{:?}", checked.dropped);
        assert!(ids(&checked).contains(&early.event_id()));
    }

    #[test]
    fn an_answer_whose_create_event_fails_is_refused() {
        let (state, all) = room();
        // The auth rules refuse a create event with predecessors.
        let bad_create = variant(&all[0], |e| e["prev_events"] = json!([all[1].event_id()]));
        let state: Vec<Arc<Pdu>> = state
            .into_iter()
            .filter(|p| p.kind().to_string() != "m.room.create")
            .chain([bad_create])
            .collect();
        assert!(authorised_part(state, all[1..].to_vec()).is_err());
    }
}
