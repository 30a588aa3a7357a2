//! `PUT`/`GET /presence/{userId}/status`, and what a syncing client's `set_presence` does. A
//! change others can see moves the presence stream, wakes our users who share a room with the
//! user, and goes to the other servers in those rooms as an `m.presence` EDU.

use serde_json::{json, Value};

use super::ids;
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::presence::{self, Presence, State};
use crate::storage::{e2ee_remote, presence as stored, Db};
use crate::time::now_ms;

pub(crate) async fn set_status(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let body = ctx.json_object()?;
    let state = body
        .get("presence")
        .and_then(Value::as_str)
        .and_then(State::parse)
        .ok_or_else(|| {
            MatrixError::invalid_param("presence must be online, unavailable or offline")
        })?;
    let status_msg = match body.get("status_msg") {
        Some(Value::String(s)) if s.len() > presence::MAX_STATUS_MSG => {
            return Err(MatrixError::new(
                400,
                ErrorCode::TooLarge,
                "status_msg is too long",
            ))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(MatrixError::bad_json("status_msg must be a string")),
    };
    let db = ctx.db();
    let next = Presence {
        state,
        status_msg,
        last_active_ts: now_ms(),
        currently_active: state == State::Online,
    };
    let current = stored::get(&db, me.user_id.as_str()).await?;
    publish(ctx, &db, me.user_id.as_str(), current.as_ref(), &next).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn get_status(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let user = ids::user_id(ctx.param("userId"))?;
    let db = ctx.db();
    if !stored::may_see(&db, me.user_id.as_str(), user.as_str()).await? {
        return Err(MatrixError::forbidden(
            "You do not share a room with this user",
        ));
    }
    // A user whose presence was never set or heard of is offline, as far as anyone knows.
    Ok(JsonResponse::ok(
        match stored::get(&db, user.as_str()).await? {
            Some(presence) => presence.content(now_ms()),
            None => json!({ "presence": "offline" }),
        },
    ))
}

/// `/sync?set_presence=`: marks the user online (or unavailable) as they sync, writing at most
/// once per `presence::REFRESH_MS` unless what others see changes. Failures only cost the update.
/// True when that moved the presence stream (others, and the user, will see a change), so a
/// caller that read the stream positions before reads them again. `known`: the user's stored
/// presence when the caller has read it already (src/sync/start.rs).
pub(crate) async fn on_sync(
    ctx: &Ctx,
    db: &Db,
    user: &str,
    known: Option<Option<Presence>>,
) -> bool {
    if !ctx.config.presence {
        return false;
    }
    let wanted = ctx.query("set_presence").unwrap_or("online");
    let result = async {
        let current = match known {
            Some(current) => current,
            None => stored::get(db, user).await?,
        };
        match presence::on_sync(current.as_ref(), wanted, now_ms()) {
            Some(next) => publish(ctx, db, user, current.as_ref(), &next).await,
            None => Ok(false),
        }
    }
    .await;
    result.unwrap_or_else(|e| {
        crate::log_warn!("presence of {user} on sync: {e}");
        false
    })
}

/// Stores our user's presence; when others would see a difference, wakes our users sharing a
/// room with them and tells the other servers in those rooms.
async fn publish(
    ctx: &Ctx,
    db: &Db,
    user: &str,
    current: Option<&Presence>,
    next: &Presence,
) -> Result<bool, MatrixError> {
    let visible = current.is_none_or(|c| c.differs_for_others(next));
    stored::set(db, user, next, visible).await?;
    if !visible || !ctx.config.presence {
        return Ok(visible);
    }
    ctx.platform
        .wakeups
        .notify(stored::local_watchers(db, user).await?)
        .await;
    let us = ctx.config.server_name.as_str();
    let servers = e2ee_remote::servers_sharing_rooms(db, user, us).await?;
    if servers.is_empty() {
        return Ok(true);
    }
    let mut entry = next.content(now_ms());
    entry["user_id"] = json!(user);
    let edu = json!({ "edu_type": "m.presence", "content": { "push": [entry] } });
    for server in servers {
        if let Ok(server) = ruma::ServerName::parse(&server) {
            ctx.platform
                .queue
                .enqueue(&server, vec![], vec![edu.clone()])
                .await;
        }
    }
    Ok(true)
}

/// An `m.presence` EDU from `origin`: each entry about one of its own users is stored (others
/// are logged and dropped), and our users sharing a room with that user are woken.
pub(crate) async fn receive(
    ctx: &Ctx,
    origin: &ruma::ServerName,
    content: &Value,
) -> Result<(), MatrixError> {
    if !ctx.config.presence {
        return Ok(());
    }
    let db = ctx.db();
    let now = now_ms();
    for entry in content["push"].as_array().into_iter().flatten() {
        let Some(user) = entry["user_id"]
            .as_str()
            .and_then(|u| ruma::UserId::parse(u).ok())
        else {
            continue;
        };
        if user.server_name() != origin {
            crate::log_warn!("m.presence from {origin} about {user}, not one of its users");
            continue;
        }
        let Some(state) = entry["presence"].as_str().and_then(State::parse) else {
            continue;
        };
        let ago = entry["last_active_ago"].as_u64().unwrap_or(0);
        let next = Presence {
            state,
            status_msg: entry["status_msg"]
                .as_str()
                .map(|s| s.chars().take(presence::MAX_STATUS_MSG).collect()),
            last_active_ts: now.saturating_sub(ago),
            currently_active: entry["currently_active"].as_bool().unwrap_or(false),
        };
        // Kept only for users someone here shares a room with: a server cannot fill our
        // table with strangers.
        let watchers = stored::local_watchers(&db, user.as_str()).await?;
        if watchers.is_empty() {
            continue;
        }
        let current = stored::get(&db, user.as_str()).await?;
        let visible = current.as_ref().is_none_or(|c| c.differs_for_others(&next));
        stored::set(&db, user.as_str(), &next, visible).await?;
        if visible {
            ctx.platform.wakeups.notify(watchers).await;
        }
    }
    Ok(())
}
