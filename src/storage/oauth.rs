//! OAuth 2.0's tables (migrations/0017_oauth.sql): registered clients, authorization requests
//! and their codes, which client each OAuth device belongs to, browser sessions of the server's
//! own pages, device authorization grants, and approved cross-signing resets. The tokens
//! themselves are the ordinary rows of `storage/accounts.rs`.

use serde::Deserialize;

use super::accounts::{session_statements, Session};
use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::time::now_ms;

// --- Clients ------------------------------------------------------------------------------

pub async fn save_client(db: &Db, client_id: &str, metadata: &str) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO oauth_clients (client_id, metadata, created_ts) VALUES (?1, ?2, ?3)",
        args![client_id, metadata, now_ms()],
    )
    .await
    .map(|_| ())
}

/// The client's registered metadata (JSON text).
pub async fn client(db: &Db, client_id: &str) -> Result<Option<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        metadata: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT metadata FROM oauth_clients WHERE client_id = ?1",
            args![client_id],
        )
        .await?
        .map(|r| r.metadata))
}

// --- Authorization requests and codes -----------------------------------------------------

#[derive(Clone, Debug, Deserialize)]
pub struct Authorization {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub response_mode: String,
    pub state: Option<String>,
    pub scope: String,
    pub device_id: String,
    pub code_challenge: String,
    pub expires_ts: i64,
    pub user_id: Option<String>,
    pub code_expires_ts: Option<i64>,
}

const AUTHORIZATION_COLUMNS: &str = "id, client_id, redirect_uri, response_mode, state, scope, \
     device_id, code_challenge, expires_ts, user_id, code_expires_ts";

pub async fn create_authorization(db: &Db, a: &Authorization) -> Result<(), MatrixError> {
    let now = now_ms();
    db.batch(vec![
        // Requests nobody finished are forgotten with the next one.
        db.stmt(
            "DELETE FROM oauth_authorizations WHERE expires_ts < ?1 AND (code_expires_ts IS NULL OR code_expires_ts < ?1)",
            args![now],
        ),
        db.stmt(
            "INSERT INTO oauth_authorizations (id, client_id, redirect_uri, response_mode, state,
               scope, device_id, code_challenge, created_ts, expires_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                &a.id,
                &a.client_id,
                &a.redirect_uri,
                &a.response_mode,
                a.state.as_deref(),
                &a.scope,
                &a.device_id,
                &a.code_challenge,
                now,
                a.expires_ts
            ],
        ),
    ])
    .await
    .map(|_| ())
}

/// A request still waiting for the user's consent.
pub async fn pending_authorization(
    db: &Db,
    id: &str,
) -> Result<Option<Authorization>, MatrixError> {
    db.row(
        &format!(
            "SELECT {AUTHORIZATION_COLUMNS} FROM oauth_authorizations
             WHERE id = ?1 AND user_id IS NULL AND expires_ts > ?2"
        ),
        args![id, now_ms()],
    )
    .await
}

/// Records the user's consent and the code's hash; false if the request was already answered
/// or has expired (a second submit of the consent form issues nothing).
pub async fn consent(
    db: &Db,
    id: &str,
    user_id: &str,
    code_hash: &str,
    code_expires_ts: i64,
) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "UPDATE oauth_authorizations SET user_id = ?2, code_hash = ?3, code_expires_ts = ?4
             WHERE id = ?1 AND user_id IS NULL AND expires_ts > ?5",
            args![id, user_id, code_hash, code_expires_ts, now_ms()],
        )
        .await?
        == 1)
}

pub async fn forget_authorization(db: &Db, id: &str) -> Result<(), MatrixError> {
    db.run("DELETE FROM oauth_authorizations WHERE id = ?1", args![id])
        .await
        .map(|_| ())
}

/// What exchanging a code found.
pub enum CodeUse {
    /// First use: the code is now spent.
    First(Authorization),
    /// Spent before: the session it started should end (RFC 6749 section 4.1.2).
    Reused {
        user_id: String,
        device_id: String,
    },
    Unknown,
}

