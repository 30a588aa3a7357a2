//! Users, devices, access and refresh tokens, UIA sessions and registration nonces.

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::{ErrorCode, MatrixError};
use crate::time::now_ms;

/// Who an access token belongs to.
#[derive(Deserialize)]
pub struct TokenOwner {
    pub revokes_refresh: Option<String>,
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub deactivated: i64,
    pub admin: i64,
}

pub async fn token_owner(db: &Db, token_hash: &str) -> Result<Option<TokenOwner>, MatrixError> {
    db.row(
        "SELECT t.user_id, t.device_id, t.expires_ts, t.revokes_refresh, u.deactivated, u.admin
         FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?1",
        args![token_hash],
    )
    .await
}

pub async fn user_exists(db: &Db, user_id: &str) -> Result<bool, MatrixError> {
    #[derive(Deserialize)]
    struct One {}
    Ok(db
        .row::<One>(
            "SELECT 1 AS one FROM users WHERE user_id = ?1",
            args![user_id],
        )
        .await?
        .is_some())
}

#[derive(Deserialize)]
pub struct Credentials {
    pub password_hash: Option<String>,
    pub deactivated: i64,
}

pub async fn credentials(db: &Db, user_id: &str) -> Result<Option<Credentials>, MatrixError> {
    db.row(
        "SELECT password_hash, deactivated FROM users WHERE user_id = ?1",
        args![user_id],
    )
    .await
}

/// A new login session: the device (created or re-used) and its tokens.
pub struct Session<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub device_display_name: Option<&'a str>,
    pub access_token_hash: &'a str,
    pub refresh_token_hash: Option<&'a str>,
    pub expires_ts: Option<i64>,
}

pub(crate) fn session_statements(db: &Db, s: &Session<'_>) -> Vec<crate::platform::Statement> {
    let now = now_ms();
    let mut statements = vec![
        // Logging in again with a known device id replaces that device's tokens (spec).
        db.stmt(
            "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2",
            args![s.user_id, s.device_id],
        ),
        db.stmt(
            "DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2",
            args![s.user_id, s.device_id],
        ),
        db.stmt(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (user_id, device_id) DO UPDATE SET
               display_name = COALESCE(excluded.display_name, devices.display_name),
               last_seen_ts = excluded.last_seen_ts",
            args![s.user_id, s.device_id, s.device_display_name, now],
        ),
        db.stmt(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                s.access_token_hash,
                s.user_id,
                s.device_id,
                now,
                s.expires_ts
            ],
        ),
    ];
    if let Some(refresh) = s.refresh_token_hash {
        statements.push(db.stmt(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)
             VALUES (?1, ?2, ?3, ?4)",
            args![refresh, s.user_id, s.device_id, now],
        ));
    }
    statements
}

impl From<Option<i64>> for super::Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(super::Arg::Null, super::Arg::Int)
    }
}

/// Creates the user and, unless `session` is `None` (`inhibit_login`), its first session, in
/// one batch. `M_USER_IN_USE` when the id is taken, with nothing written.
pub async fn register(
    db: &Db,
    user_id: &str,
    password_hash: Option<&str>,
    admin: bool,
    session: Option<&Session<'_>>,
) -> Result<(), MatrixError> {
    let mut statements = vec![db.stmt(
        "INSERT INTO users (user_id, password_hash, created_ts, admin, displayname)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        args![
            user_id,
            password_hash,
            now_ms(),
            admin,
            user_id.trim_start_matches('@').split(':').next()
        ],
    )];
    if let Some(session) = session {
        statements.extend(session_statements(db, session));
    }
    match db.batch(statements).await {
        Ok(_) => Ok(()),
        Err(e) if e.message.contains("UNIQUE") => Err(MatrixError::new(
            400,
            ErrorCode::UserInUse,
            "That user id is already taken",
        )),
        Err(e) => Err(e),
    }
}

pub async fn start_session(db: &Db, session: &Session<'_>) -> Result<(), MatrixError> {
    db.batch(session_statements(db, session)).await.map(|_| ())
}

/// Exchanges a refresh token for new tokens: the old pair stops working in the same batch.
pub async fn refresh(
    db: &Db,
    refresh_hash: &str,
    new_access_hash: &str,
    new_refresh_hash: &str,
    expires_ts: i64,
) -> Result<Option<(String, String)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
        device_id: String,
    }
    #[derive(Deserialize)]
    struct Revokes {
        revokes_refresh: Option<String>,
    }
    let Some(row) = db
        .row::<Row>(
            "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = ?1",
            args![refresh_hash],
        )
        .await?
    else {
        return Ok(None);
    };
    // Using a new refresh token is a first use too.
    if let Some(Revokes {
        revokes_refresh: Some(old),
    }) = db
        .row::<Revokes>(
            "SELECT revokes_refresh FROM refresh_tokens WHERE token_hash = ?1",
            args![refresh_hash],
        )
        .await?
    {
        first_use(db, &old).await?;
    }
    // The presented token stays valid until one of the new tokens is first used (see
    // `first_use`): a client whose answer was lost can refresh again.
    let now = now_ms();
    let statements = vec![
        db.stmt(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, revokes_refresh)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![new_access_hash, &row.user_id, &row.device_id, now, expires_ts, refresh_hash],
        ),
        db.stmt(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, revokes_refresh)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![new_refresh_hash, &row.user_id, &row.device_id, now, refresh_hash],
        ),
    ];
    db.batch(statements).await?;
    Ok(Some((row.user_id, row.device_id)))
}

