//! Our half of a membership handshake with another server (spec: joining rooms, leaving,
//! knocking): ask the resident for a template, complete and sign it, send it back. Used by the
//! room object for the handshakes it runs, and by the Worker for a join of a room no user of
//! ours is in (src/federation/join.rs), which needs no room object until the answer is back.

use std::sync::Arc;

use ruma::{RoomId, ServerName, UserId};
use serde_json::{json, Value};

use crate::http::route::percent_encode;
use crate::http::{ErrorCode, MatrixError};
use crate::platform::{Method, Platform};
use crate::rooms::{Pdu, RoomVersion};
use crate::signing::event::into_json;
use crate::storage::signing_keys;
use crate::time::now_ms;

/// `make_join`/`make_leave` against `server`: the template it offers, checked to be the
/// user's own membership, completed with `content`, hashed and signed by us.
pub(crate) async fn make_membership(
    platform: &Platform,
    room_id: &RoomId,
    user: &UserId,
    server: &ServerName,
    membership: &str,
    content: Value,
) -> Result<(RoomVersion, Arc<Pdu>), MatrixError> {
    // The joining or knocking server lists the room versions it supports; make_leave
    // takes none.
    let versions: String = RoomVersion::ALL
        .iter()
        .map(|v| format!("&ver={}", v.as_str()))
        .collect();
    let query = if membership == "join" || membership == "knock" {
        format!("?{}", &versions[1..])
    } else {
        String::new()
    };
    let path = format!(
        "/_matrix/federation/v1/make_{membership}/{}/{}{query}",
        percent_encode(room_id.as_str()),
        percent_encode(user.as_str()),
    );
    let (status, answer) =
        crate::federation::outgoing::signed(platform, server, Method::Get, &path, None).await?;
    if status != 200 {
        let code = ErrorCode::parse(answer["errcode"].as_str().unwrap_or_default());
        let message = answer["error"].as_str().unwrap_or("refused");
        return Err(MatrixError::new(
            if status == 404 { 404 } else { 403 },
            code,
            format!("{server}: make_{membership}: {message}"),
        ));
    }
    let version = answer["room_version"]
        .as_str()
        .and_then(RoomVersion::parse)
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrorCode::IncompatibleRoomVersion,
                "The room's version is not supported here",
            )
        })?;
    let mut event = answer["event"].clone();
    if event["type"] != "m.room.member"
        || event["state_key"] != json!(user)
        || event["sender"] != json!(user)
        || event["room_id"]
            .as_str()
            .is_some_and(|r| r != room_id.as_str())
    {
        return Err(MatrixError::new(
            502,
            ErrorCode::Unknown,
            format!("{server} sent a wrong {membership} template"),
        ));
    }
    let mut content = content;
    content["membership"] = json!(membership);
    // A restricted room's resident names who authorises the join; the field must stay.
    if let Some(authoriser) = event["content"].get("join_authorised_via_users_server") {
        content["join_authorised_via_users_server"] = authoriser.clone();
    }
    event["content"] = content;
    event["origin_server_ts"] = json!(now_ms());
    if let Some(object) = event.as_object_mut() {
        for field in ["hashes", "signatures", "unsigned", "event_id"] {
            object.remove(field);
        }
    }
    let config = platform.config()?;
    if version.event_id_in_pdu() {
        // Versions 1 and 2: the event is ours, so it gets an id of ours (the template's,
        // if any, was the resident server's).
        event["event_id"] = json!(crate::rooms::builder::server_event_id(
            config.server_name.as_str()
        ));
    }
    let keys = signing_keys::server_keys(platform).await?;
    let signed = crate::signing::event::hash_and_sign(
        config.server_name.as_str(),
        &keys.current,
        event,
        &version.rules(),
    )
    .map_err(|e| MatrixError::internal(e.to_string()))?;
    let pdu = Pdu::from_json(signed, version).map_err(|e| MatrixError::internal(e.to_string()))?;
    Ok((version, Arc::new(pdu)))
}

/// `send_join`/`send_leave` (v2) or `send_knock` (v1, the only one) of our signed membership
/// event; the answer as text: a big room's `send_join` answer is parsed without building a
/// JSON tree of it (rooms/join_job.rs).
pub(crate) async fn send_membership_text(
    platform: &Platform,
    room_id: &RoomId,
    server: &ServerName,
    membership: &str,
    pdu: &Pdu,
) -> Result<String, MatrixError> {
    let api = if membership == "knock" { "v1" } else { "v2" };
    let path = format!(
        "/_matrix/federation/{api}/send_{membership}/{}/{}",
        percent_encode(room_id.as_str()),
        percent_encode(pdu.event_id().as_str())
    );
    let body = into_json(pdu.json().clone());
    put_text(
        platform,
        server,
        &path,
        &body,
        &format!("send_{membership}"),
    )
    .await
}

/// A signed `PUT` of one of our events to another server, the answer as text; a refusal is a
/// 403 naming it.
pub(crate) async fn put_text(
    platform: &Platform,
    server: &ServerName,
    path: &str,
    body: &Value,
    what: &str,
) -> Result<String, MatrixError> {
    let (status, text) =
        crate::federation::outgoing::signed_text(platform, server, Method::Put, path, Some(body))
            .await?;
    if status != 200 {
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reason = answer["error"].as_str().unwrap_or("refused");
        return Err(MatrixError::forbidden(format!(
            "{server} refused {what}: {reason}"
        )));
    }
    Ok(text)
}
