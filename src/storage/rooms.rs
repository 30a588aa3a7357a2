//! Rooms as the room's Durable Object writes them: loading a room's engine state and persisting
//! accepted events with the state they change, atomically. Also the small per-room lookups
//! (version, membership, aliases) that read paths share.

use std::sync::Arc;

use ruma::{CanonicalJsonObject, OwnedEventId, OwnedRoomId};
use serde::Deserialize;
use serde_json::Value;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::rooms::{Pdu, RoomVersion};
use crate::time::now_ms;

pub struct StoredRoom {
    pub version: RoomVersion,
    pub state: Vec<Arc<Pdu>>,
    pub forward_extremities: Vec<OwnedEventId>,
    pub depth: u64,
}

#[derive(Deserialize)]
struct PduRow {
    pdu: String,
}

pub fn parse_pdu(text: &str, version: RoomVersion) -> Result<Pdu, MatrixError> {
    let json: CanonicalJsonObject = serde_json::from_str(text)
        .map_err(|e| MatrixError::internal(format!("stored event is not JSON: {e}")))?;
    Pdu::from_json(json, version).map_err(|e| MatrixError::internal(e.to_string()))
}

pub async fn room_version(db: &Db, room_id: &str) -> Result<Option<RoomVersion>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_version: String,
    }
    let row: Option<Row> = db
        .row(
            "SELECT room_version FROM rooms WHERE room_id = ?1",
            args![room_id],
        )
        .await?;
    row.map(|r| {
        RoomVersion::parse(&r.room_version)
            .ok_or_else(|| MatrixError::internal("stored room version is unsupported"))
    })
    .transpose()
}

/// Everything the room engine needs after a restart, or `None` for an unknown room.
pub async fn load(db: &Db, room_id: &str) -> Result<Option<StoredRoom>, MatrixError> {
    let Some(version) = room_version(db, room_id).await? else {
        return Ok(None);
    };
    let state: Vec<PduRow> = db
        .rows(
            "SELECT e.pdu FROM room_state s JOIN events e ON e.event_id = s.event_id
             WHERE s.room_id = ?1",
            args![room_id],
        )
        .await?;
    #[derive(Deserialize)]
    struct Tip {
        event_id: String,
        depth: i64,
    }
    // Local rooms grow linearly: the latest accepted event is the one forward extremity.
    let tip: Option<Tip> = db
        .row(
            "SELECT event_id, depth FROM events WHERE room_id = ?1
             ORDER BY stream_ordering DESC LIMIT 1",
            args![room_id],
        )
        .await?;
    let tip = tip.ok_or_else(|| MatrixError::internal("a stored room has no events"))?;
    let state = state
        .iter()
        .map(|row| parse_pdu(&row.pdu, version).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(StoredRoom {
        version,
        state,
        forward_extremities: vec![OwnedEventId::try_from(tip.event_id)
            .map_err(|_| MatrixError::internal("a stored event id is invalid"))?],
        depth: tip.depth as u64,
    }))
}

/// One accepted event and what comes with it.
pub struct EventWrite<'a> {
    pub pdu: &'a Pdu,
    pub room_id: &'a OwnedRoomId,
    pub history_visibility: &'a str,
    pub transaction: Option<(&'a str, &'a str, &'a str)>,
    /// State or auth chain of a room joined over federation: never in the timeline.
    pub outlier: bool,
}

/// Room creation's extra rows, written in the same batch as its events.
pub struct NewRoom<'a> {
    pub version: RoomVersion,
    pub creator: &'a str,
    pub alias: Option<&'a str>,
    pub publish: bool,
}

/// Writes events, the state and memberships they change, redaction marks and transaction ids
/// in one D1 batch: all of it lands or none of it does.
pub async fn persist(
    db: &Db,
    events: &[EventWrite<'_>],
    new_room: Option<NewRoom<'_>>,
) -> Result<(), MatrixError> {
    let mut statements = Vec::new();
    if let (Some(room), Some(first)) = (&new_room, events.first()) {
        statements.push(db.stmt(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, published)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                first.room_id.as_str(),
                room.version.as_str(),
                room.creator,
                now_ms(),
                room.publish
            ],
        )?);
        if let Some(alias) = room.alias {
            statements.push(db.stmt(
                "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?1, ?2, ?3, ?4)",
                args![alias, first.room_id.as_str(), room.creator, now_ms()],
            )?);
        }
    }
    for write in events {
        statements.extend(event_statements(db, write)?);
    }
    db.batch(statements).await.map(|_| ())
}

