//! The content repository for clients (spec v1.11+): uploads (`/_matrix/media/v3/upload`,
//! async with `/_matrix/media/v1/create`), authenticated downloads and thumbnails
//! (`/_matrix/client/v1/media/...`), the configuration, URL previews, and the deprecated
//! unauthenticated endpoints, frozen as the spec allows (see `media::config::freeze_ts`).

use std::time::Duration;

use ruma::ServerName;
use serde_json::{json, Map, Value};

use crate::accounts::tokens::token_hash;
use crate::api::request::Ctx;
use crate::federation::media::{remote_media, remote_thumbnail};
use crate::http::{ErrorCode, JsonResponse, MatrixError, MediaResponse};
use crate::media::preview::{check_url, open_graph};
use crate::media::repository::{self, MAX_WAIT_MS};
use crate::media::{new_media_id, thumbnail, valid_media_id};
use crate::platform::{Body, HttpRequest, Method};
use crate::storage::media::{self as stored, Media};
use crate::storage::Db;
use crate::time::now_ms;

/// How long an id from `create` waits for its bytes (spec: `unused_expires_at`).
const PENDING_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;
/// Ids from `create` a user may hold unfilled at once.
const MAX_PENDING_PER_USER: i64 = 10;

/// `GET /_matrix/client/v1/media/config` (and the deprecated `/_matrix/media/v3/config`).
pub(crate) async fn config(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.requester().await?;
    Ok(JsonResponse::ok(
        json!({ "m.upload.size": ctx.config.media.max_upload_bytes }),
    ))
}

fn content_uri(ctx: &Ctx, media_id: &str) -> String {
    format!("mxc://{}/{media_id}", ctx.config.server_name)
}

/// `POST /_matrix/media/v3/upload`
pub(crate) async fn upload(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Upload).await?;
    let db = ctx.db();
    let (body, length) = ctx.raw_body();
    repository::check_upload(&db, &ctx.platform, me.user_id.as_str(), length).await?;
    let media_id = new_media_id();
    repository::store_new(
        &db,
        &ctx.platform,
        ctx.config.server_name.as_str(),
        &media_id,
        Some(me.user_id.as_str()),
        ctx.header("content-type"),
        ctx.query("filename"),
        body,
        length,
    )
    .await?;
    Ok(JsonResponse::ok(
        json!({ "content_uri": content_uri(ctx, &media_id) }),
    ))
}

/// `POST /_matrix/media/v1/create`: an id now, the bytes later.
pub(crate) async fn create(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Upload).await?;
    let db = ctx.db();
    let now = now_ms() as i64;
    stored::expire_pending(&db, now).await?;
    if stored::pending_count(&db, me.user_id.as_str(), now).await? >= MAX_PENDING_PER_USER {
        return Err(MatrixError::new(
            429,
            ErrorCode::LimitExceeded,
            "Too many uploads are waiting for their bytes",
        )
        .with("retry_after_ms", json!(60_000)));
    }
    let media_id = new_media_id();
    let expires = now + PENDING_LIFETIME_MS as i64;
    stored::insert_pending(
        &db,
        ctx.config.server_name.as_str(),
        &media_id,
        me.user_id.as_str(),
        now,
        expires,
    )
    .await?;
    Ok(JsonResponse::ok(json!({
        "content_uri": content_uri(ctx, &media_id),
        "unused_expires_at": expires,
    })))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the bytes of an id from `create`.
pub(crate) async fn upload_to(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Upload).await?;
    let media_id = ctx.param("mediaId");
    if ctx.param("serverName") != ctx.config.server_name.as_str() || !valid_media_id(media_id) {
        return Err(repository::not_found());
    }
    let (body, length) = ctx.raw_body();
    repository::fill_pending(
        &ctx.db(),
        &ctx.platform,
        ctx.config.server_name.as_str(),
        media_id,
        me.user_id.as_str(),
        ctx.header("content-type"),
        ctx.query("filename"),
        body,
        length,
    )
    .await?;
    Ok(JsonResponse::ok(json!({})))
}

