//! Per-connection state: what the client of one `(user, device, conn_id)` already holds, so an
//! incremental answer carries only what changed (MSC4186 "Connections").
//!
//! For each room ever sent on the connection it keeps how far the client has it: `Live` (up to
//! the stream position of the `pos` it comes back with: the room has stayed in a list window
//! or subscription, so every change was sent) or `Until(n)` (it left every window when the
//! stream was at `n`; changes since then are owed when it comes back), and the fingerprint of
//! the `required_state` it was sent with. A `pos` is `<row id><stream token>`: the row of
//! `sliding_sync_positions` holding this state, and the stream positions the answer was built
//! up to. A new row is written only when this state changes, never for new events in rooms
//! that stay in view, so a steady connection costs no D1 write per request.
//!
//! It also keeps each list's window as a set of rooms with the list's room count
//! (`ListSeen`): an incremental answer then ranks only those rooms and the ones with events
//! since its `pos` (`storage::sliding_sync::partial_room_list_sql`) instead of all of the
//! user's rooms. The order inside a window is not kept, so new events that only reorder it
//! still write nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::http::{ErrorCode, MatrixError};
use crate::sync::token::StreamPosition;

/// How far the client has a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Live,
    Until(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRoom {
    pub held: Held,
    /// `RequiredState::fingerprint` of the config the room was last sent with.
    pub required_state: String,
}

/// One list's window as an answer left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListSeen {
    /// `list::window_key` of the list's config: what its window depends on besides the rooms.
    pub key: String,
    /// How many rooms passed its filters.
    pub count: u64,
    /// The rooms in its window.
    pub rooms: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    pub rooms: BTreeMap<String, SentRoom>,
    pub lists: BTreeMap<String, ListSeen>,
    /// Set in the stored row when a change no stream records (a room forgotten) may have
    /// changed the lists: the next answer ranks every room again.
    pub stale: bool,
}

/// A parsed `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub row: u64,
    pub stream: StreamPosition,
}

impl Pos {
    pub fn parse(text: &str) -> Option<Pos> {
        let split = text.find('s')?;
        let row = text[..split].parse().ok()?;
        let stream = StreamPosition::parse(&text[split..])?;
        Some(Pos { row, stream })
    }

    pub fn format(row: u64, stream: &StreamPosition) -> String {
        format!("{row}{stream}")
    }
}

/// `M_UNKNOWN_POS`: the client must start the connection again.
pub fn unknown_pos() -> MatrixError {
    MatrixError::new(400, ErrorCode::UnknownPos, "Unknown or expired pos")
}

impl Connection {
    /// The stored form: `{"fp": [fingerprints], "rooms": {room: [held, fp index]},
    /// "lists": {name: [key, count, [room, ...]]}}`, with `held` null for live, and `"stale": 1`
    /// when set. Fingerprints are shared: most rooms have the same config. `storage::
    /// sliding_sync` reads `lists` and `stale` in SQL.
    pub fn to_json(&self) -> String {
        let mut fingerprints: Vec<&str> = Vec::new();
        let mut rooms = serde_json::Map::new();
        for (room_id, sent) in &self.rooms {
            let index = match fingerprints.iter().position(|f| *f == sent.required_state) {
                Some(i) => i,
                None => {
                    fingerprints.push(&sent.required_state);
                    fingerprints.len() - 1
                }
            };
            let held = match sent.held {
                Held::Live => Value::Null,
                Held::Until(n) => json!(n),
            };
            rooms.insert(room_id.clone(), json!([held, index]));
        }
        let lists: serde_json::Map<String, Value> = self
            .lists
            .iter()
            .map(|(name, l)| (name.clone(), json!([l.key, l.count, l.rooms])))
            .collect();
        let mut stored = json!({ "fp": fingerprints, "rooms": rooms, "lists": lists });
        if self.stale {
            stored["stale"] = json!(1);
        }
        stored.to_string()
    }

