//! The per-room reads of `/sync`, done for all of a user's rooms at once. The platform allows 50
//! D1 queries per request on the free plan, so a sync costs a fixed number of queries whatever
//! the number of rooms: each function here is one query over a JSON list of rooms (SQLite's
//! `json_each`), with the per-room bounds in the list.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{json, Value};

use super::events::{EventRow, SELECT};
use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::rooms::visibility::MembershipHistory;

/// One room's range of stream positions, `(after, up_to]`.
pub struct Window<'a> {
    pub room_id: &'a str,
    pub after: u64,
    pub up_to: u64,
}

pub(crate) fn windows_json(windows: &[Window<'_>]) -> String {
    Value::Array(
        windows
            .iter()
            .map(|w| json!([w.room_id, w.after, w.up_to.min(i64::MAX as u64)]))
            .collect(),
    )
    .to_string()
}

/// The windows as the table `wanted (room_id, lo, hi)`, from the JSON list in `?1`.
const WANTED: &str = "WITH wanted AS (SELECT json_extract(value, '$[0]') AS room_id,
    json_extract(value, '$[1]') AS lo, json_extract(value, '$[2]') AS hi FROM json_each(?1))";

/// Event rows grouped by room, each room's in the order given.
pub(crate) fn by_room(rows: Vec<EventRow>) -> HashMap<String, Vec<EventRow>> {
    let mut out: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in rows {
        out.entry(row.room_id.clone()).or_default().push(row);
    }
    out
}

/// The user's membership events in each of the rooms, in stream order.
pub async fn membership_histories(
    db: &Db,
    user_id: &str,
    rooms: &[&str],
) -> Result<BTreeMap<String, MembershipHistory>, MatrixError> {
    let rows = super::events::member_rows(
        db,
        &membership_histories_sql("?2", "(SELECT value FROM json_each(?1))"),
        args![&json!(rooms).to_string(), user_id],
    )
    .await?;
    Ok(MembershipHistory::grouped(rows))
}

/// The query of `membership_histories`, its operands as SQL expressions (`rooms`: a list).
/// Its columns are `events::MemberRow`'s.
pub(crate) fn membership_histories_sql(user: &str, rooms: &str) -> String {
    format!(
        "SELECT room_id AS key, stream_ordering, membership FROM events
         WHERE type = 'm.room.member' AND state_key = {user} AND room_id IN {rooms}
         ORDER BY stream_ordering"
    )
}

/// The newest `limit` events of each window, newest first. The correlated subquery walks each
/// room's index backwards and stops after `limit` rows, however long the room's history is.
pub async fn timelines(
    db: &Db,
    windows: &[Window<'_>],
    limit: u64,
) -> Result<HashMap<String, Vec<EventRow>>, MatrixError> {
    window_ends(db, windows, limit, "DESC").await
}

/// The oldest `limit` events of each window, oldest first (what follows a point, as
/// `timelines` gives what precedes it).
pub async fn timelines_forwards(
    db: &Db,
    windows: &[Window<'_>],
    limit: u64,
) -> Result<HashMap<String, Vec<EventRow>>, MatrixError> {
    window_ends(db, windows, limit, "ASC").await
}

/// `limit` events from one end of each window, in `order` (`ASC` or `DESC`).
async fn window_ends(
    db: &Db,
    windows: &[Window<'_>],
    limit: u64,
    order: &str,
) -> Result<HashMap<String, Vec<EventRow>>, MatrixError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db
        .rows(
            &format!("{WANTED} {}", window_ends_rows_sql(order, "?2")),
            args![&windows_json(windows), limit],
        )
        .await?;
    Ok(by_room(rows))
}

/// The event rows of `window_ends` over the table `wanted`, `limit` an SQL expression.
pub(crate) fn window_ends_rows_sql(order: &str, limit: &str) -> String {
    let ends = window_ends_sql(order, limit);
    format!("{SELECT} WHERE e.stream_ordering IN ({ends}) ORDER BY e.stream_ordering {order}")
}

/// The positions of the `limit` events at one end of each window of `wanted`: the correlated
/// subquery walks each room's index and stops after `limit` rows. The limit is cast, never a
/// bare parameter: SQLite (as local workerd runs it) plans with the value of a parameter bound
/// as a `LIMIT` and so compiles the statement again at every call, which cost a statement of
/// the sliding sync's first read 1.3 ms per call (`LIMIT ?n` against `LIMIT CAST(?n AS
/// INTEGER)`, measured through Miniflare's D1 with a copy of a benchmark's database).
pub(crate) fn window_ends_sql(order: &str, limit: &str) -> String {
    format!(
        "SELECT x.stream_ordering FROM wanted w JOIN events x ON x.stream_ordering IN (
            SELECT y.stream_ordering FROM events y
            WHERE y.room_id = w.room_id AND y.outlier = 0 AND y.stream_ordering > w.lo AND y.stream_ordering <= w.hi
            ORDER BY y.stream_ordering {order} LIMIT CAST({limit} AS INTEGER))"
    )
}

/// The summaries of the threads rooted among the newest `limit` events of each window (what
/// `timelines` reads with the same arguments), for `user`: the roots are found in SQL, so this
/// goes out with the timelines instead of after them. A root the caller then leaves out of a
/// timeline (cut, or not visible) only has a summary nobody attaches.
pub async fn thread_summaries(
    db: &Db,
    windows: &[Window<'_>],
    limit: u64,
    user: &str,
) -> Result<HashMap<String, super::threads::Summary>, MatrixError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    super::threads::summaries_of(
        db,
        &format!("{WANTED}, {}", thread_roots_cte("?3")),
        "(SELECT event_id FROM roots)",
        args![&windows_json(windows), user, limit],
    )
    .await
}

/// The table `roots` of `thread_summaries` over the table `wanted`, followed by a comma.
pub(crate) fn thread_roots_cte(limit: &str) -> String {
    let ends = window_ends_sql("DESC", limit);
    format!(
        "roots AS (SELECT event_id FROM events
           WHERE stream_ordering IN ({ends}) AND rel_type IS NOT 'm.thread'),"
    )
}

