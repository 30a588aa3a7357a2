//! Media rows (migration 0013): what describes each piece of media, its thumbnails, and cached
//! URL previews. The bytes are in the object store.

use serde::Deserialize;
use serde_json::Value;

use super::accounts::TokenOwner;
use super::{Arg, Count, Db};
use crate::args;
use crate::http::MatrixError;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Media {
    pub origin: String,
    pub media_id: String,
    pub user_id: Option<String>,
    pub content_type: String,
    pub filename: Option<String>,
    /// `None` while an async upload waits for its bytes.
    pub size: Option<i64>,
    pub created_ts: i64,
    pub unused_expires_ts: Option<i64>,
    /// The admin who quarantined it (migration 0016): then it is served to no one.
    #[serde(default)]
    pub quarantined_by: Option<String>,
}

const COLUMNS: &str =
    "origin, media_id, user_id, content_type, filename, size, created_ts, unused_expires_ts";

pub async fn get(db: &Db, origin: &str, media_id: &str) -> Result<Option<Media>, MatrixError> {
    db.row(
        &format!("SELECT {COLUMNS}, quarantined_by FROM media WHERE origin = ?1 AND media_id = ?2"),
        args![origin, media_id],
    )
    .await
}

/// What a request for local media reads first, in one statement (one D1 round trip, one
/// statement to prepare): who its access token belongs to (`accounts::token_owner`'s row,
/// checked by `Ctx::requester_from` like any other), the media's row and, when asked, one
/// thumbnail's type and size.
pub struct FirstRead {
    pub owner: Option<TokenOwner>,
    pub media: Option<Media>,
    pub thumbnail: Option<(String, i64)>,
}

/// One row whatever matched: every part is a `LEFT JOIN` onto a one-row table. The same text
/// for downloads and thumbnails (a download binds no thumbnail), so D1 prepares one statement.
/// (The `\` line ends keep the indentation out of the text every layer copies and parses.)
const FIRST_READ: &str = "SELECT u.user_id, t.device_id, t.expires_ts, t.revokes_refresh, \
    u.deactivated, u.admin, m.user_id AS m_user_id, m.content_type AS m_content_type, \
    m.filename AS m_filename, m.size AS m_size, m.created_ts AS m_created_ts, \
    m.unused_expires_ts AS m_unused_expires_ts, m.quarantined_by AS m_quarantined_by, \
    th.content_type AS th_content_type, th.size AS th_size \
    FROM (SELECT 1) LEFT JOIN access_tokens t ON t.token_hash = ?1 \
    LEFT JOIN users u ON u.user_id = t.user_id \
    LEFT JOIN media m ON m.origin = ?2 AND m.media_id = ?3 \
    LEFT JOIN media_thumbnails th ON th.origin = ?2 AND th.media_id = ?3 AND th.width = ?4 \
    AND th.height = ?5 AND th.method = ?6";

/// `FIRST_READ`'s row: the token's owner (`accounts::TokenOwner`'s columns), the media's
/// (`m_`) and the thumbnail's (`th_`), each all NULL when not found.
#[derive(Deserialize)]
struct FirstRow {
    user_id: Option<String>,
    device_id: Option<String>,
    expires_ts: Option<i64>,
    revokes_refresh: Option<String>,
    deactivated: Option<i64>,
    admin: Option<i64>,
    m_user_id: Option<String>,
    m_content_type: Option<String>,
    m_filename: Option<String>,
    m_size: Option<i64>,
    m_created_ts: Option<i64>,
    m_unused_expires_ts: Option<i64>,
    m_quarantined_by: Option<String>,
    th_content_type: Option<String>,
    th_size: Option<i64>,
}

