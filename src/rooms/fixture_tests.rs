//! Auth rules driven by ruma's state-resolution fixtures (`tests/fixtures/state-res`): every
//! event of every branch is authorised by our `authorize` against the state its branch built,
//! cites exactly the auth events our `auth_events_for` selects, and the events that make two
//! branches conflict are refused against the other branch's state.

use std::collections::HashMap;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;

use super::auth::{auth_events_for, authorize};
use super::builder::EventTemplate;
use super::RoomVersion;

/// A fixture PDU: the fields the auth rules read, with the fixture's readable event id.
#[derive(Clone, Debug, Deserialize)]
struct FixtureEvent {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
}

impl ruma::state_res::Event for FixtureEvent {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        Some(&self.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

fn fixture(name: &str) -> Vec<FixtureEvent> {
    let path = format!(
        "{}/tests/fixtures/state-res/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A branch of a room as one server sees it: every event seen, and the state they built.
#[derive(Clone, Default)]
struct Branch {
    known: HashMap<OwnedEventId, FixtureEvent>,
    state: HashMap<(StateEventType, String), FixtureEvent>,
}

impl Branch {
    fn check(&self, event: &FixtureEvent) -> Result<(), String> {
        authorize(
            event,
            RoomVersion::V10,
            |id: &EventId| self.known.get(id).cloned(),
            |kind: &StateEventType, key: &str| {
                self.state.get(&(kind.clone(), key.to_owned())).cloned()
            },
        )
        .map_err(|e| e.to_string())
    }

    fn selected_auth_events(&self, event: &FixtureEvent) -> Vec<OwnedEventId> {
        let template = EventTemplate {
            kind: event.kind.to_string(),
            state_key: event.state_key.clone(),
            content: serde_json::from_str(event.content.get()).unwrap(),
        };
        let mut ids = auth_events_for(&template, &event.sender, RoomVersion::V10, |kind, key| {
            self.state
                .get(&(kind.clone(), key.to_owned()))
                .map(|e| e.event_id.clone())
        })
        .unwrap();
        ids.sort();
        ids
    }

    /// Authorises and applies each event in order; panics naming the first that fails.
    fn replay(mut self, events: &[FixtureEvent]) -> Self {
        for event in events {
            if let Err(e) = self.check(event) {
                panic!("{} refused: {e}", event.event_id);
            }
            let mut cited = event.auth_events.clone();
            cited.sort();
            assert_eq!(
                self.selected_auth_events(event),
                cited,
                "auth events of {}",
                event.event_id
            );
            self.known.insert(event.event_id.clone(), event.clone());
            if let Some(key) = &event.state_key {
                self.state
                    .insert((event.kind.to_string().into(), key.clone()), event.clone());
            }
        }
        self
    }
}

#[test]
fn bootstrap_histories_are_authorised_with_the_auth_events_we_would_select() {
    Branch::default().replay(&fixture("bootstrap-private-chat"));
    Branch::default().replay(&fixture("bootstrap-public-chat"));
}

/// Each conflict scenario: (common prefix files, branch A, branch B).
const SCENARIOS: [(&[&str], &str, &str); 6] = [
    (&[], "ban-vs-power-levels-alice", "ban-vs-power-levels-bob"),
    (
        &[],
        "topic-vs-power-levels-alice",
        "topic-vs-power-levels-bob",
    ),
    (
        &[],
        "power-levels-admin-vs-mod-alice",
        "power-levels-admin-vs-mod-bob",
    ),
    (
        &["topic-vs-ban-common"],
        "topic-vs-ban-alice",
        "topic-vs-ban-bob",
    ),
    (
        &["join-rules-vs-join-common"],
        "join-rules-vs-join-alice",
        "join-rules-vs-join-ella",
    ),
    (&[], "concurrent-joins-charlie", "concurrent-joins-ella"),
];

fn common(prefix: &[&str]) -> Branch {
    let mut branch = Branch::default().replay(&fixture("bootstrap-public-chat"));
    for name in prefix {
        branch = branch.replay(&fixture(name));
    }
    branch
}

#[test]
fn every_branch_of_every_conflict_is_authorised_on_its_own() {
    for (prefix, a, b) in SCENARIOS {
        let base = common(prefix);
        base.clone().replay(&fixture(a));
        base.replay(&fixture(b));
    }
}

/// The first event of `late` checked against the state after `early`.
fn across(prefix: &[&str], early: &str, late: &str) -> Result<(), String> {
    let after_early = common(prefix).replay(&fixture(early));
    after_early.check(&fixture(late)[0])
}

#[test]
fn a_banned_user_cannot_set_the_topic_on_the_branch_that_banned_him() {
    let refused = across(
        &["topic-vs-ban-common"],
        "topic-vs-ban-alice",
        "topic-vs-ban-bob",
    );
    assert!(refused.is_err(), "bob's topic after his ban was accepted");
}

#[test]
fn a_join_to_a_room_that_became_invite_only_is_refused() {
    let refused = across(
        &["join-rules-vs-join-common"],
        "join-rules-vs-join-alice",
        "join-rules-vs-join-ella",
    );
    assert!(
        refused.is_err(),
        "ella's join after the room became invite-only was accepted"
    );
}

#[test]
fn a_banned_moderator_cannot_change_power_levels() {
    let refused = across(&[], "ban-vs-power-levels-alice", "ban-vs-power-levels-bob");
    assert!(
        refused.is_err(),
        "bob's power levels after his ban were accepted"
    );
}

#[test]
fn concurrent_joins_to_a_public_room_do_not_conflict() {
    // Both joins are valid whichever is seen first: a public room lets anyone join.
    assert_eq!(
        across(&[], "concurrent-joins-charlie", "concurrent-joins-ella"),
        Ok(())
    );
}
