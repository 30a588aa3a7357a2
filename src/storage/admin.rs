//! The queries of the Synapse-compatible admin API (src/admin/): user and room listings with
//! Synapse's fields, registration tokens, room blocks and deletions.

use serde::Deserialize;
use serde_json::Value;

use super::Db;
use crate::args;
use crate::http::MatrixError;

/// A user as the admin API lists it.
#[derive(Deserialize)]
pub struct UserRow {
    pub user_id: String,
    pub admin: i64,
    pub deactivated: i64,
    pub erased: i64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ts: i64,
    pub appservice_id: Option<String>,
    pub last_seen_ts: Option<i64>,
}

const USER_COLUMNS: &str = "u.user_id, u.admin, u.deactivated, u.erased, u.displayname,
    u.avatar_url, u.created_ts, u.appservice_id,
    (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts";

pub async fn user(db: &Db, user_id: &str) -> Result<Option<UserRow>, MatrixError> {
    db.row(
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = ?1"),
        args![user_id],
    )
    .await
}

/// What the user listing filters on.
pub struct UserFilter<'a> {
    /// Matches the localpart or the display name (Synapse's `name`).
    pub name: Option<&'a str>,
    /// Matches anywhere in the user id (Synapse's `user_id`).
    pub user_id: Option<&'a str>,
    pub include_deactivated: bool,
    pub admins: Option<bool>,
    /// A column of `USER_COLUMNS`, from a fixed list (never the client's text).
    pub order_column: &'static str,
    pub descending: bool,
    pub from: u64,
    pub limit: u64,
}

/// One page of users and the total that match.
pub async fn users(db: &Db, filter: &UserFilter<'_>) -> Result<(Vec<UserRow>, u64), MatrixError> {
    let mut conditions = vec!["1 = 1".to_owned()];
    if !filter.include_deactivated {
        conditions.push("u.deactivated = 0".into());
    }
    match filter.admins {
        Some(true) => conditions.push("u.admin = 1".into()),
        Some(false) => conditions.push("u.admin = 0".into()),
        None => {}
    }
    let name = filter.name.map(|n| {
        (
            format!("@%{}%:%", n.to_lowercase()),
            format!("%{}%", n.to_lowercase()),
        )
    });
    let user_like = filter.user_id.map(|u| format!("%{}%", u.to_lowercase()));
    if name.is_some() {
        conditions.push("(u.user_id LIKE ?1 OR LOWER(u.displayname) LIKE ?2)".into());
    } else if user_like.is_some() {
        conditions.push("u.user_id LIKE ?1".into());
    }
    let (a, b) = match (&name, &user_like) {
        (Some((a, b)), _) => (a.as_str(), b.as_str()),
        (None, Some(u)) => (u.as_str(), ""),
        (None, None) => ("", ""),
    };
    // Both parameters are always bound, so both are always named.
    let where_clause = format!("{} AND ?1 = ?1 AND ?2 = ?2", conditions.join(" AND "));
    let direction = if filter.descending { "DESC" } else { "ASC" };
    let rows: Vec<UserRow> = db
        .rows(
            &format!(
                "SELECT * FROM (SELECT {USER_COLUMNS} FROM users u WHERE {where_clause})
                 ORDER BY {} {direction}, user_id ASC LIMIT ?3 OFFSET ?4",
                filter.order_column
            ),
            args![a, b, filter.limit, filter.from],
        )
        .await?;
    #[derive(Deserialize)]
    struct Count {
        total: i64,
    }
    let total = db
        .row::<Count>(
            &format!("SELECT COUNT(*) AS total FROM users u WHERE {where_clause}"),
            args![a, b],
        )
        .await?
        .map_or(0, |c| c.total);
    Ok((rows, total.max(0) as u64))
}

pub async fn set_admin(db: &Db, user_id: &str, admin: bool) -> Result<(), MatrixError> {
    db.run(
        "UPDATE users SET admin = ?2 WHERE user_id = ?1",
        args![user_id, admin],
    )
    .await
    .map(|_| ())
}

