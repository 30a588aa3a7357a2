//! The reads `/sync` needs beyond single rooms: the current stream positions, and which rooms
//! a user is in with what membership.

use serde::Deserialize;

use super::{Arg, Db};
use crate::args;
use crate::http::MatrixError;
use crate::sync::token::StreamPosition;

/// The newest position of every stream, in one query. The to-device inbox deletes what was
/// delivered, so its maximum can fall back: callers hold it at or above the client's token.
pub async fn current_position(db: &Db) -> Result<StreamPosition, MatrixError> {
    let row: Option<Positions> = db.row(&format!("SELECT {POSITIONS}"), args![]).await?;
    Ok(row.map_or_else(StreamPosition::default, |r| r.position()))
}

/// The newest position of every stream, as the columns of `Positions`.
const POSITIONS: &str = "(SELECT MAX(stream_ordering) FROM events) AS e,
    (SELECT MAX(stream_id) FROM account_data) AS a,
    (SELECT MAX(stream_id) FROM receipts) AS r,
    (SELECT MAX(stream_id) FROM typing) AS t,
    (SELECT MAX(stream_id) FROM e2e_to_device) AS d,
    (SELECT MAX(stream_id) FROM e2e_device_list_changes) AS l,
    (SELECT MAX(stream_id) FROM presence) AS p";

/// The columns `POSITIONS` reads (NULL for an empty stream).
#[derive(Deserialize)]
struct Positions {
    e: Option<i64>,
    a: Option<i64>,
    r: Option<i64>,
    t: Option<i64>,
    d: Option<i64>,
    l: Option<i64>,
    p: Option<i64>,
}

impl Positions {
    fn position(&self) -> StreamPosition {
        let n = |v: Option<i64>| v.unwrap_or(0) as u64;
        StreamPosition {
            events: n(self.e),
            account_data: n(self.a),
            receipts: n(self.r),
            typing: n(self.t),
            to_device: n(self.d),
            device_lists: n(self.l),
            presence: n(self.p),
        }
    }
}

#[derive(Deserialize)]
pub struct MembershipRow {
    pub room_id: String,
    pub membership: String,
    /// The membership event.
    pub event_id: String,
    pub stream_ordering: i64,
    pub room_version: String,
    /// A leave the user sent themselves (they left, or declined an invite), not a kick: an
    /// initial sync leaves out only those unless the filter asks for left rooms.
    #[serde(default, deserialize_with = "super::sql_flag")]
    pub left_by_self: bool,
}

/// Every room the user has a membership in. Forgotten ones are left out, except, in an
/// incremental sync from `since`, one whose membership changed after it: the leave of a room
/// forgotten at once still reaches the user's other devices.
pub async fn memberships(
    db: &Db,
    user_id: &str,
    since: Option<u64>,
) -> Result<Vec<MembershipRow>, MatrixError> {
    db.rows(
        &memberships_sql("?1", "?2"),
        args![user_id, since.unwrap_or(u64::MAX)],
    )
    .await
}

/// The query of `memberships`, its operands as SQL expressions (also read by `sync_start`).
fn memberships_sql(user: &str, since: &str) -> String {
    format!(
        "SELECT m.room_id, m.membership, m.event_id, m.stream_ordering, r.room_version,
                CASE WHEN m.membership = 'leave' THEN COALESCE((SELECT e.sender = m.user_id
                  FROM events e WHERE e.event_id = m.event_id), 1) ELSE 0 END AS left_by_self
         FROM memberships m JOIN rooms r ON r.room_id = m.room_id
         WHERE m.user_id = {user} AND (m.forgotten = 0 OR m.stream_ordering > {since})"
    )
}

/// Local users joined to or invited into a room: who to wake for its ephemeral events.
pub async fn local_members(db: &Db, room_id: &str) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    Ok(db
        .rows::<Row>(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.user_id = m.user_id
             WHERE m.room_id = ?1 AND m.membership IN ('join', 'invite')",
            args![room_id],
        )
        .await?
        .into_iter()
        .map(|r| r.user_id)
        .collect())
}

/// The query of `changed_rooms` with its operands as SQL expressions: the user, then the
/// lower and upper bounds of the events, receipts and typing streams.
fn changed_rooms_sql(user: &str, after: [&str; 3], up_to: [&str; 3]) -> String {
    let mine =
        format!("(SELECT room_id FROM memberships WHERE user_id = {user} AND forgotten = 0)");
    let [e0, r0, t0] = after;
    let [e1, r1, t1] = up_to;
    format!(
        "SELECT room_id FROM events WHERE stream_ordering > {e0} AND stream_ordering <= {e1} AND room_id IN {mine}
         UNION SELECT room_id FROM receipts WHERE stream_id > {r0} AND stream_id <= {r1} AND room_id IN {mine}
         UNION SELECT room_id FROM typing WHERE stream_id > {t0} AND stream_id <= {t1} AND room_id IN {mine}"
    )
}

