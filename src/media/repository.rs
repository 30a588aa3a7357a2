//! The content repository's operations over D1 rows and object-store bytes, shared by the
//! client handlers (`client/media.rs`) and the federation ones (`federation/media.rs`): store an
//! upload, find media (waiting for an async upload), serve it, make or find a thumbnail.

use crate::http::{ErrorCode, MatrixError, MediaResponse};
use crate::platform::{Body, Platform};
use crate::storage::media::{self as stored, Media};
use crate::storage::Db;
use crate::sync::token::StreamPosition;
use crate::time::now_ms;

use super::headers::{common, content_disposition, stored_content_type};
use super::memory::{self, Stamp};
use super::range::{self, Ranged};
use super::thumbnail::{self, Method, Thumbnail, ThumbnailError};
use super::{blob_key, thumbnail_key};

/// The longest a download waits for an async upload's bytes (spec: the server SHOULD cap
/// `timeout_ms`; 20 s is the spec's default).
pub const MAX_WAIT_MS: u64 = 20_000;
/// Originals larger than this are not read for a thumbnail (413), whatever their pixels.
pub const MAX_THUMBNAIL_SOURCE_BYTES: i64 = 20 * 1024 * 1024;
/// A size that marks an async upload whose bytes are being stored right now: it has an owner,
/// so a second upload to the same id is refused, and downloads keep waiting.
const UPLOADING: i64 = -1;

pub fn too_large(what: &str) -> MatrixError {
    MatrixError::new(413, ErrorCode::TooLarge, what.to_owned())
}

pub fn not_found() -> MatrixError {
    MatrixError::not_found("Media not found")
}

fn not_yet_uploaded() -> MatrixError {
    MatrixError::new(
        504,
        ErrorCode::NotYetUploaded,
        "The media has not been uploaded yet",
    )
}

fn storage(e: String) -> MatrixError {
    MatrixError::internal(format!("object store: {e}"))
}

/// The checks before an upload's bytes are stored: the size limit and the user's quota.
pub async fn check_upload(
    db: &Db,
    platform: &Platform,
    user_id: &str,
    length: u64,
) -> Result<(), MatrixError> {
    let config = platform.config()?;
    if length > config.media.max_upload_bytes {
        return Err(too_large(&format!(
            "The upload is larger than the limit of {} bytes",
            config.media.max_upload_bytes
        )));
    }
    if let Some(quota) = config.media.quota_bytes_per_user {
        let used = stored::bytes_of_user(db, user_id).await?.max(0) as u64;
        if used + length > quota {
            // Spec, content repository security: too much media is 403 M_FORBIDDEN.
            return Err(MatrixError::forbidden(format!(
                "Storing this would exceed your media quota of {quota} bytes"
            )));
        }
    }
    Ok(())
}

/// Stores a new upload's bytes and its row; returns the row.
#[allow(clippy::too_many_arguments)]
pub async fn store_new(
    db: &Db,
    platform: &Platform,
    origin: &str,
    media_id: &str,
    user_id: Option<&str>,
    content_type: Option<&str>,
    filename: Option<&str>,
    body: Body,
    length: u64,
) -> Result<Media, MatrixError> {
    let content_type = stored_content_type(content_type);
    platform
        .blobs
        .put(&blob_key(origin, media_id), body, length, &content_type)
        .await
        .map_err(storage)?;
    let media = Media {
        origin: origin.to_owned(),
        media_id: media_id.to_owned(),
        user_id: user_id.map(str::to_owned),
        content_type,
        filename: filename.filter(|f| !f.is_empty()).map(str::to_owned),
        size: Some(length as i64),
        created_ts: now_ms() as i64,
        unused_expires_ts: None,
        quarantined_by: None,
    };
    stored::insert_stored(db, &media).await?;
    Ok(media)
}

