//! Creating rooms and changing membership: createRoom, join, leave, invite, kick, ban, unban,
//! forget. Every change is an event the room's Durable Object builds and authorises.

use ruma::{OwnedRoomId, RoomId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ids;
use crate::accounts::tokens::new_opaque_id;
use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::platform::Method;
use crate::rooms::builder::EventTemplate;
use crate::rooms::command::send_event;
use crate::rooms::command::RoomCommand;
use crate::rooms::create::{member_content, plan, CreateRoomRequest};
use crate::rooms::engine::{LocalServer, RoomEngine};
use crate::rooms::RoomVersion;
use crate::storage::rooms as stored;
use crate::storage::{signing_keys, user_data, Db};
use crate::time::now_ms;

/// The displayname and avatar a local user's membership events carry.
pub(crate) async fn profile_content(db: &Db, user_id: &UserId) -> Result<Value, MatrixError> {
    let profile = user_data::profile(db, user_id.as_str())
        .await?
        .unwrap_or_default();
    Ok(membership_profile(&profile))
}

fn membership_profile(profile: &user_data::Profile) -> Value {
    json!({ "displayname": profile.displayname, "avatar_url": profile.avatar_url })
}

pub(crate) async fn create_room(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Join).await?;
    let request: CreateRoomRequest = ctx.json()?;
    let db = ctx.db();
    let version = match &request.room_version {
        Some(v) => RoomVersion::parse(v).ok_or_else(|| {
            MatrixError::new(
                400,
                ErrorCode::UnsupportedRoomVersion,
                format!("Room version {v} is not supported"),
            )
        })?,
        None => ctx.config.default_room_version,
    };
    let alias = match &request.room_alias_name {
        Some(name) => {
            let alias = ids::alias(&format!("#{name}:{}", ctx.config.server_name))?;
            crate::appservice::endpoints::check_alias(ctx, &me, alias.as_str(), false).await?;
            if stored::alias_room(&db, alias.as_str()).await?.is_some() {
                return Err(MatrixError::new(
                    400,
                    ErrorCode::RoomInUse,
                    "The room alias is already taken",
                ));
            }
            Some(alias.to_string())
        }
        None => None,
    };
    let (local_invitees, remote_invitees): (Vec<_>, Vec<_>) = request
        .invite
        .iter()
        .partition(|u| u.server_name() == ctx.config.server_name);
    for invitee in &local_invitees {
        if !crate::appservice::queries::local_user_exists(ctx, invitee.as_str()).await? {
            return Err(MatrixError::not_found(format!("Unknown user {invitee}")));
        }
    }
    let mut events = plan(
        &request,
        &me.user_id,
        version,
        alias.as_deref(),
        profile_content(&db, &me.user_id).await?,
    )
    .map_err(|e| MatrixError::bad_json(e.0))?;
    for invitee in &local_invitees {
        events.push(EventTemplate::state(
            "m.room.member",
            invitee.as_str(),
            member_content("invite", json!({}), request.is_direct),
        ));
    }
    let origin_server_ts = now_ms();
    let room_id = new_room_id(ctx, &me, version, &events[0], origin_server_ts).await?;
    let command = RoomCommand::Create {
        room_version: version.as_str().to_owned(),
        room_id: room_id.clone(),
        creator: me.user_id.clone(),
        origin_server_ts,
        events,
        alias,
        publish: request.is_public(),
    };
    ctx.platform
        .rooms
        .command(room_id.as_str(), &command)
        .await?;
    // A room made by hand to replace another (`creation_content.predecessor`, spec: room
    // upgrades done by clients) carries the creator's push rules over, as an upgrade does.
    if request
        .creation_content
        .as_ref()
        .is_some_and(|c| c.get("predecessor").is_some())
    {
        super::push::carry_over_on_join(ctx, &me.user_id, &room_id).await;
    }
    // Invites to other servers need their server's signature: each is its own round trip,
    // after the room exists. A refused one does not undo the room.
    for invitee in remote_invitees {
        let content = member_content("invite", json!({}), request.is_direct);
        let event = EventTemplate::state("m.room.member", invitee.as_str(), content);
        if let Err(e) = send_event(&ctx.platform, &room_id, &me.user_id, event, None).await {
            crate::log_warn!("invite of {invitee} to {room_id} failed: {e}");
        }
    }
    Ok(JsonResponse::ok(json!({ "room_id": room_id })))
}

