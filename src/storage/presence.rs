//! Presence rows (migration 0011): ours and remote users', and who sees whose changes.

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::presence::{Presence, State};

#[derive(Deserialize)]
pub(crate) struct Row {
    user_id: String,
    presence: String,
    status_msg: Option<String>,
    last_active_ts: i64,
    currently_active: i64,
}

impl Row {
    pub(crate) fn into_presence(self) -> (String, Presence) {
        let presence = Presence {
            state: State::parse(&self.presence).unwrap_or(State::Offline),
            status_msg: self.status_msg,
            last_active_ts: self.last_active_ts.max(0) as u64,
            currently_active: self.currently_active != 0,
        };
        (self.user_id, presence)
    }
}

const COLUMNS: &str = "p.user_id, p.presence, p.status_msg, p.last_active_ts, p.currently_active";

pub async fn get(db: &Db, user_id: &str) -> Result<Option<Presence>, MatrixError> {
    let row: Option<Row> = db
        .row(
            &format!("SELECT {COLUMNS} FROM presence p WHERE p.user_id = ?1"),
            args![user_id],
        )
        .await?;
    Ok(row.map(|r| r.into_presence().1))
}

/// Stores a user's presence. With `moves_stream` the row takes the next presence stream
/// position (others will see the change); without, only its fields are refreshed.
pub async fn set(
    db: &Db,
    user_id: &str,
    presence: &Presence,
    moves_stream: bool,
) -> Result<(), MatrixError> {
    let stream = if moves_stream {
        "(SELECT COALESCE(MAX(stream_id), 0) + 1 FROM presence)"
    } else {
        "COALESCE((SELECT stream_id FROM presence WHERE user_id = ?1), 0)"
    };
    db.run(
        &format!(
            "INSERT INTO presence (user_id, presence, status_msg, last_active_ts, currently_active, stream_id)
             VALUES (?1, ?2, ?3, ?4, ?5, {stream})
             ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence,
               status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,
               currently_active = excluded.currently_active, stream_id = excluded.stream_id"
        ),
        args![
            user_id,
            presence.state.as_str(),
            presence.status_msg.as_deref(),
            presence.last_active_ts,
            presence.currently_active
        ],
    )
    .await
    .map(|_| ())
}

/// Whether `viewer` may see `user`'s presence: themselves, or someone they share a room with
/// (both joined, or one invited).
pub async fn may_see(db: &Db, viewer: &str, user: &str) -> Result<bool, MatrixError> {
    if viewer == user {
        return Ok(true);
    }
    #[derive(Deserialize)]
    struct One {
        #[allow(dead_code)]
        one: i64,
    }
    Ok(db
        .row::<One>(
            "SELECT 1 AS one FROM memberships a JOIN memberships b ON a.room_id = b.room_id
             WHERE a.user_id = ?1 AND b.user_id = ?2
               AND a.membership IN ('join', 'invite') AND b.membership IN ('join', 'invite')
             LIMIT 1",
            args![viewer, user],
        )
        .await?
        .is_some())
}

/// The presence of the viewer and of everyone sharing a joined room with them, changed in
/// `(after, up_to]` of the presence stream; and, whatever its position, the presence of those who
/// began sharing a joined room with the viewer in `shared` (an `(after, up_to]` window of the
/// event stream): the viewer joined their room or they joined the viewer's. A client learns a
/// new room-mate's presence with the join, not only at their next change (spec: presence is
/// sent for users who share a room).
pub async fn changed_for(
    db: &Db,
    viewer: &str,
    after: u64,
    up_to: u64,
    shared: (u64, u64),
) -> Result<Vec<(String, Presence)>, MatrixError> {
    let rows: Vec<Row> = db
        .rows(
            &changed_for_sql("?1", "?2", "?3", ["?4", "?5"]),
            args![viewer, after, up_to, shared.0, shared.1],
        )
        .await?;
    Ok(rows.into_iter().map(Row::into_presence).collect())
}

/// The query of `changed_for`, its operands as SQL expressions: `shared` is the window of the
/// event stream in which rooms newly shared with the viewer bring their members' presence.
///
/// Its cost follows what moved, not the server or the viewer's rooms (D1 bills every row read,
/// and this runs in every /sync with news): the presence changes of the window, each asked
/// whether its user shares a room with the viewer through that user's own rooms; and the members
/// of the viewer's rooms that had an event in the event window (a membership can only have
/// changed there), each presence row then found by its user.
pub(crate) fn changed_for_sql(viewer: &str, after: &str, up_to: &str, shared: [&str; 2]) -> String {
    let [shared_from, shared_to] = shared;
    format!(
        "SELECT {COLUMNS} FROM presence p
         WHERE p.stream_id > {after} AND p.stream_id <= {up_to}
           AND (p.user_id = {viewer} OR EXISTS (
             SELECT 1 FROM memberships b JOIN memberships a ON a.room_id = b.room_id
               AND a.user_id = {viewer} AND a.membership = 'join'
             WHERE b.user_id = p.user_id AND b.membership = 'join'))
         UNION
         SELECT {COLUMNS} FROM presence p
         WHERE {shared_from} < {shared_to} AND p.stream_id <= {up_to} AND p.user_id IN (
           SELECT b.user_id FROM memberships a CROSS JOIN memberships b ON b.room_id = a.room_id
           WHERE a.user_id = {viewer} AND a.membership = 'join' AND b.membership = 'join'
             AND b.user_id != {viewer}
             AND EXISTS (SELECT 1 FROM events x WHERE x.room_id = a.room_id
                           AND x.stream_ordering > {shared_from} AND x.stream_ordering <= {shared_to})
             AND ((a.stream_ordering > {shared_from} AND a.stream_ordering <= {shared_to})
               OR (b.stream_ordering > {shared_from} AND b.stream_ordering <= {shared_to})))"
    )
}

/// Our users who share a joined room with `user` (and `user`, if ours): whom a change wakes.
pub async fn local_watchers(db: &Db, user: &str) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Watcher {
        user_id: String,
    }
    Ok(db
        .rows::<Watcher>(
            "SELECT DISTINCT b.user_id FROM memberships a JOIN memberships b ON a.room_id = b.room_id
             JOIN users u ON u.user_id = b.user_id
             WHERE a.user_id = ?1 AND a.membership = 'join' AND b.membership = 'join'
             UNION SELECT user_id FROM users WHERE user_id = ?1",
            args![user],
        )
        .await?
        .into_iter()
        .map(|w| w.user_id)
        .collect())
}

#[cfg(test)]
mod tests {
    /// Presence changes are found by index only: never a walk of every presence row of the
    /// server, nor of every member of the viewer's rooms.
    #[test]
    fn presence_changes_read_by_index_only() {
        let db = crate::testing::Sqlite::migrated();
        let plan = db.plan(&super::changed_for_sql("?1", "?2", "?3", ["?4", "?5"]));
        assert!(!plan.lines().any(|step| step.starts_with("SCAN")), "{plan}");
    }
}
