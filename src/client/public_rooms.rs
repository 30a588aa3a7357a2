//! One page of the public room directory, as `/publicRooms` serves it to clients (`GET` and
//! `POST`) and to other servers (`/_matrix/federation/v1/publicRooms`): the search filter, the
//! room type filter and `since` tokens over the published rooms' summaries.

use serde_json::{json, Value};

use crate::http::MatrixError;

const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 500;

/// The offset a `since` token stands for (`o<offset>`).
fn offset(since: &str) -> Result<u64, MatrixError> {
    since
        .strip_prefix('o')
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| MatrixError::invalid_param("bad since token"))
}

/// Whether a room summary passes the request's `filter` (`generic_search_term`, matched
/// case-insensitively against name, topic, canonical alias and room id; `room_types`, where
/// `null` stands for rooms without a type).
fn passes(room: &Value, filter: &Value) -> bool {
    let term = filter["generic_search_term"]
        .as_str()
        .map(str::to_lowercase)
        .filter(|t| !t.is_empty());
    let by_term = term.is_none_or(|t| {
        ["name", "topic", "canonical_alias", "room_id"]
            .iter()
            .any(|f| {
                room[*f]
                    .as_str()
                    .is_some_and(|v| v.to_lowercase().contains(&t))
            })
    });
    let by_type = filter["room_types"]
        .as_array()
        .is_none_or(|types| types.contains(room.get("room_type").unwrap_or(&Value::Null)));
    by_term && by_type
}

/// The page that `request` (a body with `limit`, `since` and `filter`, all optional) asks for,
/// from `rooms` (every published room's summary, in directory order).
pub fn page(rooms: Vec<Value>, request: &Value) -> Result<Value, MatrixError> {
    let limit = request["limit"]
        .as_u64()
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let since = request["since"]
        .as_str()
        .map(offset)
        .transpose()?
        .unwrap_or(0);
    let matching: Vec<Value> = rooms
        .into_iter()
        .filter(|room| passes(room, &request["filter"]))
        .collect();
    let total = matching.len() as u64;
    let chunk: Vec<Value> = matching
        .into_iter()
        .skip(since as usize)
        .take(limit as usize)
        .collect();
    let mut out = json!({ "chunk": chunk, "total_room_count_estimate": total });
    if since + limit < total {
        out["next_batch"] = json!(format!("o{}", since + limit));
    }
    if since > 0 {
        out["prev_batch"] = json!(format!("o{}", since.saturating_sub(limit)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Vec<Value> {
        vec![
            json!({"room_id": "!a:x", "name": "Rust Talk", "num_joined_members": 3}),
            json!({"room_id": "!b:x", "topic": "all about rust", "num_joined_members": 2}),
            json!({"room_id": "!c:x", "name": "Space", "room_type": "m.space", "num_joined_members": 1}),
        ]
    }

    fn ids(page: &Value) -> Vec<&str> {
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["room_id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pages_follow_since_tokens() {
        let first = page(rooms(), &json!({"limit": 2})).unwrap();
        assert_eq!(ids(&first), ["!a:x", "!b:x"]);
        assert_eq!(first["next_batch"], "o2");
        assert!(first.get("prev_batch").is_none());
        assert_eq!(first["total_room_count_estimate"], 3);
        let second = page(rooms(), &json!({"limit": 2, "since": "o2"})).unwrap();
        assert_eq!(ids(&second), ["!c:x"]);
        assert!(second.get("next_batch").is_none());
        assert_eq!(second["prev_batch"], "o0");
        assert_eq!(ids(&page(rooms(), &json!({})).unwrap()).len(), 3);
        let bad = page(rooms(), &json!({"since": "x1"})).unwrap_err();
        assert_eq!(bad.status, 400);
    }

    #[test]
    fn filters_by_search_term_and_room_type() {
        let rust = page(rooms(), &json!({"filter": {"generic_search_term": "RUST"}})).unwrap();
        assert_eq!(ids(&rust), ["!a:x", "!b:x"]);
        assert_eq!(rust["total_room_count_estimate"], 2);
        let by_id = page(rooms(), &json!({"filter": {"generic_search_term": "!c:"}})).unwrap();
        assert_eq!(ids(&by_id), ["!c:x"]);
        let empty_term = page(rooms(), &json!({"filter": {"generic_search_term": ""}})).unwrap();
        assert_eq!(ids(&empty_term).len(), 3);
        let spaces = page(rooms(), &json!({"filter": {"room_types": ["m.space"]}})).unwrap();
        assert_eq!(ids(&spaces), ["!c:x"]);
        let plain = page(rooms(), &json!({"filter": {"room_types": [null]}})).unwrap();
        assert_eq!(ids(&plain), ["!a:x", "!b:x"]);
    }
}
