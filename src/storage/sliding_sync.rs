//! The reads and writes of simplified sliding sync (`sync/sliding/`): every room of a user with
//! what its list position needs, the current state a client asked for, and the per-connection
//! rows of `sliding_sync_positions`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Value};

use super::events::{EventRow, SELECT};
use super::sync_rooms::{windows_json, Window};
use super::{Arg, Db};
use crate::args;
use crate::http::MatrixError;
use crate::rooms::visibility::MembershipHistory;
use crate::time::now_ms;

/// Event types whose arrival moves a room up the list (MSC4186 `bump_stamp`).
pub const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "org.matrix.msc3381.poll.start",
    "m.beacon_info",
];

/// One room of the user, with what ordering and filtering it needs. Read from a JSON array
/// of its fields in this order (`room_list_sql`): shorter to build, send and parse than objects.
#[derive(Clone, Debug, Deserialize)]
pub struct RoomEntryRow {
    pub room_id: String,
    pub membership: String,
    /// Position of the user's membership event.
    pub membership_at: i64,
    /// Who sent the user's membership event, for a leave only (a room the user left
    /// themselves is listed only when the connection had it).
    pub membership_sender: Option<String>,
    pub room_version: String,
    /// Position of the newest event of a `BUMP_TYPES` type.
    pub bump: Option<i64>,
    /// Position of the room's newest event of any type.
    pub latest: Option<i64>,
    /// Read only when a list filters on room types (`ListColumns`), else `None`.
    pub room_type: Option<String>,
    /// Read only when a list filters on encryption (`ListColumns`), else 0.
    pub encrypted: i64,
    /// Partial reads only (`partial_room_list_sql`): what arrived after `pos`, as bits: 1 state
    /// events, 2 member events, 4 events sent by or about another user than the reader; -1
    /// (absent from a full read): not known.
    #[serde(default = "not_known")]
    pub state_news: i64,
}

fn not_known() -> i64 {
    -1
}

/// Which of a room list's costlier columns the request's list filters need: the room type
/// (the create event's content) and whether the room is encrypted. Lists without such filters
/// (Element X's room list has none) do not pay for them on every answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListColumns {
    pub room_type: bool,
    pub encrypted: bool,
}

/// How the first read of an answer reads the room list (`storage::sync::sync_start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRead<'a> {
    pub columns: ListColumns,
    /// For an incremental answer whose lists allow it: `{"rooms": [subscribed room id, ...],
    /// "keys": {list name: list::window_key}}` (JSON). The read is then partial when the
    /// connection row keeps windows for those very keys (`partial_room_list_sql`).
    pub partial: Option<&'a str>,
    /// The largest timeline limit of the request's lists and subscriptions: an incremental
    /// answer's first read also reads the timelines of its rooms with new events (`Fold`).
    pub timeline_limit: u64,
    /// Whether some list or subscription loads members lazily: the fold then reads the
    /// current member events of its timelines' senders too; and whether each of those asks
    /// for the reader's own member event: then only for rooms with events since `pos` by or
    /// about another user (a room of the reader's own new events needs none).
    pub lazy_members: (bool, bool),
}

/// Most events since `pos` a partial room list reads: beyond that (a client back after a long
/// while), ranking every room reads fewer rows than the rooms those events touch.
pub const PARTIAL_MAX_EVENTS: u64 = 100;

/// Every room the user has a membership in (forgotten ones excluded), in one query.
pub async fn room_entries(
    db: &Db,
    user_id: &str,
    columns: ListColumns,
) -> Result<Vec<RoomEntryRow>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        list: String,
    }
    let row: Option<Row> = db
        .row(
            &format!("SELECT {} AS list", room_list_sql("?1", columns)),
            args![user_id],
        )
        .await?;
    let list = row.map_or_else(|| "[]".to_owned(), |r| r.list);
    serde_json::from_str(&list).map_err(|e| MatrixError::internal(format!("room list: {e}")))
}

/// The query of `room_entries` as an SQL expression whose value is the JSON array of its rows,
/// the user as an SQL expression (`storage::sync::sync_start` reads it in its own statement).
/// Each room's two positions walk its `(room_id, stream_ordering)` index from the newest event
/// and stop at the first match: no room's timeline is read. The bump types are constants,
/// written in as literals.
pub(crate) fn room_list_sql(user: &str, columns: ListColumns) -> String {
    rooms_sql(user, columns, "", "")
}

