//! Sync filters (spec: "Filtering"): which rooms, which events, how many. Parsed once from the
//! inline JSON or the stored filter; unknown fields are ignored, wrong types are `M_BAD_JSON`.

use crate::glob::matches as glob;
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

    pub fn limit_or(&self, default: u64, max: u64) -> u64 {
        self.limit.unwrap_or(default).clamp(1, max)
    }
}

impl RoomFilter {
    pub fn allows_room(&self, room_id: &str) -> bool {
        room_allowed(self.rooms.as_deref(), &self.not_rooms, room_id)
    }
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
        assert!(f.room.state.lazy_load_members);
        assert!(
            serde_json::from_value::<Filter>(json!({"room": {"timeline": {"limit": "x"}}}))
                .is_err()
        );
    }
}
