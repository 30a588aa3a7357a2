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
use crate::rooms::resolution::StateMap;
use crate::rooms::state_groups::{GroupRef, NewGroup, SlotChange};
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::state_groups::{self, At};
use crate::time::now_ms;

pub struct StoredRoom {
    pub version: RoomVersion,
    /// Every state event of the room: the auth graph.
    pub state_events: Vec<Arc<Pdu>>,
    pub current: StateMap,
    /// The forward extremities, each with the state after it when a state group holds it.
    pub tips: Vec<(OwnedEventId, Option<GroupRef>)>,
    pub depth: u64,
    /// Local events sent with a client transaction id since `transactions_since` (ms).
    pub transactions: Vec<SentTransaction>,
}

/// A local event sent with a client transaction id: who sent it, from which device, under
/// which id, and when (its `origin_server_ts`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SentTransaction {
    pub user_id: String,
    pub device_id: String,
    pub txn_id: String,
    pub event_id: String,
    pub ts: u64,
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

/// What a user's `/join` or `/knock` needs to know before it goes anywhere (`client::membership`).
pub struct Entry {
    /// An admin blocked the room on this server.
    pub blocked: bool,
    /// The room's version, if this server has ever held the room.
    pub version: Option<RoomVersion>,
    /// Some user of `server` is joined: the room's object can add the user itself.
    pub resident: bool,
    /// The user's own profile, for the membership event's content.
    pub profile: super::user_data::Profile,
}

/// `Entry`'s columns: the room (?1) and our server (?3) here, the user's profile from `u`.
/// These used to be four reads in a row (block list, profile, room version, residency), each a
/// D1 round trip before the join could start.
const ENTRY_COLUMNS: &str = "EXISTS (SELECT 1 FROM blocked_rooms WHERE room_id = ?1) AS blocked,
    (SELECT room_version FROM rooms WHERE room_id = ?1) AS room_version,
    (SELECT COUNT(*) FROM memberships WHERE room_id = ?1 AND membership = 'join'
       AND substr(user_id, instr(user_id, ':') + 1) = ?3) AS ours,
    u.displayname, u.avatar_url";

#[derive(Deserialize)]
struct EntryRow {
    blocked: i64,
    room_version: Option<String>,
    ours: i64,
    displayname: Option<String>,
    avatar_url: Option<String>,
}

/// `Entry` in one query.
pub async fn entry(
    db: &Db,
    room_id: &str,
    user_id: &str,
    server: &str,
) -> Result<Entry, MatrixError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS}
         FROM (SELECT 1) LEFT JOIN users u ON u.user_id = ?2 AND u.deactivated = 0"
    );
    let row: Option<EntryRow> = db.row(&sql, args![room_id, user_id, server]).await?;
    let row = row.ok_or_else(|| MatrixError::internal("the entry query answered no row"))?;
    entry_from(row)
}

/// Who holds the access token (hash ?2) and `Entry` for them, in one query: a `/join` of a
/// room id reads both in one D1 round trip. `None` when no user holds the token (an
/// application service's, or none: `Ctx::requester` tells).
pub async fn entry_by_token(
    db: &Db,
    room_id: &str,
    token_hash: &str,
    server: &str,
) -> Result<Option<(super::accounts::TokenOwner, Entry)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        #[serde(flatten)]
        owner: super::accounts::TokenOwner,
        #[serde(flatten)]
        entry: EntryRow,
    }
    let sql = format!(
        "SELECT t.user_id, t.device_id, t.expires_ts, t.revokes_refresh, u.deactivated, u.admin,
           {ENTRY_COLUMNS}
         FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?2"
    );
    let row: Option<Row> = db.row(&sql, args![room_id, token_hash, server]).await?;
    row.map(|row| Ok((row.owner, entry_from(row.entry)?)))
        .transpose()
}

fn entry_from(row: EntryRow) -> Result<Entry, MatrixError> {
    let version = row
        .room_version
        .map(|v| {
            RoomVersion::parse(&v)
                .ok_or_else(|| MatrixError::internal("stored room version is unsupported"))
        })
        .transpose()?;
    Ok(Entry {
        blocked: row.blocked != 0,
        resident: version.is_some() && row.ours > 0,
        version,
        profile: super::user_data::Profile {
            displayname: row.displayname,
            avatar_url: row.avatar_url,
        },
    })
}