/// The first read of a request for local media `(origin, media_id)` with the access token
/// hashed to `token_hash`; `thumbnail` is the stored size and method asked for, if any.
pub async fn first_read(
    db: &Db,
    token_hash: &str,
    (origin, media_id): (&str, &str),
    thumbnail: Option<((u32, u32), &str)>,
) -> Result<FirstRead, MatrixError> {
    let (width, height, method) = match thumbnail {
        Some(((w, h), method)) => (
            Arg::Int(i64::from(w)),
            Arg::Int(i64::from(h)),
            Arg::Text(method),
        ),
        None => (Arg::Null, Arg::Null, Arg::Null),
    };
    let row: Option<FirstRow> = db
        .row_alone(
            FIRST_READ,
            args![token_hash, origin, media_id, width, height, method],
        )
        .await?;
    let Some(row) = row else {
        return Err(MatrixError::internal("the first read answered no row"));
    };
    let owner = match (row.user_id, row.device_id, row.deactivated, row.admin) {
        (Some(user_id), Some(device_id), Some(deactivated), Some(admin)) => Some(TokenOwner {
            revokes_refresh: row.revokes_refresh,
            user_id,
            device_id,
            expires_ts: row.expires_ts,
            deactivated,
            admin,
        }),
        _ => None,
    };
    let media = match (row.m_content_type, row.m_created_ts) {
        (Some(content_type), Some(created_ts)) => Some(Media {
            origin: origin.to_owned(),
            media_id: media_id.to_owned(),
            user_id: row.m_user_id,
            content_type,
            filename: row.m_filename,
            size: row.m_size,
            created_ts,
            unused_expires_ts: row.m_unused_expires_ts,
            quarantined_by: row.m_quarantined_by,
        }),
        _ => None,
    };
    let thumbnail = row.th_content_type.zip(row.th_size);
    Ok(FirstRead {
        owner,
        media,
        thumbnail,
    })
}

/// Records media whose bytes are stored (an upload, or remote media cached).
pub async fn insert_stored(db: &Db, media: &Media) -> Result<(), MatrixError> {
    db.run(
        &format!(
            "INSERT INTO media ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)
             ON CONFLICT (origin, media_id) DO UPDATE SET content_type = excluded.content_type,
               filename = excluded.filename, size = excluded.size, created_ts = excluded.created_ts"
        ),
        args![
            media.origin.as_str(),
            media.media_id.as_str(),
            media.user_id.as_deref(),
            media.content_type.as_str(),
            media.filename.as_deref(),
            media.size.unwrap_or(0),
            media.created_ts
        ],
    )
    .await
    .map(|_| ())
}

/// Reserves an id for an async upload.
pub async fn insert_pending(
    db: &Db,
    origin: &str,
    media_id: &str,
    user_id: &str,
    now: i64,
    expires: i64,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO media (origin, media_id, user_id, created_ts, unused_expires_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        args![origin, media_id, user_id, now, expires],
    )
    .await
    .map(|_| ())
}

/// Claims a pending async upload for one upload of its bytes (`size` = `uploading`); false
/// when it is filled or claimed already, so of two concurrent uploads one stores its bytes.
pub async fn claim_pending(
    db: &Db,
    origin: &str,
    media_id: &str,
    uploading: i64,
) -> Result<bool, MatrixError> {
    let changed = db
        .run(
            "UPDATE media SET size = ?3 WHERE origin = ?1 AND media_id = ?2 AND size IS NULL",
            args![origin, media_id, uploading],
        )
        .await?;
    Ok(changed == 1)
}

/// Gives a claimed id back after its bytes could not be stored.
pub async fn release_claim(
    db: &Db,
    origin: &str,
    media_id: &str,
    uploading: i64,
) -> Result<(), MatrixError> {
    db.run(
        "UPDATE media SET size = NULL WHERE origin = ?1 AND media_id = ?2 AND size = ?3",
        args![origin, media_id, uploading],
    )
    .await
    .map(|_| ())
}

/// Records the stored bytes of a claimed async upload.
pub async fn finish_pending(
    db: &Db,
    origin: &str,
    media_id: &str,
    content_type: &str,
    filename: Option<&str>,
    size: u64,
) -> Result<(), MatrixError> {
    db.run(
        "UPDATE media SET content_type = ?3, filename = ?4, size = ?5, unused_expires_ts = NULL
         WHERE origin = ?1 AND media_id = ?2",
        args![origin, media_id, content_type, filename, size],
    )
    .await
    .map(|_| ())
}

/// Pending async uploads of a user that have not expired.
pub async fn pending_count(db: &Db, user_id: &str, now: i64) -> Result<i64, MatrixError> {
    let row: Option<Count> = db
        .row(
            "SELECT COUNT(*) AS n FROM media
             WHERE user_id = ?1 AND size IS NULL AND unused_expires_ts > ?2",
            args![user_id, now],
        )
        .await?;
    Ok(row.and_then(|r| r.n).unwrap_or(0))
}

