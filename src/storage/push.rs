//! The SQL of push: notification rows (one per event and notified local user, see
//! migrations/0020_push.sql), their unread counts, and pushers.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::platform::Statement;
use crate::push::counts::{RoomUnread, Unread};
use crate::push::pusher::Pusher;

/// A local member to evaluate an event for: their stored rule changes (if any), and whether
/// they have a pusher (then their push queue is poked).
#[derive(Deserialize)]
pub struct RecipientRow {
    pub user_id: String,
    pub rules: Option<String>,
    pub has_pusher: i64,
}

const RECIPIENTS: &str = "SELECT u.user_id, p.rules,
        EXISTS (SELECT 1 FROM pushers x WHERE x.user_id = u.user_id) AS has_pusher
     FROM users u LEFT JOIN push_rules p ON p.user_id = u.user_id
     WHERE u.user_id IN (SELECT value FROM json_each(?1))";

/// The rules and pusher flag of each of `users` that has an account here, in one query (a
/// plain read: it shares a D1 batch with reads started alongside, as a send's transaction-id
/// lookup).
pub async fn recipients(db: &Db, users: &[&str]) -> Result<Vec<RecipientRow>, MatrixError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    db.rows(RECIPIENTS, args![&json!(users).to_string()]).await
}

/// The query of `recipients`, to run inside another batch (an incoming PDU's write,
/// rooms/object/incoming.rs); `None` when there is nobody to read.
pub fn recipients_statement(db: &Db, users: &[&str]) -> Option<Statement> {
    (!users.is_empty()).then(|| db.stmt(RECIPIENTS, args![&json!(users).to_string()]))
}

/// One notified user of an event.
pub struct NotifiedUser<'a> {
    pub user_id: &'a str,
    pub highlight: bool,
    pub actions: &'a [Value],
}

/// The statement that stores the notifications of one event, all users at once, to run after
/// the event's own rows (in the batch that writes them, or later): it reads the event's stream
/// position from its row. A retried evaluation of the same event changes nothing. `None` when
/// nobody is notified.
pub fn notifications_statement(
    db: &Db,
    event_id: &str,
    room_id: &str,
    thread_id: &str,
    users: &[NotifiedUser<'_>],
    now_ms: u64,
) -> Option<Statement> {
    if users.is_empty() {
        return None;
    }
    let rows: Vec<Value> = users
        .iter()
        .map(|u| {
            json!([
                u.user_id,
                u.highlight as i64,
                Value::Array(u.actions.to_vec()).to_string()
            ])
        })
        .collect();
    Some(db.stmt(
        "INSERT OR IGNORE INTO event_push_actions
           (user_id, event_id, room_id, stream_ordering, thread_id, highlight, actions, ts)
         SELECT json_extract(j.value, '$[0]'), e.event_id, e.room_id, e.stream_ordering, ?2,
                json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), ?3
         FROM json_each(?4) j JOIN events e ON e.event_id = ?1 AND e.room_id = ?5",
        args![
            event_id,
            thread_id,
            now_ms,
            &Value::Array(rows).to_string(),
            room_id
        ],
    ))
}

/// The user's read position per room and thread: the newest event a read receipt (public or
/// private) points at, `''` for the unthreaded receipt.
const READ: &str = "read AS (SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) AS pos
     FROM receipts r JOIN events e ON e.event_id = r.event_id
     WHERE r.user_id = ?1 AND r.receipt_type IN ('m.read', 'm.read.private')
     GROUP BY r.room_id, r.thread_id)";

/// A notification row is unread when its event is not redacted, and it is after the unthreaded
/// receipt, after the receipt of its own thread, and after the user's join (what came before,
/// their invite included, is no longer news once they are in the room). `?1` is the user.
const UNREAD: &str = "NOT EXISTS (SELECT 1 FROM events r WHERE r.event_id = p.event_id AND r.redacted_by IS NOT NULL)
     AND p.stream_ordering > COALESCE((SELECT m.stream_ordering FROM memberships m
        WHERE m.room_id = p.room_id AND m.user_id = ?1 AND m.membership = 'join'), 0)
     AND p.stream_ordering > COALESCE((SELECT pos FROM read
        WHERE read.room_id = p.room_id AND read.thread_id = ''), 0)
     AND p.stream_ordering > COALESCE((SELECT pos FROM read
        WHERE read.room_id = p.room_id AND read.thread_id = p.thread_id), 0)";

/// Unread notifications of the user in each of `rooms`, by thread (rooms with none absent).
pub async fn unread(
    db: &Db,
    user_id: &str,
    rooms: &[&str],
) -> Result<HashMap<String, RoomUnread>, MatrixError> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<UnreadRow> = db
        .rows(
            &unread_sql("?1", "(SELECT value FROM json_each(?2))"),
            args![user_id, &json!(rooms).to_string()],
        )
        .await?;
    Ok(unread_from(rows))
}

