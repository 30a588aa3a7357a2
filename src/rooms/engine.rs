//! One room's graph as its single writer sees it: current state, forward extremities, depth, and
//! the events the auth rules may need. The room's Durable Object keeps one of these in memory and
//! rebuilds it from D1 after an eviction; everything it decides is pure and tested here.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomId, ServerName, UserId};

use super::auth::{auth_events_for, authorize, AuthError};
use super::builder::{build_event, BuildError, EventTemplate, Placement};
use super::state::RoomState;
use super::{Pdu, RoomVersion};
use crate::keys::SigningKey;

#[derive(Debug, PartialEq, Eq)]
pub enum EngineError {
    Build(BuildError),
    Forbidden(AuthError),
    /// Only the first event of a room may be `m.room.create`, and it must come first.
    NotCreated,
}

impl From<BuildError> for EngineError {
    fn from(e: BuildError) -> Self {
        EngineError::Build(e)
    }
}

pub struct RoomEngine {
    version: RoomVersion,
    room_id: Option<OwnedRoomId>,
    state: RoomState,
    known: HashMap<OwnedEventId, Arc<Pdu>>,
    forward_extremities: Vec<OwnedEventId>,
    depth: u64,
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
            known: HashMap::new(),
            forward_extremities: Vec::new(),
            depth: 0,
        }
    }

    pub fn room_id(&self) -> Option<&OwnedRoomId> {
        self.room_id.as_ref()
    }

    pub fn state(&self) -> &RoomState {
        &self.state
    }

    pub fn forward_extremities(&self) -> &[OwnedEventId] {
        &self.forward_extremities
    }

    /// Rebuilds the engine of an existing room from what storage holds: its current state and
    /// its forward extremities with their greatest depth.
    pub fn restore(
        version: RoomVersion,
        room_id: OwnedRoomId,
        state: Vec<Arc<Pdu>>,
        forward_extremities: Vec<OwnedEventId>,
        depth: u64,
    ) -> Self {
        let mut engine = Self::new(version, Some(room_id));
        for pdu in state {
            engine.known.insert(pdu.event_id().to_owned(), pdu.clone());
            engine.state.apply(pdu);
        }
        engine.forward_extremities = forward_extremities;
        engine.depth = depth;
        engine
    }

    pub fn version(&self) -> RoomVersion {
        self.version
    }

    /// Creates, signs and authorises a local event at the tip of the graph and applies it.
    /// Nothing changes when it is refused.
    pub fn create_local(
        &mut self,
        sender: &UserId,
        template: EventTemplate,
        origin_server_ts: u64,
        server: &LocalServer<'_>,
    ) -> Result<Arc<Pdu>, EngineError> {
        let pdu = self.prepare_local(sender, template, origin_server_ts, server)?;
        self.apply(pdu.clone());
        Ok(pdu)
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
                prev_events: self.forward_extremities.clone(),
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
            "prev_events": self.forward_extremities,
            "auth_events": auth_events,
            "depth": self.depth + 1,
        });
        if let Some(state_key) = template.state_key {
            event["state_key"] = serde_json::json!(state_key);
        }
        Ok(event)
    }

    /// Checks an event from another server against its auth events (all of which must be known)
    /// and against the current state. Forks are not resolved yet: the state before a remote
    /// event is taken to be the current state, which holds while the room stays linear.
    pub fn check_remote(&self, pdu: &Pdu) -> Result<(), EngineError> {
        if self.known.is_empty() {
            return Err(EngineError::NotCreated);
        }
        if let Some(missing) = pdu
            .auth_events()
            .iter()
            .find(|id| !self.known.contains_key(*id))
        {
            return Err(EngineError::Forbidden(AuthError(format!(
                "unknown auth event {missing}"
            ))));
        }
        authorize(
            pdu,
            self.version,
            |id| self.known.get(id).cloned(),
            |kind, key| self.state.get(kind, key).cloned(),
        )
        .map_err(EngineError::Forbidden)
    }

    /// The event a state slot holds now, if any.
    pub fn known(&self, id: &ruma::EventId) -> Option<&Arc<Pdu>> {
        self.known.get(id)
    }

    /// Records an accepted event as the new single forward extremity.
    pub fn apply(&mut self, pdu: Arc<Pdu>) {
        if self.room_id.is_none() {
            self.room_id = Some(pdu.room_id());
        }
        self.depth = self.depth.max(pdu.depth());
        // The event replaces the extremities it builds on; a remote event built on an older
        // event forks the room and joins the set.
        self.forward_extremities
            .retain(|e| !pdu.prev_events().contains(e));
        self.forward_extremities.push(pdu.event_id().to_owned());
        // Only state events can be auth events: keeping messages would grow the object's
        // memory with the room's history.
        if pdu.state_key().is_some() {
            self.known.insert(pdu.event_id().to_owned(), pdu.clone());
        }
        self.state.apply(pdu);
    }
}
