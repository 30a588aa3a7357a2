//! SQL for server-side key backup (`room_keys`): versions with their auth data, and the
//! encrypted session keys in each, with an etag that moves whenever the keys change.

use serde::Deserialize;
use serde_json::{json, Value};

use super::Db;
use crate::args;
use crate::e2ee::backup::SessionKey;
use crate::http::MatrixError;

#[derive(Deserialize)]
pub struct VersionRow {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

const VERSION_SELECT: &str = "SELECT v.version, v.algorithm, v.auth_data, v.etag,
    (SELECT COUNT(*) FROM e2e_backup_keys k WHERE k.version = v.version) AS count
    FROM e2e_backup_versions v";

pub async fn create_version(
    db: &Db,
    user_id: &str,
    algorithm: &str,
    auth_data: &str,
) -> Result<i64, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        version: i64,
    }
    db.row::<Row>(
        "INSERT INTO e2e_backup_versions (user_id, algorithm, auth_data) VALUES (?1, ?2, ?3)
         RETURNING version",
        args![user_id, algorithm, auth_data],
    )
    .await?
    .map(|r| r.version)
    .ok_or_else(|| MatrixError::internal("backup version insert returned nothing"))
}

/// A version of the user's, or the latest one when `version` is `None`; deleted ones are gone.
pub async fn version(
    db: &Db,
    user_id: &str,
    version: Option<i64>,
) -> Result<Option<VersionRow>, MatrixError> {
    match version {
        Some(v) => {
            db.row(
                &format!("{VERSION_SELECT} WHERE v.user_id = ?1 AND v.version = ?2 AND v.deleted = 0"),
                args![user_id, v],
            )
            .await
        }
        None => {
            db.row(
                &format!(
                    "{VERSION_SELECT} WHERE v.user_id = ?1 AND v.deleted = 0 ORDER BY v.version DESC LIMIT 1"
                ),
                args![user_id],
            )
            .await
        }
    }
}

pub async fn update_version(
    db: &Db,
    user_id: &str,
    version: i64,
    auth_data: &str,
) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "UPDATE e2e_backup_versions SET auth_data = ?3
             WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
            args![user_id, version, auth_data],
        )
        .await?
        > 0)
}

/// Deletes a version and its keys; false if there was no such version.
pub async fn delete_version(db: &Db, user_id: &str, version: i64) -> Result<bool, MatrixError> {
    let results = db
        .batch(vec![
            db.stmt(
                "UPDATE e2e_backup_versions SET deleted = 1
                 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                args![user_id, version],
            ),
            db.stmt(
                "DELETE FROM e2e_backup_keys WHERE version = ?1 AND EXISTS
                   (SELECT 1 FROM e2e_backup_versions WHERE version = ?1 AND user_id = ?2)",
                args![version, user_id],
            ),
        ])
        .await?;
    Ok(results.first().map(|r| r.changes).unwrap_or(0) > 0)
}

/// Stores keys in a version, keeping for each session the better of the stored and the new key
/// (the spec's rule, `e2ee::backup::keeps_new`, here as the upsert's condition so that it holds
/// under concurrent uploads), and moves the etag.
pub async fn put_keys(db: &Db, version: i64, keys: &[SessionKey]) -> Result<(), MatrixError> {
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!([
                k.room_id,
                k.session_id,
                k.data.first_message_index,
                k.data.forwarded_count,
                k.data.is_verified as i64,
                k.data.session_data.to_string()
            ])
        })
        .collect();
    db.batch(vec![
        db.stmt(
            "INSERT INTO e2e_backup_keys
               (version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
             SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
             FROM json_each(?2) WHERE true
             ON CONFLICT (version, room_id, session_id) DO UPDATE SET
               first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
               is_verified = excluded.is_verified, session_data = excluded.session_data
             WHERE excluded.is_verified > e2e_backup_keys.is_verified
                OR (excluded.is_verified = e2e_backup_keys.is_verified
                    AND (excluded.first_message_index < e2e_backup_keys.first_message_index
                         OR (excluded.first_message_index = e2e_backup_keys.first_message_index
                             AND excluded.forwarded_count < e2e_backup_keys.forwarded_count)))",
            args![version, &Value::Array(list).to_string()],
        ),
        bump_etag(db, version),
    ])
    .await
    .map(|_| ())
}

/// Moves a version's etag: in the batch of every change to its keys, so clients that compare
/// etags notice.
fn bump_etag(db: &Db, version: i64) -> crate::platform::Statement {
    db.stmt(
        "UPDATE e2e_backup_versions SET etag = etag + 1 WHERE version = ?1",
        args![version],
    )
}

#[derive(Deserialize)]
pub struct KeyRow {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: i64,
    pub session_data: String,
}

/// Keys of a version: all, one room's, or one session's (an empty filter matches everything).
pub async fn keys(
    db: &Db,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<KeyRow>, MatrixError> {
    db.rows(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
         FROM e2e_backup_keys WHERE version = ?1 AND (?2 IS NULL OR room_id = ?2)
           AND (?3 IS NULL OR session_id = ?3)",
        args![version, room_id, session_id],
    )
    .await
}

pub async fn delete_keys(
    db: &Db,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<(), MatrixError> {
    db.batch(vec![
        db.stmt(
            "DELETE FROM e2e_backup_keys WHERE version = ?1 AND (?2 IS NULL OR room_id = ?2)
               AND (?3 IS NULL OR session_id = ?3)",
            args![version, room_id, session_id],
        ),
        bump_etag(db, version),
    ])
    .await
    .map(|_| ())
}
