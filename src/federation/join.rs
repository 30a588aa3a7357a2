//! A local user's join of a room no user of ours is in (spec: joining rooms), as far as the
//! Worker takes it: the room is claimed (storage/join_claims.rs) while the first server's
//! template is asked for, our signed join goes out with `send_join`, and only then is the
//! room's object reached, with the answer to check and store (`RoomCommand::JoinAnswered`).
//! Reaching a room object that does not exist yet is the slow part of reaching one (it is
//! created first); done before `make_join`, it delayed all the resident server's work, and
//! so the moment the room's members see the join (docs/benchmarks.md, federation rows).
//!
//! A room someone else has claimed goes to the room object as before (`RoomCommand::
//! JoinRemote`): under its lock the object carries on the join under way, answers that one
//! is under way elsewhere, or says the room is ours already (the user then joins here).

use std::sync::Arc;

use ruma::{RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::handshake::{make_membership, send_membership_text};
use crate::http::{ErrorCode, MatrixError};
use crate::platform::Platform;
use crate::rooms::command::RoomCommand;
use crate::rooms::{Pdu, RoomVersion};
use crate::signing::event::into_json;
use crate::storage::{join_claims, Db};
use crate::time::now_ms;

/// Starts `user`'s join of `room_id` through `servers` (in turn); the room object's first
/// answer, as `RoomCommand::JoinRemote` answers.
pub(crate) async fn start(
    platform: &Platform,
    room_id: &RoomId,
    user: &UserId,
    servers: Vec<String>,
    content: Value,
) -> Result<Value, MatrixError> {
    let db = Db::new(platform);
    let started = now_ms();
    // The template is a read on the resident server: asked for while the claim is written, it
    // costs the join no wait, and is forgotten if the room turns out to be claimed.
    let first = servers.iter().find_map(|s| ServerName::parse(s).ok());
    let (claimed, template) = futures::join!(
        join_claims::claim(&db, room_id.as_str(), user.as_str(), started),
        async {
            match &first {
                Some(server) => Some(
                    make_membership(platform, room_id, user, server, "join", content.clone()).await,
                ),
                None => None,
            }
        }
    );
    if !claimed? {
        let start = RoomCommand::JoinRemote {
            room_id: room_id.to_owned(),
            user_id: user.to_owned(),
            servers,
            content,
        };
        return after_claim(platform, room_id, &start).await;
    }
    match through_servers(
        platform, room_id, user, &servers, content, template, started,
    )
    .await
    {
        // From here the room object owns the claim: it releases it when the join is over. An
        // answer lost on the way leaves the claim to expire (storage/join_claims.rs).
        Ok(command) => platform.rooms.command(room_id.as_str(), &command).await,
        Err(e) => {
            // Nothing was sent that the resident accepted: nothing is left behind.
            if let Err(release) = join_claims::release(&db, room_id.as_str()).await {
                crate::log_warn!("join of {room_id}: the claim stays until it expires: {release}");
            }
            Err(e)
        }
    }
}

/// Pauses between two looks at another user's handshake (`after_claim`): short first (a small
/// join takes tens of milliseconds), then longer; about 9 s in all.
const HANDSHAKE_WAITS_MS: [u64; 12] = [10, 20, 40, 80, 160, 250, 500, 1000, 1500, 1500, 2000, 2000];

/// The join of a room someone has claimed (`start`, a `JoinRemote`), through the room object:
/// it carries on the job under way, or says the room is stored (the user then joins it here),
/// or that a Worker still runs the claimant's handshake (`"handshake": true`): then this join
/// waits and looks again (two D1 reads, no request to the resident). A claim released in
/// between without a room stored (that join failed) leaves the room to this join.
async fn after_claim(
    platform: &Platform,
    room_id: &RoomId,
    start: &RoomCommand,
) -> Result<Value, MatrixError> {
    let look = RoomCommand::ContinueJoin {
        room_id: room_id.to_owned(),
        in_background: false,
    };
    let mut answer = platform.rooms.command(room_id.as_str(), start).await?;
    for wait in HANDSHAKE_WAITS_MS {
        if answer["handshake"] != json!(true) {
            return Ok(answer);
        }
        platform.http.sleep(wait).await;
        answer = match platform.rooms.command(room_id.as_str(), &look).await {
            // Neither a job, nor the room, nor a claim: the other join failed.
            Err(e) if e.status == 404 => platform.rooms.command(room_id.as_str(), start).await?,
            other => other?,
        };
    }
    if answer["handshake"] == json!(true) {
        return Err(MatrixError::new(
            429,
            ErrorCode::LimitExceeded,
            "Another user's join of this room is under way; try again shortly",
        ));
    }
    Ok(answer)
}

/// `make_join` and `send_join` against each server in turn until one accepts our join; the
/// command that hands its answer to the room object.
async fn through_servers(
    platform: &Platform,
    room_id: &RoomId,
    user: &UserId,
    servers: &[String],
    content: Value,
    template: Option<Result<(RoomVersion, Arc<Pdu>), MatrixError>>,
    started: u64,
) -> Result<RoomCommand, MatrixError> {
    let mut template = template;
    super::through_servers(servers, "join", room_id, |at, server| {
        // The first parsable server's template was asked for already.
        let asked = template.take();
        let content = content.clone();
        async move {
            let (version, join) = match asked {
                Some(template) => template?,
                None => {
                    make_membership(platform, room_id, user, &server, "join", content.clone())
                        .await?
                }
            };
            let made = now_ms();
            // Parsed by the room object only: an answer it cannot use is a verdict there, and
            // the servers left are tried from there.
            let answer = send_membership_text(platform, room_id, &server, "join", &join).await?;
            let answered_at = now_ms();
            Ok(RoomCommand::JoinAnswered {
                room_id: room_id.to_owned(),
                user_id: user.to_owned(),
                server,
                fallback: servers[at + 1..].to_vec(),
                content,
                room_version: version.as_str().to_owned(),
                join_event: into_json(join.json().clone()),
                answer,
                answered_at,
                timing: vec![
                    ("make_join".to_owned(), made - started),
                    ("send_join".to_owned(), answered_at - made),
                ],
            })
        }
    })
    .await
}