/// Forgets expired async uploads that never got their bytes (bounded per call; called on every
/// create, so they never pile up).
pub async fn expire_pending(db: &Db, now: i64) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM media WHERE rowid IN (SELECT rowid FROM media
           WHERE size IS NULL AND unused_expires_ts <= ?1 LIMIT 100)",
        args![now],
    )
    .await
    .map(|_| ())
}

/// The bytes a user has stored in all (uploads only).
pub async fn bytes_of_user(db: &Db, user_id: &str) -> Result<i64, MatrixError> {
    let row: Option<Count> = db
        .row(
            "SELECT COALESCE(SUM(size), 0) AS n FROM media WHERE user_id = ?1",
            args![user_id],
        )
        .await?;
    Ok(row.and_then(|r| r.n).unwrap_or(0))
}

/// A user's uploads, oldest first, for erasure.
pub async fn of_user(db: &Db, user_id: &str, limit: u64) -> Result<Vec<Media>, MatrixError> {
    db.rows(
        &format!("SELECT {COLUMNS} FROM media WHERE user_id = ?1 ORDER BY created_ts LIMIT ?2"),
        args![user_id, limit],
    )
    .await
}

/// The thumbnails of a user's uploads, with the media they belong to.
pub async fn thumbnails_of_user(
    db: &Db,
    user_id: &str,
    up_to_ts: i64,
) -> Result<Vec<(String, Thumbnail)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        media_id: String,
        #[serde(flatten)]
        thumbnail: Thumbnail,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT t.media_id, t.width, t.height, t.method, t.content_type, t.size
             FROM media_thumbnails t JOIN media m ON m.origin = t.origin AND m.media_id = t.media_id
             WHERE m.user_id = ?1 AND m.created_ts <= ?2",
            args![user_id, up_to_ts],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.media_id, r.thumbnail))
        .collect())
}

/// Removes a user's uploads created up to `up_to_ts`, and their thumbnails' rows, together.
pub async fn delete_of_user(db: &Db, user_id: &str, up_to_ts: i64) -> Result<(), MatrixError> {
    db.batch(vec![
        db.stmt(
            "DELETE FROM media_thumbnails WHERE (origin, media_id) IN
               (SELECT origin, media_id FROM media WHERE user_id = ?1 AND created_ts <= ?2)",
            args![user_id, up_to_ts],
        ),
        db.stmt(
            "DELETE FROM media WHERE user_id = ?1 AND created_ts <= ?2",
            args![user_id, up_to_ts],
        ),
    ])
    .await
    .map(|_| ())
}

/// Cancels a user's pending async uploads (a deactivated user will never fill them).
pub async fn drop_pending_of_user(db: &Db, user_id: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM media WHERE user_id = ?1 AND size IS NULL",
        args![user_id],
    )
    .await
    .map(|_| ())
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Thumbnail {
    pub width: i64,
    pub height: i64,
    pub method: String,
    pub content_type: String,
    pub size: i64,
}

pub async fn thumbnail(
    db: &Db,
    origin: &str,
    media_id: &str,
    (width, height): (u32, u32),
    method: &str,
) -> Result<Option<Thumbnail>, MatrixError> {
    db.row(
        "SELECT width, height, method, content_type, size FROM media_thumbnails
         WHERE origin = ?1 AND media_id = ?2 AND width = ?3 AND height = ?4 AND method = ?5",
        args![origin, media_id, width as i64, height as i64, method],
    )
    .await
}

pub async fn insert_thumbnail(
    db: &Db,
    origin: &str,
    media_id: &str,
    thumbnail: &Thumbnail,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO media_thumbnails
           (origin, media_id, width, height, method, content_type, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            origin,
            media_id,
            thumbnail.width,
            thumbnail.height,
            thumbnail.method.as_str(),
            thumbnail.content_type.as_str(),
            thumbnail.size
        ],
    )
    .await
    .map(|_| ())
}

#[derive(Deserialize)]
struct PreviewRow {
    og: String,
}

