//! The SQL of push: whom an event notifies (the `push` column of its row, see
//! migrations/0029_fewer_rows_per_message.sql), their unread counts, and pushers.

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

/// The value of an event's `push` column: when it was evaluated (`ts`) and, per notified
/// local user, `[highlight, actions]` (`u`). `None` when nobody is notified (the column stays
/// NULL). Written with the event's row when decided before it (a local message: no row of its
/// own), otherwise by [`notifications_statement`].
pub fn notified_json(users: &[NotifiedUser<'_>], now_ms: u64) -> Option<String> {
    if users.is_empty() {
        return None;
    }
    let notified: Map<String, Value> = users
        .iter()
        .map(|u| {
            let entry = json!([u.highlight as i64, u.actions]);
            (u.user_id.to_owned(), entry)
        })
        .collect();
    Some(json!({ "ts": now_ms, "u": notified }).to_string())
}

/// Stores the notifications of an event already written (see [`notified_json`]): one update
/// of its row. A retried evaluation of the same event changes nothing.
pub fn notifications_statement(db: &Db, event_id: &str, room_id: &str, push: &str) -> Statement {
    db.stmt(
        "UPDATE events SET push = ?2 WHERE event_id = ?1 AND room_id = ?3 AND push IS NULL",
        args![event_id, push, room_id],
    )
}

/// The user's read position per room of `rooms` (a query of one column of room ids) and thread:
/// the newest event a read receipt (public or private) points at, `''` for the unthreaded
/// receipt. Receipts are keyed by room first (`UNIQUE (room_id, user_id, ...)`): found room by
/// room, they are a seek each; by the user alone, SQLite scans every user's receipts, and D1
/// bills each row read.
fn read(rooms: &str) -> String {
    format!(
        "read AS (SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) AS pos
           FROM receipts r JOIN events e ON e.event_id = r.event_id
           WHERE r.room_id IN ({rooms}) AND r.user_id = ?1
             AND r.receipt_type IN ('m.read', 'm.read.private')
           GROUP BY r.room_id, r.thread_id)"
    )
}

/// Every room `?1` has a membership in: where their receipts can be.
const ROOMS_OF_USER: &str = "SELECT room_id FROM memberships WHERE user_id = ?1";

/// The thread of an event row `e` for counts and receipts: the root of an `m.thread` relation,
/// otherwise the main timeline (`push::counts::MAIN`).
const THREAD: &str =
    "CASE WHEN e.rel_type = 'm.thread' AND e.relates_to IS NOT NULL THEN e.relates_to ELSE 'main' END";

/// Where the unread notifications of the user `?1` in the room `room` (a column) can start:
/// after their join (what came before, their invite included, is no longer news once they are
/// in the room) and after their unthreaded receipt. The events of each room are read from there
/// on with the `(room_id, stream_ordering)` index.
fn since(room: &str) -> String {
    format!(
        "MAX(COALESCE((SELECT m.stream_ordering FROM memberships m
                WHERE m.room_id = {room} AND m.user_id = ?1 AND m.membership = 'join'), 0),
             COALESCE((SELECT pos FROM read WHERE read.room_id = {room} AND read.thread_id = ''), 0))"
    )
}

/// The rest of "unread" for a notifying event row `e` past [`since`]: not redacted, and after
/// the receipt of its own thread.
fn unread_in_thread() -> String {
    format!(
        "e.redacted_by IS NULL AND e.stream_ordering > COALESCE((SELECT pos FROM read
            WHERE read.room_id = e.room_id AND read.thread_id = {THREAD}), 0)"
    )
}

/// Whether a notifying event row `e` is unread by `?1` (its row in a list, not a range).
fn is_unread() -> String {
    format!(
        "{} AND e.stream_ordering > {}",
        unread_in_thread(),
        since("e.room_id")
    )
}

/// The user's notifications in the event rows `e` of a query: `u.value` is `[highlight,
/// actions]`.
const MINE: &str = "JOIN json_each(e.push, '$.u') u ON u.key = ?1";

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
            &unread_sql("?1", "SELECT value AS room_id FROM json_each(?2)"),
            args![user_id, &json!(rooms).to_string()],
        )
        .await?;
    Ok(unread_from(rows))
}