/// When `partial_room_list_sql` answers instead of `room_list_sql`, as an SQL condition:
/// the connection row (`connection`, its JSON text) keeps a window for each list of the
/// request (`request`: `ListRead::partial`) with the same key and is not marked stale, and at
/// most `PARTIAL_MAX_EVENTS` events came after `since` (the `pos`'s events position) up to
/// `up_to` (the answer's). A list that changed its ranges (Element X grows its window) so
/// reads every room in this statement rather than in one more.
pub(crate) fn partial_condition_sql(
    connection: &str,
    since: &str,
    up_to: &str,
    request: &str,
) -> String {
    format!(
        "(IFNULL({up_to} - {since} <= {PARTIAL_MAX_EVENTS}, 0)
          AND IFNULL((SELECT json_type(c.r, '$.lists') = 'object' AND json_type(c.r, '$.stale') IS NULL
              AND NOT EXISTS (SELECT 1 FROM json_each({request}, '$.keys') k
                WHERE k.value IS NOT (SELECT json_extract(l.value, '$[0]')
                  FROM json_each(c.r, '$.lists') l WHERE l.key = k.key))
            FROM (SELECT {connection} AS r) c), 0))"
    )
}

/// `room_list_sql` for an incremental answer: only the rooms in the windows the connection
/// row keeps (`connection`, its JSON text: `sync::sliding::connection`), the rooms with events
/// after `since` (which the user may have any membership in), and the subscriptions of
/// `request` (`ListRead::partial`). Every other room kept its list position since `pos` (a bump stamp only
/// grows while the user's membership does not change), so `sync::sliding::list` finds the
/// windows among these (and reads every room when that does not hold). Each room also says
/// whether state and member events, or events of other users, arrived since `pos`
/// (`RoomEntryRow::state_news`), from the few new events of its own: an answer then reads no
/// state changes, summaries or lazily loaded members for rooms that have none. `NOT INDEXED` keeps
/// SQLite (3.4x, as local D1 runs it) on the primary key's range: it otherwise scans all of
/// `events_by_room` for the distinct room ids. The ids are looked up one by one
/// (`rooms_sql`).
pub(crate) fn partial_room_list_sql(
    user: &str,
    columns: ListColumns,
    connection: &str,
    since: &str,
    request: &str,
) -> String {
    // Bit 1: a state event, 2: a member event, 4: an event sent by or about someone else.
    let news = format!(
        ", (SELECT IFNULL(MAX(x.state_key IS NOT NULL)
               | (MAX(x.type = 'm.room.member' AND x.state_key IS NOT NULL) << 1)
               | (MAX(x.sender <> {user}
                   OR (x.type = 'm.room.member' AND IFNULL(x.state_key, {user}) <> {user})) << 2), 0)
             FROM events x WHERE x.room_id = m.room_id AND x.stream_ordering > {since})"
    );
    rooms_sql(
        user,
        columns,
        &news,
        &format!(
            "(SELECT w.value AS room_id FROM json_each({connection}, '$.lists') l,
                 json_each(l.value, '$[2]') w
               UNION SELECT room_id FROM events NOT INDEXED WHERE stream_ordering > {since}
               UNION SELECT value FROM json_each({request}, '$.rooms')) k
             CROSS JOIN memberships m ON m.room_id = k.room_id"
        ),
    )
}

