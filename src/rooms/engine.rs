//! One room's graph as its single writer sees it: current state, forward extremities, depth, and
//! the events the auth rules may need. The room's Durable Object keeps one of these in memory and
//! rebuilds it from D1 after an eviction; everything it decides is pure and tested here.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{EventId, OwnedEventId, OwnedRoomId, ServerName, UserId};
use serde_json::Value;

use super::auth::{auth_events_for, authorize, AuthError};
use super::builder::{build_event, BuildError, EventTemplate, Placement};
use super::pdu::refs_json;
use super::resolution::{resolve, ResolutionError, StateMap};
use super::state::RoomState;
use super::state_groups::{self, changed_slots, GroupRef};
use super::{Pdu, RoomVersion};
use crate::keys::SigningKey;

#[derive(Debug, PartialEq, Eq)]
pub enum EngineError {
    Build(BuildError),
    Forbidden(AuthError),
    /// Only the first event of a room may be `m.room.create`, and it must come first.
    NotCreated,
    /// The states before an event could not be resolved.
    Resolution(ResolutionError),
}

impl From<BuildError> for EngineError {
    fn from(e: BuildError) -> Self {
        EngineError::Build(e)
    }
}

/// Cloning is cheap (states and events are shared): tests and benchmarks fork a room that way.
#[derive(Clone)]
pub struct RoomEngine {
    version: RoomVersion,
    room_id: Option<OwnedRoomId>,
    /// The current state: the resolution of the states after the forward extremities.
    state: RoomState,
    current: Arc<StateMap>,
    /// Every state event of the room (accepted, soft-failed, outliers): the auth graph that
    /// auth checks and state resolution walk. Messages are never auth events, so keeping only
    /// state events bounds the object's memory by the room's state history, not its timeline.
    known: HashMap<OwnedEventId, Arc<Pdu>>,
    /// The forward extremities with the state after each.
    tips: Vec<Tip>,
    depth: u64,
}

/// A forward extremity and the state after it.
#[derive(Clone, Debug)]
pub struct Tip {
    pub event_id: OwnedEventId,
    pub state: GroupRef,
}

/// What accepting an event changes, decided before anything is written: the room's Durable
/// Object persists it, then commits it here. Nothing changes if it is dropped instead.
#[derive(Debug)]
pub struct Accepted {
    pub pdu: Arc<Pdu>,
    /// Passed the auth rules against the state before it, but not against the current state:
    /// kept for the graph, never shown to clients, not a forward extremity.
    pub soft_failed: bool,
    pub state_before: Arc<StateMap>,
    /// The state groups to store and the one holding the state after the event.
    pub placement: state_groups::Placement,
    /// Slots of the current state that change (`None`: the slot is emptied).
    pub state_changes: Vec<state_groups::SlotChange>,
    tips: Option<Vec<Tip>>,
    current: Arc<StateMap>,
}

impl Accepted {
    /// The forward extremities once the event is committed, if they change.
    pub fn extremities(&self) -> Option<Vec<OwnedEventId>> {
        self.tips
            .as_ref()
            .map(|tips| tips.iter().map(|t| t.event_id.clone()).collect())
    }
}

/// Who signs what this server creates.
pub struct LocalServer<'a> {
    pub name: &'a ServerName,
    pub key: &'a SigningKey,
}

impl RoomEngine {
    /// A room that does not exist yet. For versions before 12 the room id is chosen up front;
    /// from 12 on it is derived from the create event, so `room_id` must be `None`.
    pub fn new(version: RoomVersion, room_id: Option<OwnedRoomId>) -> Self {
        Self {
            version,
            room_id,
            state: RoomState::default(),
            current: Arc::new(StateMap::new()),
            known: HashMap::new(),
            tips: Vec::new(),
            depth: 0,
        }
    }

    pub fn room_id(&self) -> Option<&OwnedRoomId> {
        self.room_id.as_ref()
    }

    pub fn state(&self) -> &RoomState {
        &self.state
    }

    /// The current state by event id.
    pub fn current(&self) -> &Arc<StateMap> {
        &self.current
    }

