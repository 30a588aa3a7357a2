//! The request body of simplified sliding sync, as matrix-rust-sdk and Synapse speak it
//! (MSC4186's unstable endpoint): `lists` with `ranges`, `room_subscriptions`, `extensions`.
//! `pos` and `timeout` come in the query string; the newer body fields are accepted too.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::required_state::{self, Spec};
use crate::http::MatrixError;
use crate::storage::sliding_sync::ListColumns;

/// Most timeline events one room carries in one answer (the server may cap, says the MSC).
pub const MAX_TIMELINE_LIMIT: u64 = 100;
/// Most lists per request (MSC4186).
const MAX_LISTS: usize = 100;
/// Most room subscriptions per request: each is a room read when it is first sent.
const MAX_SUBSCRIPTIONS: usize = 200;

/// What a list or a subscription asks of each of its rooms.
#[derive(Clone, Debug, Default)]
pub struct RoomConfig {
    pub timeline_limit: u64,
    pub required_state: Spec,
}

/// The `filters` of a list; `None` is no filter on that criterion.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filters {
    pub is_dm: Option<bool>,
    pub is_encrypted: Option<bool>,
    #[serde(alias = "is_invited")]
    pub is_invite: Option<bool>,
    /// Room types (`null` for rooms without one).
    pub room_types: Option<Vec<Option<String>>>,
    pub not_room_types: Option<Vec<Option<String>>>,
    pub spaces: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct ListConfig {
    /// Inclusive ranges into the filtered, ordered list; `None`: every room of the list.
    pub ranges: Option<Vec<(u64, u64)>>,
    pub room: RoomConfig,
    pub filters: Filters,
}

/// Which lists and subscribed rooms an extension applies to (`None`: all of them).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Scope {
    pub enabled: Option<bool>,
    pub lists: Option<Vec<String>>,
    /// Room ids, or `"*"` for every subscribed room.
    pub rooms: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ToDeviceConfig {
    pub enabled: Option<bool>,
    pub limit: Option<u64>,
    pub since: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Extensions {
    #[serde(default)]
    pub to_device: ToDeviceConfig,
    #[serde(default)]
    pub e2ee: Scope,
    #[serde(default)]
    pub account_data: Scope,
    #[serde(default)]
    pub receipts: Scope,
    #[serde(default)]
    pub typing: Scope,
}

#[derive(Clone, Debug, Default)]
pub struct Request {
    pub conn_id: String,
    pub txn_id: Option<String>,
    pub pos: Option<String>,
    pub timeout_ms: Option<u64>,
    pub lists: BTreeMap<String, ListConfig>,
    pub subscriptions: BTreeMap<String, RoomConfig>,
    pub extensions: Extensions,
}

impl Request {
    /// Whether the answer reads rooms at all: a connection for extensions only (matrix-rust-sdk's
    /// encryption sync has no lists and no subscriptions) reads none.
    pub fn wants_rooms(&self) -> bool {
        !self.lists.is_empty() || !self.subscriptions.is_empty()
    }

    /// The largest timeline limit of its lists and subscriptions.
    pub fn timeline_limit(&self) -> u64 {
        let lists = self.lists.values().map(|l| l.room.timeline_limit);
        let rooms = self.subscriptions.values().map(|r| r.timeline_limit);
        lists.chain(rooms).max().unwrap_or(0)
    }

    /// Whether any of its lists or subscriptions loads members lazily (`$LAZY`), and whether
    /// each that does also asks for the reader's own member event (`$ME`): a room whose new
    /// events are all the reader's own then needs no lazily loaded member
    /// (`sync::sliding::room`).
    pub fn lazy_members(&self) -> (bool, bool) {
        let lists = self.lists.values().map(|l| &l.room);
        let lazy: Vec<&RoomConfig> = lists
            .chain(self.subscriptions.values())
            .filter(|r| r.required_state.lazy_members)
            .collect();
        let own = lazy.iter().all(|r| r.required_state.wants_own_member());
        (!lazy.is_empty(), own)
    }

    /// The room list's columns its lists' filters need.
    pub fn list_columns(&self) -> ListColumns {
        let filters = self.lists.values().map(|l| &l.filters);
        ListColumns {
            room_type: filters
                .clone()
                .any(|f| f.room_types.is_some() || f.not_room_types.is_some()),
            encrypted: filters.clone().any(|f| f.is_encrypted.is_some()),
        }
    }
}

fn field<T: for<'de> Deserialize<'de>>(
    object: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<T>, MatrixError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| MatrixError::bad_json(format!("invalid {name}: {e}"))),
    }
}

fn room_config(object: &serde_json::Map<String, Value>) -> Result<RoomConfig, MatrixError> {
    let timeline_limit: u64 = field(object, "timeline_limit")?.unwrap_or(0);
    Ok(RoomConfig {
        timeline_limit: timeline_limit.min(MAX_TIMELINE_LIMIT),
        required_state: required_state::parse(object.get("required_state"))?,
    })
}

fn object<'a>(
    value: &'a Value,
    what: &str,
) -> Result<&'a serde_json::Map<String, Value>, MatrixError> {
    value
        .as_object()
        .ok_or_else(|| MatrixError::bad_json(format!("{what} must be an object")))
}

