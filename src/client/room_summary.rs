//! `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (spec v1.15, MSC3266): what a room
//! preview shows before joining (Element X asks it for invites and links). The fields are those
//! of a space hierarchy entry (`client/hierarchy.rs`), plus the requester's membership, the room
//! version and the encryption algorithm. Only rooms this server holds are summarised, and only
//! to members, invitees and knockers, or when the room is world readable, public or knockable;
//! every other case is `M_NOT_FOUND`, so a preview never tells a private room exists.
//! Authentication is required here (the spec makes it optional).

use serde_json::json;

use super::{hierarchy, ids};
use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::{events, rooms};

pub(crate) async fn room_summary(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let db = ctx.db();
    let raw = ctx.param("roomIdOrAlias");
    let unknown = || MatrixError::not_found("Room not found");
    let room_id = if raw.starts_with('#') {
        let alias = ids::alias(raw)?;
        rooms::alias_room(&db, alias.as_str())
            .await?
            .ok_or_else(unknown)?
    } else {
        ids::room_id(raw)?.to_string()
    };
    let user = me.user_id.as_str();
    let (loaded, membership, version, encryption) = futures::join!(
        hierarchy::load_rooms(&db, std::slice::from_ref(&room_id), user, ""),
        rooms::membership(&db, &room_id, user),
        rooms::room_version(&db, &room_id),
        events::current_state_content(&db, &room_id, "m.room.encryption", ""),
    );
    let (mut loaded, membership, version, encryption) =
        (loaded?, membership?, version?, encryption?);
    let Some(Some(room)) = loaded.remove(&room_id) else {
        return Err(unknown());
    };
    let involved = matches!(membership.as_deref(), Some("join" | "invite" | "knock"));
    if !room.accessible() && !involved {
        return Err(unknown());
    }
    let mut body = room.summary;
    if let Some(membership) = membership {
        body["membership"] = json!(membership);
    }
    if let Some(version) = version {
        body["room_version"] = json!(version.as_str());
    }
    if let Some(algorithm) = encryption.as_ref().and_then(|c| c["algorithm"].as_str()) {
        body["encryption"] = json!(algorithm);
    }
    Ok(JsonResponse::ok(body))
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use crate::testing::TestServer;

    #[test]
    fn summaries_for_members_invitees_and_public_rooms_only() {
        block_on(async {
            let server = TestServer::new();
            let (_, alice) = server.register("alice").await;
            let (bob_id, bob) = server.register("bob").await;
            let (_, carol) = server.register("carol").await;
            let create = |body: serde_json::Value| {
                let server = &server;
                let alice = alice.clone();
                async move {
                    let (status, answer) = server
                        .request(
                            "POST",
                            "/_matrix/client/v3/createRoom",
                            Some(&alice),
                            Some(body),
                        )
                        .await;
                    assert_eq!(status, 200, "{answer}");
                    answer["room_id"].as_str().unwrap().to_owned()
                }
            };
            let private = create(json!({
                "name": "Private", "invite": [bob_id],
                "initial_state": [{ "type": "m.room.encryption", "state_key": "",
                                    "content": { "algorithm": "m.megolm.v1.aes-sha2" } }]
            }))
            .await;
            let public = create(
                json!({ "preset": "public_chat", "name": "Open", "room_alias_name": "open" }),
            )
            .await;
            let summary = |token: String, room: String| {
                let server = &server;
                async move {
                    let path = format!("/_matrix/client/v1/room_summary/{room}");
                    server.request("GET", &path, Some(&token), None).await
                }
            };
            let (status, invited) = summary(bob.clone(), private.clone()).await;
            assert_eq!(status, 200, "{invited}");
            assert_eq!(invited["name"], "Private");
            assert_eq!(invited["membership"], "invite");
            assert_eq!(invited["encryption"], "m.megolm.v1.aes-sha2");
            assert_eq!(invited["join_rule"], "invite");
            assert_eq!(invited["num_joined_members"], 1);
            assert!(invited["room_version"].is_string());
            // A stranger learns nothing of the private room, not even that it exists.
            let (status, hidden) = summary(carol.clone(), private.clone()).await;
            assert_eq!(
                (status, hidden["errcode"].as_str()),
                (404, Some("M_NOT_FOUND"))
            );
            let (status, open) = summary(carol.clone(), public.clone()).await;
            assert_eq!(status, 200, "{open}");
            assert_eq!(open["join_rule"], "public");
            assert!(open.get("membership").is_none());
            let alias = open["canonical_alias"]
                .as_str()
                .unwrap()
                .replace('#', "%23");
            let (status, by_alias) = summary(carol, alias).await;
            assert_eq!(status, 200, "{by_alias}");
            assert_eq!(by_alias["room_id"], public);
        });
    }
}