/// Whether `event_id` is stored, and whether the room is known (held now or before), in one
/// query: the last step of a remote join asks both before it writes.
pub async fn event_and_room_known(
    db: &Db,
    room_id: &str,
    event_id: &str,
) -> Result<(bool, bool), MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        stored: i64,
        known: i64,
    }
    let row: Option<Row> = db
        .row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?2) AS stored,
               EXISTS (SELECT 1 FROM rooms WHERE room_id = ?1) AS known",
            args![room_id, event_id],
        )
        .await?;
    Ok(row.map_or((false, false), |r| (r.stored != 0, r.known != 0)))
}

/// The room's version, and whether `user_id` has forgotten the room (`None`: unknown room).
pub async fn room_version_for(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<Option<(RoomVersion, bool)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_version: String,
        forgotten: Option<i64>,
    }
    let row: Option<Row> = db
        .row(
            "SELECT r.room_version, (SELECT m.forgotten FROM memberships m
               WHERE m.room_id = r.room_id AND m.user_id = ?2) AS forgotten
             FROM rooms r WHERE r.room_id = ?1",
            args![room_id, user_id],
        )
        .await?;
    row.map(|r| {
        let version = RoomVersion::parse(&r.room_version)
            .ok_or_else(|| MatrixError::internal("stored room version is unsupported"))?;
        Ok((version, r.forgotten.unwrap_or(0) != 0))
    })
    .transpose()
}

/// The room's version and current state events, or `None` for an unknown room.
pub async fn current_state(
    db: &Db,
    room_id: &str,
) -> Result<Option<(RoomVersion, Vec<Arc<Pdu>>)>, MatrixError> {
    let Some(version) = room_version(db, room_id).await? else {
        return Ok(None);
    };
    let state = room_pdus(
        db,
        version,
        "SELECT e.pdu FROM room_state s JOIN events e ON e.event_id = s.event_id
         WHERE s.room_id = ?1",
        room_id,
    )
    .await?;
    Ok(Some((version, state)))
}

/// The events a query over `?1 = room_id` selects (one `pdu` column), parsed.
async fn room_pdus(
    db: &Db,
    version: RoomVersion,
    sql: &str,
    room_id: &str,
) -> Result<Vec<Arc<Pdu>>, MatrixError> {
    let rows: Vec<PduRow> = db.rows(sql, args![room_id]).await?;
    rows.iter()
        .map(|row| parse_pdu(&row.pdu, version).map(Arc::new))
        .collect()
}

