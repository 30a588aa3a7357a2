//! Server-side key backup: `room_keys/version[/{version}]` and
//! `room_keys/keys[/{roomId}[/{sessionId}]]`. The server stores what the client encrypted with
//! the backup's public key; it can read none of it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::api::request::{Ctx, Requester};
use crate::e2ee::backup::{flatten_rooms, session_key};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::e2ee_backup::{self as stored, KeyRow, VersionRow};
use crate::storage::Db;

fn no_backup() -> MatrixError {
    MatrixError::not_found("No current backup version")
}

fn unknown_version() -> MatrixError {
    MatrixError::not_found("Unknown backup version")
}

/// Versions are our integer ids, as strings; anything else names no version.
fn parse_version(raw: &str) -> Result<i64, MatrixError> {
    raw.parse().map_err(|_| unknown_version())
}

fn version_json(row: &VersionRow) -> Value {
    json!({
        "version": row.version.to_string(),
        "algorithm": row.algorithm,
        "auth_data": serde_json::from_str::<Value>(&row.auth_data).unwrap_or(json!({})),
        "etag": row.etag.to_string(),
        "count": row.count,
    })
}

/// `algorithm` and `auth_data` of a create or update body.
fn version_body(body: &Map<String, Value>) -> Result<(String, String), MatrixError> {
    let algorithm = body
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::bad_json("algorithm must be a string"))?;
    let auth_data = body
        .get("auth_data")
        .filter(|a| a.is_object())
        .ok_or_else(|| MatrixError::bad_json("auth_data must be an object"))?;
    Ok((algorithm.to_owned(), auth_data.to_string()))
}

pub(crate) async fn create_version(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let (algorithm, auth_data) = version_body(&ctx.json_object()?)?;
    let version =
        stored::create_version(&ctx.db(), me.user_id.as_str(), &algorithm, &auth_data).await?;
    Ok(JsonResponse::ok(json!({ "version": version.to_string() })))
}

pub(crate) async fn get_version(
    ctx: &Ctx,
    which: Option<&str>,
) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let version = which.map(parse_version).transpose()?;
    stored::version(&ctx.db(), me.user_id.as_str(), version)
        .await?
        .map(|row| JsonResponse::ok(version_json(&row)))
        .ok_or_else(|| {
            if which.is_some() {
                unknown_version()
            } else {
                no_backup()
            }
        })
}

