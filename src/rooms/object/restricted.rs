//! Restricted joins (room versions 8+, `restricted`; 10+, `knock_restricted`; spec: "Restricted
//! rooms"): a user not invited may join when they are in one of the rooms the join rules'
//! `allow` list names. The auth rules only check that the join names a member with the power to
//! invite in `join_authorised_via_users_server`; checking the `allow` list is the job of the
//! server that picks that member, this one for its users' local joins and for `make_join`/
//! `send_join` of other servers' users.

use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedUserId, ServerName, UserId};
use serde_json::{json, Value};

use super::remote_join::co_signed;
use super::{joined_users, RoomObject};
use crate::federation::handshake;
use crate::http::{ErrorCode, MatrixError};
use crate::rooms::engine::RoomEngine;
use crate::rooms::join_job::SendJoinAnswer;
use crate::rooms::power::PowerLevels;
use crate::signing::event::into_json;
use crate::storage::rooms as stored;
use crate::storage::Db;

/// What a join of `user` needs under the room's join rules, read from the engine.
pub(super) enum RestrictedJoin {
    /// Not a restricted room, or the user is invited or joined already: a plain join.
    NotNeeded,
    /// The rooms of the `allow` list, and the local members able to authorise, best first.
    Needed {
        allowed_rooms: Vec<String>,
        authorisers: Vec<OwnedUserId>,
    },
}

pub(super) fn restricted_join(
    engine: &RoomEngine,
    user: &UserId,
    us: &ServerName,
) -> RestrictedJoin {
    let version = engine.version();
    let rules = version.rules().authorization;
    let content = engine
        .state()
        .get(&StateEventType::RoomJoinRules, "")
        .and_then(|p| serde_json::from_str::<Value>(p.content().get()).ok())
        .unwrap_or_default();
    let restricted = match content["join_rule"].as_str() {
        Some("restricted") => rules.restricted_join_rule,
        Some("knock_restricted") => rules.knock_restricted_join_rule,
        _ => false,
    };
    let current = engine
        .state()
        .get(&StateEventType::RoomMember, user.as_str())
        .and_then(|p| p.membership());
    if !restricted || matches!(current.as_deref(), Some("join" | "invite")) {
        return RestrictedJoin::NotNeeded;
    }
    let allowed_rooms = content["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "m.room_membership")
        .filter_map(|a| a["room_id"].as_str().map(str::to_owned))
        .collect();
    let levels = PowerLevels::from_state(engine.state(), version);
    let mut authorisers: Vec<(i64, OwnedUserId)> = joined_users(engine.state().events())
        .filter(|u| u.server_name() == us)
        .map(|u| (levels.user_level(&u), u))
        .filter(|(level, _)| *level >= levels.invite_level())
        .collect();
    authorisers.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    RestrictedJoin::Needed {
        allowed_rooms,
        authorisers: authorisers.into_iter().map(|(_, u)| u).collect(),
    }
}

/// Whether `user` is joined to one of `allowed_rooms`, as this server's copy of them says.
/// Only a room this server is still in counts: the copy of a room it has left stops at its
/// leave, so a member who left since would still look joined. Refuses with the spec's code
/// when it cannot say (it is in none of them) or the user is in none of them.
pub(crate) async fn check_allowed(
    db: &Db,
    allowed_rooms: &[String],
    user: &UserId,
    us: &ServerName,
) -> Result<(), MatrixError> {
    let mut held_any = false;
    for room in allowed_rooms {
        if crate::storage::sync::members_of_server(db, room, us.as_str()).await? == 0 {
            continue;
        }
        held_any = true;
        if stored::membership(db, room, user.as_str())
            .await?
            .as_deref()
            == Some("join")
        {
            return Ok(());
        }
    }
    // An empty allow list lets nobody in: no other server could tell more than we can.
    if held_any || allowed_rooms.is_empty() {
        Err(MatrixError::forbidden(
            "You are not in any of the rooms whose members may join this room",
        ))
    } else {
        Err(MatrixError::new(
            400,
            ErrorCode::UnableToAuthoriseJoin,
            "This server cannot tell whether you are in a room whose members may join",
        ))
    }
}

impl RoomObject {
    /// The member of ours who authorises `user`'s join (`join_authorised_via_users_server`),
    /// once the `allow` list is checked; `None` when the join needs none. The engine must be
    /// loaded.
    pub(super) async fn join_authoriser(
        &self,
        db: &Db,
        user: &UserId,
        us: &ServerName,
    ) -> Result<Option<OwnedUserId>, MatrixError> {
        let needed = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            restricted_join(engine, user, us)
        };
        let RestrictedJoin::Needed {
            allowed_rooms,
            authorisers,
        } = needed
        else {
            return Ok(None);
        };
        check_allowed(db, &allowed_rooms, user, us).await?;
        match authorisers.into_iter().next() {
            Some(authoriser) => Ok(Some(authoriser)),
            None => Err(MatrixError::new(
                400,
                ErrorCode::UnableToGrantJoin,
                "No member of this server may authorise the join",
            )),
        }
    }
}

