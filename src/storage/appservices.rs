//! Registered application services (migrations/0015_appservices_admin.sql). Rows are written
//! by scripts/appservice.py (`make dev APPSERVICE_CONFIG=...`, `make appservice-register`);
//! the Worker only reads them.

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;

#[derive(Deserialize)]
// `start_stream` and `by_id` are for the service queues, which exist in the Worker only.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub struct StoredRegistration {
    pub registration: String,
    pub start_stream: i64,
    /// When the registration was stored: older receipts are not pushed to it.
    pub updated_ts: i64,
}

pub async fn all(db: &Db) -> Result<Vec<StoredRegistration>, MatrixError> {
    db.rows(
        "SELECT registration, start_stream, updated_ts FROM appservices ORDER BY id",
        args![],
    )
    .await
}

pub async fn by_as_token(
    db: &Db,
    as_token: &str,
) -> Result<Option<StoredRegistration>, MatrixError> {
    db.row(
        "SELECT registration, start_stream, updated_ts FROM appservices WHERE as_token = ?1",
        args![as_token],
    )
    .await
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub async fn by_id(db: &Db, id: &str) -> Result<Option<StoredRegistration>, MatrixError> {
    db.row(
        "SELECT registration, start_stream, updated_ts FROM appservices WHERE id = ?1",
        args![id],
    )
    .await
}

pub async fn device_exists(db: &Db, user_id: &str, device_id: &str) -> Result<bool, MatrixError> {
    #[derive(Deserialize)]
    struct One {}
    Ok(db
        .row::<One>(
            "SELECT 1 AS one FROM devices WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        )
        .await?
        .is_some())
}

/// Marks a user as created by a service in its exclusive namespace.
pub async fn set_user_appservice(db: &Db, user_id: &str, id: &str) -> Result<(), MatrixError> {
    db.run(
        "UPDATE users SET appservice_id = ?2 WHERE user_id = ?1",
        args![user_id, id],
    )
    .await
    .map(|_| ())
}

/// Timeline events after a stream position, oldest first: what a service's queue looks at.
pub async fn events_after(
    db: &Db,
    after: i64,
    limit: u64,
) -> Result<Vec<super::events::EventRow>, MatrixError> {
    db.rows(
        &format!(
            "{} WHERE e.stream_ordering > ?1 AND e.outlier = 0
             ORDER BY e.stream_ordering ASC LIMIT ?2",
            super::events::SELECT
        ),
        args![after, limit],
    )
    .await
}

/// The local aliases and joined members of a room, for the namespace checks.
pub async fn room_aliases_and_members(
    db: &Db,
    room_id: &str,
) -> Result<(Vec<String>, Vec<String>), MatrixError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let aliases: Vec<Id> = db
        .rows(
            "SELECT alias AS id FROM room_aliases WHERE room_id = ?1",
            args![room_id],
        )
        .await?;
    let members: Vec<Id> = db
        .rows(
            "SELECT user_id AS id FROM memberships WHERE room_id = ?1 AND membership = 'join'",
            args![room_id],
        )
        .await?;
    Ok((
        aliases.into_iter().map(|r| r.id).collect(),
        members.into_iter().map(|r| r.id).collect(),
    ))
}

#[derive(Deserialize)]
pub struct ReceiptRow {
    pub stream_id: i64,
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// Receipts after a stream position made at or after `since_ts`, oldest first.
pub async fn receipts_after(
    db: &Db,
    after: i64,
    since_ts: i64,
    limit: u64,
) -> Result<Vec<ReceiptRow>, MatrixError> {
    db.rows(
        "SELECT stream_id, room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
         WHERE stream_id > ?1 AND ts >= ?2 ORDER BY stream_id LIMIT ?3",
        args![after, since_ts, limit],
    )
    .await
}

#[derive(Deserialize)]
pub struct TypingChange {
    pub stream_id: i64,
    pub room_id: String,
}

/// Rooms whose typing changed after a stream position, oldest change first.
pub async fn typing_after(
    db: &Db,
    after: i64,
    limit: u64,
) -> Result<Vec<TypingChange>, MatrixError> {
    db.rows(
        "SELECT stream_id, room_id FROM typing WHERE stream_id > ?1 ORDER BY stream_id LIMIT ?2",
        args![after, limit],
    )
    .await
}

/// Who is typing in a room now.
pub async fn typing_now(db: &Db, room_id: &str, now: u64) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT user_id FROM typing WHERE room_id = ?1 AND expires_ts > ?2 ORDER BY user_id",
            args![room_id, now],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

#[derive(Deserialize)]
pub struct ToDeviceRow {
    pub stream_id: i64,
    pub user_id: String,
    pub device_id: String,
    pub sender: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

/// To-device messages after a stream position, oldest first.
pub async fn to_device_after(
    db: &Db,
    after: i64,
    limit: u64,
) -> Result<Vec<ToDeviceRow>, MatrixError> {
    db.rows(
        "SELECT stream_id, user_id, device_id, sender, type, content FROM e2e_to_device
         WHERE stream_id > ?1 ORDER BY stream_id LIMIT ?2",
        args![after, limit],
    )
    .await
}

/// Removes to-device messages a service accepted (its devices never sync to acknowledge them).
pub async fn delete_to_device(db: &Db, ids: &[i64]) -> Result<(), MatrixError> {
    let statements = ids
        .iter()
        .map(|id| db.stmt("DELETE FROM e2e_to_device WHERE stream_id = ?1", args![*id]))
        .collect::<Vec<_>>();
    if !statements.is_empty() {
        db.batch(statements).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct KeyCount {
    pub device_id: String,
    pub algorithm: Option<String>,
    pub n: i64,
}

/// One-time key counts of every device of a user (a device without keys has a NULL algorithm).
pub async fn one_time_key_counts(db: &Db, user_id: &str) -> Result<Vec<KeyCount>, MatrixError> {
    db.rows(
        "SELECT d.device_id, k.algorithm, COUNT(k.key_id) AS n FROM devices d
         LEFT JOIN e2e_one_time_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
         WHERE d.user_id = ?1 GROUP BY d.device_id, k.algorithm",
        args![user_id],
    )
    .await
}

#[derive(Deserialize)]
pub struct FallbackKey {
    pub device_id: String,
    pub algorithm: String,
}

pub async fn unused_fallback_keys(db: &Db, user_id: &str) -> Result<Vec<FallbackKey>, MatrixError> {
    db.rows(
        "SELECT device_id, algorithm FROM e2e_fallback_keys WHERE user_id = ?1 AND used = 0",
        args![user_id],
    )
    .await
}

#[derive(Deserialize)]
pub struct DeviceListChange {
    pub stream_id: i64,
    pub user_id: String,
}

/// Users whose devices or keys changed after a stream position, oldest change first.
pub async fn device_list_changes_after(
    db: &Db,
    after: i64,
    limit: u64,
) -> Result<Vec<DeviceListChange>, MatrixError> {
    db.rows(
        "SELECT stream_id, user_id FROM e2e_device_list_changes WHERE stream_id > ?1
         ORDER BY stream_id LIMIT ?2",
        args![after, limit],
    )
    .await
}

/// The device-list stream's current position.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub async fn device_list_position(db: &Db) -> Result<i64, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        position: Option<i64>,
    }
    Ok(db
        .row::<Row>(
            "SELECT MAX(stream_id) AS position FROM e2e_device_list_changes",
            args![],
        )
        .await?
        .and_then(|r| r.position)
        .unwrap_or(0))
}
