//! The reads of a space hierarchy, each one query over a JSON list of rooms: the rooms'
//! `m.space.child` events, and in which of them a user or a server takes part.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Value};

use super::Db;
use crate::args;
use crate::http::MatrixError;

/// The current `m.space.child` events (full PDUs) of each of the rooms.
pub async fn space_children(
    db: &Db,
    rooms: &[&str],
) -> Result<HashMap<String, Vec<Value>>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
        pdu: String,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT s.room_id, e.pdu FROM room_state s JOIN events e ON e.event_id = s.event_id
             WHERE s.type = 'm.space.child' AND s.room_id IN (SELECT value FROM json_each(?1))",
            args![&json!(rooms).to_string()],
        )
        .await?;
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for row in rows {
        if let Ok(pdu) = serde_json::from_str(&row.pdu) {
            out.entry(row.room_id).or_default().push(pdu);
        }
    }
    Ok(out)
}

/// Those of the rooms where `user` is joined or invited, or (`server` non-empty) where a user
/// of `server` is joined.
pub async fn rooms_with_presence(
    db: &Db,
    rooms: &[&str],
    user: &str,
    server: &str,
) -> Result<HashSet<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT DISTINCT room_id FROM memberships
             WHERE room_id IN (SELECT value FROM json_each(?1))
               AND ((user_id = ?2 AND membership IN ('join', 'invite'))
                 OR (?3 != '' AND membership = 'join'
                     AND substr(user_id, instr(user_id, ':') + 1) = ?3))",
            args![&json!(rooms).to_string(), user, server],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.room_id).collect())
}
