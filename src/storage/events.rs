//! Reading events back: timelines, single events, state at a position, membership histories.
//! Every read returns rows that `rooms::client_event` turns into what a client sees.

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::rooms::client_event::{client_event, StoredEvent};
use crate::rooms::visibility::{MembershipHistory, ServerMemberships};
use crate::rooms::RoomVersion;
use crate::time::now_ms;

#[derive(Clone, Deserialize)]
pub struct EventRow {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub pdu: String,
    pub history_visibility: String,
    pub txn_user: Option<String>,
    pub txn_device: Option<String>,
    pub txn_id: Option<String>,
    pub redaction: Option<String>,
    /// `content.m.relates_to.rel_type`, for filters on relations.
    #[serde(default)]
    pub rel_type: Option<String>,
    /// The state event this one replaced, and `[content, sender]` of it (JSON text).
    #[serde(default)]
    pub replaces_state: Option<String>,
    #[serde(default)]
    pub replaced: Option<String>,
}

/// The columns of an `EventRow`, from `events e` and its redaction `r` (see `SELECT`).
macro_rules! event_columns {
    () => {
        "e.stream_ordering, e.event_id, e.room_id, e.type, e.state_key, e.sender, e.pdu,
        e.history_visibility, e.txn_user, e.txn_device, e.txn_id, r.pdu AS redaction, e.rel_type,
        e.replaces_state,
        (SELECT json_extract(p.pdu, '$.content', '$.sender') FROM events p
         WHERE p.event_id = e.replaces_state) AS replaced"
    };
}

pub(crate) const COLUMNS: &str = event_columns!();

pub(crate) const SELECT: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events e LEFT JOIN events r ON r.event_id = e.redacted_by"
);

impl EventRow {
    /// The event as `reader` on `device` sees it.
    pub fn to_client(&self, version: RoomVersion, reader: &str, device: &str) -> serde_json::Value {
        let own =
            self.txn_user.as_deref() == Some(reader) && self.txn_device.as_deref() == Some(device);
        let mut event = client_event(
            &StoredEvent {
                pdu: &self.pdu,
                event_id: &self.event_id,
                room_id: &self.room_id,
                redaction: self.redaction.as_deref(),
                transaction_id: self.txn_id.as_deref().filter(|_| own),
            },
            version,
            now_ms(),
        );
        // The spec's `unsigned` of a state event: what it replaced.
        if let (Some(replaced), Some(prev)) = (&self.replaces_state, &self.replaced) {
            if let Ok((content, sender)) =
                serde_json::from_str::<(serde_json::Value, Option<String>)>(prev)
            {
                let unsigned = &mut event["unsigned"];
                if !unsigned.is_object() {
                    *unsigned = serde_json::json!({});
                }
                unsigned["replaces_state"] = serde_json::json!(replaced);
                unsigned["prev_content"] = content;
                if let Some(sender) = sender {
                    unsigned["prev_sender"] = serde_json::json!(sender);
                }
            }
        }
        event
    }

    /// The position of an event this server saw arrive (backfilled ones count as 0: before
    /// anything the stream has shown).
    pub fn position(&self) -> u64 {
        self.stream_ordering.max(0) as u64
    }

    /// The position as pagination tokens carry it: below zero for backfilled events.
    pub fn signed_position(&self) -> i64 {
        self.stream_ordering
    }
}

/// Events of a room in `(after, up_to]`, newest first, at most `limit`. Positions below zero
/// are events backfilled from other servers, older than anything this server saw arrive.
pub async fn timeline_backwards(
    db: &Db,
    room_id: &str,
    after: i64,
    up_to: i64,
    limit: u64,
) -> Result<Vec<EventRow>, MatrixError> {
    db.rows(
        &format!(
            "{SELECT} WHERE e.room_id = ?1 AND e.outlier = 0 AND e.stream_ordering > ?2 AND e.stream_ordering <= ?3
             ORDER BY e.stream_ordering DESC LIMIT ?4"
        ),
        args![room_id, after, up_to, limit],
    )
    .await
}

/// Events of a room in `[from, before)`, oldest first, at most `limit`.
pub async fn timeline_forwards(
    db: &Db,
    room_id: &str,
    from: i64,
    before: i64,
    limit: u64,
) -> Result<Vec<EventRow>, MatrixError> {
    db.rows(
        &format!(
            "{SELECT} WHERE e.room_id = ?1 AND e.outlier = 0 AND e.stream_ordering >= ?2 AND e.stream_ordering < ?3
             ORDER BY e.stream_ordering ASC LIMIT ?4"
        ),
        args![room_id, from, before, limit],
    )
    .await
}

pub async fn event(db: &Db, event_id: &str) -> Result<Option<EventRow>, MatrixError> {
    db.row(&format!("{SELECT} WHERE e.event_id = ?1"), args![event_id])
        .await
}

