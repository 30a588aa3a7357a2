//! Events backfilled from other servers: history of a room from before this server joined it.
//! They take stream positions below zero, each older event below the last, so that `/messages`
//! pages back into them in order while `/sync` (which only moves forwards from zero) never
//! shows them as new.

use serde::Deserialize;
use serde_json::Value;

use super::events::{EventRow, SELECT};
use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::rooms::Pdu;

/// The room's oldest event in the timeline.
pub async fn oldest_timeline_event(
    db: &Db,
    room_id: &str,
) -> Result<Option<EventRow>, MatrixError> {
    db.row(
        &format!(
            "{SELECT} WHERE e.room_id = ?1 AND e.outlier = 0 ORDER BY e.stream_ordering ASC LIMIT 1"
        ),
        args![room_id],
    )
    .await
}

#[derive(Deserialize)]
struct Id {
    event_id: String,
}

/// Which of `ids` are in the room's timeline.
pub async fn in_timeline(db: &Db, room_id: &str, ids: &[&str]) -> Result<Vec<String>, MatrixError> {
    among(db, room_id, ids, "AND outlier = 0").await
}

/// Which of `ids` the room holds in any form (in the timeline, or as outliers).
pub async fn held(db: &Db, room_id: &str, ids: &[&str]) -> Result<Vec<String>, MatrixError> {
    among(db, room_id, ids, "").await
}

async fn among(
    db: &Db,
    room_id: &str,
    ids: &[&str],
    condition: &str,
) -> Result<Vec<String>, MatrixError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(ids).map_err(|e| MatrixError::internal(e.to_string()))?;
    let rows: Vec<Id> = db
        .rows(
            &format!(
                "SELECT event_id FROM events WHERE room_id = ?1 {condition}
                   AND event_id IN (SELECT value FROM json_each(?2))"
            ),
            args![room_id, &list],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
}

/// Stores backfilled events, newest first as given, each at the position below the lowest one
/// held (the positions come from the database itself, so two rooms backfilling at once cannot
/// collide). An event held as an outlier (part of the state we joined with) moves into the
/// timeline, unless it holds the stream's largest position: new events take the largest plus
/// one (migration 0024), so that one stays where a client's token may have seen it. Redactions among them mark their targets; an event that an earlier-stored
/// redaction names is stored marked. One batch: all of it lands or none.
pub async fn store(
    db: &Db,
    room_id: &str,
    newest_first: &[&Pdu],
    history_visibility: &str,
) -> Result<(), MatrixError> {
    const BELOW_ALL: &str = "(SELECT MIN(0, COALESCE(MIN(stream_ordering), 0)) - 1 FROM events)";
    let mut statements = Vec::new();
    for pdu in newest_first {
        let event_id = pdu.event_id().as_str();
        let kind = pdu.kind().to_string();
        let content: Value = serde_json::from_str(pdu.content().get()).unwrap_or(Value::Null);
        let (membership, relates_to, rel_type) = super::rooms::indexed_content(&content);
        let membership = membership.filter(|_| kind == "m.room.member");
        let text = ruma::CanonicalJsonValue::Object(pdu.json().clone()).to_string();
        statements.push(db.stmt(
            &format!(
                "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,
                    origin_server_ts, depth, pdu, history_visibility, membership, relates_to, rel_type,
                    outlier, redacted_by)
                 VALUES ({BELOW_ALL}, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0,
                    (SELECT r.event_id FROM events r WHERE r.room_id = ?2 AND r.outlier = 0
                       AND r.type = 'm.room.redaction'
                       AND coalesce(json_extract(r.pdu, '$.redacts'),
                                    json_extract(r.pdu, '$.content.redacts')) = ?1 LIMIT 1))
                 ON CONFLICT (event_id) DO UPDATE SET stream_ordering = {BELOW_ALL}, outlier = 0
                    WHERE outlier = 1
                      AND stream_ordering < (SELECT MAX(stream_ordering) FROM events)"
            ),
            args![
                event_id,
                room_id,
                kind.as_str(),
                pdu.state_key(),
                pdu.sender().as_str(),
                u64::from(ruma::state_res::Event::origin_server_ts(*pdu).get()),
                pdu.depth(),
                &text,
                history_visibility,
                membership,
                relates_to,
                rel_type,
            ],
        ));
        // An event stored already redacted (see above) is not indexed.
        if let Some(text) = super::search::indexed_text(&kind, &content) {
            statements.push(super::search::index(db, event_id, &text));
        }
        if let Some(redacts) = pdu.redacts() {
            statements.push(db.stmt(
                "UPDATE events SET redacted_by = ?1
                 WHERE event_id = ?2 AND room_id = ?3 AND redacted_by IS NULL",
                args![event_id, redacts.as_str(), room_id],
            ));
            statements.push(super::search::unindex(db, redacts.as_str(), room_id));
        }
    }
    db.batch(statements).await.map(|_| ())
}