/// Up to v11 a room id is random; from v12 it is the create event's hash, so the create event
/// is built here once to learn it (the room object builds the same bytes again: signing is
/// deterministic) and the command goes to the object named by that id.
pub(crate) async fn new_room_id(
    ctx: &Ctx,
    me: &Requester,
    version: RoomVersion,
    create: &EventTemplate,
    origin_server_ts: u64,
) -> Result<OwnedRoomId, MatrixError> {
    if !version.room_id_from_create_event() {
        return ids::room_id(&format!("!{}:{}", new_opaque_id(), ctx.config.server_name));
    }
    let keys = signing_keys::server_keys(&ctx.platform).await?;
    let server = LocalServer {
        name: &ctx.config.server_name,
        key: &keys.current,
    };
    let pdu = RoomEngine::new(version, None)
        .prepare_local(&me.user_id, create.clone(), origin_server_ts, &server)
        .map_err(|e| MatrixError::bad_json(format!("{e:?}")))?;
    Ok(pdu.room_id())
}

/// A room id from a path parameter that may also be an alias of this server.
/// The room an id or alias names, and the servers named to join it through: the client's `via`
/// (and older `server_name`) hints, the alias server's answer.
async fn resolve_room(
    ctx: &Ctx,
    id_or_alias: &str,
) -> Result<(OwnedRoomId, Vec<String>), MatrixError> {
    let mut servers: Vec<String> = ctx
        .query_all("via")
        .into_iter()
        .chain(ctx.query_all("server_name"))
        .map(str::to_owned)
        .collect();
    let room_id = if id_or_alias.starts_with('#') {
        let alias = ids::alias(id_or_alias)?;
        if alias.server_name() == ctx.config.server_name {
            let mut room = stored::alias_room(&ctx.db(), alias.as_str()).await?;
            if room.is_none()
                && crate::appservice::queries::ask_for_alias(ctx, alias.as_str()).await?
            {
                room = stored::alias_room(&ctx.db(), alias.as_str()).await?;
            }
            let room = room.ok_or_else(|| MatrixError::not_found("Unknown room alias"))?;
            ids::room_id(&room)?
        } else {
            let (room, via) = remote_alias(ctx, &alias).await?;
            servers.extend(via);
            room
        }
    } else {
        ids::room_id(id_or_alias)?
    };
    servers.dedup();
    servers.retain(|s| s != ctx.config.server_name.as_str());
    Ok((room_id, servers))
}