/// Rooms of the user with new events, receipts or typing changes between two positions.
pub async fn changed_rooms(
    db: &Db,
    user_id: &str,
    since: &StreamPosition,
    now: &StreamPosition,
) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
    }
    Ok(db
        .rows::<Row>(
            &changed_rooms_sql("?1", ["?2", "?4", "?6"], ["?3", "?5", "?7"]),
            args![
                user_id,
                since.events,
                now.events,
                since.receipts,
                now.receipts,
                since.typing,
                now.typing
            ],
        )
        .await?
        .into_iter()
        .map(|r| r.room_id)
        .collect())
}

/// How many users of a server are joined to a room.
pub async fn members_of_server(db: &Db, room_id: &str, server: &str) -> Result<i64, MatrixError> {
    Ok(db
        .row::<super::Count>(
            "SELECT COUNT(*) AS n FROM memberships WHERE room_id = ?1 AND membership = 'join'
             AND substr(user_id, instr(user_id, ':') + 1) = ?2",
            args![room_id, server],
        )
        .await?
        .and_then(|c| c.n)
        .unwrap_or(0))
}

/// The other servers with users joined to a room: where its EDUs go.
pub async fn remote_servers(db: &Db, room_id: &str, us: &str) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        server: String,
    }
    Ok(db
        .rows::<Row>(
            "SELECT DISTINCT substr(user_id, instr(user_id, ':') + 1) AS server FROM memberships
             WHERE room_id = ?1 AND membership = 'join'",
            args![room_id],
        )
        .await?
        .into_iter()
        .map(|r| r.server)
        .filter(|s| s != us)
        .collect())
}

/// What every `/sync` (and sliding sync) reads first, in one statement: who the access token
/// belongs to (the same columns as `accounts::token_owner`), the newest position of every
/// stream, when the next typing notification in the user's rooms runs out, the device's key
/// counts, the stored filter asked for, and, unless no stream moved past `since`, the user's
/// memberships. D1 answers a statement in one round trip; the token is checked in that very
/// statement, so a sync never needs a round trip of its own for authentication, and a revoked
/// token (logout, device deletion, deactivation, password change, OAuth revocation: each
/// deletes the row or sets `deactivated`) is refused by the first read after the revocation.
#[derive(Deserialize)]
pub struct SyncStart {
    #[serde(flatten)]
    pub owner: super::accounts::TokenOwner,
    #[serde(flatten)]
    positions: Positions,
    pub typing_next: Option<i64>,
    /// `[[algorithm, count], ...]` of unclaimed one-time keys.
    otk: Option<String>,
    /// `[algorithm, ...]` of unused fallback keys.
    fallback: Option<String>,
    /// The stored filter's JSON text, when a filter id was given and is the user's.
    pub filter: Option<String>,
    /// The lowest and highest position in the device's to-device inbox (NULL when empty): so
    /// a sync reads or clears the inbox only when it holds something (`Inbox`).
    inbox_first: Option<i64>,
    inbox_last: Option<i64>,
    /// The user's own presence row (for `client::presence::on_sync`), as a JSON object.
    own_presence: Option<String>,
    /// The sliding sync connection state `StartQuery::connection` names, when it is this
    /// device's and still kept (`sliding_sync::position`).
    pub connection: Option<String>,
    /// With the connection, when asked for (`StartQuery::connection`): the user's rooms as
    /// `sliding_sync::room_entries` reads them, as a JSON array of its rows (arrays), and the content of
    /// the user's `m.direct` account data.
    room_list: Option<String>,
    /// 1 when `room_list` is the partial one (`sliding_sync::partial_room_list_sql`).
    room_list_partial: Option<i64>,
    direct: Option<String>,
    /// `[[room_id, membership, stream_ordering, room_version], ...]`; NULL when not read.
    memberships: Option<String>,
    /// With the memberships, in an incremental sync: `changed_rooms` from `since` to the
    /// positions read, as `[room_id, ...]`.
    changed: Option<String>,
    /// With the memberships: `account_data_since` and `presence::changed_for` from `since` to
    /// the positions read, as arrays of their rows.
    account_data: Option<String>,
    presence: Option<String>,
    /// The rooms' first round (`StartQuery::fold`), as `sync_fold::column` writes it.
    fold: Option<String>,
    /// A sliding sync's rooms with new events, as `sliding_sync::fold_column` writes it.
    #[serde(default)]
    sliding_fold: Option<String>,
}

