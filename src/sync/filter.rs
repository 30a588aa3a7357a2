//! Sync filters (spec: "Filtering"): which rooms, which events, how many. Parsed once from the
//! inline JSON or the stored filter; unknown fields are ignored, wrong types are `M_BAD_JSON`.

use crate::glob::matches as glob;
use crate::storage::events::EventRow;
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    pub limit: Option<u64>,
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    /// Timeline filters only: counts per thread in `unread_thread_notifications`.
    pub unread_thread_notifications: bool,
    /// `true`: only events whose content has a `url`; `false`: only events without one.
    pub contains_url: Option<bool>,
    /// MSC3874: only events relating to another with one of these `rel_type`s.
    #[serde(rename = "org.matrix.msc3874.rel_types")]
    pub rel_types: Option<Vec<String>>,
    /// MSC3874: no events relating to another with one of these `rel_type`s.
    #[serde(rename = "org.matrix.msc3874.not_rel_types")]
    pub not_rel_types: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoomFilter {
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub include_leave: bool,
    pub timeline: EventFilter,
    pub state: EventFilter,
    pub ephemeral: EventFilter,
    pub account_data: EventFilter,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filter {
    pub room: RoomFilter,
    pub account_data: EventFilter,
    pub presence: EventFilter,
}

/// `not_rooms` wins over `rooms`; no `rooms` list means every room.
fn room_allowed(rooms: Option<&[String]>, not_rooms: &[String], room_id: &str) -> bool {
    !not_rooms.iter().any(|r| r == room_id) && rooms.is_none_or(|r| r.iter().any(|x| x == room_id))
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|p| glob(p, value))
}

impl EventFilter {
    /// Whether an event of `kind` from `sender` passes. `not_*` lists win over allow lists.
    pub fn allows(&self, kind: &str, sender: &str) -> bool {
        !listed(&self.not_types, kind)
            && !listed(&self.not_senders, sender)
            && self.types.as_deref().is_none_or(|t| listed(t, kind))
            && self
                .senders
                .as_deref()
                .is_none_or(|s| s.iter().any(|x| x == sender))
    }

    pub fn allows_room(&self, room_id: &str) -> bool {
        room_allowed(self.rooms.as_deref(), &self.not_rooms, room_id)
    }

    /// Whether a stored event passes: type and sender, then what only its content or its
    /// relation tells (the PDU is read only when `contains_url` asks about the content).
    pub fn allows_event(&self, row: &EventRow) -> bool {
        if !self.allows(&row.kind, &row.sender) {
            return false;
        }
        let rel_type = row.rel_type.as_deref();
        if rel_type.is_some_and(|r| self.not_rel_types.iter().any(|x| x == r)) {
            return false;
        }
        if let Some(wanted) = &self.rel_types {
            if !rel_type.is_some_and(|r| wanted.iter().any(|x| x == r)) {
                return false;
            }
        }
        match self.contains_url {
            None => true,
            Some(wanted) => has_url(&row.pdu) == wanted,
        }
    }

    /// The room and user ids the filter names must be ids (spec: a filter naming something
    /// else is refused with 400).
    fn check_ids(&self) -> Result<(), String> {
        let rooms = self.rooms.iter().flatten().chain(&self.not_rooms);
        for room in rooms {
            <&ruma::RoomId>::try_from(room.as_str())
                .map_err(|_| format!("not a room id: {room}"))?;
        }
        let senders = self.senders.iter().flatten().chain(&self.not_senders);
        for sender in senders {
            <&ruma::UserId>::try_from(sender.as_str())
                .map_err(|_| format!("not a user id: {sender}"))?;
        }
        Ok(())
    }

    /// The filter's `limit`, `default` when unset, at most `max`. Zero stays zero: a sync
    /// asking for no timeline events gets none (the spec asks for more than zero, but clients
    /// and Synapse use 0 to get only the state of a room).
    pub fn limit_or(&self, default: u64, max: u64) -> u64 {
        self.limit.unwrap_or(default).min(max)
    }
}

impl RoomFilter {
    pub fn allows_room(&self, room_id: &str) -> bool {
        room_allowed(self.rooms.as_deref(), &self.not_rooms, room_id)
    }
}

impl Filter {
    /// Every room and user id the filter names is well formed: the `M_INVALID_PARAM` message
    /// otherwise.
    pub fn check_ids(&self) -> Result<(), String> {
        let room = &self.room;
        let top = EventFilter {
            rooms: room.rooms.clone(),
            not_rooms: room.not_rooms.clone(),
            ..EventFilter::default()
        };
        for f in [
            &top,
            &room.timeline,
            &room.state,
            &room.ephemeral,
            &room.account_data,
            &self.account_data,
            &self.presence,
        ] {
            f.check_ids()?;
        }
        Ok(())
    }
}