/// The rooms of `room_list_sql`, or only those of `only`, a table of `room_id`s joined to the
/// memberships first (`CROSS JOIN` keeps SQLite from walking all of the user's memberships
/// instead of looking each of these up by the primary key); `more` adds columns.
fn rooms_sql(user: &str, columns: ListColumns, more: &str, only: &str) -> String {
    let from = if only.is_empty() {
        "memberships m".to_owned()
    } else {
        only.to_owned()
    };
    let bump_types = BUMP_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let room_type = if columns.room_type {
        "(SELECT json_extract(c.pdu, '$.content.type') FROM room_state s JOIN events c ON c.event_id = s.event_id
           WHERE s.room_id = m.room_id AND s.type = 'm.room.create' AND s.state_key = '')"
    } else {
        "NULL"
    };
    let encrypted = if columns.encrypted {
        "EXISTS (SELECT 1 FROM room_state s WHERE s.room_id = m.room_id
           AND s.type = 'm.room.encryption' AND s.state_key = '')"
    } else {
        "0"
    };
    format!(
        "(SELECT json_group_array(json_array(m.room_id, m.membership, m.stream_ordering,
           CASE WHEN m.membership = 'leave' THEN (SELECT sender FROM events WHERE event_id = m.event_id) END,
           r.room_version,
           (SELECT b.stream_ordering FROM events b WHERE b.room_id = m.room_id AND b.outlier = 0
              AND b.stream_ordering > 0 AND b.type IN ({bump_types})
              ORDER BY b.stream_ordering DESC LIMIT 1),
           (SELECT MAX(l.stream_ordering) FROM events l WHERE l.room_id = m.room_id),
           {room_type}, {encrypted}{more}))
         FROM {from} JOIN rooms r ON r.room_id = m.room_id
         WHERE m.user_id = {user} AND m.forgotten = 0)"
    )
}

/// The query of `direct_rooms`' content, the user as an SQL expression.
pub(crate) fn direct_sql(user: &str) -> String {
    format!(
        "SELECT content FROM account_data WHERE user_id = {user} AND room_id = '' AND type = 'm.direct'"
    )
}

/// The rooms the user's `m.direct` account data names: its DMs.
pub async fn direct_rooms(db: &Db, user_id: &str) -> Result<HashSet<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        content: String,
    }
    let row: Option<Row> = db.row(&direct_sql("?1"), args![user_id]).await?;
    Ok(direct_from(row.as_ref().map(|r| r.content.as_str())))
}

/// The room ids of an `m.direct` content (`None`: the user has none).
pub(crate) fn direct_from(content: Option<&str>) -> HashSet<String> {
    let content: Value = content
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    content
        .as_object()
        .into_iter()
        .flat_map(|users| users.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect()
}

/// The rooms the given spaces name in their current `m.space.child` state (with a `via`, as the
/// spec says a child without one is not a child).
pub async fn space_children(db: &Db, spaces: &[String]) -> Result<HashSet<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        state_key: String,
    }
    if spaces.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT s.state_key FROM room_state s JOIN events e ON e.event_id = s.event_id
             WHERE s.room_id IN (SELECT value FROM json_each(?1)) AND s.type = 'm.space.child'
               AND json_type(e.pdu, '$.content.via') = 'array'",
            args![&json!(spaces).to_string()],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.state_key).collect())
}

/// A slot of current state wanted for a room: `None` matches any type or any state key.
pub struct StateWanted<'a> {
    pub room_id: &'a str,
    pub kind: Option<&'a str>,
    pub state_key: Option<&'a str>,
}

/// What one answer's rooms need of their current state, read in one statement that goes out
/// with the timelines (one D1 batch) instead of after them.
pub struct CurrentStateWanted<'a> {
    /// Explicit slots: the `required_state` of rooms sent in full, their name and avatar.
    pub slots: Vec<StateWanted<'a>>,
    /// Lazy-loading rooms' timeline windows: the member events of the senders (and of the
    /// subjects of member events) among the newest `lazy_limit` events of each window. The
    /// caller keeps those of the events it shows; a few more read is harmless.
    pub lazy: &'a [Window<'a>],
    pub lazy_limit: u64,
    /// Rooms whose heroes' member events are wanted: up to five joined or invited members
    /// other than `user`, oldest membership first (as `sync_rooms::summaries` picks them).
    pub heroes: Vec<&'a str>,
    pub user: &'a str,
}