fn event_statements(
    db: &Db,
    w: &EventWrite<'_>,
) -> Result<Vec<worker::D1PreparedStatement>, MatrixError> {
    let pdu = w.pdu;
    let event_id = pdu.event_id().as_str();
    let room_id = w.room_id.as_str();
    let content: Value = serde_json::from_str(pdu.content().get()).unwrap_or(Value::Null);
    let membership = content.get("membership").and_then(Value::as_str);
    let relates_to = content
        .pointer("/m.relates_to/event_id")
        .and_then(Value::as_str);
    let rel_type = content
        .pointer("/m.relates_to/rel_type")
        .and_then(Value::as_str);
    let (txn_user, txn_device, txn_id) = match w.transaction {
        Some((u, d, t)) => (Some(u), Some(d), Some(t)),
        None => (None, None, None),
    };
    let kind = pdu.kind().to_string();
    let pdu_text = ruma::CanonicalJsonValue::Object(pdu.json().clone()).to_string();
    // A room joined again over federation brings state events we may already hold.
    let insert = if w.outlier {
        "INSERT OR IGNORE"
    } else {
        "INSERT"
    };
    let mut statements = vec![db.stmt(
        &format!("{insert} INTO events (event_id, room_id, type, state_key, sender, origin_server_ts, depth,
            pdu, history_visibility, membership, relates_to, rel_type, txn_user, txn_device, txn_id, outlier)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
        args![
            event_id,
            room_id,
            kind.as_str(),
            pdu.state_key(),
            pdu.sender().as_str(),
            u64::from(ruma::state_res::Event::origin_server_ts(pdu).get()),
            pdu.depth(),
            &pdu_text,
            w.history_visibility,
            membership.filter(|_| kind == "m.room.member"),
            relates_to,
            rel_type,
            txn_user,
            txn_device,
            txn_id,
            w.outlier,
        ],
    )?];
    if let Some(state_key) = pdu.state_key() {
        statements.push(db.stmt(
            "INSERT INTO room_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id",
            args![room_id, kind.as_str(), state_key, event_id],
        )?);
        if let (Some(membership), "m.room.member") = (membership, kind.as_str()) {
            statements.push(db.stmt(
                "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
                 VALUES (?1, ?2, ?3, ?4, (SELECT stream_ordering FROM events WHERE event_id = ?4), 0)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                   event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,
                   forgotten = 0",
                args![room_id, state_key, membership, event_id],
            )?);
        }
    }
    if let Some(redacts) = pdu.redacts() {
        statements.push(db.stmt(
            "UPDATE events SET redacted_by = ?1 WHERE event_id = ?2 AND room_id = ?3 AND redacted_by IS NULL",
            args![event_id, redacts.as_str(), room_id],
        )?);
    }
    if let Some((user, device, txn)) = w.transaction {
        statements.push(db.stmt(
            "INSERT INTO client_transactions (user_id, device_id, scope, txn_id, result, created_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![user, device, room_id, txn, event_id, now_ms()],
        )?);
    }
    Ok(statements)
}

pub async fn transaction_result(
    db: &Db,
    user: &str,
    device: &str,
    scope: &str,
    txn: &str,
) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        result: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT result FROM client_transactions
             WHERE user_id = ?1 AND device_id = ?2 AND scope = ?3 AND txn_id = ?4",
            args![user, device, scope, txn],
        )
        .await?
        .map(|r| r.result))
}

/// The sender of an event in a room, if the room has it.
pub async fn event_sender(
    db: &Db,
    room_id: &str,
    event_id: &str,
) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        sender: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT sender FROM events WHERE room_id = ?1 AND event_id = ?2",
            args![room_id, event_id],
        )
        .await?
        .map(|r| r.sender))
}

/// The user's current membership in a room (`None`: never been there).
pub async fn membership(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        membership: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT membership FROM memberships WHERE room_id = ?1 AND user_id = ?2",
            args![room_id, user_id],
        )
        .await?
        .map(|r| r.membership))
}

pub async fn rooms_with_membership(
    db: &Db,
    user_id: &str,
    membership: &str,
) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
    }
    Ok(db
        .rows::<Row>(
            "SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = ?2",
            args![user_id, membership],
        )
        .await?
        .into_iter()
        .map(|r| r.room_id)
        .collect())
}

pub async fn alias_room(db: &Db, alias: &str) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT room_id FROM room_aliases WHERE alias = ?1",
            args![alias],
        )
        .await?
        .map(|r| r.room_id))
}

pub async fn forget(db: &Db, room_id: &str, user_id: &str) -> Result<(), MatrixError> {
    db.run(
        "UPDATE memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2",
        args![room_id, user_id],
    )
    .await
    .map(|_| ())
}

pub async fn save_invite_state(
    db: &Db,
    room_id: &str,
    user_id: &str,
    events: &str,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO remote_invite_state (room_id, user_id, events) VALUES (?1, ?2, ?3)",
        args![room_id, user_id, events],
    )
    .await
    .map(|_| ())
}

/// The stripped state another server sent with its invite of the user, if any.
pub async fn invite_state(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<Option<Vec<Value>>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        events: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT events FROM remote_invite_state WHERE room_id = ?1 AND user_id = ?2",
            args![room_id, user_id],
        )
        .await?
        .and_then(|r| serde_json::from_str(&r.events).ok()))
}

/// The sender of the user's current invite to a room, if they are invited.
pub async fn inviter(db: &Db, room_id: &str, user_id: &str) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        sender: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT e.sender FROM memberships m JOIN events e ON e.event_id = m.event_id
             WHERE m.room_id = ?1 AND m.user_id = ?2 AND m.membership = 'invite'",
            args![room_id, user_id],
        )
        .await?
        .map(|r| r.sender))
}