impl RoomObject {
    /// A `send_join` event that names a member of ours as its authoriser: checked as
    /// `make_join` checked it (the member may authorise, the joining user is in an allowed
    /// room), then signed by us, as the auth rules require from room version 8. Other events
    /// pass unchanged. The engine must be loaded.
    pub(super) async fn co_sign_restricted_join(
        &self,
        db: &Db,
        raw: Value,
    ) -> Result<Value, MatrixError> {
        let config = self.platform.config()?;
        let us = config.server_name.as_ref();
        let Some(authoriser) = raw["content"]["join_authorised_via_users_server"]
            .as_str()
            .and_then(|u| UserId::parse(u).ok())
            .filter(|u| u.server_name() == us)
        else {
            return Ok(raw);
        };
        let sender = raw["sender"]
            .as_str()
            .and_then(|u| UserId::parse(u).ok())
            .ok_or_else(|| MatrixError::bad_json("the join has no valid sender"))?;
        let (needed, version) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            (restricted_join(engine, &sender, us), engine.version())
        };
        let RestrictedJoin::Needed {
            allowed_rooms,
            authorisers,
        } = needed
        else {
            // Invited or joined already, or not restricted: our signature is not needed, and
            // the auth rules decide as for any join.
            return Ok(raw);
        };
        if !authorisers.contains(&authoriser) {
            return Err(MatrixError::forbidden(format!(
                "{authoriser} may not authorise joins to this room"
            )));
        }
        check_allowed(db, &allowed_rooms, &sender, us).await?;
        let keys = crate::storage::signing_keys::server_keys(&self.platform).await?;
        // Hashing again leaves a correct content hash as it is; a wrong one would change and
        // then fail the joining server's own signature, so nothing forged gets through.
        let signed =
            crate::signing::event::hash_and_sign(us.as_str(), &keys.current, raw, &version.rules())
                .map_err(|e| MatrixError::bad_json(e.to_string()))?;
        Ok(crate::signing::event::into_json(signed))
    }
}