/// Fills an async upload reserved with `create`: the creator only, once.
#[allow(clippy::too_many_arguments)]
pub async fn fill_pending(
    db: &Db,
    platform: &Platform,
    origin: &str,
    media_id: &str,
    user_id: &str,
    content_type: Option<&str>,
    filename: Option<&str>,
    body: Body,
    length: u64,
) -> Result<(), MatrixError> {
    let media = stored::get(db, origin, media_id)
        .await?
        .ok_or_else(not_found)?;
    if media.user_id.as_deref() != Some(user_id) {
        return Err(MatrixError::forbidden(
            "This media id was created by another user",
        ));
    }
    if media.size.is_some() {
        return Err(cannot_overwrite());
    }
    if media
        .unused_expires_ts
        .is_some_and(|expires| expires <= now_ms() as i64)
    {
        return Err(not_found());
    }
    check_upload(db, platform, user_id, length).await?;
    // Claim the id first, so that of two concurrent uploads exactly one stores its bytes.
    let content_type = stored_content_type(content_type);
    if !stored::claim_pending(db, origin, media_id, UPLOADING).await? {
        return Err(cannot_overwrite());
    }
    let put = platform
        .blobs
        .put(&blob_key(origin, media_id), body, length, &content_type)
        .await;
    if let Err(e) = put {
        // Give the id back: the client may try again.
        stored::release_claim(db, origin, media_id, UPLOADING).await?;
        return Err(storage(e));
    }
    let filename = filename.filter(|f| !f.is_empty());
    stored::finish_pending(db, origin, media_id, &content_type, filename, length).await?;
    platform
        .wakeups
        .notify(vec![waiter_name(origin, media_id)])
        .await;
    Ok(())
}

fn cannot_overwrite() -> MatrixError {
    MatrixError::new(
        409,
        ErrorCode::CannotOverwriteMedia,
        "Media has already been uploaded to this id",
    )
}

/// The name a download waiting for an async upload parks under with the notifier.
fn waiter_name(origin: &str, media_id: &str) -> String {
    format!("media:{origin}/{media_id}")
}

/// A position no stream reaches: the notifier then only answers a media waiter when woken or
/// at its timeout, never because some unrelated stream moved.
const NEVER: StreamPosition = StreamPosition {
    events: i64::MAX as u64,
    account_data: i64::MAX as u64,
    receipts: i64::MAX as u64,
    typing: i64::MAX as u64,
    to_device: i64::MAX as u64,
    device_lists: i64::MAX as u64,
    presence: i64::MAX as u64,
};

/// Whether a media row can be served as it is: its bytes stored and not quarantined.
pub fn is_complete(media: &Media) -> bool {
    media.quarantined_by.is_none() && media.size.is_some_and(|size| size != UPLOADING)
}

/// Local (or cached) media with its bytes stored. An async upload still pending is waited for
/// up to `timeout_ms`, parked on the notifier and re-read every 2 s at most (so a wake-up sent
/// between the read and the park costs at most 2 s); then 504 `M_NOT_YET_UPLOADED`.
pub async fn find_complete(
    db: &Db,
    platform: &Platform,
    origin: &str,
    media_id: &str,
    timeout_ms: u64,
) -> Result<Option<Media>, MatrixError> {
    let deadline = now_ms() + timeout_ms.min(MAX_WAIT_MS);
    loop {
        let Some(media) = stored::get(db, origin, media_id).await? else {
            return Ok(None);
        };
        if media.quarantined_by.is_some() {
            // An error rather than `None`, so remote media is not fetched again around it.
            return Err(not_found());
        }
        if is_complete(&media) {
            return Ok(Some(media));
        }
        if media
            .unused_expires_ts
            .is_some_and(|expires| expires <= now_ms() as i64)
        {
            return Ok(None);
        }
        let now = now_ms();
        if now >= deadline {
            return Err(not_yet_uploaded());
        }
        let wait = (deadline - now).min(2_000);
        platform
            .wakeups
            .wait(&waiter_name(origin, media_id), &NEVER, wait)
            .await;
    }
}

