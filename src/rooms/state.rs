//! A room state: for each `(event type, state key)`, the event that holds it.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::OwnedEventId;

use super::Pdu;

#[derive(Clone, Debug, Default)]
pub struct RoomState {
    entries: HashMap<(StateEventType, String), Arc<Pdu>>,
}

impl RoomState {
    pub fn get(&self, kind: &StateEventType, state_key: &str) -> Option<&Arc<Pdu>> {
        self.entries.get(&(kind.clone(), state_key.to_owned()))
    }

    pub fn event_id(&self, kind: &StateEventType, state_key: &str) -> Option<OwnedEventId> {
        self.get(kind, state_key)
            .map(|pdu| pdu.event_id().to_owned())
    }

    /// Makes `pdu` the current holder of its state slot; message events change nothing.
    pub fn apply(&mut self, pdu: Arc<Pdu>) {
        if let Some(state_key) = pdu.state_key() {
            let key = (pdu.kind().to_string().into(), state_key.to_owned());
            self.entries.insert(key, pdu);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn events(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        self.entries.values()
    }
}