/// A preview of `url` made after `since`.
pub async fn preview(db: &Db, url: &str, since: i64) -> Result<Option<Value>, MatrixError> {
    let row: Option<PreviewRow> = db
        .row(
            "SELECT og FROM url_previews WHERE url = ?1 AND fetched_ts > ?2",
            args![url, since],
        )
        .await?;
    Ok(row.and_then(|r| serde_json::from_str(&r.og).ok()))
}

pub async fn store_preview(db: &Db, url: &str, og: &Value, now: i64) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR REPLACE INTO url_previews (url, og, fetched_ts) VALUES (?1, ?2, ?3)",
        args![url, og.to_string().as_str(), now],
    )
    .await
    .map(|_| ())
}

/// A piece of media as the admin API lists it: the row and whether it is safe from quarantine.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Listed {
    #[serde(flatten)]
    pub media: Media,
    pub safe_from_quarantine: i64,
}

const LISTED: &str = "origin, media_id, user_id, content_type, filename, size, created_ts,
    unused_expires_ts, quarantined_by, safe_from_quarantine";

/// One piece of media with its admin fields.
pub async fn listed(db: &Db, origin: &str, media_id: &str) -> Result<Option<Listed>, MatrixError> {
    db.row(
        &format!("SELECT {LISTED} FROM media WHERE origin = ?1 AND media_id = ?2"),
        args![origin, media_id],
    )
    .await
}

/// A page of a user's uploads sorted by `order_column` (a column name chosen by the caller
/// from a fixed list, never from input), ties by media id, and how many there are in all.
pub async fn page_of_user(
    db: &Db,
    user_id: &str,
    order_column: &'static str,
    descending: bool,
    from: u64,
    limit: u64,
) -> Result<(Vec<Listed>, u64), MatrixError> {
    let dir = if descending { "DESC" } else { "ASC" };
    let rows = db
        .rows(
            &format!(
                "SELECT {LISTED} FROM media WHERE user_id = ?1
                 ORDER BY {order_column} {dir}, media_id {dir} LIMIT ?2 OFFSET ?3"
            ),
            args![user_id, limit, from],
        )
        .await?;
    let total: Option<Count> = db
        .row(
            "SELECT COUNT(*) AS n FROM media WHERE user_id = ?1",
            args![user_id],
        )
        .await?;
    Ok((rows, total.and_then(|t| t.n).unwrap_or(0).max(0) as u64))
}

/// The thumbnails made of one piece of media.
pub async fn thumbnails_of(
    db: &Db,
    origin: &str,
    media_id: &str,
) -> Result<Vec<Thumbnail>, MatrixError> {
    db.rows(
        "SELECT width, height, method, content_type, size FROM media_thumbnails
         WHERE origin = ?1 AND media_id = ?2",
        args![origin, media_id],
    )
    .await
}

/// Removes one piece of media and its thumbnails' rows, together.
pub async fn delete(db: &Db, origin: &str, media_id: &str) -> Result<(), MatrixError> {
    db.batch(vec![
        db.stmt(
            "DELETE FROM media_thumbnails WHERE origin = ?1 AND media_id = ?2",
            args![origin, media_id],
        ),
        db.stmt(
            "DELETE FROM media WHERE origin = ?1 AND media_id = ?2",
            args![origin, media_id],
        ),
    ])
    .await
    .map(|_| ())
}

/// Quarantines (`Some(admin)`) or releases (`None`) a piece of media; media marked safe from
/// quarantine is left as it is. False when no row changed.
pub async fn set_quarantine(
    db: &Db,
    origin: &str,
    media_id: &str,
    by: Option<&str>,
) -> Result<bool, MatrixError> {
    let changed = db
        .run(
            "UPDATE media SET quarantined_by = ?3 WHERE origin = ?1 AND media_id = ?2
               AND (?3 IS NULL OR safe_from_quarantine = 0)",
            args![origin, media_id, by],
        )
        .await?;
    Ok(changed == 1)
}

/// Marks a piece of media safe from quarantine (or not).
pub async fn set_safe_from_quarantine(
    db: &Db,
    origin: &str,
    media_id: &str,
    safe: bool,
) -> Result<bool, MatrixError> {
    let changed = db
        .run(
            "UPDATE media SET safe_from_quarantine = ?3 WHERE origin = ?1 AND media_id = ?2",
            args![origin, media_id, safe as i64],
        )
        .await?;
    Ok(changed == 1)
}