/// For each window, the position of the newest timeline gap in it (migration 0026): the first
/// event after a hole in the room's history that federation could not fill.
pub async fn gaps(db: &Db, windows: &[Window<'_>]) -> Result<HashMap<String, u64>, MatrixError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<GapRow> = db
        .rows(&format!("{WANTED} {GAPS}"), args![&windows_json(windows)])
        .await?;
    Ok(gaps_from(rows))
}

/// The query of `gaps` over the table `wanted`.
pub(crate) const GAPS: &str = "SELECT g.room_id, MAX(g.stream_ordering) AS at FROM timeline_gaps g
     JOIN wanted w ON g.room_id = w.room_id
     WHERE g.stream_ordering > w.lo AND g.stream_ordering <= w.hi GROUP BY g.room_id";

/// A row of `GAPS`.
#[derive(Deserialize)]
pub(crate) struct GapRow {
    room_id: String,
    at: i64,
}

pub(crate) fn gaps_from(rows: Vec<GapRow>) -> HashMap<String, u64> {
    rows.into_iter()
        .map(|r| (r.room_id, r.at.max(0) as u64))
        .collect()
}

/// For each window, the latest state event per slot within it: the state at `up_to` when
/// `after` is 0, else what changed in the window.
pub async fn states(
    db: &Db,
    windows: &[Window<'_>],
) -> Result<HashMap<String, Vec<EventRow>>, MatrixError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db
        .rows(
            &format!(
                "{WANTED} {SELECT} WHERE e.stream_ordering IN (
                    SELECT MAX(x.stream_ordering) FROM wanted w JOIN events x ON x.room_id = w.room_id
                    WHERE x.state_key IS NOT NULL AND x.stream_ordering > w.lo AND x.stream_ordering <= w.hi
                    GROUP BY x.room_id, x.type, x.state_key)"
            ),
            args![&windows_json(windows)],
        )
        .await?;
    Ok(by_room(rows))
}

/// The member events of the given users as of a position, per room: `(room, at, users)`.
pub async fn members_at(
    db: &Db,
    wanted: &[(&str, u64, Vec<&str>)],
) -> Result<HashMap<String, Vec<EventRow>>, MatrixError> {
    let list: Vec<Value> = wanted
        .iter()
        .flat_map(|(room, at, users)| users.iter().map(move |u| json!([room, u, at])))
        .collect();
    if list.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db
        .rows(
            &format!(
                "WITH wanted AS (SELECT json_extract(value, '$[0]') AS room_id,
                    json_extract(value, '$[1]') AS user_id, json_extract(value, '$[2]') AS at FROM json_each(?1))
                 {SELECT} WHERE e.stream_ordering IN (
                    SELECT MAX(x.stream_ordering) FROM wanted w JOIN events x
                      ON x.room_id = w.room_id AND x.type = 'm.room.member' AND x.state_key = w.user_id
                    WHERE x.stream_ordering <= w.at GROUP BY w.room_id, w.user_id)"
            ),
            args![&Value::Array(list).to_string()],
        )
        .await?;
    Ok(by_room(rows))
}