/// The first use of a token issued by `/refresh` revokes the refresh token it replaced, and the
/// access tokens issued alongside that one.
pub async fn first_use(db: &Db, revoked_refresh: &str) -> Result<(), MatrixError> {
    let statements = vec![
        db.stmt(
            "DELETE FROM refresh_tokens WHERE token_hash = ?1",
            args![revoked_refresh],
        ),
        db.stmt(
            "UPDATE access_tokens SET revokes_refresh = NULL WHERE revokes_refresh = ?1",
            args![revoked_refresh],
        ),
        db.stmt(
            "UPDATE refresh_tokens SET revokes_refresh = NULL WHERE revokes_refresh = ?1",
            args![revoked_refresh],
        ),
    ];
    db.batch(statements).await.map(|_| ())
}

pub async fn set_password(db: &Db, user_id: &str, hash: &str) -> Result<(), MatrixError> {
    db.run(
        "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
        args![user_id, hash],
    )
    .await
    .map(|_| ())
}

/// Ends sessions: one device's (logout), or every device's except `keep` (password change).
/// The devices' encryption keys and to-device inboxes go in the same batch, and the user's
/// device list is marked changed so that others stop encrypting for them.
pub async fn delete_devices(db: &Db, user_id: &str, devices: &[String]) -> Result<(), MatrixError> {
    let mut statements = Vec::new();
    for device in devices {
        for sql in [
            "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2",
            "DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2",
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
            // An OAuth device's record of its client (migrations/0017_oauth.sql).
            "DELETE FROM oauth_sessions WHERE user_id = ?1 AND device_id = ?2",
        ] {
            statements.push(db.stmt(sql, args![user_id, device]));
        }
        statements.extend(super::e2ee::forget_device(db, user_id, device));
    }
    if statements.is_empty() {
        return Ok(());
    }
    // Pushers set through those devices' tokens go with them (spec: pushers of a logged-out
    // access token are removed).
    statements.push(super::push::delete_for_devices(db, user_id, devices));
    db.batch(statements).await.map(|_| ())
}

#[derive(Deserialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

pub async fn devices(db: &Db, user_id: &str) -> Result<Vec<DeviceRow>, MatrixError> {
    db.rows(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
         WHERE user_id = ?1 ORDER BY created_ts",
        args![user_id],
    )
    .await
}

/// Renames a device; returns whether it exists and whether its name changed (then the user's
/// device list changed too: other users see device names, so the change is recorded in the
/// same batch).
pub async fn rename_device(
    db: &Db,
    user_id: &str,
    device_id: &str,
    name: Option<&str>,
) -> Result<(bool, bool), MatrixError> {
    let statements = vec![
        // Before the update, so it sees the old name.
        db.stmt(
            "INSERT OR REPLACE INTO e2e_device_list_changes (user_id) SELECT ?1 WHERE EXISTS
               (SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2
                  AND ?3 IS NOT NULL AND display_name IS NOT ?3)",
            args![user_id, device_id, name],
        ),
        // Spec: without a display_name the name is unchanged.
        db.stmt(
            "UPDATE devices SET display_name = COALESCE(?3, display_name)
             WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id, name],
        ),
    ];
    let results = db.batch(statements).await?;
    let changes = |i: usize| results.get(i).map_or(0, |r| r.changes);
    Ok((changes(1) > 0, changes(0) > 0))
}

pub async fn deactivate(db: &Db, user_id: &str) -> Result<(), MatrixError> {
    let mut statements = vec![
        db.stmt(
            "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL
             WHERE user_id = ?1",
            args![user_id],
        ),
        db.stmt("DELETE FROM access_tokens WHERE user_id = ?1", args![user_id]),
        db.stmt("DELETE FROM refresh_tokens WHERE user_id = ?1", args![user_id]),
        db.stmt("DELETE FROM devices WHERE user_id = ?1", args![user_id]),
        db.stmt("DELETE FROM pushers WHERE user_id = ?1", args![user_id]),
        db.stmt("DELETE FROM oauth_sessions WHERE user_id = ?1", args![user_id]),
        db.stmt("DELETE FROM oauth_browser_sessions WHERE user_id = ?1", args![user_id]),
    ];
    statements.extend(super::e2ee::forget_user(db, user_id));
    db.batch(statements).await.map(|_| ())
}

// --- UIA sessions -------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct UiaRow {
    pub purpose: String,
    pub user_id: Option<String>,
    pub completed: String,
}

pub async fn uia_session(db: &Db, session_id: &str) -> Result<Option<UiaRow>, MatrixError> {
    db.row(
        "SELECT purpose, user_id, completed FROM uia_sessions WHERE session_id = ?1",
        args![session_id],
    )
    .await
}

pub async fn save_uia_session(
    db: &Db,
    session_id: &str,
    purpose: &str,
    user_id: Option<&str>,
    completed: &str,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO uia_sessions (session_id, purpose, user_id, completed, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (session_id) DO UPDATE SET completed = excluded.completed",
        args![session_id, purpose, user_id, completed, now_ms()],
    )
    .await
    .map(|_| ())
}

pub async fn delete_uia_session(db: &Db, session_id: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM uia_sessions WHERE session_id = ?1",
        args![session_id],
    )
    .await
    .map(|_| ())
}

// --- Shared-secret registration nonces ------------------------------------------------------

pub async fn save_nonce(db: &Db, nonce: &str) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO registration_nonces (nonce, created_ts) VALUES (?1, ?2)",
        args![nonce, now_ms()],
    )
    .await
    .map(|_| ())
}

/// Uses up a nonce issued in the last `max_age_ms`; false if unknown, used or stale.
pub async fn take_nonce(db: &Db, nonce: &str, max_age_ms: u64) -> Result<bool, MatrixError> {
    let oldest = now_ms().saturating_sub(max_age_ms);
    Ok(db
        .run(
            "DELETE FROM registration_nonces WHERE nonce = ?1 AND created_ts >= ?2",
            args![nonce, oldest],
        )
        .await?
        == 1)
}