/// What a download answers: the stored bytes (or the slice asked with `Range`), with the
/// spec's headers. `filename` from the path wins over the stored one.
pub async fn serve(
    platform: &Platform,
    media: &Media,
    filename: Option<&str>,
    range_header: Option<&str>,
) -> Result<MediaResponse, MatrixError> {
    let size = media.size.unwrap_or(0).max(0) as u64;
    let name = filename
        .filter(|f| !f.is_empty())
        .or(media.filename.as_deref());
    let mut headers = common();
    headers.push(("Content-Type".into(), media.content_type.clone()));
    headers.push((
        "Content-Disposition".into(),
        content_disposition(&media.content_type, name),
    ));
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    let (status, slice) = match range::parse(range_header, size) {
        Ranged::Whole => (200, None),
        Ranged::Part(slice) => {
            headers.push(("Content-Range".into(), range::content_range(slice, size)));
            (206, Some(slice))
        }
        Ranged::Unsatisfiable => {
            headers.push(("Content-Range".into(), format!("bytes */{size}")));
            return Ok(MediaResponse {
                status: 416,
                headers,
                body: Body::Bytes(Vec::new()),
            });
        }
    };
    let key = blob_key(&media.origin, &media.media_id);
    let body = match size {
        // R2 refuses a range on an empty object; there is nothing to read anyway.
        0 => Body::Bytes(Vec::new()),
        _ => platform
            .blobs
            .get(&key, slice)
            .await
            .map_err(storage)?
            .ok_or_else(|| MatrixError::internal(format!("{key} is missing from the store")))?,
    };
    Ok(MediaResponse {
        status,
        headers,
        body,
    })
}

/// A thumbnail as stored bytes to serve: a made one, or the original when it is already small.
pub enum Served {
    /// Stored before, with no media row read (a remote server's thumbnail of media not cached
    /// here): read from the store.
    Thumbnail {
        key: String,
        content_type: String,
    },
    /// Stored before, of media whose row this request read: from the isolate's memory when
    /// kept there under the same stamp, else from the store.
    Stored {
        key: String,
        content_type: String,
        stamp: Stamp,
    },
    /// Made just now: its bytes are at hand.
    Fresh {
        bytes: Vec<u8>,
        content_type: String,
    },
    Original,
}

/// The thumbnail of stored media for a request of `width`x`height` with `method`: found in the
/// store when made before, made and stored otherwise.
pub async fn thumbnail_of(
    db: &Db,
    platform: &Platform,
    media: &Media,
    (width, height): (u32, u32),
    method: Method,
) -> Result<Served, MatrixError> {
    match made_thumbnail(db, media, (width, height), method).await? {
        Some(served) => Ok(served),
        None => make_thumbnail(db, platform, media, (width, height), method).await,
    }
}

/// The thumbnail for a request of `width`x`height` with `method` when it was made before.
pub async fn made_thumbnail(
    db: &Db,
    media: &Media,
    (width, height): (u32, u32),
    method: Method,
) -> Result<Option<Served>, MatrixError> {
    let size = thumbnail::choose(width, height, method);
    let (origin, media_id) = (media.origin.as_str(), media.media_id.as_str());
    let found = stored::thumbnail(db, origin, media_id, size, method.as_str()).await?;
    Ok(found.map(|found| stored_thumbnail(media, size, method, found.content_type, found.size)))
}

/// A thumbnail made before, as its row describes it: `size` is the stored size (one of
/// `thumbnail::SIZES`, as `thumbnail::choose` answers), `bytes` the row's size.
pub fn stored_thumbnail(
    media: &Media,
    size: (u32, u32),
    method: Method,
    content_type: String,
    bytes: i64,
) -> Served {
    Served::Stored {
        key: thumbnail_key(
            &media.origin,
            &media.media_id,
            size.0,
            size.1,
            method.as_str(),
        ),
        content_type,
        stamp: Stamp {
            media_created_ts: media.created_ts,
            size: bytes,
        },
    }
}