/// Who is typing in each room whose typing changed within its window.
pub async fn typing(
    db: &Db,
    windows: &[Window<'_>],
    now_ms: u64,
) -> Result<HashMap<String, Vec<String>>, MatrixError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<TypingRow> = db
        .rows(&format!("{WANTED} {TYPING}"), args![&windows_json(windows)])
        .await?;
    Ok(typing_from(rows, now_ms))
}

/// The query of `typing` over the table `wanted`.
pub(crate) const TYPING: &str =
    "SELECT t.room_id, t.user_id, t.expires_ts FROM typing t JOIN wanted w ON t.room_id = w.room_id
     WHERE t.stream_id <= w.hi AND EXISTS (SELECT 1 FROM typing c WHERE c.room_id = w.room_id
       AND c.stream_id > w.lo AND c.stream_id <= w.hi)";

/// A row of `TYPING`.
#[derive(Deserialize)]
pub(crate) struct TypingRow {
    room_id: String,
    user_id: String,
    expires_ts: i64,
}

impl TypingRow {
    pub fn room_id(&self) -> &str {
        &self.room_id
    }
}

/// Who is typing per room, from `TYPING`'s rows: notifications that ran out are left out.
pub(crate) fn typing_from(rows: Vec<TypingRow>, now_ms: u64) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        let users = out.entry(row.room_id).or_default();
        if row.expires_ts > now_ms as i64 {
            users.push(row.user_id);
        }
    }
    out
}

#[derive(Deserialize)]
pub struct ReceiptRow {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// Receipts written within each room's window.
pub async fn receipts(db: &Db, windows: &[Window<'_>]) -> Result<Vec<ReceiptRow>, MatrixError> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    db.rows(
        &format!("{WANTED} {RECEIPTS}"),
        args![&windows_json(windows)],
    )
    .await
}

/// The query of `receipts` over the table `wanted`.
pub(crate) const RECEIPTS: &str =
    "SELECT r.room_id, r.user_id, r.receipt_type, r.thread_id, r.event_id, r.ts
     FROM receipts r JOIN wanted w ON r.room_id = w.room_id
     WHERE r.stream_id > w.lo AND r.stream_id <= w.hi";

/// Room summaries: joined and invited counts and up to five other members.
pub async fn summaries(
    db: &Db,
    user_id: &str,
    rooms: &[&str],
) -> Result<HashMap<String, Value>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
        user_id: String,
        membership: String,
    }
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT room_id, user_id, membership FROM memberships
             WHERE room_id IN (SELECT value FROM json_each(?1)) AND membership IN ('join', 'invite')
             ORDER BY stream_ordering",
            args![&json!(rooms).to_string()],
        )
        .await?;
    let rows = rows
        .into_iter()
        .map(|r| (r.room_id, r.user_id, r.membership));
    Ok(summaries_from(rows, user_id, rooms))
}

/// The summaries of `rooms` from their joined and invited members' `(room, user, membership)`
/// rows in membership order.
pub(crate) fn summaries_from(
    rows: impl IntoIterator<Item = (String, String, String)>,
    user_id: &str,
    rooms: &[&str],
) -> HashMap<String, Value> {
    let mut grouped: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (room_id, user, membership) in rows {
        grouped.entry(room_id).or_default().push((user, membership));
    }
    rooms
        .iter()
        .map(|room| {
            let members = grouped.remove(*room).unwrap_or_default();
            let joined = members.iter().filter(|(_, m)| m == "join").count();
            let heroes: Vec<&str> = members
                .iter()
                .map(|(u, _)| u.as_str())
                .filter(|u| *u != user_id)
                .take(5)
                .collect();
            let summary = json!({
                "m.joined_member_count": joined,
                "m.invited_member_count": members.len() - joined,
                "m.heroes": heroes,
            });
            (room.to_string(), summary)
        })
        .collect()
}