    pub fn forward_extremities(&self) -> Vec<OwnedEventId> {
        self.tips.iter().map(|t| t.event_id.clone()).collect()
    }

    /// The state after a forward extremity, without reading storage.
    pub fn tip_state(&self, event_id: &EventId) -> Option<&GroupRef> {
        self.tips
            .iter()
            .find(|t| t.event_id == event_id)
            .map(|t| &t.state)
    }

    /// Rebuilds the engine of an existing room from what storage holds: its state events, its
    /// current state, its forward extremities with the state after each, and its depth.
    pub fn restore(
        version: RoomVersion,
        room_id: OwnedRoomId,
        state_events: Vec<Arc<Pdu>>,
        current: StateMap,
        tips: Vec<Tip>,
        depth: u64,
    ) -> Self {
        let mut engine = Self::new(version, Some(room_id));
        for pdu in state_events {
            engine.known.insert(pdu.event_id().to_owned(), pdu);
        }
        engine.set_current(Arc::new(current));
        engine.tips = tips;
        engine.depth = depth;
        engine
    }

    fn set_current(&mut self, current: Arc<StateMap>) {
        let mut state = RoomState::default();
        for id in current.values() {
            if let Some(pdu) = self.known.get(id) {
                state.apply(pdu.clone());
            }
        }
        self.state = state;
        self.current = current;
    }

    pub fn version(&self) -> RoomVersion {
        self.version
    }

    /// The greatest depth of an accepted event.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// Creates, signs and authorises a local event at the tip of the graph and applies it.
    /// Nothing changes when it is refused.
    pub fn create_local(
        &mut self,
        sender: &UserId,
        template: EventTemplate,
        origin_server_ts: u64,
        server: &LocalServer<'_>,
    ) -> Result<Accepted, EngineError> {
        let pdu = self.prepare_local(sender, template, origin_server_ts, server)?;
        let accepted = self.accept_local(pdu);
        self.commit(&accepted);
        Ok(accepted)
    }

    /// Creates, signs and authorises a local event at the tip of the graph without applying
    /// it: the room's Durable Object persists it first and applies it once D1 has it.
    pub fn prepare_local(
        &self,
        sender: &UserId,
        template: EventTemplate,
        origin_server_ts: u64,
        server: &LocalServer<'_>,
    ) -> Result<Arc<Pdu>, EngineError> {
        let is_create = template.kind == "m.room.create";
        if is_create != self.known.is_empty() {
            return Err(EngineError::NotCreated);
        }
        self.creators_kept_out_of_power_levels(&template)?;
        let auth_events = auth_events_for(&template, sender, self.version, |kind, key| {
            self.state.event_id(kind, key)
        })
        .map_err(EngineError::Forbidden)?;
        let pdu = build_event(
            template,
            Placement {
                version: self.version,
                room_id: self.room_id.as_deref(),
                sender,
                prev_events: self.forward_extremities(),
                auth_events,
                depth: self.depth + 1,
                origin_server_ts,
                server_name: server.name,
                key: server.key,
            },
        )?;
        authorize(
            &pdu,
            self.version,
            |id| self.known.get(id).cloned(),
            |kind, key| self.state.get(kind, key).cloned(),
        )
        .map_err(EngineError::Forbidden)?;
        Ok(Arc::new(pdu))
    }