/// Everything the room engine needs after a restart, and the transaction ids of local events
/// sent since `transactions_since` (ms), or `None` for an unknown room.
pub async fn load(
    db: &Db,
    room_id: &str,
    transactions_since: u64,
) -> Result<Option<StoredRoom>, MatrixError> {
    let Some(version) = room_version(db, room_id).await? else {
        return Ok(None);
    };
    // One pass over the room's events gives both its state events and its recent transaction
    // ids (the transaction ids have no index: a lookup is the room object's, in memory).
    #[derive(Deserialize)]
    struct Row {
        pdu: Option<String>,
        user_id: Option<String>,
        device_id: Option<String>,
        txn_id: Option<String>,
        event_id: String,
        ts: u64,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT CASE WHEN state_key IS NOT NULL THEN pdu END AS pdu, txn_user AS user_id,
                txn_device AS device_id, txn_id, event_id, origin_server_ts AS ts
             FROM events WHERE room_id = ?1
               AND (state_key IS NOT NULL OR (txn_id IS NOT NULL AND origin_server_ts >= ?2))",
            args![room_id, transactions_since],
        )
        .await?;
    let mut state_events = Vec::new();
    let mut transactions = Vec::new();
    for row in rows {
        if let Some(pdu) = &row.pdu {
            state_events.push(Arc::new(parse_pdu(pdu, version)?));
        }
        if let (Some(user_id), Some(device_id), Some(txn_id)) =
            (row.user_id, row.device_id, row.txn_id)
        {
            if row.ts >= transactions_since {
                transactions.push(SentTransaction {
                    user_id,
                    device_id,
                    txn_id,
                    event_id: row.event_id,
                    ts: row.ts,
                });
            }
        }
    }
    #[derive(Deserialize)]
    struct Slot {
        #[serde(rename = "type")]
        kind: String,
        state_key: String,
        event_id: String,
    }
    let current: Vec<Slot> = db
        .rows(
            "SELECT type, state_key, event_id FROM room_state WHERE room_id = ?1",
            args![room_id],
        )
        .await?;
    #[derive(Deserialize)]
    struct Tip {
        event_id: String,
    }
    // No rows: the room is not forked, and its one extremity is its newest timeline event
    // (`persist` writes rows only for a fork; soft-failed events and outliers are never
    // extremities, and backfilled events are ordered below all others).
    let mut tips: Vec<Tip> = db
        .rows(
            "SELECT e.event_id FROM forward_extremities f
             JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?1",
            args![room_id],
        )
        .await?;
    // A room whose join is still being stored has only outliers: its newest one stands in.
    for timeline_only in [true, false] {
        if tips.is_empty() {
            tips = db
                .rows(
                    "SELECT event_id FROM events WHERE room_id = ?1 AND (?2 = 0 OR outlier = 0)
                     ORDER BY stream_ordering DESC LIMIT 1",
                    args![room_id, i64::from(timeline_only)],
                )
                .await?;
        }
    }
    #[derive(Deserialize)]
    struct Depth {
        depth: Option<i64>,
    }
    let depth = db
        .row::<Depth>(
            "SELECT MAX(depth) AS depth FROM events WHERE room_id = ?1",
            args![room_id],
        )
        .await?
        .and_then(|d| d.depth)
        .unwrap_or(0);
    if tips.is_empty() {
        return Err(MatrixError::internal("a stored room has no events"));
    }
    let current = current
        .into_iter()
        .filter_map(|s| {
            let id = OwnedEventId::try_from(s.event_id).ok()?;
            Some(((s.kind.as_str().into(), s.state_key), id))
        })
        .collect();
    let mut loaded = Vec::new();
    for tip in tips {
        let group = state_groups::state_at(db, &tip.event_id, At::After).await?;
        let id = OwnedEventId::try_from(tip.event_id)
            .map_err(|_| MatrixError::internal("a stored event id is invalid"))?;
        loaded.push((id, group));
    }
    Ok(Some(StoredRoom {
        version,
        state_events,
        current,
        tips: loaded,
        depth: depth.max(0) as u64,
        transactions,
    }))
}

/// One accepted event and what comes with it.
pub struct EventWrite<'a> {
    pub pdu: &'a Pdu,
    pub room_id: &'a OwnedRoomId,
    pub history_visibility: &'a str,
    pub transaction: Option<(&'a str, &'a str, &'a str)>,
    pub stored_as: StoredAs,
    /// The group holding the state after the event, when it has one.
    pub state_group: Option<&'a str>,
    /// The state event this one replaced in the state before it (`unsigned.prev_content`).
    pub replaces_state: Option<&'a str>,
    /// Whom the event notifies, when that is decided before it is written
    /// (`storage::push::notified_json`): stored in the event's own row.
    pub push: Option<String>,
}

impl<'a> EventWrite<'a> {
    /// A past event of the room's timeline, fetched from another server: no state of ours
    /// is known after it.
    pub fn history(pdu: &'a Pdu, room_id: &'a OwnedRoomId, history_visibility: &'a str) -> Self {
        EventWrite {
            pdu,
            room_id,
            history_visibility,
            transaction: None,
            stored_as: StoredAs::Timeline,
            state_group: None,
            replaces_state: None,
            push: None,
        }
    }

    /// An event that is part of the room's graph but not of its timeline.
    pub fn outlier(pdu: &'a Pdu, room_id: &'a OwnedRoomId) -> Self {
        EventWrite {
            pdu,
            room_id,
            history_visibility: "shared",
            transaction: None,
            stored_as: StoredAs::Outlier,
            state_group: None,
            replaces_state: None,
            push: None,
        }
    }
}

/// How an event is part of its room (the values of `events.outlier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredAs {
    /// Accepted into the timeline.
    Timeline = 0,
    /// State or auth chain of a room joined over federation, or an invite: never in a timeline.
    Outlier = 1,
    /// Authorised by the state before it but not by the current state: part of the graph,
    /// never shown to clients.
    SoftFailed = 2,
}