pub(crate) async fn update_version(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let version = parse_version(ctx.param("version"))?;
    let body = ctx.json_object()?;
    let (algorithm, auth_data) = version_body(&body)?;
    if let Some(named) = body.get("version") {
        if named.as_str() != Some(ctx.param("version")) {
            return Err(MatrixError::invalid_param(
                "version in the body does not match the path",
            ));
        }
    }
    let db = ctx.db();
    let current = stored::version(&db, me.user_id.as_str(), Some(version))
        .await?
        .ok_or_else(unknown_version)?;
    if current.algorithm != algorithm {
        return Err(MatrixError::invalid_param(
            "A backup version's algorithm cannot change; create a new version",
        ));
    }
    stored::update_version(&db, me.user_id.as_str(), version, &auth_data).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn delete_version(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let version = parse_version(ctx.param("version"))?;
    if !stored::delete_version(&ctx.db(), me.user_id.as_str(), version).await? {
        return Err(unknown_version());
    }
    Ok(JsonResponse::ok(json!({})))
}

/// The `version` query parameter, resolved to one of the user's versions.
async fn requested_version(ctx: &Ctx, db: &Db, me: &Requester) -> Result<VersionRow, MatrixError> {
    let raw = ctx
        .query("version")
        .ok_or_else(|| MatrixError::missing_param("the version query parameter is required"))?;
    stored::version(db, me.user_id.as_str(), Some(parse_version(raw)?))
        .await?
        .ok_or_else(unknown_version)
}

fn etag_and_count(row: &VersionRow) -> Value {
    json!({ "etag": row.etag.to_string(), "count": row.count })
}

/// Which keys a path names: all, one room's, or one session's.
fn scope(ctx: &Ctx) -> (Option<&str>, Option<&str>) {
    let room = Some(ctx.param("roomId")).filter(|p| !p.is_empty());
    let session = Some(ctx.param("sessionId")).filter(|p| !p.is_empty());
    (room, session)
}

pub(crate) async fn put_keys(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let body = ctx.json_object()?;
    let keys = match scope(ctx) {
        (None, _) => {
            let rooms = body
                .get("rooms")
                .and_then(Value::as_object)
                .ok_or_else(|| MatrixError::bad_json("rooms must be an object"))?;
            flatten_rooms(rooms)
        }
        (Some(room), None) => {
            let sessions = body
                .get("sessions")
                .cloned()
                .ok_or_else(|| MatrixError::bad_json("sessions must be an object"))?;
            flatten_rooms(&Map::from_iter([(
                room.to_owned(),
                json!({ "sessions": sessions }),
            )]))
        }
        (Some(room), Some(session)) => {
            session_key(room, session, &Value::Object(body.clone())).map(|k| vec![k])
        }
    }
    .map_err(MatrixError::bad_json)?;
    let db = ctx.db();
    let version = requested_version(ctx, &db, &me).await?;
    // Uploads go to the current version only: a client still writing to an old one must learn
    // that another device replaced the backup.
    let latest = stored::version(&db, me.user_id.as_str(), None).await?;
    if let Some(latest) = latest.filter(|l| l.version != version.version) {
        return Err(MatrixError::new(
            403,
            ErrorCode::WrongRoomKeysVersion,
            "That is not the current backup version",
        )
        .with("current_version", json!(latest.version.to_string())));
    }
    if !keys.is_empty() {
        stored::put_keys(&db, version.version, &keys).await?;
    }
    let after = stored::version(&db, me.user_id.as_str(), Some(version.version))
        .await?
        .ok_or_else(unknown_version)?;
    Ok(JsonResponse::ok(etag_and_count(&after)))
}

fn key_json(row: &KeyRow) -> Value {
    json!({
        "first_message_index": row.first_message_index,
        "forwarded_count": row.forwarded_count,
        "is_verified": row.is_verified != 0,
        "session_data": serde_json::from_str::<Value>(&row.session_data).unwrap_or(json!({})),
    })
}

pub(crate) async fn get_keys(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    let version = requested_version(ctx, &db, &me).await?;
    let (room, session) = scope(ctx);
    let rows = stored::keys(&db, version.version, room, session).await?;
    let mut rooms: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for row in &rows {
        rooms
            .entry(row.room_id.as_str())
            .or_default()
            .insert(row.session_id.clone(), key_json(row));
    }
    let body = match (room, session) {
        (None, _) => {
            let rooms: Map<String, Value> = rooms
                .into_iter()
                .map(|(room, sessions)| (room.to_owned(), json!({ "sessions": sessions })))
                .collect();
            json!({ "rooms": rooms })
        }
        // A room without keys is an empty room, not an error (as Synapse answers).
        (Some(room), None) => json!({ "sessions": rooms.remove(room).unwrap_or_default() }),
        (Some(_), Some(_)) => rows
            .first()
            .map(key_json)
            .ok_or_else(|| MatrixError::not_found("No key for that session"))?,
    };
    Ok(JsonResponse::ok(body))
}

pub(crate) async fn delete_keys(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    let version = requested_version(ctx, &db, &me).await?;
    let (room, session) = scope(ctx);
    stored::delete_keys(&db, version.version, room, session).await?;
    let after = stored::version(&db, me.user_id.as_str(), Some(version.version))
        .await?
        .ok_or_else(unknown_version)?;
    Ok(JsonResponse::ok(etag_and_count(&after)))
}