pub async fn set_erased(db: &Db, user_id: &str) -> Result<(), MatrixError> {
    db.run(
        "UPDATE users SET erased = 1 WHERE user_id = ?1",
        args![user_id],
    )
    .await
    .map(|_| ())
}

pub async fn reactivate(db: &Db, user_id: &str) -> Result<(), MatrixError> {
    db.run(
        "UPDATE users SET deactivated = 0, erased = 0 WHERE user_id = ?1",
        args![user_id],
    )
    .await
    .map(|_| ())
}

/// Ends every session of the user (access and refresh tokens; devices stay).
pub async fn logout_all(db: &Db, user_id: &str) -> Result<(), MatrixError> {
    db.batch(vec![
        db.stmt(
            "DELETE FROM access_tokens WHERE user_id = ?1",
            args![user_id],
        ),
        db.stmt(
            "DELETE FROM refresh_tokens WHERE user_id = ?1",
            args![user_id],
        ),
        db.stmt("DELETE FROM devices WHERE user_id = ?1", args![user_id]),
    ])
    .await
    .map(|_| ())
}

/// The last sessions of a user, for `whois`.
#[derive(Deserialize)]
pub struct Connection {
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
}

pub async fn connections(db: &Db, user_id: &str) -> Result<Vec<Connection>, MatrixError> {
    db.rows(
        "SELECT last_seen_ip, last_seen_ts FROM devices
         WHERE user_id = ?1 AND last_seen_ts IS NOT NULL ORDER BY last_seen_ts DESC",
        args![user_id],
    )
    .await
}

// --- Rooms ------------------------------------------------------------------------------