/// Everything one accepted change of a room writes, in one batch.
#[derive(Default)]
pub struct RoomWrite<'a> {
    pub events: Vec<EventWrite<'a>>,
    pub groups: Vec<&'a NewGroup>,
    /// Slots of the current state that change (`None`: emptied), with the memberships they
    /// imply.
    pub state_changes: Vec<&'a SlotChange>,
    /// The room's forward extremities afterwards, when they change.
    pub extremities: Option<Vec<OwnedEventId>>,
    pub new_room: Option<NewRoom<'a>>,
    /// A timeline event of this write whose predecessors we could not fetch: the timeline has
    /// a hole before it (migration 0026, read by /sync).
    pub gap_before: Option<&'a str>,
}

/// Room creation's extra rows, written in the same batch as its events.
pub struct NewRoom<'a> {
    pub version: RoomVersion,
    pub creator: &'a str,
    pub alias: Option<&'a str>,
    pub publish: bool,
}

/// Writes events, their state groups, the current state and memberships they change, the
/// forward extremities, redaction marks and transaction ids in one D1 batch: all of it lands or
/// none of it does.
pub async fn persist(db: &Db, write: RoomWrite<'_>) -> Result<(), MatrixError> {
    match write_statements(db, &write) {
        Some(statements) => db.batch(statements).await.map(|_| ()),
        None => Ok(()),
    }
}

/// `persist`, with `read` run last in the same batch (one D1 round trip for both, and the read
/// sees the write); the read's result.
pub async fn persist_and_read(
    db: &Db,
    write: RoomWrite<'_>,
    read: crate::platform::Statement,
) -> Result<crate::platform::QueryResult, MatrixError> {
    let mut statements = write_statements(db, &write).unwrap_or_default();
    statements.push(read);
    let mut results = db.batch(statements).await?;
    results
        .pop()
        .ok_or_else(|| MatrixError::internal("a batch answered no result"))
}

/// The statements of `persist`; `None` when the write has no events.
fn write_statements(db: &Db, write: &RoomWrite<'_>) -> Option<Vec<crate::platform::Statement>> {
    let room_id = write.events.first().map(|e| e.room_id.as_str())?;
    let mut statements = Vec::new();
    if let Some(room) = &write.new_room {
        statements.push(db.stmt(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, published)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                room_id,
                room.version.as_str(),
                room.creator,
                now_ms(),
                room.publish
            ],
        ));
        if let Some(alias) = room.alias {
            statements.push(db.stmt(
                "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?1, ?2, ?3, ?4)",
                args![alias, room_id, room.creator, now_ms()],
            ));
        }
    }
    // A join of a big room writes hundreds of outliers and state slots: those go as a few
    // statements over JSON lists (D1 counts every statement of a batch against the request's
    // query limit), the rest one statement each.
    let (outliers, events): (Vec<_>, Vec<_>) = write
        .events
        .iter()
        .partition(|e| e.stored_as == StoredAs::Outlier && write.events.len() > BULK_FROM);
    for chunk in outliers.chunks(BULK_CHUNK) {
        statements.push(bulk_outliers(db, room_id, chunk));
    }
    for event in events {
        statements.extend(event_statements(db, event));
    }
    for group in &write.groups {
        statements.push(state_groups::insert(db, room_id, group));
    }
    let (set, other): (Vec<&SlotChange>, Vec<&SlotChange>) = write
        .state_changes
        .iter()
        .partition(|(_, id)| id.is_some() && write.state_changes.len() > BULK_FROM);
    for chunk in set.chunks(BULK_CHUNK) {
        statements.extend(bulk_state(db, room_id, chunk));
    }
    for change in other {
        statements.extend(state_change_statements(db, room_id, change));
    }
    if let Some(event_id) = write.gap_before {
        statements.push(db.stmt(
            "INSERT OR IGNORE INTO timeline_gaps (room_id, stream_ordering)
             SELECT room_id, stream_ordering FROM events WHERE event_id = ?1 AND outlier = 0",
            args![event_id],
        ));
    }
    if let Some(extremities) = &write.extremities {
        statements.push(db.stmt(
            "DELETE FROM forward_extremities WHERE room_id = ?1",
            args![room_id],
        ));
        // A room that is not forked has one extremity, its newest timeline event, and `load`
        // finds that without rows: a message then writes none here (the rows written per
        // message are the platform's cost, docs/benchmarks.md). Rows are kept while forked.
        let newest = write
            .events
            .iter()
            .rev()
            .find(|e| e.stored_as == StoredAs::Timeline)
            .map(|e| e.pdu.event_id());
        let implied = matches!(extremities.as_slice(), [only] if Some(&**only) == newest);
        for id in extremities.iter().filter(|_| !implied) {
            statements.push(db.stmt(
                "INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)",
                args![room_id, id.as_str()],
            ));
        }
    }
    Some(statements)
}

