//! `POST /rooms/{roomId}/upgrade`: replaces a room with a new one of another version (spec:
//! "Room Upgrades"). In order: the checks, the tombstone in the old room, the new room (its
//! events planned by `rooms::upgrade`), the old room's power levels restricted, local aliases,
//! the canonical alias and the directory listing moved.

use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ids;
use super::membership::{new_room_id, profile_content};
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::rooms::builder::EventTemplate;
use crate::rooms::command::{send_event, RoomCommand};
use crate::rooms::power::PowerLevels;
use crate::rooms::state::RoomState;
use crate::rooms::upgrade::{plan, restricted_levels};
use crate::rooms::RoomVersion;
use crate::storage::{directory, rooms as stored};
use crate::time::now_ms;

#[derive(Deserialize)]
struct UpgradeRequest {
    new_version: String,
    #[serde(default)]
    additional_creators: Vec<OwnedUserId>,
}

pub(crate) async fn upgrade(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let old_room_id = ids::room_id(ctx.param("roomId"))?;
    let request: UpgradeRequest = ctx.json()?;
    let version = RoomVersion::parse(&request.new_version).ok_or_else(|| {
        MatrixError::new(
            400,
            ErrorCode::UnsupportedRoomVersion,
            format!("Room version {} is not supported", request.new_version),
        )
    })?;
    let db = ctx.db();
    let not_in_room = || MatrixError::forbidden("You are not in this room");
    let (old_version, pdus) = stored::current_state(&db, old_room_id.as_str())
        .await?
        .ok_or_else(not_in_room)?;
    let mut old = RoomState::default();
    for pdu in pdus {
        old.apply(pdu);
    }
    let joined = old
        .get(&StateEventType::RoomMember, me.user_id.as_str())
        .and_then(|p| serde_json::from_str::<Value>(p.content().get()).ok())
        .is_some_and(|c| c["membership"] == "join");
    if !joined {
        return Err(not_in_room());
    }
    // Only who may send the tombstone may upgrade (checked again by the auth rules when the
    // tombstone is sent, but before anything is created).
    let levels = PowerLevels::from_state(&old, old_version);
    if levels.user_level(&me.user_id) < levels.event_level("m.room.tombstone", true) {
        return Err(MatrixError::forbidden(
            "You do not have the power to upgrade this room",
        ));
    }
    let profile = profile_content(&db, &me.user_id).await?;
    let planned = |last_event| {
        plan(
            &old,
            &old_room_id,
            last_event,
            &me.user_id,
            version,
            request.additional_creators.clone(),
            profile.clone(),
        )
        .map_err(|e| MatrixError::bad_json(e.0))
    };
    // The new room's id first: random before v12, the create event's hash from v12 (whose
    // predecessor names no event, so the create event is known before the tombstone).
    let origin_server_ts = now_ms();
    let first = planned(None)?;
    let new_room: OwnedRoomId = new_room_id(ctx, &me, version, &first[0], origin_server_ts).await?;
    let tombstone = send_event(
        &ctx.platform,
        &old_room_id,
        &me.user_id,
        EventTemplate::state(
            "m.room.tombstone",
            "",
            json!({ "body": "This room has been replaced", "replacement_room": new_room }),
        ),
        None,
    )
    .await?;
    let events = if version.room_id_from_create_event() {
        first
    } else {
        let tombstone =
            ruma::EventId::parse(&tombstone).map_err(|e| MatrixError::internal(e.to_string()))?;
        planned(Some(&tombstone))?
    };
    let published = directory::published(&db, old_room_id.as_str())
        .await?
        .unwrap_or(false);
    let command = RoomCommand::Create {
        room_version: version.as_str().to_owned(),
        room_id: new_room.clone(),
        creator: me.user_id.clone(),
        origin_server_ts,
        events,
        alias: None,
        publish: published,
    };
    ctx.platform
        .rooms
        .command(new_room.as_str(), &command)
        .await?;
    super::push::carry_over_on_join(ctx, &me.user_id, &new_room).await;

    // What follows tidies the old room. The upgrader may send a tombstone without having the
    // power to change the power levels or the canonical alias: such a refusal is logged and
    // the upgrade itself stands.
    if let Some(restricted) = restricted_levels(&old) {
        let event = EventTemplate::state("m.room.power_levels", "", restricted);
        if let Err(e) = send_event(&ctx.platform, &old_room_id, &me.user_id, event, None).await {
            crate::log_warn!("upgrade of {old_room_id}: restricting its power levels: {e}");
        }
    }
    directory::move_aliases(&db, old_room_id.as_str(), new_room.as_str()).await?;
    let canonical = old
        .get(&StateEventType::RoomCanonicalAlias, "")
        .and_then(|p| serde_json::from_str::<Value>(p.content().get()).ok())
        .filter(|c| c.get("alias").is_some() || c.get("alt_aliases").is_some());
    if let Some(content) = canonical {
        for (room, content) in [(&new_room, content), (&old_room_id, json!({}))] {
            let event = EventTemplate::state("m.room.canonical_alias", "", content);
            if let Err(e) = send_event(&ctx.platform, room, &me.user_id, event, None).await {
                crate::log_warn!("upgrade of {old_room_id}: canonical alias in {room}: {e}");
            }
        }
    }
    if published {
        directory::set_published(&db, old_room_id.as_str(), false).await?;
    }
    Ok(JsonResponse::ok(json!({ "replacement_room": new_room })))
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::{json, Value};

    use crate::testing::{call, TestServer};

    #[test]
    fn an_upgrade_replaces_the_room_and_needs_the_power_to_send_a_tombstone() {
        block_on(async {
            let server = TestServer::new();
            let (_, alice) = server.register("alice").await;
            let (_, bob) = server.register("bob").await;
            let (_, old) = call(
                &server,
                "POST",
                "/_matrix/client/v3/createRoom",
                &alice,
                json!({ "preset": "public_chat", "room_version": "9", "name": "old",
                        "room_alias_name": "moving" }),
            )
            .await;
            let old = old["room_id"].as_str().unwrap().to_owned();
            assert_eq!(
                call(
                    &server,
                    "POST",
                    &format!("/_matrix/client/v3/join/{old}"),
                    &bob,
                    json!({})
                )
                .await
                .0,
                200
            );
            let upgrade = format!("/_matrix/client/v3/rooms/{old}/upgrade");
            let (status, refused) = call(
                &server,
                "POST",
                &upgrade,
                &bob,
                json!({ "new_version": "12" }),
            )
            .await;
            assert_eq!(
                (status, refused["errcode"].as_str()),
                (403, Some("M_FORBIDDEN"))
            );
            let (status, refused) = call(
                &server,
                "POST",
                &upgrade,
                &alice,
                json!({ "new_version": "99" }),
            )
            .await;
            assert_eq!(
                (status, refused["errcode"].as_str()),
                (400, Some("M_UNSUPPORTED_ROOM_VERSION"))
            );

            let (status, answer) = call(
                &server,
                "POST",
                &upgrade,
                &alice,
                json!({ "new_version": "1" }),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            let new = answer["replacement_room"].as_str().unwrap().to_owned();
            let state = |room: String, kind: &'static str| {
                let (server, alice) = (&server, alice.clone());
                async move {
                    call(
                        server,
                        "GET",
                        &format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"),
                        &alice,
                        Value::Null,
                    )
                    .await
                    .1
                }
            };
            assert_eq!(
                state(old.clone(), "m.room.tombstone").await["replacement_room"],
                new.as_str()
            );
            let create = state(new.clone(), "m.room.create").await;
            assert_eq!(create["room_version"], "1");
            assert_eq!(create["predecessor"]["room_id"], old.as_str());
            assert!(create["predecessor"]["event_id"].is_string());
            assert_eq!(state(new.clone(), "m.room.name").await["name"], "old");
            assert_eq!(
                state(old.clone(), "m.room.power_levels").await["events_default"],
                50
            );
            // The alias and the canonical alias moved.
            let (_, resolved) = call(
                &server,
                "GET",
                "/_matrix/client/v3/directory/room/%23moving:test.local",
                &alice,
                Value::Null,
            )
            .await;
            assert_eq!(resolved["room_id"], new.as_str(), "{resolved}");
            assert!(state(new.clone(), "m.room.canonical_alias").await["alias"].is_string());
            // Bob, at level 0, may no longer speak in the old room.
            let (status, _) = call(
                &server,
                "PUT",
                &format!("/_matrix/client/v3/rooms/{old}/send/m.room.message/t1"),
                &bob,
                json!({ "msgtype": "m.text", "body": "hi" }),
            )
            .await;
            assert_eq!(status, 403);
        })
    }
}