/// The current state events `wanted` names, per room, in one query. Exact slots use
/// `room_state`'s primary key; only wildcards scan a room's state. The parts not needed are
/// not written into the SQL at all (local D1 compiles every statement on every call).
pub async fn current_state_matching(
    db: &Db,
    wanted: &CurrentStateWanted<'_>,
) -> Result<HashMap<String, Vec<EventRow>>, MatrixError> {
    let Some((sql, args)) = current_state_sql(wanted) else {
        return Ok(HashMap::new());
    };
    let args: Vec<Arg<'_>> = args.iter().map(|a| a.arg()).collect();
    let rows: Vec<EventRow> = db.rows(&sql, &args).await?;
    let mut out: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in rows {
        out.entry(row.room_id.clone()).or_default().push(row);
    }
    Ok(out)
}

/// An owned SQL parameter of `current_state_sql`.
enum Param {
    Text(String),
    Int(u64),
}

impl Param {
    fn arg(&self) -> Arg<'_> {
        match self {
            Param::Text(t) => Arg::from(t.as_str()),
            Param::Int(n) => Arg::from(*n),
        }
    }
}

/// The SQL of `current_state_matching` and its parameters (`None`: nothing is wanted).
fn current_state_sql(wanted: &CurrentStateWanted<'_>) -> Option<(String, Vec<Param>)> {
    let mut ctes: Vec<String> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mut param = |p: Param| {
        params.push(p);
        format!("?{}", params.len())
    };
    if !wanted.slots.is_empty() {
        let list: Vec<Value> = wanted
            .slots
            .iter()
            .map(|w| json!([w.room_id, w.kind, w.state_key]))
            .collect();
        let list = param(Param::Text(Value::Array(list).to_string()));
        ctes.push(format!(
            "wanted AS (SELECT json_extract(value, '$[0]') AS room_id,
               json_extract(value, '$[1]') AS type, json_extract(value, '$[2]') AS state_key
               FROM json_each({list}))"
        ));
        parts.push(
            "SELECT s.event_id FROM wanted w JOIN room_state s ON s.room_id = w.room_id
               AND s.type = w.type AND s.state_key = w.state_key
             UNION SELECT s.event_id FROM wanted w JOIN room_state s ON s.room_id = w.room_id
               AND s.type = w.type WHERE w.state_key IS NULL
             UNION SELECT s.event_id FROM wanted w JOIN room_state s ON s.room_id = w.room_id
               WHERE w.type IS NULL AND (w.state_key IS NULL OR s.state_key = w.state_key)"
                .to_owned(),
        );
    }
    // The members whose current member event is wanted, `(room_id, user_id)`: one compound
    // SELECT of at most three terms, joined to the state once (D1 allows five terms in a
    // compound SELECT, so the slots' three and these are kept apart).
    let mut people: Vec<String> = Vec::new();
    if !wanted.lazy.is_empty() {
        let windows = param(Param::Text(windows_json(wanted.lazy)));
        let limit = param(Param::Int(wanted.lazy_limit));
        // The newest events of each window, as `sync_rooms::timelines` reads them.
        ctes.push(format!(
            "lw AS (SELECT json_extract(value, '$[0]') AS room_id, json_extract(value, '$[1]') AS lo,
               json_extract(value, '$[2]') AS hi FROM json_each({windows})),
             tl AS (SELECT x.room_id, x.sender, x.type, x.state_key FROM lw w JOIN events x
               ON x.stream_ordering IN (SELECT y.stream_ordering FROM events y
                 WHERE y.room_id = w.room_id AND y.outlier = 0 AND y.stream_ordering > w.lo
                   AND y.stream_ordering <= w.hi ORDER BY y.stream_ordering DESC LIMIT CAST({limit} AS INTEGER)))"
        ));
        people.push("SELECT room_id, sender FROM tl".to_owned());
        people.push(
            "SELECT room_id, state_key FROM tl WHERE type = 'm.room.member' AND state_key IS NOT NULL"
                .to_owned(),
        );
    }
    if !wanted.heroes.is_empty() {
        let rooms = param(Param::Text(json!(wanted.heroes).to_string()));
        let user = param(Param::Text(wanted.user.to_owned()));
        people.push(format!(
            "SELECT h.value, m.user_id FROM json_each({rooms}) h JOIN memberships m
               ON m.room_id = h.value AND m.user_id IN (SELECT o.user_id FROM memberships o
                 WHERE o.room_id = h.value AND o.membership IN ('join', 'invite')
                   AND o.user_id <> {user} ORDER BY o.stream_ordering LIMIT 5)"
        ));
    }
    if !people.is_empty() {
        ctes.push(format!(
            "people (room_id, user_id) AS ({})",
            people.join(" UNION ")
        ));
        parts.push(
            "SELECT s.event_id FROM people who JOIN room_state s ON s.room_id = who.room_id
               AND s.type = 'm.room.member' AND s.state_key = who.user_id"
                .to_owned(),
        );
    }
    if parts.is_empty() {
        return None;
    }
    let with = if ctes.is_empty() {
        String::new()
    } else {
        format!("WITH {} ", ctes.join(", "))
    };
    let sql = format!(
        "{with}{SELECT} WHERE e.event_id IN ({})",
        parts.join(" UNION ")
    );
    Some((sql, params))
}