/// From how many rows a write goes in bulk, and how many rows one bulk statement carries (a
/// statement's JSON list stays well below D1's 1 MB value limit: PDUs are at most 64 KiB, and a
/// state event is usually under 1 KiB).
const BULK_FROM: usize = 8;
const BULK_CHUNK: usize = 100;

/// Outliers (a joined room's state and auth chain) in one statement: they are never in the
/// timeline, carry no transaction and no relation that matters to clients.
fn bulk_outliers(db: &Db, room_id: &str, events: &[&EventWrite<'_>]) -> crate::platform::Statement {
    let rows: Vec<Value> = events
        .iter()
        .map(|w| {
            let pdu = w.pdu;
            let content: Value = serde_json::from_str(pdu.content().get()).unwrap_or(Value::Null);
            let kind = pdu.kind().to_string();
            serde_json::json!({
                "id": pdu.event_id().as_str(),
                "type": kind,
                "state_key": pdu.state_key(),
                "sender": pdu.sender().as_str(),
                "ts": u64::from(ruma::state_res::Event::origin_server_ts(pdu).get()),
                "depth": pdu.depth(),
                "pdu": ruma::CanonicalJsonValue::Object(pdu.json().clone()).to_string(),
                "membership": content.get("membership").and_then(Value::as_str)
                    .filter(|_| kind == "m.room.member"),
            })
        })
        .collect();
    let rows = Value::Array(rows).to_string();
    db.stmt(
        "INSERT OR IGNORE INTO events (event_id, room_id, type, state_key, sender, origin_server_ts,
            depth, pdu, history_visibility, membership, outlier)
         SELECT json_extract(value, '$.id'), ?1, json_extract(value, '$.type'),
            json_extract(value, '$.state_key'), json_extract(value, '$.sender'),
            json_extract(value, '$.ts'), json_extract(value, '$.depth'), json_extract(value, '$.pdu'),
            'shared', json_extract(value, '$.membership'), 1
         FROM json_each(?2)",
        args![room_id, &rows],
    )
}

/// State slots set in bulk, with the membership rows of member slots (as
/// `state_change_statements` does one by one).
fn bulk_state(db: &Db, room_id: &str, changes: &[&SlotChange]) -> Vec<crate::platform::Statement> {
    let rows: Vec<Value> = changes
        .iter()
        .filter_map(|((kind, key), id)| {
            Some(serde_json::json!([
                kind.to_string(),
                key,
                id.as_ref()?.as_str()
            ]))
        })
        .collect();
    let rows = Value::Array(rows).to_string();
    vec![
        db.stmt(
            "INSERT INTO room_state (room_id, type, state_key, event_id)
             SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                json_extract(value, '$[2]')
             FROM json_each(?2) WHERE true
             ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id",
            args![room_id, &rows],
        ),
        db.stmt(
            "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
             SELECT room_id, state_key, membership, event_id, stream_ordering, 0 FROM events
             WHERE event_id IN (SELECT json_extract(value, '$[2]') FROM json_each(?2)
                                WHERE json_extract(value, '$[0]') = 'm.room.member')
               AND membership IS NOT NULL AND room_id = ?1
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
               event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,
               forgotten = 0",
            args![room_id, &rows],
        ),
    ]
}

/// One slot of the current state, and the membership row of a member slot. Runs after the
/// events are inserted, so memberships take their stream position from the event row.
fn state_change_statements(
    db: &Db,
    room_id: &str,
    ((kind, state_key), event_id): &SlotChange,
) -> Vec<crate::platform::Statement> {
    let kind = kind.to_string();
    let Some(event_id) = event_id else {
        return vec![db.stmt(
            "DELETE FROM room_state WHERE room_id = ?1 AND type = ?2 AND state_key = ?3",
            args![room_id, kind.as_str(), state_key.as_str()],
        )];
    };
    let mut statements = vec![db.stmt(
        "INSERT INTO room_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id",
        args![
            room_id,
            kind.as_str(),
            state_key.as_str(),
            event_id.as_str()
        ],
    )];
    if kind == "m.room.member" {
        statements.push(db.stmt(
            "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
             SELECT room_id, state_key, membership, event_id, stream_ordering, 0 FROM events
             WHERE event_id = ?1 AND membership IS NOT NULL
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
               event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,
               forgotten = 0",
            args![event_id.as_str()],
        ));
    }
    statements
}

