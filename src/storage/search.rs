//! The full-text index of room events (`event_search`, migrations/0019) and its query. One
//! index row per text message, room name or topic in a timeline, its rowid the event's stream
//! position; written in the same batch as the event (`index`), deleted by a redaction
//! (`unindex`).

use serde::Deserialize;
use serde_json::Value;

use super::events::{EventRow, COLUMNS};
use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::platform::Statement;

/// What the index holds of one event: `[body, name, topic]`.
pub type IndexedText<'a> = [Option<&'a str>; 3];

/// The text of an event the index takes, if any: a message's `body`, a room's `name` or
/// `topic` (strings only). Encrypted events and every other type are not indexed.
pub fn indexed_text<'a>(kind: &str, content: &'a Value) -> Option<IndexedText<'a>> {
    let field = |name: &str| content.get(name).and_then(Value::as_str);
    let text = match kind {
        "m.room.message" => [field("body"), None, None],
        "m.room.name" => [None, field("name"), None],
        "m.room.topic" => [None, None, field("topic")],
        _ => return None,
    };
    text.iter().any(Option::is_some).then_some(text)
}

/// Indexes the event `event_id` (run after its row is written, in the same batch). Only a
/// timeline event not redacted is indexed (a backfilled event may arrive after its
/// redaction), and only once (a backfilled event may already be there).
pub fn index(db: &Db, event_id: &str, text: &IndexedText<'_>) -> Statement {
    db.stmt(
        "INSERT INTO event_search (rowid, body, name, topic)
         SELECT e.stream_ordering, ?2, ?3, ?4 FROM events e
         WHERE e.event_id = ?1 AND e.outlier = 0 AND e.redacted_by IS NULL
           AND NOT EXISTS (SELECT 1 FROM event_search s WHERE s.rowid = e.stream_ordering)",
        args![event_id, text[0], text[1], text[2]],
    )
}

/// Removes a redacted event's text from the index.
pub fn unindex(db: &Db, redacted: &str, room_id: &str) -> Statement {
    db.stmt(
        "DELETE FROM event_search WHERE rowid =
           (SELECT stream_ordering FROM events WHERE event_id = ?1 AND room_id = ?2)",
        args![redacted, room_id],
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Best match first (FTS5's bm25).
    Rank,
    /// Newest first.
    Recent,
}

#[derive(Deserialize)]
pub struct Hit {
    #[serde(flatten)]
    pub row: EventRow,
    /// How well the event matches: higher is better (bm25, negated).
    pub score: f64,
}

/// One search: an FTS5 `MATCH` expression (from `search::query`), the rooms to look in, the
/// order, and for `Recent` only events below position `before`; at most `limit` hits. Redacted
/// and non-timeline events are left out; visibility is the caller's to check.
pub struct Search<'a> {
    pub fts: &'a str,
    pub rooms: &'a [&'a str],
    pub order: Order,
    pub before: Option<i64>,
    pub limit: u64,
}

pub async fn search(db: &Db, q: &Search<'_>) -> Result<Vec<Hit>, MatrixError> {
    let rooms = serde_json::to_string(q.rooms).unwrap_or_else(|_| "[]".into());
    let order = match q.order {
        Order::Rank => "event_search.rank, e.stream_ordering DESC",
        Order::Recent => "e.stream_ordering DESC",
    };
    db.rows(
        &format!(
            "SELECT {COLUMNS}, -event_search.rank AS score
             FROM event_search JOIN events e ON e.stream_ordering = event_search.rowid
             LEFT JOIN events r ON r.event_id = e.redacted_by
             WHERE event_search MATCH ?1 AND e.room_id IN (SELECT value FROM json_each(?2))
               AND e.outlier = 0 AND e.redacted_by IS NULL AND e.stream_ordering < ?3
             ORDER BY {order} LIMIT ?4"
        ),
        args![q.fts, &rooms, q.before.unwrap_or(i64::MAX), q.limit],
    )
    .await
}

/// The rooms a user may search, with their versions: every room they have a membership in and
/// have not forgotten (visibility per event decides the rest).
pub async fn searchable_rooms(
    db: &Db,
    user_id: &str,
) -> Result<Vec<(String, String)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
        room_version: String,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT m.room_id, r.room_version FROM memberships m JOIN rooms r ON r.room_id = m.room_id
             WHERE m.user_id = ?1 AND m.forgotten = 0",
            args![user_id],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.room_id, r.room_version))
        .collect())
}
