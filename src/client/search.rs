//! `POST /search` (spec: "Server Side Search"): room events matching a search term, over the
//! full-text index (`storage/search.rs`), only those the user may see: rooms they are or were
//! in and have not forgotten, each event checked against their membership at it and the
//! history visibility then (as `/messages` does).
//!
//! Work is bounded: one search reads at most `MAX_CANDIDATES` index hits; `count` is the number
//! of visible hits among them (the spec calls it approximate).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::room_read::{self, position_token, Access};
use crate::api::request::{Ctx, Requester};
use crate::http::{JsonResponse, MatrixError};
use crate::rooms::visibility::MembershipHistory;
use crate::rooms::RoomVersion;
use crate::search::query::{self, KEYS};
use crate::search::{EventContext, GroupKey, OrderBy, Page, RoomEvents, SearchRequest};
use crate::storage::events::EventRow;
use crate::storage::search::{self as index, Hit, Search};
use crate::storage::sync_rooms::{self, Window};
use crate::storage::Db;

/// The most index hits one search reads.
const MAX_CANDIDATES: u64 = 500;
/// Results per page: the filter's `limit`, 10 when unset, at most this.
const MAX_LIMIT: u64 = 100;
/// Context events on either side of a result, at most.
const MAX_CONTEXT: u64 = 20;

pub(crate) async fn search(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let request: SearchRequest = serde_json::from_value(ctx.json_value()?)
        .map_err(|e| MatrixError::bad_json(format!("invalid search request: {e}")))?;
    let Some(criteria) = request.search_categories.room_events else {
        return Ok(JsonResponse::ok(json!({ "search_categories": {} })));
    };
    let page = ctx
        .query("next_batch")
        .map(|t| {
            Page::parse(t, criteria.order_by)
                .ok_or_else(|| MatrixError::invalid_param("unknown next_batch token"))
        })
        .transpose()?;
    let db = ctx.db();
    let found = room_events(&db, &me, &criteria, page).await?;
    Ok(JsonResponse::ok(
        json!({ "search_categories": { "room_events": found } }),
    ))
}

/// The rooms searched, with the user's access to each.
struct Rooms(BTreeMap<String, Access>);

impl Rooms {
    /// Two queries, whatever the number of rooms.
    async fn load(db: &Db, me: &Requester, criteria: &RoomEvents) -> Result<Self, MatrixError> {
        let rooms: Vec<(String, RoomVersion)> = index::searchable_rooms(db, me.user_id.as_str())
            .await?
            .into_iter()
            .filter(|(r, _)| criteria.filter.allows_room(r))
            .filter_map(|(r, v)| Some((r, RoomVersion::parse(&v)?)))
            .collect();
        let refs: Vec<&str> = rooms.iter().map(|(r, _)| r.as_str()).collect();
        let mut histories =
            sync_rooms::membership_histories(db, me.user_id.as_str(), &refs).await?;
        let mut out = BTreeMap::new();
        for (id, version) in rooms {
            let history = histories
                .remove(&id)
                .unwrap_or_else(|| MembershipHistory(Vec::new()));
            out.insert(id, Access { version, history });
        }
        Ok(Rooms(out))
    }

    fn visible(&self, criteria: &RoomEvents, hit: &Hit) -> bool {
        self.0
            .get(&hit.row.room_id)
            .is_some_and(|a| a.can_see(&hit.row))
            && criteria.filter.allows_event(&hit.row)
    }
}