/// What the events table indexes of an event's content: `membership` (kept for member events
/// only), and the event it relates to with the relation's type.
pub(super) fn indexed_content(content: &Value) -> (Option<&str>, Option<&str>, Option<&str>) {
    let field = |pointer: &str| content.pointer(pointer).and_then(Value::as_str);
    (
        field("/membership"),
        field("/m.relates_to/event_id"),
        field("/m.relates_to/rel_type"),
    )
}

fn event_statements(db: &Db, w: &EventWrite<'_>) -> Vec<crate::platform::Statement> {
    let pdu = w.pdu;
    let event_id = pdu.event_id().as_str();
    let room_id = w.room_id.as_str();
    let content: Value = serde_json::from_str(pdu.content().get()).unwrap_or(Value::Null);
    let (membership, relates_to, rel_type) = indexed_content(&content);
    let (txn_user, txn_device, txn_id) = match w.transaction {
        Some((u, d, t)) => (Some(u), Some(d), Some(t)),
        None => (None, None, None),
    };
    let kind = pdu.kind().to_string();
    let pdu_text = ruma::CanonicalJsonValue::Object(pdu.json().clone()).to_string();
    // A room joined again over federation brings state events we may already hold.
    let insert = if w.stored_as == StoredAs::Outlier {
        "INSERT OR IGNORE"
    } else {
        "INSERT"
    };
    let mut statements = vec![db.stmt(
        &format!("{insert} INTO events (event_id, room_id, type, state_key, sender, origin_server_ts, depth,
            pdu, history_visibility, membership, relates_to, rel_type, txn_user, txn_device, txn_id, outlier,
            state_group, replaces_state, push)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
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
            w.stored_as as i64,
            w.state_group,
            w.replaces_state,
            w.push.as_deref(),
        ],
    )];
    if w.stored_as == StoredAs::Timeline {
        if let Some(text) = super::search::indexed_text(&kind, &content) {
            statements.push(super::search::index(db, event_id, &text));
        }
    }
    // Only an accepted redaction redacts; a soft-failed one is not part of the room's history.
    if let Some(redacts) = pdu.redacts().filter(|_| w.stored_as == StoredAs::Timeline) {
        statements.push(db.stmt(
            "UPDATE events SET redacted_by = ?1 WHERE event_id = ?2 AND room_id = ?3 AND redacted_by IS NULL",
            args![event_id, redacts.as_str(), room_id],
        ));
        statements.push(super::search::unindex(db, redacts.as_str(), room_id));
    }
    // The transaction id is in the row's own columns (`txn_user`, `txn_device`, `txn_id`): the
    // room object finds a retried one in memory (rooms/object/transactions.rs), so it costs no
    // row of its own.
    statements
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

/// The upgraded room this one replaces, as its create event names it
/// (`content.predecessor.room_id`).
pub async fn predecessor(db: &Db, room_id: &str) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room: Option<String>,
    }
    Ok(db
        .row::<Row>(
            "SELECT json_extract(e.pdu, '$.content.predecessor.room_id') AS room
             FROM room_state s JOIN events e ON e.event_id = s.event_id
             WHERE s.room_id = ?1 AND s.type = 'm.room.create' AND s.state_key = ''",
            args![room_id],
        )
        .await?
        .and_then(|r| r.room))
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

/// Forgets a room the user left. No stream records it, so the user's sliding sync connections
/// are marked stale: their next answers rank every room again (the room leaves their lists).
pub async fn forget(db: &Db, room_id: &str, user_id: &str) -> Result<(), MatrixError> {
    db.batch(vec![
        db.stmt(
            "UPDATE memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2",
            args![room_id, user_id],
        ),
        super::sliding_sync::mark_stale(db, user_id),
    ])
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
/// The pending invite of a user, as `(invite event id, inviter)`: what a rescission of it
/// must cite and come from.
pub async fn pending_invite(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<Option<(String, String)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        event_id: String,
        sender: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT m.event_id, e.sender FROM memberships m JOIN events e ON e.event_id = m.event_id
             WHERE m.room_id = ?1 AND m.user_id = ?2 AND m.membership = 'invite'",
            args![room_id, user_id],
        )
        .await?
        .map(|r| (r.event_id, r.sender)))
}

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