/// Synapse's room fields, computed from current state. `?1` is this server's name.
const ROOM_SELECT: &str = "SELECT * FROM (SELECT r.room_id,
    (SELECT json_extract(e.pdu, '$.content.name') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.name' AND s.state_key = '') AS name,
    (SELECT json_extract(e.pdu, '$.content.alias') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.canonical_alias' AND s.state_key = '') AS canonical_alias,
    (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined_members,
    (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join'
       AND m.user_id LIKE '%:' || ?1) AS joined_local_members,
    r.room_version AS version, r.creator,
    (SELECT json_extract(e.pdu, '$.content.algorithm') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.encryption' AND s.state_key = '') AS encryption,
    (SELECT COALESCE(json_extract(e.pdu, '$.content.\"m.federate\"'), 1) FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.create' AND s.state_key = '') AS federatable,
    r.published AS public,
    (SELECT json_extract(e.pdu, '$.content.join_rule') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.join_rules' AND s.state_key = '') AS join_rules,
    (SELECT json_extract(e.pdu, '$.content.guest_access') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.guest_access' AND s.state_key = '') AS guest_access,
    (SELECT json_extract(e.pdu, '$.content.history_visibility') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.history_visibility' AND s.state_key = '') AS history_visibility,
    (SELECT COUNT(*) FROM room_state s WHERE s.room_id = r.room_id) AS state_events,
    (SELECT json_extract(e.pdu, '$.content.type') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.create' AND s.state_key = '') AS room_type,
    (SELECT json_extract(e.pdu, '$.content.url') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.avatar' AND s.state_key = '') AS avatar,
    (SELECT json_extract(e.pdu, '$.content.topic') FROM room_state s JOIN events e ON e.event_id = s.event_id
       WHERE s.room_id = r.room_id AND s.type = 'm.room.topic' AND s.state_key = '') AS topic
    FROM rooms r
    WHERE r.room_id NOT IN (SELECT d.room_id FROM room_deletions d WHERE d.purged = 1)) room";

#[derive(Deserialize)]
pub struct RoomRow {
    pub room_id: String,
    pub name: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub version: Option<String>,
    pub creator: Option<String>,
    pub encryption: Option<String>,
    pub federatable: Option<i64>,
    pub public: i64,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: i64,
    pub room_type: Option<String>,
    pub avatar: Option<String>,
    pub topic: Option<String>,
}

pub struct RoomFilter<'a> {
    pub search_term: Option<&'a str>,
    pub public: Option<bool>,
    pub empty: Option<bool>,
    /// A column of the room select, from a fixed list.
    pub order_column: &'static str,
    pub descending: bool,
    pub from: u64,
    pub limit: u64,
}

pub async fn rooms(
    db: &Db,
    server: &str,
    filter: &RoomFilter<'_>,
) -> Result<(Vec<RoomRow>, u64), MatrixError> {
    let mut conditions = vec!["1 = 1".to_owned()];
    let (name_like, alias_like, exact) = match filter.search_term {
        Some(term) => {
            conditions.push(
                "(LOWER(room.name) LIKE ?2 OR LOWER(room.canonical_alias) LIKE ?3 OR room.room_id = ?4)"
                    .into(),
            );
            (
                format!("%{}%", term.to_lowercase()),
                format!("#%{}%:%", term.to_lowercase()),
                term.to_owned(),
            )
        }
        None => (String::new(), String::new(), String::new()),
    };
    match filter.public {
        Some(true) => conditions.push("room.public = 1".into()),
        Some(false) => conditions.push("room.public = 0".into()),
        None => {}
    }
    match filter.empty {
        Some(true) => conditions.push("room.joined_members = 0".into()),
        Some(false) => conditions.push("room.joined_members <> 0".into()),
        None => {}
    }
    let where_clause = format!(
        "{} AND ?2 = ?2 AND ?3 = ?3 AND ?4 = ?4",
        conditions.join(" AND ")
    );
    let direction = if filter.descending { "DESC" } else { "ASC" };
    let rows: Vec<RoomRow> = db
        .rows(
            &format!(
                "{ROOM_SELECT} WHERE {where_clause}
                 ORDER BY {} {direction}, room.room_id {direction} LIMIT ?5 OFFSET ?6",
                filter.order_column
            ),
            args![
                server,
                name_like.as_str(),
                alias_like.as_str(),
                exact.as_str(),
                filter.limit,
                filter.from
            ],
        )
        .await?;
    #[derive(Deserialize)]
    struct Count {
        total: i64,
    }
    let total = db
        .row::<Count>(
            &format!("SELECT COUNT(*) AS total FROM ({ROOM_SELECT} WHERE {where_clause})"),
            args![
                server,
                name_like.as_str(),
                alias_like.as_str(),
                exact.as_str()
            ],
        )
        .await?
        .map_or(0, |c| c.total);
    Ok((rows, total.max(0) as u64))
}

pub async fn room(db: &Db, server: &str, room_id: &str) -> Result<Option<RoomRow>, MatrixError> {
    db.row(
        &format!("{ROOM_SELECT} WHERE room.room_id = ?2"),
        args![server, room_id],
    )
    .await
}

/// Joined members of a room (all servers), by user id.
pub async fn joined_members(db: &Db, room_id: &str) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT user_id FROM memberships WHERE room_id = ?1 AND membership = 'join' ORDER BY user_id",
            args![room_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// How many devices the given users have.
pub async fn count_devices(db: &Db, users: &[String]) -> Result<u64, MatrixError> {
    let mut total = 0;
    for user in users {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        total += db
            .row::<Count>(
                "SELECT COUNT(*) AS n FROM devices WHERE user_id = ?1",
                args![user.as_str()],
            )
            .await?
            .map_or(0, |c| c.n.max(0) as u64);
    }
    Ok(total)
}

pub async fn block_room(db: &Db, room_id: &str, by: &str) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO blocked_rooms (room_id, user_id) VALUES (?1, ?2)",
        args![room_id, by],
    )
    .await
    .map(|_| ())
}

/// Removes the room's local aliases and directory listing; returns the aliases removed.
pub async fn remove_aliases(db: &Db, room_id: &str) -> Result<Vec<String>, MatrixError> {
    let aliases = super::directory::aliases_of(db, room_id).await?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM room_aliases WHERE room_id = ?1",
            args![room_id],
        ),
        db.stmt(
            "UPDATE rooms SET published = 0 WHERE room_id = ?1",
            args![room_id],
        ),
    ])
    .await?;
    Ok(aliases)
}

#[derive(Deserialize)]
pub struct DeletionRow {
    pub delete_id: String,
    pub room_id: String,
    pub status: String,
    pub result: String,
    pub error: Option<String>,
}

impl DeletionRow {
    pub fn result(&self) -> Value {
        serde_json::from_str(&self.result).unwrap_or(Value::Null)
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn save_deletion(
    db: &Db,
    delete_id: &str,
    room_id: &str,
    status: &str,
    result: &Value,
    error: Option<&str>,
    purged: bool,
    now: u64,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO room_deletions (delete_id, room_id, status, result, error, purged, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![delete_id, room_id, status, result.to_string().as_str(), error, purged, now],
    )
    .await
    .map(|_| ())
}

pub async fn deletions_of_room(db: &Db, room_id: &str) -> Result<Vec<DeletionRow>, MatrixError> {
    db.rows(
        "SELECT delete_id, room_id, status, result, error FROM room_deletions
         WHERE room_id = ?1 ORDER BY created_ts",
        args![room_id],
    )
    .await
}

pub async fn deletion(db: &Db, delete_id: &str) -> Result<Option<DeletionRow>, MatrixError> {
    db.row(
        "SELECT delete_id, room_id, status, result, error FROM room_deletions WHERE delete_id = ?1",
        args![delete_id],
    )
    .await
}

// --- Registration tokens ------------------------------------------------------------------

#[derive(Deserialize)]
pub struct TokenRow {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub pending: i64,
    pub completed: i64,
    pub expiry_time: Option<i64>,
}

impl TokenRow {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "token": self.token,
            "uses_allowed": self.uses_allowed,
            "pending": self.pending,
            "completed": self.completed,
            "expiry_time": self.expiry_time,
        })
    }

    pub fn is_valid(&self, now: u64) -> bool {
        self.uses_allowed
            .is_none_or(|allowed| self.pending + self.completed < allowed)
            && self.expiry_time.is_none_or(|at| at > now as i64)
    }
}

const TOKEN_COLUMNS: &str = "token, uses_allowed, pending, completed, expiry_time";

pub async fn tokens(db: &Db) -> Result<Vec<TokenRow>, MatrixError> {
    db.rows(
        &format!("SELECT {TOKEN_COLUMNS} FROM registration_tokens ORDER BY token"),
        args![],
    )
    .await
}

pub async fn token(db: &Db, token: &str) -> Result<Option<TokenRow>, MatrixError> {
    db.row(
        &format!("SELECT {TOKEN_COLUMNS} FROM registration_tokens WHERE token = ?1"),
        args![token],
    )
    .await
}

/// False when the token exists already.
pub async fn create_token(
    db: &Db,
    token: &str,
    uses_allowed: Option<i64>,
    expiry_time: Option<i64>,
) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "INSERT OR IGNORE INTO registration_tokens (token, uses_allowed, expiry_time)
             VALUES (?1, ?2, ?3)",
            args![token, uses_allowed, expiry_time],
        )
        .await?
        > 0)
}

pub async fn update_token(
    db: &Db,
    token: &str,
    uses_allowed: Option<Option<i64>>,
    expiry_time: Option<Option<i64>>,
) -> Result<(), MatrixError> {
    let mut statements = Vec::new();
    if let Some(uses) = uses_allowed {
        statements.push(db.stmt(
            "UPDATE registration_tokens SET uses_allowed = ?2 WHERE token = ?1",
            args![token, uses],
        ));
    }
    if let Some(expiry) = expiry_time {
        statements.push(db.stmt(
            "UPDATE registration_tokens SET expiry_time = ?2 WHERE token = ?1",
            args![token, expiry],
        ));
    }
    if !statements.is_empty() {
        db.batch(statements).await?;
    }
    Ok(())
}

pub async fn delete_token(db: &Db, token: &str) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "DELETE FROM registration_tokens WHERE token = ?1",
            args![token],
        )
        .await?
        > 0)
}

/// Counts a completed registration with the token, if it is still valid (atomically).
pub async fn use_token(db: &Db, token: &str, now: u64) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "UPDATE registration_tokens SET completed = completed + 1
             WHERE token = ?1 AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
               AND (expiry_time IS NULL OR expiry_time > ?2)",
            args![token, now],
        )
        .await?
        > 0)
}