impl RoomObject {
    /// `RoomCommand::JoinThrough`: the resident servers' handshake for a room we hold, the
    /// join then accepted through the same pipeline as any event from that server.
    pub(super) async fn join_through(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        servers: Vec<String>,
        content: Value,
    ) -> Result<Value, MatrixError> {
        let room = &room_id;
        let (server, join) =
            crate::federation::through_servers(&servers, "join", room, |_, server| {
                let content = content.clone();
                async move {
                    let (version, join) = handshake::make_membership(
                        &self.platform,
                        room,
                        user,
                        &server,
                        "join",
                        content,
                    )
                    .await?;
                    let text = handshake::send_membership_text(
                        &self.platform,
                        room,
                        &server,
                        "join",
                        &join,
                    )
                    .await?;
                    let answer: SendJoinAnswer = serde_json::from_str(&text).map_err(|e| {
                        MatrixError::new(
                            502,
                            ErrorCode::Unknown,
                            format!("{server}: not a send_join answer: {e}"),
                        )
                    })?;
                    let join = co_signed(join, answer.event.as_deref(), version);
                    Ok((server, join))
                }
            })
            .await?;
        let event_id = join.event_id().to_owned();
        let answer = self
            .remote(
                room_id.clone(),
                server.as_str(),
                vec![into_json(join.json().clone())],
                None,
            )
            .await?;
        if let Some(error) = answer["pdus"][event_id.as_str()]["error"].as_str() {
            return Err(MatrixError::forbidden(format!(
                "the join {server} authorised was refused here: {error}"
            )));
        }
        Ok(json!({ "event_id": event_id }))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::{json, Value};

    use crate::testing::{call, TestServer};

    #[test]
    fn local_joins_of_a_restricted_room_need_membership_of_an_allowed_room() {
        block_on(async {
            let server = TestServer::new();
            let (alice_id, alice) = server.register("alice").await;
            let (bob_id, bob) = server.register("bob").await;
            let create = |body: Value| {
                call(
                    &server,
                    "POST",
                    "/_matrix/client/v3/createRoom",
                    &alice,
                    body,
                )
            };
            let (_, lobby) = create(json!({ "preset": "public_chat" })).await;
            let lobby = lobby["room_id"].as_str().unwrap().to_owned();
            let allow = json!([{ "type": "m.room_membership", "room_id": lobby }]);
            let (status, room) = create(json!({
                "room_version": "8",
                "initial_state": [{ "type": "m.room.join_rules", "state_key": "",
                    "content": { "join_rule": "restricted", "allow": allow } }],
            }))
            .await;
            assert_eq!(status, 200, "{room}");
            let room = room["room_id"].as_str().unwrap().to_owned();
            let join = |room: String| {
                let (server, bob) = (&server, bob.clone());
                async move {
                    call(
                        server,
                        "POST",
                        &format!("/_matrix/client/v3/join/{room}"),
                        &bob,
                        json!({}),
                    )
                    .await
                }
            };

            let (status, refused) = join(room.clone()).await;
            assert_eq!(
                (status, refused["errcode"].as_str()),
                (403, Some("M_FORBIDDEN")),
                "{refused}"
            );
            assert_eq!(join(lobby.clone()).await.0, 200);
            // The client names an authoriser of its own: the server's choice replaces it.
            let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{bob_id}");
            let content =
                json!({ "membership": "join", "join_authorised_via_users_server": bob_id });
            let (status, answer) = call(&server, "PUT", &path, &bob, content).await;
            assert_eq!(status, 200, "{answer}");
            let (_, member) = call(&server, "GET", &path, &bob, Value::Null).await;
            assert_eq!(member["membership"], "join");
            assert_eq!(
                member["join_authorised_via_users_server"],
                alice_id.as_str()
            );

            // A join -> join change needs no authoriser: the field is dropped.
            let content = json!({ "membership": "join", "displayname": "B",
                "join_authorised_via_users_server": "unused" });
            assert_eq!(call(&server, "PUT", &path, &bob, content).await.0, 200);
            let (_, member) = call(&server, "GET", &path, &bob, Value::Null).await;
            assert_eq!(
                (
                    member["displayname"].as_str(),
                    member.get("join_authorised_via_users_server")
                ),
                (Some("B"), None)
            );

            // The summary names the allowed room.
            let (_, summary) = call(
                &server,
                "GET",
                &format!("/_matrix/client/v1/room_summary/{room}"),
                &bob,
                Value::Null,
            )
            .await;
            assert_eq!(summary["allowed_room_ids"], json!([lobby]));
        })
    }

    #[test]
    fn only_allowed_rooms_this_server_is_still_in_can_vouch_for_a_member() {
        block_on(async {
            let server = TestServer::new();
            let (alice_id, alice) = server.register("alice").await;
            let lobby = crate::testing::create_room(&server, &alice, json!({})).await;
            let db = crate::storage::Db::new(&server.platform);
            let us = ruma::ServerName::parse(crate::testing::SERVER_NAME).unwrap();
            let alice_id = ruma::UserId::parse(alice_id).unwrap();
            let allowed = [lobby.clone()];
            assert!(super::check_allowed(&db, &allowed, &alice_id, &us)
                .await
                .is_ok());
            let leave = format!("/_matrix/client/v3/rooms/{lobby}/leave");
            assert_eq!(
                call(&server, "POST", &leave, &alice, json!({})).await.0,
                200
            );
            // Our copy still shows her leave, but a server that left a room cannot know who
            // joined since: another server must decide.
            let refused = super::check_allowed(&db, &allowed, &alice_id, &us)
                .await
                .unwrap_err();
            assert_eq!(refused.code, crate::http::ErrorCode::UnableToAuthoriseJoin);
            let unknown = ["!unknown:elsewhere".to_owned()];
            let refused = super::check_allowed(&db, &unknown, &alice_id, &us)
                .await
                .unwrap_err();
            assert_eq!(refused.code, crate::http::ErrorCode::UnableToAuthoriseJoin);
            // Nobody is let in by an empty allow list.
            let refused = super::check_allowed(&db, &[], &alice_id, &us)
                .await
                .unwrap_err();
            assert_eq!(refused.status, 403);
        })
    }
}
