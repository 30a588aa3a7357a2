//! Media over federation (spec v1.11, server-server "Content Repository"): serving our media
//! to other servers as `multipart/mixed`, and fetching other servers' media for our users,
//! cached in the object store so a second request costs no federation request.

use std::time::Duration;

use ruma::ServerName;

use super::outgoing::{request_raw, Limits};
use crate::api::request::Ctx;
use crate::http::{ErrorCode, MatrixError, MediaResponse};
use crate::media::multipart::{self, MediaPart};
use crate::media::repository::{self, Served};
use crate::media::thumbnail::{self, Method};
use crate::media::{thumbnail_key, valid_media_id};
use crate::platform::{Body, HttpRequest, Method as HttpMethod, Platform};
use crate::storage::media::{self as stored, Media};
use crate::storage::Db;

/// How long a remote server may take to start answering a media request.
const REMOTE_TIMEOUT_MS: u64 = 20_000;

fn media_id_param(ctx: &Ctx) -> Result<String, MatrixError> {
    let id = ctx.param("mediaId");
    if !valid_media_id(id) {
        return Err(MatrixError::not_found("Media not found"));
    }
    Ok(id.to_owned())
}

/// Our media a signed request names, once its bytes are stored.
async fn requested_media(ctx: &Ctx) -> Result<Media, MatrixError> {
    ctx.origin().await?;
    let media_id = media_id_param(ctx)?;
    let ours = ctx.config.server_name.to_string();
    let timeout = ctx
        .query_u64("timeout_ms")?
        .unwrap_or(repository::MAX_WAIT_MS);
    repository::find_complete(&ctx.db(), &ctx.platform, &ours, &media_id, timeout)
        .await?
        .ok_or_else(repository::not_found)
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`
pub(crate) async fn download(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let media = requested_media(ctx).await?;
    let served = repository::serve(&ctx.platform, &media, None, None).await?;
    Ok(framed(served))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`
pub(crate) async fn thumbnail(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let (size, method) = repository::thumbnail_request(
        ctx.query_u64("width")?,
        ctx.query_u64("height")?,
        ctx.query("method"),
    )?;
    let media = requested_media(ctx).await?;
    let db = ctx.db();
    let served = repository::thumbnail_of(&db, &ctx.platform, &media, size, method).await?;
    let answer = match repository::thumbnail_body(&ctx.platform, served).await? {
        Some((body, content_type)) => repository::thumbnail_response(body, &content_type),
        None => repository::serve(&ctx.platform, &media, None, None).await?,
    };
    Ok(framed(answer))
}

/// The media answer wrapped as the spec's two parts, the bytes streamed between them.
fn framed(answer: MediaResponse) -> MediaResponse {
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let frame = multipart::frame(&header("content-type"), &header("content-disposition"));
    let body = match answer.body {
        Body::Bytes(bytes) => Body::Bytes([frame.head, bytes, frame.tail].concat()),
        Body::Stream(inner) | Body::Framed { inner, .. } => Body::Framed {
            head: frame.head,
            inner,
            tail: frame.tail,
        },
    };
    MediaResponse {
        status: 200,
        headers: vec![("Content-Type".into(), frame.content_type)],
        body,
    }
}

/// What a remote server answered for a piece of media.
struct Fetched {
    content_type: Option<String>,
    filename: Option<String>,
    bytes: Vec<u8>,
}

/// The media of another server, cached for our users: from the store when fetched before,
/// else fetched with the federation endpoint (the legacy one for servers that lack it) and
/// stored. Files over our upload limit are refused (502 `M_TOO_LARGE`, as the spec says).
pub(crate) async fn remote_media(
    db: &Db,
    platform: &Platform,
    origin: &ServerName,
    media_id: &str,
    timeout_ms: u64,
) -> Result<Media, MatrixError> {
    if let Some(media) =
        repository::find_complete(db, platform, origin.as_str(), media_id, 0).await?
    {
        return Ok(media);
    }
    let max = platform.config()?.media.max_upload_bytes;
    let timeout = timeout_ms.clamp(1_000, REMOTE_TIMEOUT_MS);
    let path = format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={timeout}");
    let fetched = match fetch(platform, origin, &path, max, timeout).await? {
        Some(fetched) => fetched,
        None => {
            // A server without the federation endpoint: its legacy one.
            let legacy = format!(
                "/_matrix/media/v3/download/{origin}/{media_id}?allow_remote=false&timeout_ms={timeout}"
            );
            fetch(platform, origin, &legacy, max, timeout)
                .await?
                .ok_or_else(repository::not_found)?
        }
    };
    let length = fetched.bytes.len() as u64;
    repository::store_new(
        db,
        platform,
        origin.as_str(),
        media_id,
        None,
        fetched.content_type.as_deref(),
        fetched.filename.as_deref(),
        Body::Bytes(fetched.bytes),
        length,
    )
    .await
}

/// A remote thumbnail, cached: the origin's own thumbnail when it serves one, else one we make
/// from the cached original.
pub(crate) async fn remote_thumbnail(
    db: &Db,
    platform: &Platform,
    origin: &ServerName,
    media_id: &str,
    (width, height): (u32, u32),
    method: Method,
    timeout_ms: u64,
) -> Result<MediaResponse, MatrixError> {
    let size = thumbnail::choose(width, height, method);
    let key = thumbnail_key(origin.as_str(), media_id, size.0, size.1, method.as_str());
    if let Some(found) =
        stored::thumbnail(db, origin.as_str(), media_id, size, method.as_str()).await?
    {
        let served = Served::Thumbnail {
            key: key.clone(),
            content_type: found.content_type,
        };
        if let Some((body, content_type)) = repository::thumbnail_body(platform, served).await? {
            return Ok(repository::thumbnail_response(body, &content_type));
        }
    }
    let max = platform.config()?.media.max_upload_bytes;
    let timeout = timeout_ms.clamp(1_000, REMOTE_TIMEOUT_MS);
    let path = format!(
        "/_matrix/federation/v1/media/thumbnail/{media_id}?width={}&height={}&method={}&timeout_ms={timeout}",
        size.0,
        size.1,
        method.as_str()
    );
    match fetch(platform, origin, &path, max, timeout).await {
        Ok(Some(fetched)) if fetched.content_type.as_deref().is_some_and(is_image) => {
            let content_type = fetched.content_type.unwrap_or_default();
            let at = (origin.as_str(), media_id);
            let bytes = fetched.bytes.clone();
            repository::store_thumbnail(db, platform, at, size, method, bytes, &content_type)
                .await?;
            return Ok(repository::thumbnail_response(
                Body::Bytes(fetched.bytes),
                &content_type,
            ));
        }
        Ok(_) => {}
        Err(e) if e.status == 504 => return Err(e),
        Err(e) => crate::log_info!("remote thumbnail of {origin}/{media_id}: {}", e.message),
    }
    // The origin made none: make it here from the original.
    let media = remote_media(db, platform, origin, media_id, timeout_ms).await?;
    let served = repository::thumbnail_of(db, platform, &media, (width, height), method).await?;
    match repository::thumbnail_body(platform, served).await? {
        Some((body, content_type)) => Ok(repository::thumbnail_response(body, &content_type)),
        None => repository::serve(platform, &media, None, None).await,
    }
}

fn is_image(content_type: &str) -> bool {
    content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("image/")
}

/// One media request to `origin`. `Ok(None)` when the server does not serve that endpoint
/// (404 `M_UNRECOGNIZED`, 405, 400 without a Matrix error); a missing file is 404 `M_NOT_FOUND`.
async fn fetch(
    platform: &Platform,
    origin: &ServerName,
    path: &str,
    max: u64,
    timeout_ms: u64,
) -> Result<Option<Fetched>, MatrixError> {
    let limits = Limits {
        timeout: Duration::from_millis(timeout_ms),
        max_body: Some(max as usize + 64 * 1024),
    };
    let unreachable = |e: String| {
        MatrixError::new(
            502,
            ErrorCode::Unknown,
            format!("{origin} could not be reached for its media: {e}"),
        )
    };
    let federation = path.starts_with("/_matrix/federation/");
    let response = request_raw(
        platform,
        origin,
        HttpMethod::Get,
        path,
        None,
        federation,
        limits,
    )
    .await
    .map_err(|e| {
        if e.0.contains("too large") {
            MatrixError::new(502, ErrorCode::TooLarge, "The remote content is too large")
        } else {
            unreachable(e.0)
        }
    })?;
    if response.status != 200 {
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        let code = body["errcode"].as_str().unwrap_or_default();
        return match (response.status, code) {
            (404, "M_UNRECOGNIZED") | (405, _) | (400, "") | (404, "") => Ok(None),
            (404, _) => Err(repository::not_found()),
            (504, _) => Err(MatrixError::new(
                504,
                ErrorCode::NotYetUploaded,
                "The remote media has not been uploaded yet",
            )),
            (status, _) => Err(unreachable(format!("status {status} {code}"))),
        };
    }
    let content_type = response.header("content-type").map(str::to_owned);
    let fetched = if federation {
        let content_type = content_type.unwrap_or_default();
        match multipart::parse(&content_type, &response.body) {
            Some(MediaPart::Bytes {
                content_type,
                disposition,
                body,
            }) => Fetched {
                content_type,
                filename: disposition.as_deref().and_then(filename_of),
                bytes: body,
            },
            Some(MediaPart::Location(url)) => follow_location(platform, &url, max, timeout_ms)
                .await
                .map_err(unreachable)?,
            None => {
                crate::log_warn!("{origin} answered {path} with malformed multipart");
                return Err(unreachable("a malformed multipart answer".into()));
            }
        }
    } else {
        Fetched {
            filename: response.header("content-disposition").and_then(filename_of),
            content_type,
            bytes: response.body,
        }
    };
    if fetched.bytes.len() as u64 > max {
        return Err(MatrixError::new(
            502,
            ErrorCode::TooLarge,
            "The remote content is too large",
        ));
    }
    Ok(Some(fetched))
}

/// The bytes at a `Location` a server redirected a media request to (not cached as a URL: the
/// spec says it may expire).
async fn follow_location(
    platform: &Platform,
    url: &str,
    max: u64,
    timeout_ms: u64,
) -> Result<Fetched, String> {
    if !url.starts_with("https://") && !url.starts_with("http://") {
        return Err(format!("a redirect to {url}"));
    }
    let request = HttpRequest {
        method: HttpMethod::Get,
        url: url.to_owned(),
        headers: Vec::new(),
        body: None,
        timeout: Duration::from_millis(timeout_ms),
        max_body: Some(max as usize),
        follow_redirects: true,
    };
    let response = platform.http.fetch(request).await?;
    if response.status != 200 {
        return Err(format!("{url} answered {}", response.status));
    }
    Ok(Fetched {
        content_type: response.header("content-type").map(str::to_owned),
        filename: response.header("content-disposition").and_then(filename_of),
        bytes: response.body,
    })
}

/// The file name of a `Content-Disposition` (`filename*=utf-8''...` preferred, as RFC 6266 says).
pub(crate) fn filename_of(disposition: &str) -> Option<String> {
    let params: Vec<(String, String)> = disposition
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let extended = params
        .iter()
        .find(|(k, _)| k == "filename*")
        .and_then(|(_, v)| {
            let (charset, rest) = v.split_once('\'')?;
            let (_, encoded) = rest.split_once('\'')?;
            if !charset.eq_ignore_ascii_case("utf-8") {
                return None;
            }
            crate::http::route::percent_decode(encoded)
        });
    extended.or_else(|| {
        params
            .iter()
            .find(|(k, _)| k == "filename")
            .map(|(_, v)| v.trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::filename_of;

    #[test]
    fn file_names_are_read_from_either_form() {
        assert_eq!(
            filename_of("inline; filename=\"a b.png\"").as_deref(),
            Some("a b.png")
        );
        assert_eq!(
            filename_of("attachment; filename=x; filename*=utf-8''%E2%98%83.png").as_deref(),
            Some("☃.png")
        );
        assert_eq!(filename_of("inline"), None);
    }
}