/// Spends a code, atomically: of two concurrent exchanges only one sees `First`.
pub async fn use_code(db: &Db, code_hash: &str) -> Result<CodeUse, MatrixError> {
    if let Some(row) = db
        .row::<Authorization>(
            &format!(
                "UPDATE oauth_authorizations SET used = 1
                 WHERE code_hash = ?1 AND used = 0 RETURNING {AUTHORIZATION_COLUMNS}"
            ),
            args![code_hash],
        )
        .await?
    {
        return Ok(CodeUse::First(row));
    }
    #[derive(Deserialize)]
    struct Spent {
        user_id: String,
        device_id: String,
    }
    Ok(
        match db
            .row::<Spent>(
                "SELECT user_id, device_id FROM oauth_authorizations WHERE code_hash = ?1 AND used = 1",
                args![code_hash],
            )
            .await?
        {
            Some(spent) => CodeUse::Reused {
                user_id: spent.user_id,
                device_id: spent.device_id,
            },
            None => CodeUse::Unknown,
        },
    )
}

// --- OAuth sessions (devices whose tokens came from the token endpoint) -------------------

#[derive(Deserialize)]
pub struct OAuthSession {
    pub client_id: String,
    pub scope: String,
}

/// Starts the device's session, its tokens and the record of its client in one batch.
pub async fn start_session(
    db: &Db,
    session: &Session<'_>,
    client_id: &str,
    scope: &str,
) -> Result<(), MatrixError> {
    let mut statements = session_statements(db, session);
    statements.push(db.stmt(
        "INSERT INTO oauth_sessions (user_id, device_id, client_id, scope, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, device_id) DO UPDATE SET client_id = excluded.client_id,
           scope = excluded.scope, created_ts = excluded.created_ts",
        args![
            session.user_id,
            session.device_id,
            client_id,
            scope,
            now_ms()
        ],
    ));
    db.batch(statements).await.map(|_| ())
}

pub async fn session(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Option<OAuthSession>, MatrixError> {
    db.row(
        "SELECT client_id, scope FROM oauth_sessions WHERE user_id = ?1 AND device_id = ?2",
        args![user_id, device_id],
    )
    .await
}

/// The user and device a refresh token belongs to.
pub async fn refresh_token_owner(
    db: &Db,
    token_hash: &str,
) -> Result<Option<(String, String)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
        device_id: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = ?1",
            args![token_hash],
        )
        .await?
        .map(|r| (r.user_id, r.device_id)))
}

// --- Browser sessions of the server's pages -----------------------------------------------

#[derive(Clone, Debug, Deserialize)]
pub struct BrowserSession {
    pub csrf: String,
    pub user_id: Option<String>,
}

pub async fn browser_session(
    db: &Db,
    session_hash: &str,
) -> Result<Option<BrowserSession>, MatrixError> {
    db.row(
        "SELECT csrf, user_id FROM oauth_browser_sessions WHERE session_hash = ?1 AND expires_ts > ?2",
        args![session_hash, now_ms()],
    )
    .await
}

/// Creates a browser session, replacing `old` if given (a login changes the cookie, so a
/// session id planted before it is worth nothing after), and drops expired ones.
pub async fn create_browser_session(
    db: &Db,
    session_hash: &str,
    csrf: &str,
    user_id: Option<&str>,
    expires_ts: i64,
    old: Option<&str>,
) -> Result<(), MatrixError> {
    let now = now_ms();
    let mut statements = vec![
        db.stmt(
            "DELETE FROM oauth_browser_sessions WHERE expires_ts < ?1",
            args![now],
        ),
        db.stmt(
            "INSERT INTO oauth_browser_sessions (session_hash, csrf, user_id, created_ts, expires_ts)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![session_hash, csrf, user_id, now, expires_ts],
        ),
    ];
    if let Some(old) = old {
        statements.push(db.stmt(
            "DELETE FROM oauth_browser_sessions WHERE session_hash = ?1",
            args![old],
        ));
    }
    db.batch(statements).await.map(|_| ())
}

pub async fn end_browser_session(db: &Db, session_hash: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM oauth_browser_sessions WHERE session_hash = ?1",
        args![session_hash],
    )
    .await
    .map(|_| ())
}

/// Signs a user out of the pages in every browser.
pub async fn end_browser_sessions(db: &Db, user_id: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM oauth_browser_sessions WHERE user_id = ?1",
        args![user_id],
    )
    .await
    .map(|_| ())
}

// --- Device authorization grants ----------------------------------------------------------