/// The query of `unread`, its operands as SQL expressions (`rooms`: a list).
pub(crate) fn unread_sql(user: &str, rooms: &str) -> String {
    // `READ` and `UNREAD` name the user `?1`.
    let user_is = |sql: &str| sql.replace("?1", user);
    format!(
        "WITH {} SELECT p.room_id, p.thread_id, COUNT(*) AS n, SUM(p.highlight) AS h
         FROM event_push_actions p
         WHERE p.user_id = {user} AND p.room_id IN {rooms} AND {}
         GROUP BY p.room_id, p.thread_id",
        user_is(READ),
        user_is(UNREAD),
    )
}

/// A row of `unread_sql`.
#[derive(Deserialize)]
pub(crate) struct UnreadRow {
    room_id: String,
    thread_id: String,
    n: i64,
    h: Option<i64>,
}

pub(crate) fn unread_from(rows: Vec<UnreadRow>) -> HashMap<String, RoomUnread> {
    let mut out: HashMap<String, RoomUnread> = HashMap::new();
    for row in rows {
        out.entry(row.room_id).or_default().threads.insert(
            row.thread_id,
            Unread {
                notifications: row.n as u64,
                highlights: row.h.unwrap_or(0) as u64,
            },
        );
    }
    out
}

/// The user's unread notifications in all rooms they are joined to (the push payload's
/// `counts.unread`).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the push queue's (wasm)
pub async fn unread_total(db: &Db, user_id: &str) -> Result<u64, MatrixError> {
    Ok(db
        .row::<super::Count>(
            &format!(
                "WITH {READ} SELECT COUNT(*) AS n FROM event_push_actions p
                 WHERE p.user_id = ?1 AND p.room_id IN (SELECT room_id FROM memberships
                   WHERE user_id = ?1 AND membership = 'join') AND {UNREAD}"
            ),
            args![user_id],
        )
        .await?
        .and_then(|c| c.n)
        .unwrap_or(0) as u64)
}

/// One stored notification with its event, newest first in [`notifications`].
#[derive(Deserialize)]
pub struct NotificationRow {
    pub actions: String,
    pub ts: i64,
    pub read: i64,
    pub room_version: String,
    #[serde(flatten)]
    pub event: super::events::EventRow,
}

