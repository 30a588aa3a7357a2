//! Authorisation of events with ruma's implementation of the spec's auth rules.
//!
//! Two entry points, used for local and federated events alike:
//! - `auth_events_for`: which state events a new event must cite in `auth_events`;
//! - `authorize`: the state-independent checks (against the event's own `auth_events`) and the
//!   state-dependent checks (against a given state: the state before the event, or the current
//!   state for soft-failure).

use ruma::events::StateEventType;
use ruma::state_res::{
    auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules,
    Event,
};
use ruma::{EventId, OwnedEventId, UserId};
use serde_json::value::to_raw_value;

use super::builder::EventTemplate;
use super::RoomVersion;

/// Why an event was refused. The text is ruma's description of the failed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event not authorised: {}", self.0)
    }
}

/// The auth events a new event must cite, picked from a state per the spec's auth events
/// selection (create event only up to v11; power levels; sender's and target's membership; join
/// rules for joins, invites and knocks; third-party invite; restricted-join authoriser).
/// `state_event` looks up the event id holding a state slot.
pub fn auth_events_for(
    template: &EventTemplate,
    sender: &UserId,
    version: RoomVersion,
    state_event: impl Fn(&StateEventType, &str) -> Option<OwnedEventId>,
) -> Result<Vec<OwnedEventId>, AuthError> {
    let content = to_raw_value(&template.content).map_err(|e| AuthError(e.to_string()))?;
    let types = auth_types_for_event(
        &template.kind.as_str().into(),
        sender,
        template.state_key.as_deref(),
        &content,
        &version.rules().authorization,
    )
    .map_err(AuthError)?;
    Ok(types
        .iter()
        .filter_map(|(kind, key)| state_event(kind, key))
        .collect())
}

/// Checks an event against its own auth events (`fetch_event`) and against a state
/// (`fetch_state`: the state before the event, or the current state for soft-failure). Generic
/// over the event type so that local PDUs, federated PDUs and test fixtures all take this path.
pub fn authorize<'a, T, E>(
    event: &'a T,
    version: RoomVersion,
    fetch_event: impl Fn(&EventId) -> Option<E>,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<E>,
) -> Result<(), AuthError>
where
    &'a T: Event,
    E: Event,
{
    let rules = version.rules().authorization;
    check_state_independent_auth_rules(&rules, event, fetch_event).map_err(AuthError)?;
    check_state_dependent_auth_rules(&rules, event, fetch_state).map_err(AuthError)
}
