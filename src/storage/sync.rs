//! The reads `/sync` needs beyond single rooms: the current stream positions, and which rooms
//! a user is in with what membership.

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::sync::token::StreamPosition;

/// The newest position of every stream, in one query. The to-device inbox deletes what was
/// delivered, so its maximum can fall back: callers hold it at or above the client's token.
pub async fn current_position(db: &Db) -> Result<StreamPosition, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        e: Option<i64>,
        a: Option<i64>,
        r: Option<i64>,
        t: Option<i64>,
        d: Option<i64>,
        l: Option<i64>,
        p: Option<i64>,
    }
    let row: Option<Row> = db
        .row(
            "SELECT (SELECT MAX(stream_ordering) FROM events) AS e,
                    (SELECT MAX(stream_id) FROM account_data) AS a,
                    (SELECT MAX(stream_id) FROM receipts) AS r,
                    (SELECT MAX(stream_id) FROM typing) AS t,
                    (SELECT MAX(stream_id) FROM e2e_to_device) AS d,
                    (SELECT MAX(stream_id) FROM e2e_device_list_changes) AS l,
                    (SELECT MAX(stream_id) FROM presence) AS p",
            args![],
        )
        .await?;
    let n = |v: Option<i64>| v.unwrap_or(0) as u64;
    Ok(
        row.map_or_else(StreamPosition::default, |r| StreamPosition {
            events: n(r.e),
            account_data: n(r.a),
            receipts: n(r.r),
            typing: n(r.t),
            to_device: n(r.d),
            device_lists: n(r.l),
            presence: n(r.p),
        }),
    )
}

#[derive(Deserialize)]
pub struct MembershipRow {
    pub room_id: String,
    pub membership: String,
    /// The membership event.
    pub event_id: String,
    pub stream_ordering: i64,
    pub room_version: String,
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
        "SELECT m.room_id, m.membership, m.event_id, m.stream_ordering, r.room_version
         FROM memberships m JOIN rooms r ON r.room_id = m.room_id
         WHERE m.user_id = ?1 AND (m.forgotten = 0 OR m.stream_ordering > ?2)",
        args![user_id, since.unwrap_or(u64::MAX)],
    )
    .await
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
    let mine = "(SELECT room_id FROM memberships WHERE user_id = ?1 AND forgotten = 0)";
    Ok(db
        .rows::<Row>(
            &format!(
                "SELECT room_id FROM events WHERE stream_ordering > ?2 AND stream_ordering <= ?3 AND room_id IN {mine}
                 UNION SELECT room_id FROM receipts WHERE stream_id > ?4 AND stream_id <= ?5 AND room_id IN {mine}
                 UNION SELECT room_id FROM typing WHERE stream_id > ?6 AND stream_id <= ?7 AND room_id IN {mine}"
            ),
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