/// Asks the alias's server which room it names (`/query/directory`).
async fn remote_alias(
    ctx: &Ctx,
    alias: &ruma::RoomAliasId,
) -> Result<(OwnedRoomId, Vec<String>), MatrixError> {
    let encoded = crate::http::route::percent_encode(alias.as_str());
    let path = format!("/_matrix/federation/v1/query/directory?room_alias={encoded}");
    let (status, body) = crate::federation::outgoing::signed(
        &ctx.platform,
        alias.server_name(),
        Method::Get,
        &path,
        None,
    )
    .await?;
    if status != 200 {
        return Err(MatrixError::not_found("Unknown room alias"));
    }
    let room = ids::room_id(body["room_id"].as_str().unwrap_or_default())?;
    let servers = body["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    Ok((room, servers))
}

/// Joins or knocks (`membership`): through the room's object when a user of ours is in the
/// room, else through the servers that hold it.
/// `entry` is what `stored::entry` read of the room and the user.
async fn enter(
    ctx: &Ctx,
    room_id: &RoomId,
    servers: Vec<String>,
    me: &Requester,
    membership: &str,
    reason: Option<String>,
    entry: stored::Entry,
) -> Result<JsonResponse, MatrixError> {
    let mut content = member_content(membership, membership_profile(&entry.profile), false);
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let known = entry.version.is_some();
    let us = ctx.config.server_name.as_str();
    if !entry.resident {
        // Nobody here is in the room (or it is unknown): its servers hold the current state.
        // Servers the client (or the alias) names are the ones to go through, in that order,
        // so a join none of them can authorise fails rather than going round them (spec: the
        // `via` of `/join`); the inviting server is added, as it holds the room. Only when
        // none is named are the servers of our old copy and the room id's server tried (a
        // room id's server need not be in the room: the last guess).
        let named = !servers.is_empty();
        let mut servers = servers;
        if known {
            servers.extend(remote_servers_of(ctx, room_id, me, !named).await?);
        }
        if !named {
            servers.extend(room_id.server_name().map(|s| s.to_string()));
            servers.retain(|s| s != us);
        }
        if servers.is_empty() && known {
            return local_membership(ctx, room_id, me, content).await;
        }
        if servers.is_empty() {
            return Err(MatrixError::not_found(
                "Unknown room, and no server to ask for it",
            ));
        }
        let command = if membership == "join" {
            return join_remote(ctx, room_id, me, servers, content).await;
        } else {
            RoomCommand::RemoteMembership {
                room_id: room_id.to_owned(),
                user_id: me.user_id.clone(),
                servers,
                membership: membership.to_owned(),
                content,
            }
        };
        ctx.platform
            .rooms
            .command(room_id.as_str(), &command)
            .await?;
        return Ok(JsonResponse::ok(json!({ "room_id": room_id })));
    }
    match local_membership(ctx, room_id, me, content.clone()).await {
        // A restricted room whose allow list we cannot check, or where none of our members
        // may authorise the join: another server in the room may (spec: restricted rooms).
        Err(e)
            if membership == "join"
                && matches!(
                    e.code,
                    ErrorCode::UnableToGrantJoin | ErrorCode::UnableToAuthoriseJoin
                ) =>
        {
            let mut servers = servers;
            servers.extend(remote_servers_of(ctx, room_id, me, true).await?);
            let mut seen = std::collections::HashSet::new();
            servers.retain(|s| s != us && seen.insert(s.clone()));
            if servers.is_empty() {
                return Err(e);
            }
            let command = RoomCommand::JoinThrough {
                room_id: room_id.to_owned(),
                user_id: me.user_id.clone(),
                servers,
                content,
            };
            ctx.platform
                .rooms
                .command(room_id.as_str(), &command)
                .await?;
            Ok(JsonResponse::ok(json!({ "room_id": room_id })))
        }
        other => other,
    }
}

/// Steps of a remote join one client request asks for. Each is a Durable Object request, and
/// the free plan allows 50 subrequests per request: a room too big to be stored within this
/// many steps (16,000 events at the default step size) is finished by the room object's alarm.
const JOIN_STEPS_PER_REQUEST: usize = 32;

/// Joins a room another server holds. This request runs `make_join` and `send_join` itself
/// (src/federation/join.rs); the room's object checks and stores the resident server's answer
/// in steps (`rooms::join_job`), and this request asks for one step after another
/// until the room is stored, so the client sees the join complete or fail. Should this request
/// end early, the object's alarm finishes the join, and a retried `/join` carries it on.
///
/// A room that needs more steps is left to the alarm once the resident server has accepted
/// our join and its answer has passed the steps so far, and the client is told it joined, as
/// Synapse answers a partial-state join: the room shows up in its sync when the last step has
/// stored it.
async fn join_remote(
    ctx: &Ctx,
    room_id: &RoomId,
    me: &Requester,
    servers: Vec<String>,
    content: Value,
) -> Result<JsonResponse, MatrixError> {
    let start = crate::federation::join::start(
        &ctx.platform,
        room_id,
        &me.user_id,
        servers,
        content.clone(),
    );
    let mut answer = match start.await {
        // A join finished between our residency check and the room object: join here.
        Err(e) if e.status == 409 => json!({ "room_id": room_id, "user_id": Value::Null }),
        other => other?,
    };
    let next = |in_background| RoomCommand::ContinueJoin {
        room_id: room_id.to_owned(),
        in_background,
    };
    let mut steps = 0;
    while answer["pending"] == json!(true) {
        if steps == JOIN_STEPS_PER_REQUEST {
            ctx.platform
                .rooms
                .command(room_id.as_str(), &next(true))
                .await?;
            if answer["user_id"] != json!(me.user_id) {
                return Err(MatrixError::new(
                    429,
                    ErrorCode::LimitExceeded,
                    "Another user's join of this room is under way; try again shortly",
                ));
            }
            return Ok(JsonResponse::ok(json!({ "room_id": room_id })));
        }
        answer = ctx
            .platform
            .rooms
            .command(room_id.as_str(), &next(false))
            .await?;
        steps += 1;
    }
    if answer["user_id"] != json!(me.user_id) {
        // The join that finished was another local user's, or this user's own finished by the
        // room object's alarm between two steps: this server is in the room now, and the user
        // joins it here unless already joined.
        let db = ctx.db();
        let now = stored::membership(&db, room_id.as_str(), me.user_id.as_str()).await?;
        if now.as_deref() != Some("join") {
            return local_membership(ctx, room_id, me, content).await;
        }
    }
    Ok(JsonResponse::ok(json!({ "room_id": room_id })))
}

/// The user's own membership event (`content` names it) in a room this server holds.
async fn local_membership(
    ctx: &Ctx,
    room_id: &RoomId,
    me: &Requester,
    content: Value,
) -> Result<JsonResponse, MatrixError> {
    send_event(
        &ctx.platform,
        room_id,
        &me.user_id,
        EventTemplate::state("m.room.member", me.user_id.as_str(), content),
        None,
    )
    .await?;
    Ok(JsonResponse::ok(json!({ "room_id": room_id })))
}

/// The optional `reason` of a membership request's body.
fn body_reason(ctx: &Ctx) -> Result<Option<String>, MatrixError> {
    Ok(ctx
        .json_value()?
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// `POST /join/{roomIdOrAlias}` and `POST /rooms/{roomId}/join`: the route row names which
/// parameter holds the room.
pub(crate) async fn join(ctx: &Ctx, room_id_or_alias: &str) -> Result<JsonResponse, MatrixError> {
    let (me, room_id, servers, entry) = joiner_and_room(ctx, room_id_or_alias).await?;
    // Rooms an admin blocked (src/admin/rooms.rs) take nobody from this server.
    if entry.blocked {
        return Err(MatrixError::forbidden(
            "This room has been blocked on this server",
        ));
    }
    let reason = body_reason(ctx)?;
    let joined = enter(ctx, &room_id, servers, &me, "join", reason, entry).await?;
    super::push::carry_over_on_join(ctx, &me.user_id, &room_id).await;
    crate::federation::e2ee_out::announce_on_join(
        ctx,
        &ctx.db(),
        me.user_id.as_str(),
        &me.device_id,
        room_id.as_str(),
    )
    .await;
    Ok(joined)
}

/// Who asks to join, the room and the servers to ask for it, and what `enter` needs to know.
/// A room id (the common case) costs one D1 round trip for the token and the room together;
/// an alias, whose resolution may ask another server, is resolved only for a known user
/// within the rate limit, then read as before.
async fn joiner_and_room(
    ctx: &Ctx,
    room_id_or_alias: &str,
) -> Result<(Requester, OwnedRoomId, Vec<String>, stored::Entry), MatrixError> {
    let check_rate =
        |me| crate::limits::rate::check_client(ctx, me, crate::limits::rate::Action::Join);
    if let (false, Some(token)) = (room_id_or_alias.starts_with('#'), ctx.access_token()) {
        // A malformed room id is answered after the token is checked, as before.
        if let Ok((room_id, servers)) = resolve_room(ctx, room_id_or_alias).await {
            let hash = crate::accounts::tokens::token_hash(token);
            let us = ctx.config.server_name.as_str();
            let read = stored::entry_by_token(&ctx.db(), room_id.as_str(), &hash, us).await?;
            if let Some((owner, entry)) = read {
                let me = ctx.requester_from(token, Some(owner)).await?;
                check_rate(&me).await?;
                return Ok((me, room_id, servers, entry));
            }
        }
    }
    let me = ctx.requester().await?;
    check_rate(&me).await?;
    let (room_id, servers) = resolve_room(ctx, room_id_or_alias).await?;
    let entry = entry_of(ctx, &room_id, &me).await?;
    Ok((me, room_id, servers, entry))
}

/// `POST /knock/{roomIdOrAlias}`: asks to be let into a room whose join rule is `knock` (or
/// `knock_restricted`); a member with the power to invite lets the user in with an invite.
pub(crate) async fn knock(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    crate::limits::rate::check_client(ctx, &me, crate::limits::rate::Action::Join).await?;
    let (room_id, servers) = resolve_room(ctx, ctx.param("roomIdOrAlias")).await?;
    let entry = entry_of(ctx, &room_id, &me).await?;
    enter(
        ctx,
        &room_id,
        servers,
        &me,
        "knock",
        body_reason(ctx)?,
        entry,
    )
    .await
}

async fn entry_of(
    ctx: &Ctx,
    room_id: &RoomId,
    me: &Requester,
) -> Result<stored::Entry, MatrixError> {
    let us = ctx.config.server_name.as_str();
    stored::entry(&ctx.db(), room_id.as_str(), me.user_id.as_str(), us).await
}

#[derive(Deserialize)]
struct TargetBody {
    user_id: String,
    reason: Option<String>,
}

/// Sends a membership event about `target`; a missing room reads as "not allowed" so that
/// room ids do not leak.
async fn membership_event(
    ctx: &Ctx,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    membership: &str,
    reason: Option<String>,
) -> Result<String, MatrixError> {
    let mut content = json!({ "membership": membership });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    send_event(
        &ctx.platform,
        room_id,
        sender,
        EventTemplate::state("m.room.member", target.as_str(), content),
        None,
    )
    .await
    .map_err(|e| {
        if e.code == ErrorCode::NotFound {
            MatrixError::forbidden("You are not in this room")
        } else {
            e
        }
    })
}

/// The other servers that hold a room: those with members in our copy (`members`), the server
/// that invited the user, and those that sent the room's stripped state.
async fn remote_servers_of(
    ctx: &Ctx,
    room_id: &RoomId,
    me: &Requester,
    members: bool,
) -> Result<Vec<String>, MatrixError> {
    let db = ctx.db();
    let us = ctx.config.server_name.as_str();
    let mut servers = if members {
        crate::storage::sync::remote_servers(&db, room_id.as_str(), us).await?
    } else {
        Vec::new()
    };
    if let Some(inviter) = stored::inviter(&db, room_id.as_str(), me.user_id.as_str()).await? {
        if let Ok(inviter) = UserId::parse(inviter.as_str()) {
            // The inviting server holds the room: ask it first.
            servers.insert(0, inviter.server_name().to_string());
        }
    }
    // A knock (or an invite) to a room only other servers hold: the servers of whoever sent
    // the stripped state we keep of it.
    for event in stored::invite_state(&db, room_id.as_str(), me.user_id.as_str())
        .await?
        .unwrap_or_default()
    {
        if let Some(sender) = event["sender"].as_str().and_then(|s| UserId::parse(s).ok()) {
            servers.push(sender.server_name().to_string());
        }
    }
    servers.retain(|s| s != us);
    let mut seen = std::collections::HashSet::new();
    servers.retain(|s| seen.insert(s.clone()));
    Ok(servers)
}

/// Leaves a room, or rejects an invite. When no user of ours is in the room, our copy cannot
/// build the leave (we may hold nothing but the invite): a server that holds the room does.
pub(crate) async fn leave_room(
    ctx: &Ctx,
    room_id: &RoomId,
    me: &Requester,
    reason: Option<String>,
) -> Result<(), MatrixError> {
    let db = ctx.db();
    let us = ctx.config.server_name.as_str();
    let resident = crate::storage::sync::members_of_server(&db, room_id.as_str(), us).await? > 0;
    if !resident {
        let servers = remote_servers_of(ctx, room_id, me, true).await?;
        if !servers.is_empty() {
            let mut content = json!({});
            if let Some(reason) = reason {
                content["reason"] = json!(reason);
            }
            let command = RoomCommand::RemoteMembership {
                room_id: room_id.to_owned(),
                user_id: me.user_id.clone(),
                servers,
                membership: "leave".into(),
                content,
            };
            return ctx
                .platform
                .rooms
                .command(room_id.as_str(), &command)
                .await
                .map(|_| ());
        }
    }
    membership_event(ctx, room_id, &me.user_id, &me.user_id, "leave", reason)
        .await
        .map(|_| ())
}

pub(crate) async fn leave(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let reason = body_reason(ctx)?;
    let current = stored::membership(&ctx.db(), room_id.as_str(), me.user_id.as_str()).await?;
    if !matches!(
        current.as_deref(),
        Some("join") | Some("invite") | Some("knock")
    ) {
        return Err(MatrixError::forbidden("You are not in this room"));
    }
    leave_room(ctx, &room_id, &me, reason).await?;
    Ok(JsonResponse::ok(json!({})))
}

/// What `POST /rooms/{roomId}/{invite,kick,ban,unban}` does to the user named in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemberAction {
    Invite,
    Kick,
    Ban,
    Unban,
}

impl MemberAction {
    /// The membership the event gives the target: kick and unban both make it `leave`.
    fn membership(self) -> &'static str {
        match self {
            MemberAction::Invite => "invite",
            MemberAction::Kick | MemberAction::Unban => "leave",
            MemberAction::Ban => "ban",
        }
    }
}

/// invite, kick, ban and unban: a membership event about the user named in the body.
pub(crate) async fn act_on_member(
    ctx: &Ctx,
    action: MemberAction,
) -> Result<JsonResponse, MatrixError> {
    let membership = action.membership();
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let body: TargetBody = ctx.json()?;
    let target = ids::user_id(&body.user_id)?;
    let db = ctx.db();
    if action == MemberAction::Invite
        && target.server_name() == ctx.config.server_name
        && !crate::appservice::queries::local_user_exists(ctx, target.as_str()).await?
    {
        return Err(MatrixError::not_found(format!("Unknown user {target}")));
    }
    if matches!(action, MemberAction::Kick | MemberAction::Unban) {
        // Unban must target a banned user and kick a present one; the auth rules alone would
        // let a "kick" of an absent user through as a no-op leave.
        let current = stored::membership(&db, room_id.as_str(), target.as_str()).await?;
        let expected: &[&str] = if action == MemberAction::Unban {
            &["ban"]
        } else {
            &["join", "invite", "knock"]
        };
        if !current.as_deref().is_some_and(|m| expected.contains(&m)) {
            return Err(MatrixError::forbidden(format!(
                "{target} is not {}",
                expected.join(" or ")
            )));
        }
    }
    membership_event(ctx, &room_id, &me.user_id, &target, membership, body.reason).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn forget(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let db = ctx.db();
    match stored::membership(&db, room_id.as_str(), me.user_id.as_str())
        .await?
        .as_deref()
    {
        Some("join") | Some("invite") | Some("knock") => Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Leave the room before forgetting it",
        )),
        None => Err(MatrixError::not_found("You were never in this room")),
        Some(_) => {
            stored::forget(&db, room_id.as_str(), me.user_id.as_str()).await?;
            Ok(JsonResponse::ok(json!({})))
        }
    }
}

/// Deactivation leaves every joined room and rejects every invite.
pub(crate) async fn leave_all_rooms(ctx: &Ctx, me: &Requester) -> Result<(), MatrixError> {
    let db = ctx.db();
    for membership in ["join", "invite"] {
        for room in stored::rooms_with_membership(&db, me.user_id.as_str(), membership).await? {
            let room_id = ids::room_id(&room)?;
            leave_room(ctx, &room_id, me, None).await?;
        }
    }
    Ok(())
}