async fn room_events(
    db: &Db,
    me: &Requester,
    criteria: &RoomEvents,
    page: Option<Page>,
) -> Result<Value, MatrixError> {
    let terms = query::terms(&criteria.search_term);
    let columns: Vec<&str> = match &criteria.keys {
        Some(keys) => keys.iter().map(|k| k.column()).collect(),
        None => KEYS.iter().map(|(_, c)| *c).collect(),
    };
    let empty = json!({ "count": 0, "results": [], "highlights": [] });
    let Some(fts) = query::fts_match(&terms, &columns) else {
        return Ok(empty);
    };
    let rooms = Rooms::load(db, me, criteria).await?;
    if rooms.0.is_empty() {
        return Ok(empty);
    }
    let room_ids: Vec<&str> = rooms.0.keys().map(String::as_str).collect();
    let order = criteria.order_by.order();
    let limit = criteria.filter.limit_or(10, MAX_LIMIT).max(1) as usize;
    let mut search = Search {
        fts: &fts,
        rooms: &room_ids,
        order,
        before: None,
        limit: MAX_CANDIDATES,
    };
    let all: Vec<Hit> = index::search(db, &search)
        .await?
        .into_iter()
        .filter(|h| rooms.visible(criteria, h))
        .collect();
    let count = all.len();
    let (hits, next): (Vec<Hit>, Option<Page>) = match page.unwrap_or(Page::Offset(0)) {
        Page::Offset(skip) => {
            let hits: Vec<Hit> = all.into_iter().skip(skip as usize).take(limit).collect();
            let next = (hits.len() == limit).then(|| Page::Offset(skip + limit as u64));
            (hits, next)
        }
        Page::Below(position) => {
            search.before = Some(position);
            let hits: Vec<Hit> = index::search(db, &search)
                .await?
                .into_iter()
                .filter(|h| rooms.visible(criteria, h))
                .take(limit)
                .collect();
            (hits, None)
        }
    };
    // In recent order the next page starts below the last result, whichever page this is.
    let next = match criteria.order_by {
        OrderBy::Recent => hits
            .last()
            .filter(|_| hits.len() == limit)
            .map(|h| Page::Below(h.row.signed_position())),
        OrderBy::Rank => next,
    };

    let contexts = match &criteria.event_context {
        Some(wanted) => Some(event_contexts(db, me, &rooms, &hits, wanted).await?),
        None => None,
    };
    let mut results = Vec::with_capacity(hits.len());
    for (i, hit) in hits.iter().enumerate() {
        let access = &rooms.0[&hit.row.room_id];
        let mut event = [hit
            .row
            .to_client(access.version, me.user_id.as_str(), &me.device_id)];
        room_read::add_memberships(std::slice::from_ref(&hit.row), &mut event, access);
        let [event] = event;
        let mut result = json!({ "rank": hit.score, "result": event });
        if let Some(contexts) = &contexts {
            result["context"] = contexts[i].clone();
        }
        results.push(result);
    }
    let mut body = json!({
        "count": count,
        "results": results,
        "highlights": query::highlights(&terms),
    });
    if let Some(next) = next {
        body["next_batch"] = json!(next.token());
    }
    if !criteria.groupings.group_by.is_empty() {
        body["groups"] = groups(criteria, &hits, next);
    }
    if criteria.include_state {
        body["state"] = room_states(db, me, &rooms, &hits).await?;
    }
    Ok(body)
}

/// The events around each result, as the reader may see them, with the senders' profiles when
/// asked: three queries for the whole page (events before, events after, member events).
async fn event_contexts(
    db: &Db,
    me: &Requester,
    rooms: &Rooms,
    hits: &[Hit],
    wanted: &EventContext,
) -> Result<Vec<Value>, MatrixError> {
    let (before_n, after_n) = (
        wanted.before_limit.min(MAX_CONTEXT),
        wanted.after_limit.min(MAX_CONTEXT),
    );
    fn window(hit: &Hit, before: bool) -> Window<'_> {
        let at = hit.row.position();
        Window {
            room_id: hit.row.room_id.as_str(),
            after: if before { 0 } else { at },
            up_to: if before {
                at.saturating_sub(1)
            } else {
                u64::MAX
            },
        }
    }
    let before_windows: Vec<Window<'_>> = hits.iter().map(|h| window(h, true)).collect();
    let after_windows: Vec<Window<'_>> = hits.iter().map(|h| window(h, false)).collect();
    let (befores, afters) = futures::join!(
        async {
            match before_n {
                0 => Ok(HashMap::new()),
                n => sync_rooms::timelines(db, &before_windows, n).await,
            }
        },
        async {
            match after_n {
                0 => Ok(HashMap::new()),
                n => sync_rooms::timelines_forwards(db, &after_windows, n).await,
            }
        },
    );
    let (befores, afters) = (befores?, afters?);
    // Windows of one room come back together: each result takes the nearest of its room's.
    let mut sides = Vec::with_capacity(hits.len());
    for hit in hits {
        let at = hit.row.signed_position();
        let room = &hit.row.room_id;
        let before: Vec<&EventRow> = befores
            .get(room)
            .into_iter()
            .flatten()
            .filter(|r| r.signed_position() < at)
            .take(before_n as usize)
            .collect();
        let after: Vec<&EventRow> = afters
            .get(room)
            .into_iter()
            .flatten()
            .filter(|r| r.signed_position() > at)
            .take(after_n as usize)
            .collect();
        sides.push((before, after));
    }
    let mut profiles: HashMap<String, Map<String, Value>> = HashMap::new();
    if wanted.include_profile {
        let mut senders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (hit, (before, after)) in hits.iter().zip(&sides) {
            let access = &rooms.0[&hit.row.room_id];
            let seen = before.iter().chain(after).copied().chain([&hit.row]);
            for row in seen.filter(|r| access.can_see(r)) {
                senders
                    .entry(&hit.row.room_id)
                    .or_default()
                    .push(&row.sender);
            }
        }
        let wanted: Vec<(&str, u64, Vec<&str>)> = senders
            .into_iter()
            .map(|(room, mut users)| {
                users.sort();
                users.dedup();
                let at = rooms.0[room]
                    .state_position()
                    .ok()
                    .flatten()
                    .unwrap_or(u64::MAX);
                (room, at, users)
            })
            .collect();
        for (_, members) in sync_rooms::members_at(db, &wanted).await? {
            for member in members {
                let Some(user) = member.state_key.clone() else {
                    continue;
                };
                let content = serde_json::from_str::<Value>(&member.pdu)
                    .ok()
                    .and_then(|p| p.get("content").cloned())
                    .unwrap_or_default();
                let mut profile = Map::new();
                for name in ["displayname", "avatar_url"] {
                    if let Some(v) = content.get(name).filter(|v| v.is_string()) {
                        profile.insert(name.to_owned(), v.clone());
                    }
                }
                profiles
                    .entry(member.room_id.clone())
                    .or_default()
                    .insert(user, Value::Object(profile));
            }
        }
    }
    let mut out = Vec::with_capacity(hits.len());
    for (hit, (before, after)) in hits.iter().zip(&sides) {
        let access = &rooms.0[&hit.row.room_id];
        let at = hit.row.signed_position();
        let shown = |rows: &[&EventRow]| -> Vec<Value> {
            rows.iter()
                .filter(|r| access.can_see(r))
                .map(|r| r.to_client(access.version, me.user_id.as_str(), &me.device_id))
                .collect()
        };
        let start = before.last().map_or(at - 1, |r| r.signed_position() - 1);
        let end = after.last().map_or(at, |r| r.signed_position());
        let mut context = json!({
            "events_before": shown(before),
            "events_after": shown(after),
            "start": position_token(start),
            "end": position_token(end),
        });
        if wanted.include_profile {
            let room_profiles = profiles.get(hit.row.room_id.as_str());
            let mut info = Map::new();
            let seen = before.iter().chain(after).copied().chain([&hit.row]);
            for row in seen.filter(|r| access.can_see(r)) {
                let profile = room_profiles
                    .and_then(|p| p.get(&row.sender))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                info.insert(row.sender.clone(), profile);
            }
            context["profile_info"] = Value::Object(info);
        }
        out.push(context);
    }
    Ok(out)
}