/// Whether a PDU's content has a `url` string (an image, a file: what `contains_url` asks).
fn has_url(pdu: &str) -> bool {
    #[derive(Deserialize)]
    struct Pdu {
        #[serde(default)]
        content: Content,
    }
    #[derive(Deserialize, Default)]
    struct Content {
        url: Option<serde_json::Value>,
    }
    serde_json::from_str::<Pdu>(pdu)
        .is_ok_and(|p| p.content.url.as_ref().is_some_and(|u| u.is_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_senders_and_rooms_filter_with_wildcards() {
        let f: EventFilter = serde_json::from_value(json!({
            "types": ["m.room.*"], "not_types": ["m.room.member"], "not_senders": ["@spam:x"]
        }))
        .unwrap();
        assert!(f.allows("m.room.message", "@a:x"));
        assert!(!f.allows("m.room.member", "@a:x"));
        assert!(!f.allows("m.reaction", "@a:x"));
        assert!(!f.allows("m.room.message", "@spam:x"));
    }

    #[test]
    fn room_lists_and_limits() {
        let f: Filter = serde_json::from_value(json!({
            "room": {"rooms": ["!a:x"], "timeline": {"limit": 500}, "state": {"lazy_load_members": true}},
            "unknown": 1
        }))
        .unwrap();
        assert!(f.room.allows_room("!a:x"));
        assert!(!f.room.allows_room("!b:x"));
        assert_eq!(f.room.timeline.limit_or(10, 100), 100);
        assert_eq!(f.room.state.limit_or(10, 100), 10);
        let none: EventFilter = serde_json::from_value(json!({"limit": 0})).unwrap();
        assert_eq!(none.limit_or(10, 100), 0);
        assert!(f.room.state.lazy_load_members);
        assert!(
            serde_json::from_value::<Filter>(json!({"room": {"timeline": {"limit": "x"}}}))
                .is_err()
        );
    }

    #[test]
    fn ids_in_filters_must_be_ids() {
        let check = |v: serde_json::Value| serde_json::from_value::<Filter>(v).unwrap().check_ids();
        assert!(
            check(json!({"room": {"rooms": ["!a:x"], "timeline": {"senders": ["@a:x"]}}})).is_ok()
        );
        assert!(check(json!({"room": {"timeline": {"rooms": ["not_a_room_id"]}}})).is_err());
        assert!(check(json!({"room": {"timeline": {"senders": ["not_a_sender_id"]}}})).is_err());
        assert!(check(json!({"room": {"not_rooms": ["x"]}})).is_err());
        assert!(check(json!({"presence": {"not_senders": ["x"]}})).is_err());
    }

    fn row(kind: &str, pdu: serde_json::Value, rel_type: Option<&str>) -> EventRow {
        serde_json::from_value(json!({
            "stream_ordering": 1, "event_id": "$e", "room_id": "!r:x", "type": kind,
            "sender": "@a:x", "pdu": pdu.to_string(), "history_visibility": "shared",
            "rel_type": rel_type,
        }))
        .unwrap()
    }

    #[test]
    fn contains_url_and_relation_types() {
        let image = row(
            "m.room.message",
            json!({"content": {"url": "mxc://x/y"}}),
            None,
        );
        let text = row("m.room.message", json!({"content": {"body": "hi"}}), None);
        let thread = row("m.room.message", json!({"content": {}}), Some("m.thread"));
        let with_url: EventFilter = serde_json::from_value(json!({"contains_url": true})).unwrap();
        assert!(with_url.allows_event(&image) && !with_url.allows_event(&text));
        let without: EventFilter = serde_json::from_value(json!({"contains_url": false})).unwrap();
        assert!(!without.allows_event(&image) && without.allows_event(&text));
        let threads: EventFilter =
            serde_json::from_value(json!({"org.matrix.msc3874.rel_types": ["m.thread"]})).unwrap();
        assert!(threads.allows_event(&thread) && !threads.allows_event(&text));
        let no_threads: EventFilter =
            serde_json::from_value(json!({"org.matrix.msc3874.not_rel_types": ["m.thread"]}))
                .unwrap();
        assert!(!no_threads.allows_event(&thread) && no_threads.allows_event(&text));
    }
}