/// The first round of a sync's build, when `sync_start` read it.
pub struct FirstRound {
    /// Empty in an initial sync.
    pub changed: Vec<String>,
    pub account_data: Vec<super::user_data::AccountDataRow>,
    pub presence: Vec<(String, crate::presence::Presence)>,
}

/// The bounds of a device's to-device inbox, as `sync_start` read them (both `None`: empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbox {
    pub first: Option<u64>,
    pub last: Option<u64>,
}

impl Inbox {
    /// Whether messages up to `acknowledged` are still stored (the client has them: delete).
    pub fn holds_acknowledged(&self, acknowledged: u64) -> bool {
        self.first.is_some_and(|first| first <= acknowledged)
    }

    /// Whether messages after `acknowledged` wait for the device.
    pub fn holds_new(&self, acknowledged: u64) -> bool {
        self.last.is_some_and(|last| last > acknowledged)
    }
}

/// A user's rooms (`sliding_sync::room_entries`), the rooms their `m.direct` names, and
/// whether the rooms are only those of `sliding_sync::partial_room_list_sql`.
pub type RoomList = (
    Vec<super::sliding_sync::RoomEntryRow>,
    std::collections::HashSet<String>,
    bool,
);

/// What the caller asks `sync_start` for besides the token.
pub struct StartQuery<'a> {
    pub token_hash: &'a str,
    pub since: Option<StreamPosition>,
    pub memberships: Memberships,
    pub filter_id: Option<i64>,
    /// A sliding sync's `pos` row and `conn_id`: its connection state is read too, and, when
    /// asked for, its room list (`SyncStart::room_list`).
    pub connection: Option<(u64, &'a str, Option<super::sliding_sync::ListRead<'a>>)>,
    /// An incremental `/sync` that can take its rooms' first round from this statement
    /// (`sync_fold`), and the timeline limit to read with.
    pub fold: Option<Fold>,
}

/// The timeline limit of a folded first round: `limit` when the caller knows the filter, else
/// the stored filter's (`filter_id`), `default` when it sets none, at most `max`.
#[derive(Clone, Copy)]
pub struct Fold {
    pub limit: Option<u64>,
    pub default: u64,
    pub max: u64,
}

/// When `sync_start` reads the user's memberships.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Memberships {
    Never,
    /// When some stream moved past `since`, or there is no `since`.
    IfMoved,
    /// Also when nothing moved (`full_state`).
    Always,
}