/// A room of an answer whose summary (member counts, heroes) may be wanted: always when it is
/// sent in `full`, else only when a member event arrived in its window `(after, up_to]`.
pub struct SummaryWanted<'a> {
    pub room_id: &'a str,
    pub full: bool,
    pub after: u64,
    pub up_to: u64,
}

/// The membership reads of one answer's rooms in one statement: the user's own membership
/// events in `history_rooms` (`MembershipHistory`), and the summaries of the rooms of
/// `summaries` that want one (`sync_rooms::summaries_from`; the others have none).
pub async fn memberships_of(
    db: &Db,
    user_id: &str,
    history_rooms: &[&str],
    summaries: &[SummaryWanted<'_>],
) -> Result<(BTreeMap<String, MembershipHistory>, HashMap<String, Value>), MatrixError> {
    /// `kind` 0: a membership event of the user; 1: a joined or invited member of a room
    /// whose summary is wanted; 2: such a room (it may have no member left).
    #[derive(Deserialize)]
    struct Row {
        kind: i64,
        room_id: String,
        user_id: Option<String>,
        membership: Option<String>,
        stream_ordering: i64,
    }
    if history_rooms.is_empty() && summaries.is_empty() {
        return Ok(Default::default());
    }
    let wanted: Vec<Value> = summaries
        .iter()
        .map(|s| json!([s.room_id, s.full, s.after, s.up_to.min(i64::MAX as u64)]))
        .collect();
    let rows: Vec<Row> = db
        .rows(
            "WITH w AS (SELECT json_extract(value, '$[0]') AS room_id, json_extract(value, '$[1]') AS whole,
                 json_extract(value, '$[2]') AS lo, json_extract(value, '$[3]') AS hi FROM json_each(?3)),
               need AS (SELECT room_id FROM w WHERE whole OR EXISTS (SELECT 1 FROM events x
                 WHERE x.room_id = w.room_id AND x.stream_ordering > w.lo AND x.stream_ordering <= w.hi
                   AND x.type = 'm.room.member' AND x.state_key IS NOT NULL))
             SELECT 0 AS kind, room_id, NULL AS user_id, membership, stream_ordering FROM events
               WHERE type = 'm.room.member' AND state_key = ?1
                 AND room_id IN (SELECT value FROM json_each(?2))
             UNION ALL SELECT 1, room_id, user_id, membership, stream_ordering FROM memberships
               WHERE room_id IN (SELECT room_id FROM need) AND membership IN ('join', 'invite')
             UNION ALL SELECT 2, room_id, NULL, NULL, 0 FROM need
             ORDER BY stream_ordering",
            args![
                user_id,
                &json!(history_rooms).to_string(),
                &Value::Array(wanted).to_string()
            ],
        )
        .await?;
    let mut history = Vec::new();
    let mut members = Vec::new();
    let mut rooms: Vec<String> = Vec::new();
    for row in rows {
        match row.kind {
            0 => history.push((
                row.room_id,
                row.stream_ordering.max(0) as u64,
                row.membership.unwrap_or_default(),
            )),
            1 => members.push((
                row.room_id,
                row.user_id.unwrap_or_default(),
                row.membership.unwrap_or_default(),
            )),
            _ => rooms.push(row.room_id),
        }
    }
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    Ok((
        MembershipHistory::grouped(history),
        super::sync_rooms::summaries_from(members, user_id, &rooms),
    ))
}