/// `groups`: the page's results by room and/or by sender, each group in order of its first
/// result.
fn groups(criteria: &RoomEvents, hits: &[Hit], next: Option<Page>) -> Value {
    let mut out = Map::new();
    for group in &criteria.groupings.group_by {
        let (name, key): (&str, fn(&EventRow) -> &str) = match group.key {
            GroupKey::RoomId => ("room_id", |r| r.room_id.as_str()),
            GroupKey::Sender => ("sender", |r| r.sender.as_str()),
        };
        let mut order: Vec<&str> = Vec::new();
        let mut members: HashMap<&str, Vec<&str>> = HashMap::new();
        for hit in hits {
            let k = key(&hit.row);
            if !members.contains_key(k) {
                order.push(k);
            }
            members.entry(k).or_default().push(&hit.row.event_id);
        }
        let mut by_key = Map::new();
        for (i, k) in order.iter().enumerate() {
            let mut entry = json!({ "results": members[k], "order": i + 1 });
            if let Some(next) = next {
                entry["next_batch"] = json!(next.token());
            }
            by_key.insert((*k).to_owned(), entry);
        }
        out.insert(name.to_owned(), Value::Object(by_key));
    }
    Value::Object(out)
}

/// `state`: the state of each room with a result on this page, as the user may see it (one
/// query for all of them).
async fn room_states(
    db: &Db,
    me: &Requester,
    rooms: &Rooms,
    hits: &[Hit],
) -> Result<Value, MatrixError> {
    let mut ids: Vec<&str> = hits.iter().map(|h| h.row.room_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    // Only the invited (no state to show yet) have no state position.
    let windows: Vec<Window<'_>> = ids
        .iter()
        .filter_map(|id| {
            let up_to = rooms.0[*id].state_position().ok()?.unwrap_or(u64::MAX);
            Some(Window {
                room_id: id,
                after: 0,
                up_to,
            })
        })
        .collect();
    let mut out = Map::new();
    for (id, rows) in sync_rooms::states(db, &windows).await? {
        let access = &rooms.0[&id];
        let events: Vec<Value> = rows
            .iter()
            .map(|r| r.to_client(access.version, me.user_id.as_str(), &me.device_id))
            .collect();
        out.insert(id, Value::Array(events));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