pub async fn sync_start(db: &Db, q: &StartQuery<'_>) -> Result<Option<SyncStart>, MatrixError> {
    // `me` and `pos` have one row each (or `me` none: an unknown token, and no row at all).
    // `go` says whether the caller will build rooms: some stream moved past `since` (`quiet` in
    // src/sync/handler.rs), or there is no `since`, or `full_state`. Only then are the
    // memberships and the first round of the build (rooms that changed, account data,
    // presence) read, bounded by the positions of the same snapshot; the caller reads them
    // itself if the two ever disagree.
    let since = q.since.unwrap_or_default();
    // ?3: 1 reads them whatever moved, NULL never, 0 when something moved.
    let read = match q.memberships {
        Memberships::Never => None,
        Memberships::IfMoved if q.since.is_some() => Some(0),
        _ => Some(1),
    };
    // The parts below name the outer row's columns (`me.user_id`, `pos.e`) rather than
    // subqueries of the CTEs: a scalar subquery per mention made the statement's compilation
    // about two thirds of its cost in the SQLite 3.40 shell (1.3 ms, 0.8 ms without). Local
    // workerd keeps prepared statements by their text (1 MiB of SQL per database), so a
    // statement whose text does not vary per request compiles once; its parts a quiet sync
    // skips (`CASE`) then cost nothing (docs/sync_costs.md).
    let user = "me.user_id";
    let up_to = |column: &str| format!("IFNULL(pos.{column}, 0)");
    let changed = changed_rooms_sql(
        user,
        ["?4", "?6", "?7"],
        [&up_to("e"), &up_to("r"), &up_to("t")],
    );
    let account_data = super::user_data::account_data_since_sql(user, "?5", &up_to("a"));
    let memberships = memberships_sql(user, "?11");
    // New room-mates in the event window bring their presence (`presence::changed_for`); an
    // initial sync's window starts at 0, where the presence window already holds everyone.
    let presence = super::presence::changed_for_sql(user, "?10", &up_to("p"), ["?4", &up_to("e")]);
    // Only a sliding sync names a connection: a `/sync` neither compiles nor binds its part.
    let (connection, pos_id, conn_id) = match q.connection {
        Some((pos_id, conn_id, _)) => (
            "(SELECT rooms FROM sliding_sync_positions WHERE pos_id = ?13
               AND user_id = me.user_id AND device_id = me.device_id AND conn_id = ?14)",
            Arg::from(pos_id),
            Arg::from(conn_id),
        ),
        None => ("NULL", Arg::Null, Arg::Null),
    };
    // Its room list in the same snapshot as the positions: an answer then ranks and compares
    // the rooms exactly as of the stream positions it is built up to.
    // An incremental answer may read only the rooms that can be in its windows, when the
    // connection row allows it (`sliding_sync::partial_room_list_sql`); what it needs of the
    // request is the last parameter (a sliding sync has no fold).
    let subscriptions = q
        .connection
        .and_then(|(_, _, read)| read?.partial)
        .filter(|_| q.since.is_some() && q.fold.is_none());
    let (room_list, partial, direct) = match q.connection {
        Some((_, _, Some(read))) => {
            let full = super::sliding_sync::room_list_sql(user, read.columns);
            let direct = format!("({})", super::sliding_sync::direct_sql(user));
            match subscriptions {
                Some(_) => {
                    let condition = super::sliding_sync::partial_condition_sql(
                        connection,
                        "?4",
                        &up_to("e"),
                        "?15",
                    );
                    let only = super::sliding_sync::partial_room_list_sql(
                        user,
                        read.columns,
                        connection,
                        "?4",
                        "?15",
                    );
                    (
                        format!("CASE WHEN {condition} THEN {only} ELSE {full} END"),
                        condition,
                        direct,
                    )
                }
                None => (full, "0".to_owned(), direct),
            }
        }
        _ => ("NULL".to_owned(), "0".to_owned(), "NULL".to_owned()),
    };
    let mut args = vec![
        Arg::from(q.token_hash),
        Arg::from(q.filter_id),
        Arg::from(read),
        Arg::from(since.events),
        Arg::from(since.account_data),
        Arg::from(since.receipts),
        Arg::from(since.typing),
        Arg::from(since.to_device),
        Arg::from(since.device_lists),
        Arg::from(since.presence),
        Arg::from(q.since.map_or(u64::MAX, |s| s.events)),
        Arg::from(q.since.is_some()),
    ];
    if q.connection.is_some() || q.fold.is_some() {
        args.extend([pos_id, conn_id]);
    }
    if let Some(subscriptions) = subscriptions {
        args.push(Arg::from(subscriptions));
    }
    // The rooms' first round of an incremental sync (`sync_fold`), in the same snapshot.
    let (mut fold_ctes, fold) = match q.fold {
        Some(f) => {
            let (user, after, up_to) = super::sync_fold::CHANGED_OPERANDS;
            let changed = changed_rooms_sql(user, after, up_to);
            args.push(Arg::from(f.limit.map(|l| (l + 1) as i64)));
            (
                super::sync_fold::ctes(&changed, f.default, f.max),
                super::sync_fold::column("go.read AND ?12"),
            )
        }
        None => (String::new(), "NULL".to_owned()),
    };
    // With a fold, its CTE is the same set of rooms: read once, not twice (about ten rows per
    // room of the user each time).
    let changed = match q.fold {
        Some(_) => "(SELECT json_group_array(room_id) FROM fold)".to_owned(),
        None => format!("(SELECT json_group_array(room_id) FROM ({changed}))"),
    };
    // An incremental sliding sync answer's rooms with new events (`sliding_sync::Fold`), when
    // few events came since its `pos` (as for its partial room list).
    let sliding_fold = match q.connection {
        Some((_, _, Some(read))) if q.since.is_some() && q.fold.is_none() => {
            args.push(Arg::from(read.timeline_limit + 1));
            let limit = format!("?{}", args.len());
            fold_ctes.push_str(&super::sliding_sync::fold_cte("?4"));
            let run = format!(
                "{} - ?4 <= {}",
                up_to("e"),
                super::sliding_sync::PARTIAL_MAX_EVENTS
            );
            super::sliding_sync::fold_column(&run, "?4", &limit, read.lazy_members)
        }
        _ => "NULL".to_owned(),
    };
    let sqltext = format!("WITH me AS (
           SELECT t.user_id, t.device_id, t.expires_ts, t.revokes_refresh, u.deactivated, u.admin
           FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?1),
         pos AS (SELECT {POSITIONS}),
         go AS (SELECT CASE WHEN ?3 IS NULL THEN 0
             WHEN ?3 OR IFNULL(e, 0) != ?4 OR IFNULL(a, 0) != ?5 OR IFNULL(r, 0) != ?6
               OR IFNULL(t, 0) != ?7 OR IFNULL(d, 0) > ?8 OR IFNULL(l, 0) > ?9 OR IFNULL(p, 0) != ?10
             THEN 1 ELSE 0 END AS read FROM pos){fold_ctes}
         SELECT me.*, pos.*,
           (SELECT MIN(x.expires_ts) FROM typing x JOIN memberships m ON m.room_id = x.room_id
            WHERE m.user_id = me.user_id AND m.membership = 'join' AND x.expires_ts > 0) AS typing_next,
           (SELECT json_group_array(json_array(algorithm, n)) FROM (
              SELECT k.algorithm, COUNT(*) AS n FROM e2e_one_time_keys k, me
              WHERE k.user_id = me.user_id AND k.device_id = me.device_id GROUP BY k.algorithm)) AS otk,
           (SELECT json_group_array(f.algorithm) FROM e2e_fallback_keys f
            WHERE f.user_id = me.user_id AND f.device_id = me.device_id AND f.used = 0) AS fallback,
           (SELECT filter FROM filters WHERE user_id = me.user_id AND filter_id = ?2) AS filter,
           (SELECT MIN(stream_id) FROM e2e_to_device
            WHERE user_id = me.user_id AND device_id = me.device_id) AS inbox_first,
           (SELECT MAX(stream_id) FROM e2e_to_device
            WHERE user_id = me.user_id AND device_id = me.device_id) AS inbox_last,
           (SELECT json_object('user_id', p.user_id, 'presence', p.presence,
              'status_msg', p.status_msg, 'last_active_ts', p.last_active_ts,
              'currently_active', p.currently_active)
            FROM presence p WHERE p.user_id = me.user_id) AS own_presence,
           {connection} AS connection,
           {room_list} AS room_list,
           {partial} AS room_list_partial,
           {direct} AS direct,
           CASE WHEN go.read THEN
             (SELECT json_group_array(json_array(room_id, membership, event_id, stream_ordering, room_version, left_by_self))
              FROM ({memberships}))
           END AS memberships,
           CASE WHEN go.read AND ?12 THEN {changed} END AS changed,
           CASE WHEN go.read THEN
             (SELECT json_group_array(json_object('room_id', room_id, 'type', type, 'content', content))
              FROM ({account_data}))
           END AS account_data,
           CASE WHEN go.read THEN
             (SELECT json_group_array(json_object('user_id', user_id, 'presence', presence,
                'status_msg', status_msg, 'last_active_ts', last_active_ts,
                'currently_active', currently_active))
              FROM ({presence}))
           END AS presence,
           {fold} AS fold,
           {sliding_fold} AS sliding_fold
         FROM me, pos, go");
    // The first read of its request: nothing else can share its round trip.
    db.row_alone(&through_args(&sqltext), &args).await
}

