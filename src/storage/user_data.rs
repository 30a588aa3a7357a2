//! Per-user data outside rooms' graphs: profiles, account data (global and per room, tags
//! included), filters, push rules; and the ephemeral room streams: receipts and typing.

use serde::Deserialize;
use serde_json::Value;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::time::now_ms;

#[derive(Deserialize, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

pub async fn profile(db: &Db, user_id: &str) -> Result<Option<Profile>, MatrixError> {
    db.row(
        "SELECT displayname, avatar_url FROM users WHERE user_id = ?1 AND deactivated = 0",
        args![user_id],
    )
    .await
}

/// `field` is `displayname` or `avatar_url` (checked by the caller; never user text in SQL).
pub async fn set_profile_field(
    db: &Db,
    user_id: &str,
    field: &str,
    value: Option<&str>,
) -> Result<(), MatrixError> {
    let sql = match field {
        "displayname" => "UPDATE users SET displayname = ?2 WHERE user_id = ?1",
        "avatar_url" => "UPDATE users SET avatar_url = ?2 WHERE user_id = ?1",
        _ => return Err(MatrixError::internal("unknown profile field")),
    };
    db.run(sql, args![user_id, value]).await.map(|_| ())
}

pub async fn account_data(
    db: &Db,
    user_id: &str,
    room_id: &str,
    kind: &str,
) -> Result<Option<Value>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        content: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
            args![user_id, room_id, kind],
        )
        .await?
        .and_then(|r| serde_json::from_str(&r.content).ok()))
}

/// Stores account data; the row gets a new stream id so /sync sees the change.
pub async fn set_account_data(
    db: &Db,
    user_id: &str,
    room_id: &str,
    kind: &str,
    content: &Value,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO account_data (user_id, room_id, type, content) VALUES (?1, ?2, ?3, ?4)",
        args![user_id, room_id, kind, &content.to_string()],
    )
    .await
    .map(|_| ())
}

#[derive(Deserialize)]
pub struct AccountDataRow {
    pub room_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

/// Account data changed in `(after, up_to]`, global and per room.
pub async fn account_data_since(
    db: &Db,
    user_id: &str,
    after: u64,
    up_to: u64,
) -> Result<Vec<AccountDataRow>, MatrixError> {
    db.rows(
        &account_data_since_sql("?1", "?2", "?3"),
        args![user_id, after, up_to],
    )
    .await
}

/// The query of `account_data_since`, its operands as SQL expressions.
pub(crate) fn account_data_since_sql(user: &str, after: &str, up_to: &str) -> String {
    format!(
        "SELECT room_id, type, content FROM account_data
         WHERE user_id = {user} AND stream_id > {after} AND stream_id <= {up_to} ORDER BY stream_id"
    )
}

pub async fn create_filter(db: &Db, user_id: &str, filter: &Value) -> Result<i64, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        filter_id: i64,
    }
    db.row::<Row>(
        "INSERT INTO filters (user_id, filter) VALUES (?1, ?2) RETURNING filter_id",
        args![user_id, &filter.to_string()],
    )
    .await?
    .map(|r| r.filter_id)
    .ok_or_else(|| MatrixError::internal("filter not stored"))
}

pub async fn filter(db: &Db, user_id: &str, filter_id: i64) -> Result<Option<Value>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        filter: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT filter FROM filters WHERE user_id = ?1 AND filter_id = ?2",
            args![user_id, filter_id],
        )
        .await?
        .and_then(|r| serde_json::from_str(&r.filter).ok()))
}

pub async fn push_rules(db: &Db, user_id: &str) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        rules: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT rules FROM push_rules WHERE user_id = ?1",
            args![user_id],
        )
        .await?
        .map(|r| r.rules))
}

/// Replaces the user's stored push rules with `rules` if they still are `before` (`None`: no
/// row yet), and in the same batch their `m.push_rules` account data with `account_data`: true
/// if replaced, false if another change came first (nothing is written then).
pub async fn replace_push_rules(
    db: &Db,
    user_id: &str,
    before: Option<&str>,
    rules: &str,
    account_data: &Value,
) -> Result<bool, MatrixError> {
    let swap = match before {
        Some(before) => db.stmt(
            "UPDATE push_rules SET rules = ?3 WHERE user_id = ?1 AND rules = ?2",
            args![user_id, before, rules],
        ),
        None => db.stmt(
            "INSERT INTO push_rules (user_id, rules) VALUES (?1, ?2) ON CONFLICT (user_id) DO NOTHING",
            args![user_id, rules],
        ),
    };
    // Written only by the change that won: the account data always shows the stored rules,
    // whichever of two racing changes finishes last.
    let shown = db.stmt(
        "INSERT OR REPLACE INTO account_data (user_id, room_id, type, content)
         SELECT ?1, '', 'm.push_rules', ?3 WHERE EXISTS
           (SELECT 1 FROM push_rules WHERE user_id = ?1 AND rules = ?2)",
        args![user_id, rules, &account_data.to_string()],
    );
    let results = db.batch(vec![swap, shown]).await?;
    Ok(results.first().is_some_and(|r| r.changes == 1))
}

// --- Receipts and typing --------------------------------------------------------------------

pub async fn set_receipt(
    db: &Db,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
    thread_id: &str,
    event_id: &str,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![
            room_id,
            user_id,
            receipt_type,
            thread_id,
            event_id,
            now_ms()
        ],
    )
    .await
    .map(|_| ())
}

/// The earliest end of a running typing notification in the rooms `user_id` is joined to.
pub async fn next_typing_expiry(db: &Db, user_id: &str) -> Result<Option<u64>, MatrixError> {
    Ok(db
        .row::<super::Count>(
            "SELECT MIN(t.expires_ts) AS n FROM typing t JOIN memberships m ON m.room_id = t.room_id
             WHERE m.user_id = ?1 AND m.membership = 'join' AND t.expires_ts > 0",
            args![user_id],
        )
        .await?
        .and_then(|c| c.n)
        .map(|n| n as u64))
}

/// Typing notifications that ran out become stopped ones under a new stream id, so syncing
/// clients see them end: nobody sends a "stopped typing" for a notification that timed out.
pub async fn expire_typing(db: &Db, now: u64) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO typing (room_id, user_id, expires_ts)
         SELECT room_id, user_id, 0 FROM typing WHERE expires_ts > 0 AND expires_ts <= ?1",
        args![now],
    )
    .await
    .map(|_| ())
}

pub async fn set_typing(
    db: &Db,
    room_id: &str,
    user_id: &str,
    expires_ts: u64,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO typing (room_id, user_id, expires_ts) VALUES (?1, ?2, ?3)",
        args![room_id, user_id, expires_ts],
    )
    .await
    .map(|_| ())
}