#[derive(Clone, Debug, Deserialize)]
pub struct DeviceGrant {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub device_id: String,
    pub status: String,
    pub user_id: Option<String>,
    pub expires_ts: i64,
    pub last_poll_ts: i64,
}

pub struct NewDeviceGrant<'a> {
    pub device_code_hash: &'a str,
    pub user_code: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub device_id: &'a str,
    pub expires_ts: i64,
}

/// Stores a new grant; false if the user code collided with a live one (the caller draws again).
pub async fn create_device_grant(db: &Db, g: &NewDeviceGrant<'_>) -> Result<bool, MatrixError> {
    let now = now_ms();
    let results = db
        .batch(vec![
            db.stmt(
                "DELETE FROM oauth_device_grants WHERE expires_ts < ?1",
                args![now],
            ),
            db.stmt(
                "INSERT INTO oauth_device_grants (device_code_hash, user_code, client_id, scope,
                   device_id, created_ts, expires_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                args![
                    g.device_code_hash,
                    g.user_code,
                    g.client_id,
                    g.scope,
                    g.device_id,
                    now,
                    g.expires_ts
                ],
            ),
        ])
        .await?;
    Ok(results.get(1).is_some_and(|r| r.changes == 1))
}

const GRANT_COLUMNS: &str =
    "user_code, client_id, scope, device_id, status, user_id, expires_ts, last_poll_ts";

/// A grant waiting for the user, by the code the user typed.
pub async fn pending_device_grant(
    db: &Db,
    user_code: &str,
) -> Result<Option<DeviceGrant>, MatrixError> {
    db.row(
        &format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_device_grants
             WHERE user_code = ?1 AND status = 'pending' AND expires_ts > ?2"
        ),
        args![user_code, now_ms()],
    )
    .await
}

/// The user's answer; false if the grant is no longer waiting.
pub async fn answer_device_grant(
    db: &Db,
    user_code: &str,
    user_id: &str,
    approved: bool,
) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "UPDATE oauth_device_grants SET status = ?2, user_id = ?3
             WHERE user_code = ?1 AND status = 'pending' AND expires_ts > ?4",
            args![
                user_code,
                if approved { "approved" } else { "denied" },
                user_id,
                now_ms()
            ],
        )
        .await?
        == 1)
}

/// Records a poll and answers the grant as it was before it (for the interval check).
pub async fn poll_device_grant(
    db: &Db,
    device_code_hash: &str,
) -> Result<Option<DeviceGrant>, MatrixError> {
    let grant: Option<DeviceGrant> = db
        .row(
            &format!("SELECT {GRANT_COLUMNS} FROM oauth_device_grants WHERE device_code_hash = ?1"),
            args![device_code_hash],
        )
        .await?;
    if grant.is_some() {
        db.run(
            "UPDATE oauth_device_grants SET last_poll_ts = ?2 WHERE device_code_hash = ?1",
            args![device_code_hash, now_ms()],
        )
        .await?;
    }
    Ok(grant)
}

/// Removes an approved grant, atomically: of two concurrent polls only one gets the tokens.
pub async fn take_approved_grant(db: &Db, device_code_hash: &str) -> Result<bool, MatrixError> {
    Ok(db
        .run(
            "DELETE FROM oauth_device_grants WHERE device_code_hash = ?1 AND status = 'approved'",
            args![device_code_hash],
        )
        .await?
        == 1)
}

pub async fn forget_device_grant(db: &Db, device_code_hash: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM oauth_device_grants WHERE device_code_hash = ?1",
        args![device_code_hash],
    )
    .await
    .map(|_| ())
}

// --- Cross-signing resets approved on the account page ------------------------------------

pub async fn allow_cross_signing_reset(
    db: &Db,
    user_id: &str,
    until_ts: i64,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO oauth_cross_signing_resets (user_id, allowed_until_ts) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET allowed_until_ts = excluded.allowed_until_ts",
        args![user_id, until_ts],
    )
    .await
    .map(|_| ())
}

pub async fn cross_signing_reset_allowed(db: &Db, user_id: &str) -> Result<bool, MatrixError> {
    #[derive(Deserialize)]
    struct One {}
    Ok(db
        .row::<One>(
            "SELECT 1 AS one FROM oauth_cross_signing_resets WHERE user_id = ?1 AND allowed_until_ts > ?2",
            args![user_id, now_ms()],
        )
        .await?
        .is_some())
}