/// `sql` (which starts with `WITH`) with its parameter `?1`, the token hash, read from a first
/// common table expression `args` instead of where it is compared with
/// `access_tokens.token_hash`. Measured on local D1 with a copy of a benchmark's database:
/// with `?1` bound there, SQLite compiled the statement again on every call, although workerd
/// keeps prepared statements by their text (docs/sync_costs.md), and the quiet statement cost
/// 2.3–3.9 ms per call on a loaded machine; read through `args`, 1.4–1.6 ms, with the same
/// rows read (18 against 16) and the same answer. Reading every parameter through `args` was
/// as fast but made SQLite read the parts a quiet sync skips (55 rows), so only `?1` is.
/// `sql` has no `?` but its parameters' (none in a string literal).
fn through_args(sql: &str) -> String {
    let body = sql.trim_start();
    let body = body.strip_prefix("WITH").unwrap_or(body);
    let mut out = "WITH args AS (SELECT ?1 AS p1),".to_owned();
    let mut rest = body;
    while let Some(at) = rest.find("?1") {
        let after = &rest[at + 2..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str("?1");
        } else {
            out.push_str("(SELECT p1 FROM args)");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

impl SyncStart {
    /// The stream positions, never behind the client's token (see `sync::handler::position`).
    pub fn position(&self, since: Option<StreamPosition>) -> StreamPosition {
        let mut now = self.positions.position();
        if let Some(since) = since {
            now.to_device = now.to_device.max(since.to_device);
            now.device_lists = now.device_lists.max(since.device_lists);
        }
        now
    }

    /// The device's one-time key counts (`signed_curve25519` always present: clients read a
    /// missing count as "unknown") and unused fallback key algorithms, as `e2ee::key_counts`.
    pub fn key_counts(&self) -> (std::collections::BTreeMap<String, u64>, Vec<String>) {
        let mut counts = std::collections::BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
        let pairs: Vec<(String, u64)> = self
            .otk
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        counts.extend(pairs);
        let fallback = self
            .fallback
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        (counts, fallback)
    }

    /// What the device's to-device inbox holds, in the positions of the same snapshot.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            first: self.inbox_first.map(|n| n as u64),
            last: self.inbox_last.map(|n| n as u64),
        }
    }

    /// The rooms that changed, account data and presence, when the statement read them.
    pub fn first_round(&self) -> Result<Option<FirstRound>, MatrixError> {
        let (Some(account_data), Some(presence)) = (&self.account_data, &self.presence) else {
            return Ok(None);
        };
        let changed = match &self.changed {
            Some(text) => serde_json::from_str(text).map_err(super::storage_error)?,
            None => Vec::new(),
        };
        let account_data = serde_json::from_str(account_data).map_err(super::storage_error)?;
        let presence: Vec<super::presence::Row> =
            serde_json::from_str(presence).map_err(super::storage_error)?;
        Ok(Some(FirstRound {
            changed,
            account_data,
            presence: presence
                .into_iter()
                .map(super::presence::Row::into_presence)
                .collect(),
        }))
    }

    /// The rooms' first round, when the statement read it (`StartQuery::fold`).
    pub fn prefetched(&self) -> Result<Option<super::sync_fold::Prefetched>, MatrixError> {
        self.fold
            .as_deref()
            .map(super::sync_fold::parse)
            .transpose()
    }

    /// A sliding sync's rooms with new events, when the statement read them
    /// (`StartQuery::connection` with a room list, incremental).
    pub fn sliding_fold(&self) -> Result<Option<super::sliding_sync::Fold>, MatrixError> {
        self.sliding_fold
            .as_deref()
            .map(super::sliding_sync::fold_from)
            .transpose()
    }

    /// The user's own presence, as `presence::get` reads it.
    pub fn own_presence(&self) -> Result<Option<crate::presence::Presence>, MatrixError> {
        self.own_presence
            .as_deref()
            .map(|text| {
                serde_json::from_str::<super::presence::Row>(text)
                    .map(|row| row.into_presence().1)
                    .map_err(super::storage_error)
            })
            .transpose()
    }

    /// The memberships, when the statement read them.
    /// The room list and the DMs, when read (`StartQuery::connection`).
    pub fn room_list(&self) -> Result<Option<RoomList>, MatrixError> {
        let Some(text) = &self.room_list else {
            return Ok(None);
        };
        let rows = serde_json::from_str(text).map_err(super::storage_error)?;
        let direct = super::sliding_sync::direct_from(self.direct.as_deref());
        Ok(Some((rows, direct, self.room_list_partial == Some(1))))
    }

    pub fn memberships(&self) -> Result<Option<Vec<MembershipRow>>, MatrixError> {
        let Some(text) = self.memberships.as_deref() else {
            return Ok(None);
        };
        let rows: Vec<(String, String, String, i64, String, i64)> =
            serde_json::from_str(text).map_err(super::storage_error)?;
        Ok(Some(
            rows.into_iter()
                .map(
                    |(room_id, membership, event_id, stream_ordering, room_version, own)| {
                        MembershipRow {
                            room_id,
                            membership,
                            event_id,
                            stream_ordering,
                            room_version,
                            left_by_self: own != 0,
                        }
                    },
                )
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_hash_is_read_through_args() {
        let sql = super::through_args("WITH a AS (SELECT ?1 AS x) SELECT x, ?12, ?10, ?1 FROM a");
        assert_eq!(
            sql,
            "WITH args AS (SELECT ?1 AS p1), a AS (SELECT (SELECT p1 FROM args) AS x) \
             SELECT x, ?12, ?10, (SELECT p1 FROM args) FROM a"
        );
    }
}
