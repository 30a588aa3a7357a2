//! Server-side search (spec: "Server Side Search", `POST /search`): the request as the spec
//! writes it, the search term as an FTS5 query (`query`), and the paging tokens. The handler is
//! `client/search.rs`, the index and its SQL `storage/search.rs`.

pub mod query;

use serde::Deserialize;

use crate::storage::search::Order;
use crate::sync::filter::EventFilter;

#[derive(Deserialize)]
pub struct SearchRequest {
    pub search_categories: Categories,
}

#[derive(Deserialize)]
pub struct Categories {
    pub room_events: Option<RoomEvents>,
}

/// The `room_events` criteria.
#[derive(Deserialize)]
pub struct RoomEvents {
    pub search_term: String,
    /// Which content keys to look in; all three when absent.
    pub keys: Option<Vec<Key>>,
    #[serde(default)]
    pub filter: EventFilter,
    #[serde(default)]
    pub order_by: OrderBy,
    pub event_context: Option<EventContext>,
    #[serde(default)]
    pub include_state: bool,
    #[serde(default)]
    pub groupings: Groupings,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Key {
    #[serde(rename = "content.body")]
    Body,
    #[serde(rename = "content.name")]
    Name,
    #[serde(rename = "content.topic")]
    Topic,
}

impl Key {
    /// The FTS5 column of the key (migrations/0019).
    pub fn column(self) -> &'static str {
        match self {
            Key::Body => "body",
            Key::Name => "name",
            Key::Topic => "topic",
        }
    }
}

#[derive(Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderBy {
    #[default]
    Rank,
    Recent,
}

impl OrderBy {
    pub fn order(self) -> Order {
        match self {
            OrderBy::Rank => Order::Rank,
            OrderBy::Recent => Order::Recent,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
pub struct EventContext {
    pub before_limit: u64,
    pub after_limit: u64,
    pub include_profile: bool,
}

impl Default for EventContext {
    /// The spec's defaults.
    fn default() -> Self {
        EventContext {
            before_limit: 5,
            after_limit: 5,
            include_profile: false,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct Groupings {
    pub group_by: Vec<Group>,
}

#[derive(Deserialize)]
pub struct Group {
    pub key: GroupKey,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum GroupKey {
    #[serde(rename = "room_id")]
    RoomId,
    #[serde(rename = "sender")]
    Sender,
}

/// Where the next page starts: after this many results in rank order, or below this stream
/// position in recent order. Tokens say which (`r<n>`, `p<n>`), so a token of one order is
/// refused by the other instead of paging wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Offset(u64),
    Below(i64),
}

impl Page {
    pub fn parse(token: &str, order: OrderBy) -> Option<Page> {
        match (order, token.split_at_checked(1)?) {
            (OrderBy::Rank, ("r", n)) => n.parse().ok().map(Page::Offset),
            (OrderBy::Recent, ("p", n)) => n.parse().ok().map(Page::Below),
            _ => None,
        }
    }

    pub fn token(self) -> String {
        match self {
            Page::Offset(n) => format!("r{n}"),
            Page::Below(n) => format!("p{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_example_request_parses() {
        let r: SearchRequest =
            serde_json::from_value(json!({"search_categories": {"room_events": {
                "groupings": {"group_by": [{"key": "room_id"}]},
                "keys": ["content.body"],
                "order_by": "recent",
                "search_term": "martians and men",
                "filter": {"limit": 3, "rooms": ["!a:x"]},
                "event_context": {"before_limit": 1, "include_profile": true}
            }}}))
            .unwrap();
        let e = r.search_categories.room_events.unwrap();
        assert!(e.order_by == OrderBy::Recent && e.keys == Some(vec![Key::Body]));
        assert_eq!(e.filter.limit, Some(3));
        let c = e.event_context.unwrap();
        assert_eq!(
            (c.before_limit, c.after_limit, c.include_profile),
            (1, 5, true)
        );
        assert!(e.groupings.group_by[0].key == GroupKey::RoomId);
    }

    #[test]
    fn bad_shapes_are_refused() {
        for body in [
            json!({"search_categories": {"room_events": {}}}),
            json!({"search_categories": {"room_events": {"search_term": "x", "keys": ["content.url"]}}}),
            json!({"search_categories": {"room_events": {"search_term": "x", "order_by": "best"}}}),
            json!({"search_categories": {"room_events": {"search_term": 1}}}),
        ] {
            assert!(serde_json::from_value::<SearchRequest>(body).is_err());
        }
    }

    #[test]
    fn tokens_belong_to_their_order() {
        assert_eq!(Page::parse("r20", OrderBy::Rank), Some(Page::Offset(20)));
        assert_eq!(Page::parse("p-3", OrderBy::Recent), Some(Page::Below(-3)));
        assert_eq!(Page::parse("p5", OrderBy::Rank), None);
        assert_eq!(Page::parse("r5", OrderBy::Recent), None);
        assert_eq!(Page::parse("", OrderBy::Rank), None);
        assert_eq!(Page::parse("é", OrderBy::Rank), None);
        assert_eq!(Page::Below(7).token(), "p7");
    }
}