/// A membership event of a room this server does not hold (an invite, its rejection or
/// rescission, a knock): stored out of the timeline, yet the only news of the room its user gets.
pub async fn out_of_band_membership(
    db: &Db,
    event_id: &str,
) -> Result<Option<EventRow>, MatrixError> {
    db.row(
        &format!("{SELECT} WHERE e.event_id = ?1 AND e.outlier = 1 AND e.type = 'm.room.member'"),
        args![event_id],
    )
    .await
}

/// The room's current state events.
pub async fn current_state(db: &Db, room_id: &str) -> Result<Vec<EventRow>, MatrixError> {
    db.rows(
        &format!("{SELECT} JOIN room_state s ON s.event_id = e.event_id WHERE s.room_id = ?1"),
        args![room_id],
    )
    .await
}

/// The content of one event of the room's current state, if it has one.
pub async fn current_state_content(
    db: &Db,
    room_id: &str,
    kind: &str,
    state_key: &str,
) -> Result<Option<serde_json::Value>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        content: Option<String>,
    }
    let row: Option<Row> = db
        .row(
            "SELECT json_extract(e.pdu, '$.content') AS content FROM room_state s
             JOIN events e ON e.event_id = s.event_id
             WHERE s.room_id = ?1 AND s.type = ?2 AND s.state_key = ?3",
            args![room_id, kind, state_key],
        )
        .await?;
    Ok(row
        .and_then(|r| r.content)
        .and_then(|c| serde_json::from_str(&c).ok()))
}

/// The state as it was after the event at `position`: per slot, the latest state event at or
/// before it. Local rooms are linear, so stream order is the room's order.
pub async fn state_at(db: &Db, room_id: &str, position: u64) -> Result<Vec<EventRow>, MatrixError> {
    db.rows(
        &format!(
            "{SELECT} WHERE e.stream_ordering IN (
                SELECT MAX(stream_ordering) FROM events
                WHERE room_id = ?1 AND state_key IS NOT NULL AND stream_ordering <= ?2
                  AND outlier != 2
                GROUP BY type, state_key)"
        ),
        args![room_id, position],
    )
    .await
}

/// The events of a room with these ids, in one query (unknown ids and other rooms' are left
/// out).
pub async fn by_ids(db: &Db, room_id: &str, ids: &[&str]) -> Result<Vec<EventRow>, MatrixError> {
    let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    db.rows(
        &format!(
            "{SELECT} WHERE e.event_id IN (SELECT value FROM json_each(?2)) AND e.room_id = ?1"
        ),
        args![room_id, &ids],
    )
    .await
}

/// The id of one element of `prev_events`/`auth_events` (aliases `p` and `a` of `json_each`):
/// a bare id, or in room versions 1 and 2 the first item of an `[id, hashes]` pair.
const REF_ID_P: &str =
    "CASE p.type WHEN 'array' THEN json_extract(p.value, '$[0]') ELSE p.value END";
const REF_ID_A: &str =
    "CASE a.type WHEN 'array' THEN json_extract(a.value, '$[0]') ELSE a.value END";

/// The events reached by walking `prev_events` back from `from` (included), never through an
/// event of `stop` nor below `min_depth`, nearest first, at most `limit`: one recursive query
/// (`UNION` drops repeats, so forks that merge are walked once; the walk is as deep as `limit`).
pub async fn walk_back(
    db: &Db,
    room_id: &str,
    from: &[&str],
    stop: &[&str],
    limit: usize,
    min_depth: u64,
) -> Result<Vec<EventRow>, MatrixError> {
    let from = serde_json::to_string(from).unwrap_or_else(|_| "[]".into());
    let stop = serde_json::to_string(stop).unwrap_or_else(|_| "[]".into());
    db.rows(
        &format!(
            "WITH RECURSIVE walk(event_id, n) AS (
               SELECT value, 0 FROM json_each(?2)
               UNION
               SELECT {REF_ID_P}, w.n + 1
               FROM walk w JOIN events x ON x.event_id = w.event_id AND x.room_id = ?1,
                    json_each(json_extract(x.pdu, '$.prev_events')) p
               WHERE w.n < ?4 AND x.depth >= ?5
                 AND w.event_id NOT IN (SELECT value FROM json_each(?3)))
             {SELECT} WHERE e.room_id = ?1 AND e.depth >= ?5
               AND e.event_id IN (SELECT event_id FROM walk)
               AND e.event_id NOT IN (SELECT value FROM json_each(?3))
             ORDER BY e.depth DESC LIMIT ?4"
        ),
        args![room_id, &from, &stop, limit as u64, min_depth],
    )
    .await
}

