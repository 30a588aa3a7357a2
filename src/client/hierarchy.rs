//! `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`: the rooms of a space the user may see,
//! depth first, a page at a time (the walk itself is `rooms::hierarchy`). Each page visits a
//! bounded number of rooms and loads them in batches of three queries; the `next_batch` token
//! carries where the walk stands. Rooms this server does not hold are asked of the servers
//! their links name (`hierarchy_remote`); those nobody describes are left out.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::hierarchy_remote::RemoteRooms;
use super::ids;
use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::rooms::hierarchy::{Room, Step, Walk};
use crate::storage::{directory, hierarchy as stored, Db};

type UrlSafe = ruma::serde::Base64<ruma::serde::base64::UrlSafe>;

/// Rooms per page when the client names no limit, and at most.
const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 50;
/// Rooms one page visits at most (listed or not), and rooms loaded per batch of reads.
const VISIT_BUDGET: usize = 100;
const LOAD_BATCH: usize = 25;
/// Batches one page loads at most: three D1 queries each.
const MAX_LOADS: usize = 8;

/// The rooms by id with what a hierarchy shows of them (`None`: not held here), as seen by a
/// local user (`user`) or by another server (`server`): three queries for the whole list.
pub(crate) async fn load_rooms(
    db: &Db,
    rooms: &[String],
    user: &str,
    server: &str,
) -> Result<HashMap<String, Option<Room>>, MatrixError> {
    let list: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let summaries = directory::room_summaries(db, &list).await?;
    let mut children = stored::space_children(db, &list).await?;
    // A restricted room is open to the members of the rooms it allows: those are asked about
    // in the same query as the rooms themselves.
    let allowed_of = |summary: &Value| -> Vec<String> {
        summary["allowed_room_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    };
    let mut asked = list.clone();
    let allowed: Vec<String> = summaries.iter().flat_map(allowed_of).collect();
    asked.extend(allowed.iter().map(String::as_str));
    let present = stored::rooms_with_presence(db, &asked, user, server).await?;
    let mut out: HashMap<String, Option<Room>> = rooms.iter().map(|r| (r.clone(), None)).collect();
    for summary in summaries {
        let Some(id) = summary["room_id"].as_str().map(str::to_owned) else {
            continue;
        };
        let events = children.remove(&id).unwrap_or_default();
        let member =
            present.contains(&id) || allowed_of(&summary).iter().any(|a| present.contains(a));
        out.insert(id, Some(Room::new(summary, &events, member)));
    }
    Ok(out)
}

/// The `suggested_only` query parameter.
pub(crate) fn suggested_only(ctx: &Ctx) -> Result<bool, MatrixError> {
    match ctx.query("suggested_only") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(MatrixError::invalid_param(
            "suggested_only must be true or false",
        )),
    }
}

fn encode_token(walk: &Walk) -> String {
    UrlSafe::new(serde_json::to_vec(walk).unwrap_or_default()).encode()
}

fn decode_token(token: &str) -> Option<Walk> {
    let bytes = UrlSafe::parse(token).ok()?;
    serde_json::from_slice(bytes.as_bytes()).ok()
}

pub(crate) async fn hierarchy(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let room_id = ids::room_id(ctx.param("roomId"))?;
    let suggested_only = suggested_only(ctx)?;
    let max_depth = ctx.query_u64("max_depth")?;
    let limit = match ctx.query_u64("limit")? {
        Some(0) => return Err(MatrixError::invalid_param("limit must be positive")),
        limit => limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as usize,
    };
    let db = ctx.db();
    let user = me.user_id.as_str();
    let mut loaded = HashMap::new();
    let mut walk = match ctx.query("from") {
        Some(token) => {
            let walk = decode_token(token)
                .ok_or_else(|| MatrixError::invalid_param("unknown from token"))?;
            if walk.suggested_only != suggested_only || walk.max_depth != max_depth {
                return Err(MatrixError::invalid_param(
                    "suggested_only and max_depth must not change between pages",
                ));
            }
            walk
        }
        None => {
            loaded = load_rooms(&db, &[room_id.to_string()], user, "").await?;
            match loaded.get(room_id.as_str()) {
                Some(Some(root)) if root.accessible() => {}
                Some(Some(_)) => {
                    return Err(MatrixError::forbidden(
                        "You may not see this room's hierarchy",
                    ))
                }
                _ => return Err(MatrixError::not_found("Unknown room")),
            }
            Walk::new(room_id.as_str(), suggested_only, max_depth)
        }
    };
    let mut rooms: Vec<Value> = Vec::new();
    let mut budget = VISIT_BUDGET;
    let mut loads = 0;
    let mut remote = RemoteRooms::new(suggested_only);
    while let Step::Need(wanted) = walk.advance(&loaded, &mut rooms, limit, &mut budget, LOAD_BATCH)
    {
        if loads == MAX_LOADS {
            break;
        }
        loads += 1;
        let mut found = load_rooms(&db, &wanted, user, "").await?;
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| matches!(found.get(*id), Some(None)))
            .cloned()
            .collect();
        if !missing.is_empty() {
            for id in &missing {
                found.remove(id);
            }
            found.extend(remote.load(ctx, &walk, &missing, user).await?);
        }
        // The next room to visit waits for the next page when this one may ask no more.
        let stalled = !found.contains_key(&wanted[0]);
        loaded.extend(found);
        if stalled {
            break;
        }
    }
    let mut body = json!({ "rooms": rooms });
    if !walk.finished() {
        body["next_batch"] = json!(encode_token(&walk));
    }
    Ok(JsonResponse::ok(body))
}

#[cfg(test)]
#[path = "hierarchy_tests.rs"]
mod tests;