/// How many stream positions after the user's read position the unread counts of a room look
/// through, at most. The notifications live in the event rows, so counting them reads the room's
/// events after the read position: without a bound, a room its user never reads (a busy bridged
/// room, say) would cost every /sync that mentions it a read of its whole unread history, and D1
/// bills rows read. A bound in positions costs no read of its own (a bound in events would: the
/// n-th event after the read position has to be found first); past it the counts stop growing
/// (docs/design.md, "Push"). Native tests use a small window so that one can fill it.
#[cfg(not(test))]
pub const UNREAD_WINDOW: i64 = 10_000;
#[cfg(test)]
pub const UNREAD_WINDOW: i64 = 40;

/// The query of [`unread`], its operands as SQL: `user` an expression, `rooms` a query with one
/// `room_id` column. Counts among each room's newest [`UNREAD_WINDOW`] events. The rooms are
/// the outer loop (`CROSS JOIN` fixes SQLite's join order): over a CTE of rooms, which has no
/// statistics, SQLite otherwise chose to walk every event of the server by the
/// `(room_id, stream_ordering)` index and look each one's room up, so every /sync with news
/// read rows in proportion to the whole events table.
pub(crate) fn unread_sql(user: &str, rooms: &str) -> String {
    let sql = format!(
        "WITH {}, since AS (SELECT r.room_id, {} AS pos FROM ({rooms}) r)
         SELECT e.room_id, {THREAD} AS thread_id, COUNT(*) AS n,
                SUM(json_extract(u.value, '$[0]')) AS h
         FROM since s CROSS JOIN events e ON e.room_id = s.room_id AND e.stream_ordering > s.pos
           AND e.stream_ordering <= s.pos + {UNREAD_WINDOW}
           {MINE}
         WHERE e.push IS NOT NULL AND {}
         GROUP BY e.room_id, thread_id",
        read(&format!("SELECT room_id FROM ({rooms})")),
        since("r.room_id"),
        unread_in_thread(),
    );
    // The parts above name the user `?1`.
    sql.replace("?1", user)
}

/// A row of [`unread_sql`].
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
    let rows: Vec<UnreadRow> = db
        .rows(
            &unread_sql(
                "?1",
                "SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join'",
            ),
            args![user_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.n as u64).sum())
}

/// How many stream positions one page of `/notifications`, or one step of a push queue, looks
/// through at most: the notifications live in the event rows, so finding a user's means
/// reading the events around them, and this bounds the rows one request reads (docs/design.md,
/// "Push").
pub const NOTIFICATION_WINDOW: i64 = 2000;

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

/// The newest stream position plus one: where a look back with no bound starts.
async fn stream_top(db: &Db) -> Result<i64, MatrixError> {
    Ok(db
        .row::<super::Count>(
            "SELECT COALESCE(MAX(stream_ordering), 0) + 1 AS n FROM events",
            args![],
        )
        .await?
        .and_then(|c| c.n)
        .unwrap_or(1))
}

