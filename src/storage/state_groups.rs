//! State groups in D1 (migrations/0010_state_groups.sql): writing the groups the room engine
//! placed, and reading the state after or before any event with one bounded query.

use std::sync::Arc;

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::rooms::resolution::StateMap;
use crate::rooms::state_groups::{apply_entries, Entry, GroupRef, NewGroup};

pub fn insert(db: &Db, room_id: &str, group: &NewGroup) -> crate::platform::Statement {
    let entries = serde_json::to_string(&group.entries).unwrap_or_else(|_| "[]".into());
    db.stmt(
        "INSERT OR IGNORE INTO state_groups (id, room_id, parent, full, entries, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![
            group.id.as_str(),
            room_id,
            group.parent.as_deref(),
            group.full,
            &entries,
            i64::from(group.chain)
        ],
    )
}

/// Which state of an event to read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The state after the event (its own group).
    After,
    /// The state before it: the parent of a state event's group, a message's own group.
    Before,
}

#[derive(Deserialize)]
struct ChainRow {
    id: String,
    entries: String,
    chain: i64,
}

/// The state after or before `event_id`, or `None` when the event has no group (unknown, an
/// outlier, or stored before state groups existed) and before the create event.
pub async fn state_at(db: &Db, event_id: &str, at: At) -> Result<Option<GroupRef>, MatrixError> {
    // The walk stops at the first full group; MAX_CHAIN bounds it.
    let rows: Vec<ChainRow> = db
        .rows(
            "WITH RECURSIVE start(id) AS (
               SELECT CASE WHEN ?2 = 1 AND e.state_key IS NOT NULL THEN g.parent ELSE e.state_group END
               FROM events e LEFT JOIN state_groups g ON g.id = e.state_group
               WHERE e.event_id = ?1),
             chain(id, parent, full, entries, chain, n) AS (
               SELECT g.id, g.parent, g.full, g.entries, g.chain, 0
               FROM start s JOIN state_groups g ON g.id = s.id
               UNION ALL
               SELECT g.id, g.parent, g.full, g.entries, g.chain, c.n + 1
               FROM chain c JOIN state_groups g ON g.id = c.parent WHERE c.full = 0)
             SELECT id, entries, chain FROM chain ORDER BY n DESC",
            args![event_id, at == At::Before],
        )
        .await?;
    let Some(nearest) = rows.last() else {
        return Ok(None);
    };
    let (id, chain) = (nearest.id.clone(), nearest.chain as u32);
    let mut state = StateMap::new();
    for row in &rows {
        let entries: Vec<Entry> = serde_json::from_str(&row.entries)
            .map_err(|e| MatrixError::internal(format!("stored state group is not JSON: {e}")))?;
        apply_entries(&mut state, &entries);
    }
    Ok(Some(GroupRef {
        id: Some(id),
        chain,
        state: Arc::new(state),
    }))
}