/// The route's `{serverName}` and `{mediaId}`, checked against the spec's grammar before they
/// name a key or a URL.
fn media_params(ctx: &Ctx) -> Result<(ruma::OwnedServerName, String), MatrixError> {
    let origin = ServerName::parse(ctx.param("serverName"))
        .map_err(|_| MatrixError::invalid_param("Not a valid server name"))?;
    let media_id = ctx.param("mediaId");
    if !valid_media_id(media_id) {
        return Err(MatrixError::invalid_param("Not a valid media id"));
    }
    Ok((origin, media_id.to_owned()))
}

fn timeout_ms(ctx: &Ctx) -> Result<u64, MatrixError> {
    Ok(ctx
        .query_u64("timeout_ms")?
        .unwrap_or(MAX_WAIT_MS)
        .min(MAX_WAIT_MS))
}

/// The media a client asks for: ours, or another server's (fetched and cached).
async fn locate(ctx: &Ctx, fetch_remote: bool) -> Result<Media, MatrixError> {
    let (origin, media_id) = media_params(ctx)?;
    let db = ctx.db();
    let timeout = timeout_ms(ctx)?;
    if origin == ctx.config.server_name {
        return repository::find_complete(&db, &ctx.platform, origin.as_str(), &media_id, timeout)
            .await?
            .ok_or_else(repository::not_found);
    }
    if !fetch_remote {
        return repository::find_complete(&db, &ctx.platform, origin.as_str(), &media_id, 0)
            .await?
            .ok_or_else(repository::not_found);
    }
    remote_media(&db, &ctx.platform, &origin, &media_id, timeout).await
}