fn list(value: &Value) -> Result<ListConfig, MatrixError> {
    let o = object(value, "a list")?;
    let mut ranges: Option<Vec<(u64, u64)>> = field(o, "ranges")?;
    if let Some(range) = field::<(u64, u64)>(o, "range")? {
        ranges.get_or_insert_with(Vec::new).push(range);
    }
    if let Some(ranges) = &ranges {
        if ranges.iter().any(|(start, end)| start > end) {
            return Err(MatrixError::invalid_param(
                "a range must not end before it starts",
            ));
        }
    }
    Ok(ListConfig {
        ranges,
        room: room_config(o)?,
        filters: field(o, "filters")?.unwrap_or_default(),
    })
}

/// Parses and checks a request: the body, then `pos` and `timeout` from the query (which win).
pub fn parse(
    body: &Value,
    pos: Option<&str>,
    timeout_ms: Option<u64>,
) -> Result<Request, MatrixError> {
    let empty = serde_json::Map::new();
    let o = match body {
        Value::Null => &empty,
        other => object(other, "the request body")?,
    };
    let mut request = Request {
        conn_id: field(o, "conn_id")?.unwrap_or_default(),
        txn_id: field(o, "txn_id")?,
        pos: pos.map(str::to_owned).or(field(o, "pos")?),
        timeout_ms: timeout_ms.or(field(o, "timeout")?),
        extensions: field(o, "extensions")?.unwrap_or_default(),
        ..Request::default()
    };
    if request.conn_id.len() > 64 {
        return Err(MatrixError::invalid_param("conn_id is too long"));
    }
    if let Some(lists) = o.get("lists").filter(|v| !v.is_null()) {
        let lists = object(lists, "lists")?;
        if lists.len() > MAX_LISTS {
            return Err(MatrixError::invalid_param("too many lists"));
        }
        for (name, value) in lists {
            request.lists.insert(name.clone(), list(value)?);
        }
    }
    if let Some(subs) = o.get("room_subscriptions").filter(|v| !v.is_null()) {
        let subs = object(subs, "room_subscriptions")?;
        if subs.len() > MAX_SUBSCRIPTIONS {
            return Err(MatrixError::invalid_param("too many room subscriptions"));
        }
        for (room_id, value) in subs {
            if !room_id.starts_with('!') {
                return Err(MatrixError::invalid_param(format!(
                    "not a room id: {room_id}"
                )));
            }
            request.subscriptions.insert(
                room_id.clone(),
                room_config(object(value, "a room subscription")?)?,
            );
        }
    }
    Ok(request)
}

impl Scope {
    /// Whether the extension is on. Extensions are off unless asked for.
    pub fn on(&self) -> bool {
        self.enabled == Some(true)
    }

    /// Whether the extension covers a room that is in `lists` and, when `subscribed`, in the
    /// room subscriptions.
    pub fn covers(&self, room_id: &str, lists: &[&str], subscribed: bool) -> bool {
        let by_list = self.lists.as_ref().map_or(!lists.is_empty(), |wanted| {
            lists
                .iter()
                .any(|l| wanted.iter().any(|w| w == l || w == "*"))
        });
        let by_room = subscribed
            && self
                .rooms
                .as_ref()
                .is_none_or(|rooms| rooms.iter().any(|r| r == "*" || r == room_id));
        let named = self
            .rooms
            .as_ref()
            .is_some_and(|rooms| rooms.iter().any(|r| r == room_id));
        by_list || by_room || named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_room_list_service_request() {
        let body = json!({
            "conn_id": "room-list",
            "lists": {
                "all_rooms": {
                    "ranges": [[0, 19]],
                    "timeline_limit": 1,
                    "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"]],
                    "filters": { "not_room_types": ["m.space"] }
                }
            },
            "room_subscriptions": { "!a:x": { "timeline_limit": 500, "required_state": [["*", "*"]] } },
            "extensions": { "to_device": { "enabled": true, "since": "12" },
                            "typing": { "enabled": true, "lists": ["all_rooms"] } }
        });
        let r = parse(&body, Some("5s1"), Some(30000)).unwrap();
        assert_eq!(r.conn_id, "room-list");
        assert_eq!(r.pos.as_deref(), Some("5s1"));
        assert_eq!(r.timeout_ms, Some(30000));
        let list = &r.lists["all_rooms"];
        assert_eq!(list.ranges, Some(vec![(0, 19)]));
        assert_eq!(list.room.timeline_limit, 1);
        assert!(list.room.required_state.lazy_members);
        assert_eq!(
            list.filters.not_room_types,
            Some(vec![Some("m.space".to_owned())])
        );
        assert_eq!(r.subscriptions["!a:x"].timeline_limit, MAX_TIMELINE_LIMIT);
        assert_eq!(r.extensions.to_device.since.as_deref(), Some("12"));
        assert!(r.extensions.typing.on());
        assert!(r.extensions.typing.covers("!b:x", &["all_rooms"], false));
        assert!(!r.extensions.typing.covers("!b:x", &["other"], false));
        assert!(!r.extensions.receipts.on());
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(parse(&json!([]), None, None).is_err());
        assert!(parse(&json!({"lists": {"a": {"ranges": [[5, 1]]}}}), None, None).is_err());
        assert!(parse(&json!({"lists": {"a": {"ranges": "x"}}}), None, None).is_err());
        assert!(parse(&json!({"room_subscriptions": {"#alias:x": {}}}), None, None).is_err());
        assert!(parse(&json!({"timeout": "soon"}), None, None).is_err());
        assert!(parse(&Value::Null, None, None).is_ok());
    }
}