/// Makes and stores the thumbnail `made_thumbnail` did not find, for a request of `asked`.
pub async fn make_thumbnail(
    db: &Db,
    platform: &Platform,
    media: &Media,
    asked: (u32, u32),
    method: Method,
) -> Result<Served, MatrixError> {
    let size = thumbnail::choose(asked.0, asked.1, method);
    let Some(format) = thumbnail::format_of(&media.content_type) else {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Cannot generate thumbnails for the requested content",
        ));
    };
    if media.size.unwrap_or(0) > MAX_THUMBNAIL_SOURCE_BYTES {
        return Err(too_large("The content is too large to thumbnail"));
    }
    let bytes = platform
        .blobs
        .read(&blob_key(&media.origin, &media.media_id))
        .await
        .map_err(storage)?
        .ok_or_else(not_found)?;
    let max_pixels = platform.config()?.media.max_thumbnail_pixels;
    match thumbnail::make(&bytes, format, size, method, max_pixels) {
        // Already small (common for avatars): a small one is stored as this size's thumbnail,
        // so that later requests read a row instead of the whole original again.
        Ok(Thumbnail::Original) if bytes.len() <= memory::MAX_ENTRY_BYTES => {
            // The format's own type, not the uploader's text (which may carry parameters that
            // do not belong in a thumbnail's headers).
            let content_type = format.to_mime_type().to_owned();
            keep_made(db, platform, media, (size, method), bytes, content_type).await
        }
        Ok(Thumbnail::Original) => Ok(Served::Original),
        Ok(Thumbnail::Made {
            bytes,
            content_type,
            ..
        }) => {
            keep_made(
                db,
                platform,
                media,
                (size, method),
                bytes,
                content_type.into(),
            )
            .await
        }
        Err(ThumbnailError::TooLarge { pixels }) => Err(too_large(&format!(
            "The image has {pixels} pixels, more than this server thumbnails ({max_pixels})"
        ))),
        Err(ThumbnailError::Unsupported(why)) => Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            format!("Cannot generate a thumbnail: {why}"),
        )),
    }
}

/// Stores a thumbnail just made (or a small original standing for one) and keeps it in this
/// isolate's memory; returns it to serve.
async fn keep_made(
    db: &Db,
    platform: &Platform,
    media: &Media,
    (size, method): ((u32, u32), Method),
    bytes: Vec<u8>,
    content_type: String,
) -> Result<Served, MatrixError> {
    let at = (media.origin.as_str(), media.media_id.as_str());
    store_thumbnail(db, platform, at, size, method, bytes.clone(), &content_type).await?;
    let key = thumbnail_key(at.0, at.1, size.0, size.1, method.as_str());
    let stamp = Stamp {
        media_created_ts: media.created_ts,
        size: bytes.len() as i64,
    };
    memory::keep(&key, stamp, &content_type, &bytes);
    Ok(Served::Fresh {
        bytes,
        content_type,
    })
}

/// Stores a thumbnail of the media at `(origin, media_id)`: its bytes, then its row.
pub async fn store_thumbnail(
    db: &Db,
    platform: &Platform,
    (origin, media_id): (&str, &str),
    size: (u32, u32),
    method: Method,
    bytes: Vec<u8>,
    content_type: &str,
) -> Result<(), MatrixError> {
    let key = thumbnail_key(origin, media_id, size.0, size.1, method.as_str());
    let length = bytes.len() as u64;
    platform
        .blobs
        .put(&key, Body::Bytes(bytes), length, content_type)
        .await
        .map_err(storage)?;
    let row = stored::Thumbnail {
        width: i64::from(size.0),
        height: i64::from(size.1),
        method: method.as_str().to_owned(),
        content_type: content_type.to_owned(),
        size: length as i64,
    };
    stored::insert_thumbnail(db, origin, media_id, &row).await
}

/// The body and type of a thumbnail that is not the original.
pub async fn thumbnail_body(
    platform: &Platform,
    served: Served,
) -> Result<Option<(Body, String)>, MatrixError> {
    Ok(match served {
        Served::Original => None,
        Served::Fresh {
            bytes,
            content_type,
        } => Some((Body::Bytes(bytes), content_type)),
        Served::Thumbnail { key, content_type } => {
            Some((stored_body(platform, &key).await?, content_type))
        }
        Served::Stored {
            key,
            content_type,
            stamp,
        } => {
            if let Some(bytes) = memory::recall(&key, stamp, &content_type) {
                return Ok(Some((Body::Bytes(bytes), content_type)));
            }
            if stamp.size < 0 || stamp.size as usize > memory::MAX_ENTRY_BYTES {
                return Ok(Some((stored_body(platform, &key).await?, content_type)));
            }
            // Small enough to keep: read whole (a small copy into wasm), so the next request
            // for it reads no store.
            let bytes = platform
                .blobs
                .read(&key)
                .await
                .map_err(storage)?
                .ok_or_else(|| missing(&key))?;
            memory::keep(&key, stamp, &content_type, &bytes);
            Some((Body::Bytes(bytes), content_type))
        }
    })
}