    /// A stored state that does not parse is treated as expired.
    pub fn from_json(text: &str) -> Result<Connection, MatrixError> {
        let value: Value = serde_json::from_str(text).map_err(|_| unknown_pos())?;
        let fingerprints: Vec<String> =
            serde_json::from_value(value["fp"].clone()).map_err(|_| unknown_pos())?;
        let mut connection = Connection::default();
        for (room_id, entry) in value["rooms"].as_object().ok_or_else(unknown_pos)? {
            let held = match entry[0].as_u64() {
                Some(n) => Held::Until(n),
                None => Held::Live,
            };
            let required_state = entry[1]
                .as_u64()
                .and_then(|i| fingerprints.get(i as usize))
                .ok_or_else(unknown_pos)?
                .clone();
            connection.rooms.insert(
                room_id.clone(),
                SentRoom {
                    held,
                    required_state,
                },
            );
        }
        // Rows stored before lists were kept have none: their first answer ranks every room.
        if let Some(lists) = value.get("lists").and_then(Value::as_object) {
            for (name, list) in lists {
                let seen: (String, u64, BTreeSet<String>) =
                    serde_json::from_value(list.clone()).map_err(|_| unknown_pos())?;
                connection.lists.insert(
                    name.clone(),
                    ListSeen {
                        key: seen.0,
                        count: seen.1,
                        rooms: seen.2,
                    },
                );
            }
        }
        connection.stale = value.get("stale").is_some_and(|s| s != &Value::Null);
        Ok(connection)
    }

    /// The state after an answer: the rooms it sent and the rooms still in view are live; a
    /// room that was live and is no longer in view is held up to `from` (the position this
    /// answer started from: nothing later was sent for it). `lists` are the answer's windows.
    pub fn advance(
        &self,
        from: u64,
        in_view: &BTreeMap<String, String>,
        sent: &BTreeMap<String, String>,
        lists: BTreeMap<String, ListSeen>,
    ) -> Connection {
        let mut next = self.clone();
        next.lists = lists;
        next.stale = false;
        for (room_id, state) in next.rooms.iter_mut() {
            if !in_view.contains_key(room_id) && state.held == Held::Live {
                state.held = Held::Until(from);
            }
        }
        for (room_id, fingerprint) in sent {
            next.rooms.insert(
                room_id.clone(),
                SentRoom {
                    held: Held::Live,
                    required_state: fingerprint.clone(),
                },
            );
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_round_trips_and_rejects_garbage() {
        let stream = StreamPosition {
            events: 9,
            ..StreamPosition::default()
        };
        let text = Pos::format(42, &stream);
        assert_eq!(Pos::parse(&text), Some(Pos { row: 42, stream }));
        for bad in ["", "s1", "x1s2", "12", "3s_", "-1s1"] {
            assert_eq!(Pos::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rooms_leaving_view_are_held_where_the_answer_started() {
        let fp = "[]".to_owned();
        let view = |ids: &[&str]| -> BTreeMap<String, String> {
            ids.iter().map(|i| (i.to_string(), fp.clone())).collect()
        };
        let none = BTreeMap::new;
        let first =
            Connection::default().advance(0, &view(&["!a", "!b"]), &view(&["!a", "!b"]), none());
        assert_eq!(first.rooms["!a"].held, Held::Live);
        // !b drops out of the window at position 7; !a stays, unchanged.
        let second = first.advance(7, &view(&["!a"]), &view(&[]), none());
        assert_eq!(second.rooms["!a"].held, Held::Live);
        assert_eq!(second.rooms["!b"].held, Held::Until(7));
        // Later out-of-view answers keep the first position it was held at.
        let third = second.advance(9, &view(&["!a"]), &view(&[]), none());
        assert_eq!(third, second, "nothing changed: no new row needed");
        let stored = Connection::from_json(&third.to_json()).unwrap();
        assert_eq!(stored, third);
        assert!(Connection::from_json("{").is_err());
        // The lists' windows round-trip; a row without them (stored before they were kept)
        // reads as having none, and a stale mark is cleared by the next answer.
        let seen = ListSeen {
            key: "[19]".into(),
            count: 2,
            rooms: ["!a".to_owned()].into(),
        };
        let lists = BTreeMap::from([("all".to_owned(), seen)]);
        let mut fourth = third.advance(9, &view(&["!a"]), &view(&[]), lists.clone());
        assert_ne!(fourth, third, "a new window is a new row");
        fourth.stale = true;
        let stored = Connection::from_json(&fourth.to_json()).unwrap();
        assert_eq!(stored, fourth);
        assert!(!stored.advance(9, &view(&["!a"]), &view(&[]), lists).stale);
        let old = r#"{"fp":["[]"],"rooms":{"!a":[null,0]}}"#;
        let old = Connection::from_json(old).unwrap();
        assert!(old.lists.is_empty() && !old.stale);
    }
}