/// The requester checked, and this server's media that the path names when it can be served
/// as it is, with the stored thumbnail `thumbnail` asks for (the stored size and method) when
/// it was made before. For local media the token's row, the media row and the thumbnail row
/// are one D1 statement (`stored::first_read`). `None` leaves the other cases (remote,
/// missing, pending, quarantined) to `locate`.
async fn requester_and_local_media(
    ctx: &Ctx,
    db: &Db,
    thumbnail: Option<((u32, u32), thumbnail::Method)>,
) -> Result<Option<(Media, Option<repository::Served>)>, MatrixError> {
    let token = ctx.bearer()?;
    let local = media_params(ctx).is_ok_and(|(origin, _)| origin == ctx.config.server_name);
    if !local {
        ctx.requester_on(db).await?;
        return Ok(None);
    }
    // Checked by `media_params` above: the path's own, valid media id on this server.
    let at = (ctx.config.server_name.as_str(), ctx.param("mediaId"));
    let asked = thumbnail.map(|(size, method)| (size, method.as_str()));
    let first = stored::first_read(db, &token_hash(token), at, asked).await?;
    ctx.requester_from(token, first.owner).await?;
    let Some(media) = first.media.filter(repository::is_complete) else {
        return Ok(None);
    };
    let made =
        match (thumbnail, first.thumbnail) {
            (Some((size, method)), Some((content_type, bytes))) => Some(
                repository::stored_thumbnail(&media, size, method, content_type, bytes),
            ),
            _ => None,
        };
    Ok(Some((media, made)))
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
pub(crate) async fn download(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let db = ctx.db();
    let media = match requester_and_local_media(ctx, &db, None).await? {
        Some((media, _)) => media,
        None => locate(ctx, true).await?,
    };
    serve_download(ctx, &media).await
}

/// The download answer: the path's file name, and the `Range` asked.
async fn serve_download(ctx: &Ctx, media: &Media) -> Result<MediaResponse, MatrixError> {
    repository::serve(
        &ctx.platform,
        media,
        Some(ctx.param("fileName")),
        ctx.header("range"),
    )
    .await
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
pub(crate) async fn thumbnail(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let request = request_of(ctx);
    let db = ctx.db();
    // The stored size the request maps to, read with the requester and the media.
    let stored_size = request
        .as_ref()
        .ok()
        .map(|&((width, height), method)| (thumbnail::choose(width, height, method), method));
    let local = requester_and_local_media(ctx, &db, stored_size).await?;
    let (size, method) = request?;
    match local {
        Some((media, Some(made))) => return thumbnail_response(ctx, &media, made).await,
        Some((media, None)) => {
            let made = repository::make_thumbnail(&db, &ctx.platform, &media, size, method).await?;
            return thumbnail_response(ctx, &media, made).await;
        }
        None => {}
    }
    let (origin, media_id) = media_params(ctx)?;
    if origin != ctx.config.server_name {
        let db = ctx.db();
        let cached = repository::find_complete(&db, &ctx.platform, origin.as_str(), &media_id, 0);
        return match cached.await? {
            Some(media) => thumbnail_of(ctx, &media, size, method).await,
            // Never seen: the origin's own thumbnail, without fetching a possibly big original.
            None => {
                let timeout = timeout_ms(ctx)?;
                remote_thumbnail(
                    &db,
                    &ctx.platform,
                    &origin,
                    &media_id,
                    size,
                    method,
                    timeout,
                )
                .await
            }
        };
    }
    let media = locate(ctx, true).await?;
    thumbnail_of(ctx, &media, size, method).await
}

fn request_of(ctx: &Ctx) -> Result<((u32, u32), thumbnail::Method), MatrixError> {
    repository::thumbnail_request(
        ctx.query_u64("width")?,
        ctx.query_u64("height")?,
        ctx.query("method"),
    )
}

async fn thumbnail_of(
    ctx: &Ctx,
    media: &Media,
    size: (u32, u32),
    method: thumbnail::Method,
) -> Result<MediaResponse, MatrixError> {
    let served = repository::thumbnail_of(&ctx.db(), &ctx.platform, media, size, method).await?;
    thumbnail_response(ctx, media, served).await
}

async fn thumbnail_response(
    ctx: &Ctx,
    media: &Media,
    served: repository::Served,
) -> Result<MediaResponse, MatrixError> {
    match repository::thumbnail_body(&ctx.platform, served).await? {
        Some((body, content_type)) => Ok(repository::thumbnail_response(body, &content_type)),
        None => repository::serve(&ctx.platform, media, None, None).await,
    }
}

/// The freeze (spec v1.11, "Client behaviour"): the deprecated endpoints serve only media stored
/// before `MEDIA_FREEZE_TS`. Remote media cached counts as stored when cached, so they fetch
/// remote media only while the freeze has not begun.
async fn frozen_locate(ctx: &Ctx) -> Result<Media, MatrixError> {
    let freeze_ts = ctx.config.media.freeze_ts;
    let media = locate(ctx, (now_ms() as i64) < freeze_ts).await?;
    if media.created_ts >= freeze_ts {
        return Err(repository::not_found());
    }
    Ok(media)
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]` (deprecated)
pub(crate) async fn download_unauthenticated(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let media = frozen_locate(ctx).await?;
    serve_download(ctx, &media).await
}

/// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (deprecated)
pub(crate) async fn thumbnail_unauthenticated(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (size, method) = request_of(ctx)?;
    let media = frozen_locate(ctx).await?;
    thumbnail_of(ctx, &media, size, method).await
}

/// How long a preview stays cached.
const PREVIEW_LIFETIME_MS: u64 = 60 * 60 * 1000;
/// The most of a page read for its OpenGraph fields.
const MAX_PAGE_BYTES: usize = 1024 * 1024;
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;

/// `GET /_matrix/client/v1/media/preview_url` (and the deprecated `/_matrix/media/v3/` one).
pub(crate) async fn preview_url(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.requester().await?;
    let media = &ctx.config.media;
    if !media.url_previews {
        return Err(MatrixError::new(
            404,
            ErrorCode::Unrecognized,
            "URL previews are disabled on this server",
        ));
    }
    let raw = ctx
        .query("url")
        .ok_or_else(|| MatrixError::missing_param("url is required"))?;
    check_url(raw, media.url_preview_allow_private)
        .map_err(|why| MatrixError::forbidden(format!("This URL cannot be previewed: {why:?}")))?;
    let db = ctx.db();
    let now = now_ms();
    if let Some(og) = stored::preview(&db, raw, (now - PREVIEW_LIFETIME_MS) as i64).await? {
        return Ok(JsonResponse::ok(og));
    }
    let (final_url, response) = fetch_checked(ctx, raw, MAX_PAGE_BYTES).await?;
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut og = if content_type.starts_with("image/") {
        let mut og = Map::new();
        store_preview_image(ctx, &content_type, response.body, &mut og).await?;
        og
    } else if content_type.contains("html") {
        let html = String::from_utf8_lossy(&response.body);
        open_graph(&html, &final_url)
    } else {
        Map::new()
    };
    if let Some(Value::String(image)) = og.get("og:image").cloned() {
        // The page's picture, kept as our media so clients fetch it from us.
        match fetch_checked(ctx, &image, ctx.config.media.max_upload_bytes as usize).await {
            Ok((_, image_response)) => {
                let image_type = image_response
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                og.remove("og:image");
                store_preview_image(ctx, &image_type, image_response.body, &mut og).await?;
            }
            Err(e) => {
                crate::log_info!(
                    "preview of {raw}: its image {image} was not fetched: {}",
                    e.message
                );
                og.remove("og:image");
            }
        }
    }
    let og = Value::Object(og);
    stored::store_preview(&db, raw, &og, now as i64).await?;
    Ok(JsonResponse::ok(og))
}

/// A preview's image as our media: `og:image` becomes its `mxc://` URI, with its size, type and
/// dimensions.
async fn store_preview_image(
    ctx: &Ctx,
    content_type: &str,
    bytes: Vec<u8>,
    og: &mut Map<String, Value>,
) -> Result<(), MatrixError> {
    let length = bytes.len() as u64;
    if let Some(format) = thumbnail::format_of(content_type) {
        let reader =
            image::ImageReader::with_format(std::io::Cursor::new(bytes.as_slice()), format);
        if let Ok((width, height)) = reader.into_dimensions() {
            og.insert("og:image:width".into(), json!(width));
            og.insert("og:image:height".into(), json!(height));
        }
    }
    let media_id = new_media_id();
    // The server's media, not the user's: not counted in their quota.
    repository::store_new(
        &ctx.db(),
        &ctx.platform,
        ctx.config.server_name.as_str(),
        &media_id,
        None,
        Some(content_type),
        None,
        Body::Bytes(bytes),
        length,
    )
    .await?;
    og.insert("og:image".into(), json!(content_uri(ctx, &media_id)));
    og.insert("og:image:type".into(), json!(content_type));
    og.insert("matrix:image:size".into(), json!(length));
    Ok(())
}

/// Fetches a URL for a preview, following redirects by hand so that every hop's address is
/// checked (a public page must not redirect us into a private network).
async fn fetch_checked(
    ctx: &Ctx,
    raw: &str,
    max_body: usize,
) -> Result<(url::Url, crate::platform::HttpResponse), MatrixError> {
    let allow_private = ctx.config.media.url_preview_allow_private;
    let refused = |why| MatrixError::forbidden(format!("This URL cannot be previewed: {why:?}"));
    let mut url = check_url(raw, allow_private).map_err(refused)?;
    for _ in 0..=MAX_REDIRECTS {
        let request = HttpRequest {
            method: Method::Get,
            url: url.to_string(),
            headers: vec![("User-Agent".into(), "matrix-edge URL preview".into())],
            body: None,
            timeout: PREVIEW_TIMEOUT,
            max_body: Some(max_body),
            follow_redirects: false,
        };
        let response = ctx.platform.http.fetch(request).await.map_err(|e| {
            MatrixError::new(
                502,
                ErrorCode::Unknown,
                format!("The page could not be fetched: {e}"),
            )
        })?;
        match response.status {
            200 => return Ok((url, response)),
            301 | 302 | 303 | 307 | 308 => {
                let location = response.header("location").ok_or_else(|| {
                    MatrixError::new(502, ErrorCode::Unknown, "A redirect without a location")
                })?;
                let next = url
                    .join(location)
                    .map_err(|_| MatrixError::new(502, ErrorCode::Unknown, "A bad redirect"))?;
                url = check_url(next.as_str(), allow_private).map_err(refused)?;
            }
            status => {
                return Err(MatrixError::new(
                    502,
                    ErrorCode::Unknown,
                    format!("The page answered {status}"),
                ))
            }
        }
    }
    Err(MatrixError::new(
        502,
        ErrorCode::Unknown,
        "Too many redirects",
    ))
}