/// The connection state a `pos` points at, if it is this device's and still kept.
pub async fn position(
    db: &Db,
    pos_id: u64,
    user_id: &str,
    device_id: &str,
    conn_id: &str,
) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        rooms: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT rooms FROM sliding_sync_positions
             WHERE pos_id = ?1 AND user_id = ?2 AND device_id = ?3 AND conn_id = ?4",
            args![pos_id, user_id, device_id, conn_id],
        )
        .await?
        .map(|r| r.rooms))
}

/// Stores a new connection state and returns its id, in one batch that also deletes what the
/// client can no longer come back with: every other row of the connection but `kept` (the
/// `pos` it just used; older ones are acknowledged, newer ones are answers to requests it
/// cancelled), or every row when it starts afresh (`kept` is `None`).
pub async fn save_position(
    db: &Db,
    user_id: &str,
    device_id: &str,
    conn_id: &str,
    rooms: &str,
    kept: Option<u64>,
) -> Result<u64, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        pos_id: i64,
    }
    let statements = vec![
        db.stmt(
            "DELETE FROM sliding_sync_positions
             WHERE user_id = ?1 AND device_id = ?2 AND conn_id = ?3 AND pos_id <> ?4",
            args![user_id, device_id, conn_id, kept.map_or(-1, |k| k as i64)],
        ),
        db.stmt(
            "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, rooms, created_ts)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING pos_id",
            args![user_id, device_id, conn_id, rooms, now_ms()],
        ),
    ];
    let results = db.batch(statements).await?;
    let row = results
        .get(1)
        .map(|r| r.rows::<Row>())
        .transpose()?
        .and_then(|rows| rows.into_iter().next())
        .ok_or_else(|| MatrixError::internal("no position stored"))?;
    Ok(row.pos_id as u64)
}

/// Marks every sliding sync connection state of the user stale (`sync::sliding::connection`).
pub fn mark_stale(db: &Db, user_id: &str) -> crate::platform::Statement {
    db.stmt(
        "UPDATE sliding_sync_positions SET rooms = json_set(rooms, '$.stale', 1) WHERE user_id = ?1",
        args![user_id],
    )
}

/// Rooms where the user's own receipts moved in `(after, up_to]`: their notification counts
/// changed (read on another device) even when no event arrived.
pub async fn rooms_with_own_receipts(
    db: &Db,
    user_id: &str,
    after: u64,
    up_to: u64,
) -> Result<HashSet<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
    }
    if up_to <= after {
        return Ok(HashSet::new());
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT DISTINCT room_id FROM receipts
             WHERE user_id = ?1 AND stream_id > ?2 AND stream_id <= ?3",
            args![user_id, after, up_to],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.room_id).collect())
}

/// The rooms' reads of a steady connection's incremental answer, read by the answer's first
/// statement (`storage::sync::sync_start`) instead of a second round trip: for each room the
/// user is joined to that has events after the `pos` (up to the positions of the same
/// statement), the newest events of that window (`sync_rooms::timelines`) and the unread counts
/// (`push::unread`). Those are exactly the reads `sync::sliding::room` makes for a room the
/// client has up to its `pos` and that is due for new events, so it takes them from here and
/// reads only the other rooms of the answer (new in view, a changed config, receipts read
/// elsewhere) itself. Bounded as the partial room list is (`PARTIAL_MAX_EVENTS`).
pub struct Fold {
    /// The rooms covered: joined, with events in the window.
    pub rooms: HashSet<String>,
    /// Newest first, at most the request's largest timeline limit plus one per room.
    pub timelines: HashMap<String, Vec<EventRow>>,
    pub unread: HashMap<String, crate::push::counts::RoomUnread>,
    /// When read (`ListRead::lazy_members`): the current member events of the senders of
    /// those timeline events and of the subjects of their member events, per room (what
    /// `current_state_matching` reads for a lazy-loading room's window).
    pub members: Option<HashMap<String, Vec<EventRow>>>,
}