/// The auth chain of `from`: every event its `auth_events` cite, recursively, in one query
/// (a room's auth graph has no cycles, and `UNION` would stop one anyway).
pub async fn auth_chain(
    db: &Db,
    room_id: &str,
    from: &[&str],
) -> Result<Vec<EventRow>, MatrixError> {
    let from = serde_json::to_string(from).unwrap_or_else(|_| "[]".into());
    db.rows(
        &format!(
            "WITH RECURSIVE chain(event_id) AS (
               SELECT {REF_ID_A} FROM events x, json_each(json_extract(x.pdu, '$.auth_events')) a
               WHERE x.room_id = ?1 AND x.event_id IN (SELECT value FROM json_each(?2))
               UNION
               SELECT {REF_ID_A} FROM chain c JOIN events x ON x.event_id = c.event_id AND x.room_id = ?1,
                    json_each(json_extract(x.pdu, '$.auth_events')) a)
             {SELECT} WHERE e.room_id = ?1 AND e.event_id IN (SELECT event_id FROM chain)"
        ),
        args![room_id, &from],
    )
    .await
}

pub async fn membership_history(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<MembershipHistory, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        stream_ordering: i64,
        membership: Option<String>,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT stream_ordering, membership FROM events
             WHERE room_id = ?1 AND type = 'm.room.member' AND state_key = ?2 ORDER BY stream_ordering",
            args![room_id, user_id],
        )
        .await?;
    Ok(MembershipHistory(
        rows.into_iter()
            .map(|r| (r.stream_ordering as u64, r.membership.unwrap_or_default()))
            .collect(),
    ))
}

/// The membership histories of `server`'s users in the room: which of its events that server
/// may see over federation.
pub async fn server_memberships(
    db: &Db,
    room_id: &str,
    server: &str,
) -> Result<ServerMemberships, MatrixError> {
    let rows = member_rows(
        db,
        "SELECT state_key AS key, stream_ordering, membership FROM events
         WHERE room_id = ?1 AND type = 'm.room.member' AND outlier = 0
           AND substr(state_key, instr(state_key, ':') + 1) = ?2
         ORDER BY stream_ordering",
        args![room_id, server],
    )
    .await?;
    Ok(ServerMemberships::from_rows(rows))
}

/// `(key, stream position, membership)` rows of membership events, from `sql` selecting
/// `key, stream_ordering, membership`: what `MembershipHistory::grouped` groups.
pub(crate) async fn member_rows(
    db: &Db,
    sql: &str,
    args: &[crate::storage::Arg<'_>],
) -> Result<Vec<(String, u64, String)>, MatrixError> {
    let rows: Vec<MemberRow> = db.rows(sql, args).await?;
    Ok(member_rows_from(rows))
}

/// A row of the queries `member_rows` runs.
#[derive(Deserialize)]
pub(crate) struct MemberRow {
    key: String,
    stream_ordering: i64,
    membership: Option<String>,
}

pub(crate) fn member_rows_from(rows: Vec<MemberRow>) -> Vec<(String, u64, String)> {
    rows.into_iter()
        .map(|r| {
            (
                r.key,
                r.stream_ordering as u64,
                r.membership.unwrap_or_default(),
            )
        })
        .collect()
}

/// The room's event closest to `ts` (milliseconds) in one direction: the first at or after it
/// (`forwards`), or the last at or before it. `(event id, origin_server_ts)`.
pub async fn closest_to_timestamp(
    db: &Db,
    room_id: &str,
    ts: u64,
    forwards: bool,
) -> Result<Option<(String, u64)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        event_id: String,
        origin_server_ts: i64,
    }
    let (compare, order) = if forwards {
        (">=", "ASC")
    } else {
        ("<=", "DESC")
    };
    let row: Option<Row> = db
        .row(
            &format!(
                "SELECT event_id, origin_server_ts FROM events
                 WHERE room_id = ?1 AND outlier = 0 AND origin_server_ts {compare} ?2
                 ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1"
            ),
            args![room_id, ts],
        )
        .await?;
    Ok(row.map(|r| (r.event_id, r.origin_server_ts as u64)))
}

/// Which relations one page holds: those at stream positions in `(after, up_to]`, newest
/// first when `backwards`, at most `limit`, optionally of one `rel_type` and event type.
pub struct RelationsPage<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub after: i64,
    pub up_to: i64,
    pub backwards: bool,
    pub limit: u64,
}

/// Events relating to `event_id`, one page of them.
pub async fn relations(
    db: &Db,
    room_id: &str,
    event_id: &str,
    page: &RelationsPage<'_>,
) -> Result<Vec<EventRow>, MatrixError> {
    let order = if page.backwards { "DESC" } else { "ASC" };
    db.rows(
        &format!(
            "{SELECT} WHERE e.room_id = ?1 AND e.outlier = 0 AND e.relates_to = ?2 AND (?3 IS NULL OR e.rel_type = ?3)
             AND (?4 IS NULL OR e.type = ?4) AND e.stream_ordering > ?5 AND e.stream_ordering <= ?6
             ORDER BY e.stream_ordering {order} LIMIT ?7"
        ),
        args![
            room_id,
            event_id,
            page.rel_type,
            page.event_type,
            page.after,
            page.up_to,
            page.limit
        ],
    )
    .await
}