fn missing(key: &str) -> MatrixError {
    MatrixError::internal(format!("{key} is missing from the store"))
}

/// A stored thumbnail's bytes as the store's stream.
async fn stored_body(platform: &Platform, key: &str) -> Result<Body, MatrixError> {
    platform
        .blobs
        .get(key, None)
        .await
        .map_err(storage)?
        .ok_or_else(|| missing(key))
}

/// A thumbnail answer to a client: always `inline` (spec v1.12), with the media headers.
pub fn thumbnail_response(body: Body, content_type: &str) -> MediaResponse {
    let extension = content_type.rsplit('/').next().unwrap_or("bin");
    let mut headers = common();
    headers.push(("Content-Type".into(), content_type.to_owned()));
    headers.push((
        "Content-Disposition".into(),
        format!("inline; filename=\"thumbnail.{extension}\""),
    ));
    MediaResponse {
        status: 200,
        headers,
        body,
    }
}

/// Most media erased per deactivation request, so it stays within a request's D1 and R2
/// limits (the rest is logged for the operator).
const MAX_ERASED: u64 = 1000;

/// A deactivated user's media: their pending async uploads are cancelled; with `erase` (spec:
/// the user asks to be forgotten), what they uploaded is deleted too, bytes and thumbnails.
/// Without it, the media stays: the rooms they posted in still show it, as messages stay.
pub async fn on_deactivation(
    db: &Db,
    platform: &Platform,
    user_id: &str,
    erase: bool,
) -> Result<(), MatrixError> {
    stored::drop_pending_of_user(db, user_id).await?;
    if !erase {
        return Ok(());
    }
    let media = stored::of_user(db, user_id, MAX_ERASED).await?;
    let Some(last) = media.last().map(|m| m.created_ts) else {
        return Ok(());
    };
    if media.len() as u64 == MAX_ERASED {
        crate::log_warn!("{user_id} has {MAX_ERASED} uploads or more; the oldest are erased");
    }
    let mut keys: Vec<String> = media
        .iter()
        .map(|m| blob_key(&m.origin, &m.media_id))
        .collect();
    let origin = media[0].origin.clone();
    for (media_id, thumb) in stored::thumbnails_of_user(db, user_id, last).await? {
        keys.push(thumbnail_key(
            &origin,
            &media_id,
            thumb.width as u32,
            thumb.height as u32,
            &thumb.method,
        ));
    }
    platform.blobs.delete(keys).await.map_err(storage)?;
    for m in &media {
        memory::forget_media(&m.origin, &m.media_id);
    }
    stored::delete_of_user(db, user_id, last).await
}

/// Deletes one piece of media for good: its bytes and its thumbnails' from the store first, then
/// the rows (so a failure part way leaves the rows, and the admin's retry finds them again).
pub async fn delete(
    db: &Db,
    platform: &Platform,
    origin: &str,
    media_id: &str,
) -> Result<(), MatrixError> {
    let mut keys = vec![blob_key(origin, media_id)];
    for thumb in stored::thumbnails_of(db, origin, media_id).await? {
        keys.push(thumbnail_key(
            origin,
            media_id,
            thumb.width as u32,
            thumb.height as u32,
            &thumb.method,
        ));
    }
    platform.blobs.delete(keys).await.map_err(storage)?;
    // This isolate's memory freed at once; every isolate's is refused by the rows' absence.
    memory::forget_media(origin, media_id);
    stored::delete(db, origin, media_id).await
}

/// The `width`/`height`/`method` of a thumbnail request.
pub fn thumbnail_request(
    width: Option<u64>,
    height: Option<u64>,
    method: Option<&str>,
) -> Result<((u32, u32), Method), MatrixError> {
    let dimension = |value: Option<u64>, name: &str| match value {
        Some(n) if (1..=10_000).contains(&n) => Ok(n as u32),
        Some(_) => Err(MatrixError::invalid_param(format!(
            "{name} must be between 1 and 10000"
        ))),
        None => Err(MatrixError::missing_param(format!("{name} is required"))),
    };
    let size = (dimension(width, "width")?, dimension(height, "height")?);
    let method = Method::parse(method)
        .ok_or_else(|| MatrixError::invalid_param("method must be crop or scale"))?;
    Ok((size, method))
}