/// The statement's common table expression of the fold, preceded by a comma: `sfold`, the
/// rooms the user is joined to with events after `since` up to the statement's events position.
/// The events are read by their primary key's range (`partial_room_list_sql` says why
/// `NOT INDEXED`).
pub(crate) fn fold_cte(since: &str) -> String {
    use super::sync_fold::{ME, NOW_EVENTS};
    format!(
        ", sfold AS (SELECT DISTINCT x.room_id FROM events x NOT INDEXED
             WHERE x.stream_ordering > {since} AND x.stream_ordering <= {NOW_EVENTS}
               AND EXISTS (SELECT 1 FROM memberships m WHERE m.room_id = x.room_id
                 AND m.user_id = {ME} AND m.membership = 'join'))"
    )
}

/// The fold's column: a JSON object of its parts when `run` (an SQL condition) holds; `since`
/// the windows' lower bound and `limit` the number of events read per room, SQL expressions;
/// with the `members` of the timelines' events when `lazy` (`ListRead::lazy_members`).
pub(crate) fn fold_column(run: &str, since: &str, limit: &str, lazy: (bool, bool)) -> String {
    use super::sync_fold::{event_fields, plain, rows, ME, NOW_EVENTS};
    let wanted =
        format!("wanted AS (SELECT room_id, {since} AS lo, {NOW_EVENTS} AS hi FROM sfold)");
    let timelines = rows(
        &event_fields(),
        &format!(
            "WITH {wanted} {}",
            super::sync_rooms::window_ends_rows_sql("DESC", limit)
        ),
    );
    // The members of `current_state_sql`'s lazy part, over the same events.
    let members = if lazy.0 {
        let ends = super::sync_rooms::window_ends_sql("DESC", limit);
        // The rooms' windows, only those with events by or about another user when the
        // reader's own member event is held (as `partial_room_list_sql`'s bit 4).
        let others = if lazy.1 {
            format!(
                "WHERE EXISTS (SELECT 1 FROM events x WHERE x.room_id = f.room_id
                   AND x.stream_ordering > {since} AND (x.sender <> {ME}
                     OR (x.type = 'm.room.member' AND IFNULL(x.state_key, {ME}) <> {ME})))"
            )
        } else {
            String::new()
        };
        let members = rows(
            &event_fields(),
            &format!(
                "WITH wanted AS (SELECT f.room_id, {since} AS lo, {NOW_EVENTS} AS hi FROM sfold f {others}),
                 tl AS (SELECT t.room_id, t.sender, t.type, t.state_key FROM events t
                   WHERE t.stream_ordering IN ({ends})),
                 people (room_id, user_id) AS (SELECT room_id, sender FROM tl
                   UNION SELECT room_id, state_key FROM tl
                     WHERE type = 'm.room.member' AND state_key IS NOT NULL)
                 {SELECT} WHERE e.event_id IN (SELECT s.event_id FROM people who
                   JOIN room_state s ON s.room_id = who.room_id AND s.type = 'm.room.member'
                     AND s.state_key = who.user_id)"
            ),
        );
        format!(", 'members', json({members})")
    } else {
        String::new()
    };
    let unread = rows(
        &["room_id", "thread_id", "n", "h"].map(plain),
        &super::push::unread_sql(ME, "SELECT room_id FROM sfold"),
    );
    format!(
        "CASE WHEN {run} THEN json_object('rooms', json((SELECT json_group_array(room_id) FROM sfold)),
           'timelines', json({timelines}), 'unread', json({unread}){members}) END"
    )
}

/// The fold's column, parsed.
pub(crate) fn fold_from(text: &str) -> Result<Fold, MatrixError> {
    #[derive(Deserialize)]
    struct Parts {
        rooms: Vec<String>,
        timelines: Vec<EventRow>,
        unread: Vec<super::push::UnreadRow>,
        members: Option<Vec<EventRow>>,
    }
    let parts: Parts = serde_json::from_str(text).map_err(super::storage_error)?;
    // Newest first, as `sync_rooms::timelines` returns them.
    let mut timelines = parts.timelines;
    timelines.sort_by_key(|row| std::cmp::Reverse(row.stream_ordering));
    Ok(Fold {
        rooms: parts.rooms.into_iter().collect(),
        timelines: super::sync_rooms::by_room(timelines),
        unread: super::push::unread_from(parts.unread),
        members: parts.members.map(super::sync_rooms::by_room),
    })
}
