//! `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: another server invites one of our
//! users. We check the event (an invite of an existing local user, signed by the inviting server,
//! with the id in the path), co-sign it, and keep it so the invitee's sync shows the invite.
//! What fails those checks is `M_INVALID_PARAM`, as the spec asks. The v1 endpoint is only for
//! room versions 1 and 2, which this server does not speak.

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::command::RoomCommand;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::{accounts, signing_keys};
use crate::time::now_ms;

pub(crate) async fn invite(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let origin = ctx.origin().await?;
    let room_id = RoomId::parse(ctx.param("roomId"))
        .map_err(|_| MatrixError::invalid_param("not a room id"))?;
    // A room we know may deny the inviting server (an unknown room has no ACL here yet).
    super::endpoints::require_acl(ctx, &room_id, &origin).await?;
    let body = ctx.json_object()?;
    let version = body
        .get("room_version")
        .and_then(Value::as_str)
        .and_then(RoomVersion::parse)
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrorCode::IncompatibleRoomVersion,
                "This server does not support the room's version",
            )
        })?;
    let event = body
        .get("event")
        .cloned()
        .ok_or_else(|| MatrixError::bad_json("event is required"))?;
    let object = crate::signing::to_canonical_object(event)
        .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let pdu = Pdu::from_json(object.clone(), version)
        .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if pdu.event_id().as_str() != ctx.param("eventId") || pdu.room_id() != room_id {
        return Err(MatrixError::invalid_param(
            "the event does not match the path",
        ));
    }
    let invitee = pdu.state_key().and_then(|k| UserId::parse(k).ok());
    let is_invite = pdu.kind().to_string() == "m.room.member"
        && serde_json::from_str::<Value>(pdu.content().get())
            .ok()
            .and_then(|c| c["membership"].as_str().map(str::to_owned))
            .as_deref()
            == Some("invite");
    let Some(invitee) = invitee.filter(|u| is_invite && u.server_name() == ctx.config.server_name)
    else {
        return Err(MatrixError::invalid_param(
            "not an invite of a user of this server",
        ));
    };
    if pdu.sender().server_name() != origin {
        return Err(MatrixError::invalid_param(
            "The inviter is not on the requesting server",
        ));
    }
    let db = ctx.db();
    if !accounts::user_exists(&db, invitee.as_str()).await? {
        return Err(MatrixError::not_found("Unknown user"));
    }
    // The inviting server's signature (and hash) must hold before we add ours.
    let object = super::key_server::verify_pdu(&ctx.platform, &db, object, version, now_ms())
        .await
        .map_err(|e| MatrixError::invalid_param(format!("bad signature on the invite: {e}")))?;
    let ours = signing_keys::server_keys(&ctx.platform).await?;
    let signed = crate::signing::event::hash_and_sign(
        ctx.config.server_name.as_str(),
        &ours.current,
        crate::signing::event::into_json(object),
        &version.rules(),
    )
    .map_err(|e| MatrixError::internal(e.to_string()))?;
    let signed = crate::signing::event::into_json(signed);
    let invite_state = body
        .get("invite_room_state")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let command = RoomCommand::ReceiveInvite {
        room_id: room_id.clone(),
        room_version: version.as_str().to_owned(),
        event: signed.clone(),
        invite_state,
    };
    ctx.platform
        .rooms
        .command(room_id.as_str(), &command)
        .await?;
    Ok(JsonResponse::ok(json!({ "event": signed })))
}

/// `PUT /_matrix/federation/v1/invite/{roomId}/{eventId}`. The spec: "Servers which receive a v1
/// invite request must assume that the room version is either 1 or 2"; we speak neither, so the
/// answer is the one v2 gives for a version we lack. Authenticated like any federation request.
pub(crate) async fn invite_v1(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.origin().await?;
    Err(MatrixError::new(
        400,
        ErrorCode::IncompatibleRoomVersion,
        "A v1 invite is for room versions 1 and 2, which this server does not support",
    ))
}