/// The user's notifications before position `before` (exclusive), newest first, in rooms they
/// are still joined to; with `highlight_only`, highlights alone. At most
/// [`NOTIFICATION_WINDOW`] positions are looked through: the second value is the lowest one
/// looked at when older positions remain (notifications before it are for the next page).
pub async fn notifications(
    db: &Db,
    user_id: &str,
    before: u64,
    limit: u64,
    highlight_only: bool,
) -> Result<(Vec<NotificationRow>, Option<u64>), MatrixError> {
    // The top is read with the page, in the same snapshot (one D1 batch).
    let sql = format!(
            "WITH {} SELECT e.stream_ordering AS stream_ordering,
                    json_extract(u.value, '$[1]') AS actions, json_extract(e.push, '$.ts') AS ts,
                    NOT ({}) AS read, ro.room_version,
                    e.event_id, e.room_id, e.type, e.state_key, e.sender, e.pdu,
                    e.history_visibility, e.txn_user, e.txn_device, e.txn_id, x.pdu AS redaction
             FROM events e {MINE}
               JOIN rooms ro ON ro.room_id = e.room_id
               LEFT JOIN events x ON x.event_id = e.redacted_by
             WHERE e.stream_ordering < ?2
               AND e.stream_ordering >= (SELECT MIN(?2, COALESCE(MAX(stream_ordering), 0) + 1)
                                         FROM events) - ?5
               AND e.push IS NOT NULL AND (?3 = 0 OR json_extract(u.value, '$[0]') = 1)
               AND e.room_id IN (SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join')
             ORDER BY e.stream_ordering DESC LIMIT ?4",
        read(ROOMS_OF_USER),
        is_unread()
    );
    let page_args = args![user_id, before, highlight_only, limit, NOTIFICATION_WINDOW];
    let page = db.rows::<NotificationRow>(&sql, page_args);
    let (page, top) = futures::join!(page, stream_top(db));
    let floor = top?.min(i64::try_from(before).unwrap_or(i64::MAX)) - NOTIFICATION_WINDOW;
    Ok((page?, u64::try_from(floor).ok().filter(|f| *f > 1)))
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
/// their pushers have yet to be told. At most [`NOTIFICATION_WINDOW`] positions are looked
/// through; also the last position looked at (the queue's cursor when nothing was found) and
/// whether positions after it remain.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the push queue's (wasm)
pub async fn pending_pushes(
    db: &Db,
    user_id: &str,
    after: i64,
    limit: u64,
) -> Result<(Vec<PendingPush>, i64, bool), MatrixError> {
    let state = |kind: &str, key: &str, field: &str| {
        format!(
            "(SELECT json_extract(s.pdu, '$.content.{field}') FROM room_state rs
               JOIN events s ON s.event_id = rs.event_id
               WHERE rs.room_id = e.room_id AND rs.type = '{kind}' AND rs.state_key = {key})"
        )
    };
    let sql = format!(
        "WITH {} SELECT e.stream_ordering, e.event_id, e.room_id,
                    json_extract(u.value, '$[1]') AS actions, e.pdu,
                    {} AS sender_name, {} AS room_name, {} AS room_alias
             FROM events e {MINE}
             WHERE e.stream_ordering > ?2 AND e.stream_ordering <= ?2 + ?4
               AND e.push IS NOT NULL AND {}
             ORDER BY e.stream_ordering LIMIT ?3",
        read(ROOMS_OF_USER),
        state("m.room.member", "e.sender", "displayname"),
        state("m.room.name", "''", "name"),
        state("m.room.canonical_alias", "''", "alias"),
        is_unread(),
    );
    let page_args = args![user_id, after, limit, NOTIFICATION_WINDOW];
    let page = db.rows::<PendingPush>(&sql, page_args);
    let (page, top) = futures::join!(page, stream_top(db));
    let newest = top? - 1;
    let looked_to = (after + NOTIFICATION_WINDOW).min(newest).max(after);
    Ok((page?, looked_to, looked_to < newest))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Sqlite;

    /// Unread counts seek: receipts room by room (never a scan of every user's receipts), and
    /// each room's events by its index (never a walk of every event of the server).
    #[test]
    fn unread_counts_seek_receipts_and_events_room_by_room() {
        let db = Sqlite::migrated();
        let of_user = db.plan(&format!("WITH {} SELECT * FROM read", read(ROOMS_OF_USER)));
        // The rooms as /sync's first statement has them: a CTE, of which SQLite knows nothing.
        let counts = db.plan(&format!(
            "WITH fold AS (SELECT room_id FROM rooms) SELECT * FROM ({})",
            unread_sql("?1", "SELECT room_id FROM fold")
        ));
        let scans = |plan: &str, table: &str| {
            let step = format!("SCAN {table}");
            plan.lines()
                .any(|line| line == step || line.starts_with(&format!("{step} ")))
        };
        for plan in [of_user, counts] {
            assert!(plan.contains("SEARCH r USING INDEX"), "{plan}");
            assert!(!scans(&plan, "r") && !scans(&plan, "e"), "{plan}");
        }
    }
}