/// The user's notifications before position `before` (exclusive), newest first, in rooms they
/// are still joined to; with `highlight_only`, highlights alone.
pub async fn notifications(
    db: &Db,
    user_id: &str,
    before: u64,
    limit: u64,
    highlight_only: bool,
) -> Result<Vec<NotificationRow>, MatrixError> {
    db.rows(
        &format!(
            "WITH {READ} SELECT p.stream_ordering AS stream_ordering, p.actions, p.ts,
                    NOT ({UNREAD}) AS read, ro.room_version,
                    e.event_id, e.room_id, e.type, e.state_key, e.sender, e.pdu,
                    e.history_visibility, e.txn_user, e.txn_device, e.txn_id, x.pdu AS redaction
             FROM event_push_actions p JOIN events e ON e.event_id = p.event_id
               JOIN rooms ro ON ro.room_id = p.room_id
               LEFT JOIN events x ON x.event_id = e.redacted_by
             WHERE p.user_id = ?1 AND p.stream_ordering < ?2 AND (?3 = 0 OR p.highlight = 1)
               AND p.room_id IN (SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join')
             ORDER BY p.stream_ordering DESC LIMIT ?4"
        ),
        args![user_id, before, highlight_only, limit],
    )
    .await
}

/// A notification for the push queue: the row, its event's PDU, and who else is named.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the push queue's (wasm)
#[derive(Deserialize)]
pub struct PendingPush {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub actions: String,
    pub pdu: String,
    /// The sender's display name in the room, from their current member event.
    pub sender_name: Option<String>,
    pub room_name: Option<String>,
    pub room_alias: Option<String>,
}

/// The user's notifications after `after`, oldest first, still unread and not redacted: what
/// their pushers have yet to be told.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the push queue's (wasm)
pub async fn pending_pushes(
    db: &Db,
    user_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<PendingPush>, MatrixError> {
    let state = |kind: &str, key: &str, field: &str| {
        format!(
            "(SELECT json_extract(s.pdu, '$.content.{field}') FROM room_state rs
               JOIN events s ON s.event_id = rs.event_id
               WHERE rs.room_id = p.room_id AND rs.type = '{kind}' AND rs.state_key = {key})"
        )
    };
    db.rows(
        &format!(
            "WITH {READ} SELECT p.stream_ordering, p.event_id, p.room_id, p.actions, e.pdu,
                    {} AS sender_name, {} AS room_name, {} AS room_alias
             FROM event_push_actions p JOIN events e ON e.event_id = p.event_id
             WHERE p.user_id = ?1 AND p.stream_ordering > ?2 AND e.redacted_by IS NULL AND {UNREAD}
             ORDER BY p.stream_ordering LIMIT ?3",
            state("m.room.member", "e.sender", "displayname"),
            state("m.room.name", "''", "name"),
            state("m.room.canonical_alias", "''", "alias"),
        ),
        args![user_id, after, limit],
    )
    .await
}

#[derive(Deserialize)]
struct PusherRow {
    app_id: String,
    pushkey: String,
    kind: String,
    app_display_name: String,
    device_display_name: String,
    profile_tag: Option<String>,
    lang: String,
    data: String,
    pushkey_ts: i64,
    start_stream: i64,
}

impl PusherRow {
    fn into_pusher(self) -> (Pusher, i64) {
        let data = serde_json::from_str::<Map<String, Value>>(&self.data).unwrap_or_default();
        (
            Pusher {
                app_id: self.app_id,
                pushkey: self.pushkey,
                kind: self.kind,
                app_display_name: self.app_display_name,
                device_display_name: self.device_display_name,
                profile_tag: self.profile_tag,
                lang: self.lang,
                data,
                pushkey_ts: self.pushkey_ts as u64,
            },
            self.start_stream,
        )
    }
}

/// The user's pushers, with the position each started at.
pub async fn pushers(db: &Db, user_id: &str) -> Result<Vec<(Pusher, i64)>, MatrixError> {
    let rows: Vec<PusherRow> = db
        .rows(
            "SELECT app_id, pushkey, kind, app_display_name, device_display_name, profile_tag,
                    lang, data, pushkey_ts, start_stream
             FROM pushers WHERE user_id = ?1 ORDER BY pushkey_ts, app_id, pushkey",
            args![user_id],
        )
        .await?;
    Ok(rows.into_iter().map(PusherRow::into_pusher).collect())
}

/// Creates or replaces the user's pusher (same app id and pushkey). Without `append`, the same
/// app id and pushkey of other users are removed in the same batch (spec: `append`).
pub async fn set_pusher(
    db: &Db,
    user_id: &str,
    device_id: Option<&str>,
    pusher: &Pusher,
    append: bool,
) -> Result<(), MatrixError> {
    let data = Value::Object(pusher.data.clone()).to_string();
    let mut statements = Vec::new();
    if !append {
        statements.push(db.stmt(
            "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id != ?3",
            args![&pusher.app_id, &pusher.pushkey, user_id],
        ));
    }
    statements.push(db.stmt(
        "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name,
            device_display_name, profile_tag, lang, data, device_id, pushkey_ts, start_stream)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
            COALESCE((SELECT MAX(stream_ordering) FROM events), 0))
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind,
            app_display_name = excluded.app_display_name,
            device_display_name = excluded.device_display_name,
            profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
            device_id = excluded.device_id, pushkey_ts = excluded.pushkey_ts",
        args![
            user_id,
            &pusher.app_id,
            &pusher.pushkey,
            &pusher.kind,
            &pusher.app_display_name,
            &pusher.device_display_name,
            pusher.profile_tag.as_deref(),
            &pusher.lang,
            &data,
            device_id,
            pusher.pushkey_ts,
        ],
    ));
    db.batch(statements).await?;
    Ok(())
}

/// Removes the user's pusher with this app id and pushkey (none: nothing changes).
pub async fn delete_pusher(
    db: &Db,
    user_id: &str,
    app_id: &str,
    pushkey: &str,
) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
        args![user_id, app_id, pushkey],
    )
    .await?;
    Ok(())
}

/// Removes the user's pushers whose pushkey a gateway rejected.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the push queue's (wasm)
pub async fn delete_rejected(
    db: &Db,
    user_id: &str,
    app_id: &str,
    pushkeys: &[String],
) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2
           AND pushkey IN (SELECT value FROM json_each(?3))",
        args![user_id, app_id, &json!(pushkeys).to_string()],
    )
    .await?;
    Ok(())
}

/// The statement that removes the pushers set through the given devices' access tokens, for
/// the batch that deletes those devices.
pub fn delete_for_devices(
    db: &Db,
    user_id: &str,
    devices: &[String],
) -> crate::platform::Statement {
    db.stmt(
        "DELETE FROM pushers WHERE user_id = ?1 AND device_id IN (SELECT value FROM json_each(?2))",
        args![user_id, &json!(devices).to_string()],
    )
}