    /// From v12 on, creators hold unlimited power and may not be listed in the power levels'
    /// `users`: such content is refused as bad content (400, as clients are told by every
    /// server), before the auth rules would refuse it as forbidden.
    fn creators_kept_out_of_power_levels(
        &self,
        template: &EventTemplate,
    ) -> Result<(), EngineError> {
        if template.kind != "m.room.power_levels"
            || !self
                .version
                .rules()
                .authorization
                .explicitly_privilege_room_creators
        {
            return Ok(());
        }
        let Some(create) = self.state.get(&StateEventType::RoomCreate, "") else {
            return Ok(());
        };
        let content: Value = serde_json::from_str(create.content().get()).unwrap_or_default();
        let creators = std::iter::once(create.sender().as_str()).chain(
            content["additional_creators"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        );
        let users = &template.content["users"];
        if let Some(creator) = creators.into_iter().find(|c| users.get(*c).is_some()) {
            return Err(EngineError::Build(BuildError::BadContent(format!(
                "{creator} is a creator of this room: creators are not listed in `users`"
            ))));
        }
        Ok(())
    }

    /// What a local event from `prepare_local` changes: it builds on every forward extremity,
    /// so the state before it is the current state and it becomes the only extremity.
    pub fn accept_local(&self, pdu: Arc<Pdu>) -> Accepted {
        let before = self.current.clone();
        let after = state_groups::after(&before, &pdu);
        let base = match self.tips.as_slice() {
            [only] => Some(&only.state),
            _ => None,
        };
        let placement = state_groups::place(&pdu, base, &before, &after);
        let state_changes = pdu
            .state_key()
            .map(|key| {
                vec![(
                    (pdu.kind().to_string().into(), key.to_owned()),
                    Some(pdu.event_id().to_owned()),
                )]
            })
            .unwrap_or_default();
        Accepted {
            tips: Some(vec![Tip {
                event_id: pdu.event_id().to_owned(),
                state: placement.after.clone(),
            }]),
            pdu,
            soft_failed: false,
            state_before: before,
            placement,
            state_changes,
            current: after,
        }
    }

    /// An unsigned event at the tip of the room for another server's user to sign
    /// (`make_join` and `make_leave`): what `prepare_local` builds, minus hashes and signature.
    pub fn template_for(
        &self,
        sender: &UserId,
        template: EventTemplate,
        origin_server_ts: u64,
    ) -> Result<serde_json::Value, EngineError> {
        let room_id = self.room_id.as_ref().ok_or(EngineError::NotCreated)?;
        let auth_events = auth_events_for(&template, sender, self.version, |kind, key| {
            self.state.event_id(kind, key)
        })
        .map_err(EngineError::Forbidden)?;
        let mut event = serde_json::json!({
            "room_id": room_id,
            "sender": sender,
            "type": template.kind,
            "content": template.content,
            "origin_server_ts": origin_server_ts,
            "prev_events": refs_json(self.version, &self.forward_extremities()),
            "auth_events": refs_json(self.version, &auth_events),
            "depth": self.depth + 1,
        });
        if let Some(state_key) = template.state_key {
            event["state_key"] = serde_json::json!(state_key);
        }
        Ok(event)
    }

    /// Checks an event against its auth events (all of which must be known) and against the
    /// current state: what a join we send must pass in the state the resident server gave us.
    pub fn check_remote(&self, pdu: &Pdu) -> Result<(), EngineError> {
        self.require_auth_events(pdu)?;
        authorize(
            pdu,
            self.version,
            |id| self.known.get(id).cloned(),
            |kind, key| self.state.get(kind, key).cloned(),
        )
        .map_err(EngineError::Forbidden)
    }

    fn require_auth_events(&self, pdu: &Pdu) -> Result<(), EngineError> {
        if self.known.is_empty() {
            return Err(EngineError::NotCreated);
        }
        match pdu
            .auth_events()
            .iter()
            .find(|id| !self.known.contains_key(*id))
        {
            Some(missing) => Err(EngineError::Forbidden(AuthError(format!(
                "unknown auth event {missing}"
            )))),
            None => Ok(()),
        }
    }

    /// The incoming-event pipeline's decisions for an event of another server (DESIGN.md
    /// invariant 2), given the states after those of its `prev_events` we hold:
    /// 1. auth against its own auth events, all of which must be known;
    /// 2. auth against the state before it (its predecessors' states, resolved if several);
    /// 3. soft-fail if it does not pass against the current state (resolved with its own);
    /// 4. otherwise it replaces its predecessors among the forward extremities, and the current
    ///    state becomes the resolution of the states after them.
    ///
    /// With no predecessor known (a gap we could not fill), the current state stands in for
    /// the state before it.
    pub fn accept_remote(
        &self,
        pdu: Arc<Pdu>,
        prevs: Vec<GroupRef>,
    ) -> Result<Accepted, EngineError> {
        self.require_auth_events(&pdu)?;
        let fetch = |id: &EventId| {
            if id == pdu.event_id() {
                Some(pdu.clone())
            } else {
                self.known.get(id).cloned()
            }
        };
        let before = match prevs.as_slice() {
            [] => self.current.clone(),
            [only] => only.state.clone(),
            many => {
                let states: Vec<&StateMap> = many.iter().map(|g| &*g.state).collect();
                Arc::new(resolve(self.version, &states, fetch).map_err(EngineError::Resolution)?)
            }
        };
        self.authorize_in(&pdu, &before)?;
        let after = state_groups::after(&before, &pdu);
        let base = match prevs.as_slice() {
            [only] => Some(only),
            _ => None,
        };
        let placement = state_groups::place(&pdu, base, &before, &after);
        let soft_failed = if same_state(&before, &self.current) {
            false
        } else {
            let current = resolve(self.version, &[&self.current, &before], fetch)
                .map_err(EngineError::Resolution)?;
            self.authorize_in(&pdu, &current).is_err()
        };
        if soft_failed {
            return Ok(Accepted {
                pdu,
                soft_failed,
                state_before: before,
                placement,
                state_changes: Vec::new(),
                tips: None,
                current: self.current.clone(),
            });
        }
        let mut tips: Vec<Tip> = self
            .tips
            .iter()
            .filter(|t| !pdu.prev_events().contains(&t.event_id))
            .cloned()
            .collect();
        tips.push(Tip {
            event_id: pdu.event_id().to_owned(),
            state: placement.after.clone(),
        });
        let current = match tips.as_slice() {
            [only] => only.state.state.clone(),
            many => {
                let states: Vec<&StateMap> = many.iter().map(|t| &*t.state.state).collect();
                Arc::new(resolve(self.version, &states, fetch).map_err(EngineError::Resolution)?)
            }
        };
        let state_changes = changed_slots(&self.current, &current);
        Ok(Accepted {
            pdu,
            soft_failed,
            state_before: before,
            placement,
            state_changes,
            tips: Some(tips),
            current,
        })
    }

    /// The auth rules for `pdu` against its auth events and against `state`.
    fn authorize_in(&self, pdu: &Arc<Pdu>, state: &StateMap) -> Result<(), EngineError> {
        authorize(
            &**pdu,
            self.version,
            |id| self.known.get(id).cloned(),
            |kind, key| {
                state
                    .get(&(kind.clone(), key.to_owned()))
                    .and_then(|id| self.known.get(id).cloned())
            },
        )
        .map_err(EngineError::Forbidden)
    }

    /// An event, if it is a state event the room holds.
    pub fn known(&self, id: &ruma::EventId) -> Option<&Arc<Pdu>> {
        self.known.get(id)
    }

    /// The state events of a state map, for answers that carry whole events.
    pub fn events_of(&self, state: &StateMap) -> Vec<Arc<Pdu>> {
        state
            .values()
            .filter_map(|id| self.known.get(id).cloned())
            .collect()
    }

    /// Adds events storage now holds as outliers (a fetched auth chain) to the auth graph.
    pub fn add_outliers(&mut self, pdus: Vec<Arc<Pdu>>) {
        for pdu in pdus {
            if pdu.state_key().is_some() {
                self.known.insert(pdu.event_id().to_owned(), pdu);
            }
        }
    }

    /// Applies what `accept_local`/`accept_remote` decided, once storage has it.
    pub fn commit(&mut self, accepted: &Accepted) {
        let pdu = &accepted.pdu;
        if self.room_id.is_none() {
            self.room_id = Some(pdu.room_id());
        }
        if pdu.state_key().is_some() {
            self.known.insert(pdu.event_id().to_owned(), pdu.clone());
        }
        if let Some(tips) = &accepted.tips {
            self.depth = self.depth.max(pdu.depth());
            self.tips = tips.clone();
            if !Arc::ptr_eq(&self.current, &accepted.current) {
                self.set_current(accepted.current.clone());
            }
        }
    }
}

/// Whether two states are the same, cheaply when they are the same allocation.
fn same_state(a: &Arc<StateMap>, b: &Arc<StateMap>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}
