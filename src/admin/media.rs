//! Media: a user's uploads listed, one piece described, deleted (bytes, thumbnails, rows),
//! quarantined (served to no one, here nor over federation) or protected from quarantine.
//! Shapes and errors follow Synapse's media admin API, which synadm and synapse-admin parse.

use serde_json::{json, Value};

use super::{local_user, query_backwards, query_count, require_admin};
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::media::repository;
use crate::storage::accounts;
use crate::storage::media::{self as stored, Listed};

fn listed(
    Listed {
        media: row,
        safe_from_quarantine,
    }: &Listed,
) -> Value {
    json!({
        "media_id": row.media_id,
        "media_type": row.content_type,
        "media_length": row.size,
        "upload_name": row.filename,
        "created_ts": row.created_ts,
        // Reads are not recorded here (they would cost a D1 write per download).
        "last_access_ts": Value::Null,
        "quarantined_by": row.quarantined_by,
        "safe_from_quarantine": *safe_from_quarantine != 0,
    })
}

/// `GET /_synapse/admin/v1/users/{userId}/media`.
pub(crate) async fn list_of_user(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let user_id = local_user(ctx, "userId", "Can only look up local users")?;
    let db = ctx.db();
    if !accounts::user_exists(&db, user_id.as_str()).await? {
        return Err(MatrixError::not_found("Unknown user"));
    }
    let from = query_count(ctx, "from", 0)?;
    let limit = query_count(ctx, "limit", 100)?;
    // Access times are not kept, so `last_access_ts` sorts as creation does.
    let order_column = match ctx.query("order_by").unwrap_or("created_ts") {
        "media_id" => "media_id",
        "upload_name" => "filename",
        "created_ts" | "last_access_ts" => "created_ts",
        "media_length" => "size",
        "media_type" => "content_type",
        "quarantined_by" => "quarantined_by",
        "safe_from_quarantine" => "safe_from_quarantine",
        _ => {
            return Err(MatrixError::invalid_param(
                "Query parameter \"order_by\" must be one of ['media_id', 'upload_name', \
                 'created_ts', 'last_access_ts', 'media_length', 'media_type', \
                 'quarantined_by', 'safe_from_quarantine']",
            ))
        }
    };
    let backwards = query_backwards(ctx)?;
    let (rows, total) =
        stored::page_of_user(&db, user_id.as_str(), order_column, backwards, from, limit).await?;
    let mut body = json!({
        "media": rows.iter().map(listed).collect::<Vec<_>>(),
        "total": total,
    });
    if from + limit < total {
        body["next_token"] = json!(from + limit);
    }
    Ok(JsonResponse::ok(body))
}

/// `{serverName}/{mediaId}` of the path.
fn media_path(ctx: &Ctx) -> (&str, &str) {
    (ctx.param("serverName"), ctx.param("mediaId"))
}

fn unknown_media() -> MatrixError {
    MatrixError::not_found("Unknown media")
}

/// `GET /_synapse/admin/v1/media/{serverName}/{mediaId}`.
pub(crate) async fn info(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let (origin, media_id) = media_path(ctx);
    let row = stored::listed(&ctx.db(), origin, media_id)
        .await?
        .ok_or_else(unknown_media)?;
    let mut info = listed(&row);
    info["media_origin"] = json!(row.media.origin);
    info["user_id"] = json!(row.media.user_id);
    Ok(JsonResponse::ok(json!({ "media_info": info })))
}

/// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`: local media only, as Synapse.
pub(crate) async fn delete(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let (origin, media_id) = media_path(ctx);
    if origin != ctx.config.server_name.as_str() {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Can only delete local media",
        ));
    }
    let db = ctx.db();
    if stored::listed(&db, origin, media_id).await?.is_none() {
        return Err(unknown_media());
    }
    repository::delete(&db, &ctx.platform, origin, media_id).await?;
    Ok(JsonResponse::ok(json!({
        "deleted_media": [media_id],
        "total": 1,
    })))
}

/// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}` and `.../unquarantine/...`.
/// As Synapse, unknown media and media safe from quarantine answer `{}` with nothing changed.
pub(crate) async fn quarantine(ctx: &Ctx, quarantined: bool) -> Result<JsonResponse, MatrixError> {
    let me = require_admin(ctx).await?;
    let (origin, media_id) = media_path(ctx);
    let by = quarantined.then_some(me.user_id.as_str());
    stored::set_quarantine(&ctx.db(), origin, media_id, by).await?;
    Ok(JsonResponse::ok(json!({})))
}

/// `POST /_synapse/admin/v1/media/protect/{mediaId}` and `.../unprotect/...`: our uploads only.
pub(crate) async fn protect(ctx: &Ctx, safe: bool) -> Result<JsonResponse, MatrixError> {
    require_admin(ctx).await?;
    let ours = ctx.config.server_name.as_str();
    stored::set_safe_from_quarantine(&ctx.db(), ours, ctx.param("mediaId"), safe).await?;
    Ok(JsonResponse::ok(json!({})))
}
