//! The `rooms` part of an answer: for each room due, its timeline, the state its config asks
//! for, and the summary fields (name, avatar, heroes, counts, bump stamp). All rooms of an
//! answer are read together, in one round of batched queries (`storage::sync_rooms`,
//! `storage::sliding_sync`), whatever their number; only the rooms due are read at all.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Map, Value};

use super::list::{Entry, Membership, StateNews};
use super::required_state::RequiredState;
use crate::api::request::Requester;
use crate::client::room_read::{position_token, Access};
use crate::http::MatrixError;
use crate::rooms::visibility::MembershipHistory;
use crate::rooms::RoomVersion;
use crate::storage::events::EventRow;
use crate::storage::sliding_sync::{
    current_state_matching, memberships_of, CurrentStateWanted, Fold, StateWanted, SummaryWanted,
};
use crate::storage::sync::MembershipRow;
use crate::storage::sync_rooms::{self as batch, Window};
use crate::storage::Db;
use crate::sync::token::StreamPosition;

/// Why a room is in this answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Never sent on this connection, or a new membership: everything, `initial: true`.
    Initial,
    /// The client has it up to `after`: what changed since, and the whole required state too
    /// when the room's `required_state` changed (`full_state`).
    Since { after: u64, full_state: bool },
}

/// One room to send, with the combined config of the rules it matched.
pub struct Delivery<'a> {
    pub entry: &'a Entry,
    pub due: Due,
    pub timeline_limit: u64,
    pub required_state: RequiredState,
    pub lists: Vec<String>,
}

impl Delivery<'_> {
    fn after(&self) -> u64 {
        match self.due {
            Due::Initial => 0,
            Due::Since { after, .. } => after,
        }
    }

    fn full_state(&self) -> bool {
        matches!(
            self.due,
            Due::Initial
                | Due::Since {
                    full_state: true,
                    ..
                }
        )
    }
}

fn content(row: &EventRow) -> Value {
    serde_json::from_str::<Value>(&row.pdu)
        .map(|mut pdu| pdu["content"].take())
        .unwrap_or(Value::Null)
}

/// A room's timeline part: visible events, oldest first.
struct Timeline {
    events: Vec<EventRow>,
    limited: bool,
    /// Position before its first event: the `prev_batch`.
    start: u64,
}

/// Builds the room results of `sends`; `fold`: the timelines and unread counts of the rooms
/// with new events, when the answer's first read made them (`storage::sliding_sync::Fold`).
pub async fn build(
    db: &Db,
    me: &Requester,
    sends: &[Delivery<'_>],
    (from, now): (Option<&StreamPosition>, &StreamPosition),
    fold: Option<&Fold>,
) -> Result<Map<String, Value>, MatrixError> {
    let user = me.user_id.as_str();
    let mut out = Map::new();
    let (pending, rooms): (Vec<&Delivery<'_>>, Vec<&Delivery<'_>>) =
        sends.iter().partition(|s| s.entry.membership.is_pending());
    for send in pending {
        out.insert(
            send.entry.room_id.clone(),
            pending_room(db, user, send).await?,
        );
    }
    if rooms.is_empty() {
        return Ok(out);
    }

    // One round: every read below goes out in one D1 batch.
    let ids: Vec<&str> = rooms.iter().map(|s| s.entry.room_id.as_str()).collect();
    let limit = rooms.iter().map(|s| s.timeline_limit).max().unwrap_or(0);
    let windows: Vec<Window<'_>> = rooms
        .iter()
        .map(|s| Window {
            room_id: &s.entry.room_id,
            after: s.after(),
            up_to: s.entry.visible_up_to(now.events),
        })
        .collect();
    // A room the client has up to this answer's `pos` whose list read says no state (or no
    // member) event arrived since needs no read of state changes (or of its summary).
    let since = from.map(|f| f.events);
    // A room whose window is the fold's (from the `pos` to this answer) has its timeline and
    // unread counts read already, in the same snapshot: only the others are read below.
    let folded: Vec<bool> = windows
        .iter()
        .map(|w| {
            fold.is_some_and(|f| {
                since == Some(w.after) && w.up_to == now.events && f.rooms.contains(w.room_id)
            })
        })
        .collect();
    let unfolded = |i: usize| !folded[i];
    let read_windows: Vec<Window<'_>> = windows
        .iter()
        .enumerate()
        .filter(|&(i, _)| unfolded(i))
        .map(|(_, w)| Window { ..*w })
        .collect();
    let unread_ids: Vec<&str> = ids
        .iter()
        .enumerate()
        .filter(|&(i, _)| unfolded(i))
        .map(|(_, id)| *id)
        .collect();
    let without = |s: &Delivery<'_>, news: fn(StateNews) -> bool| {
        !s.full_state()
            && since.is_some_and(|p| s.after() >= p)
            && s.entry.news.is_some_and(|n| !news(n))
    };
    // State that changed while the client held the room; for rooms it no longer belongs to,
    // the state up to its leave (the current state is not theirs to see).
    let delta_windows: Vec<Window<'_>> = rooms
        .iter()
        .filter(|s| !s.full_state() || s.entry.membership != Membership::Join)
        .filter(|s| !without(s, |n| n.state))
        .map(|s| Window {
            room_id: &s.entry.room_id,
            after: if s.full_state() { 0 } else { s.after() },
            up_to: s.entry.visible_up_to(now.events),
        })
        .collect();
    // The current state each room's config asks for: for a room sent in full its
    // `required_state`, name, avatar and heroes' member events; for a lazy-loading room the
    // member events of its timeline's senders (found in SQL from the same window).
    let mut slots: Vec<StateWanted<'_>> = Vec::new();
    let mut heroes: Vec<&str> = Vec::new();
    let mut lazy: Vec<Window<'_>> = Vec::new();
    // Lazy-loading rooms whose members the fold read (for its window, which is theirs).
    let mut lazy_folded: Vec<&str> = Vec::new();
    let fold_members = fold.and_then(|f| f.members.as_ref());
    for (i, (send, window)) in rooms.iter().zip(&windows).enumerate() {
        if send.entry.membership != Membership::Join {
            continue;
        }
        let room_id = send.entry.room_id.as_str();
        if send.full_state() {
            for (kind, state_key) in send.required_state.slots(user) {
                slots.push(StateWanted {
                    room_id,
                    kind,
                    state_key,
                });
            }
            for kind in ["m.room.name", "m.room.avatar"] {
                slots.push(StateWanted {
                    room_id,
                    kind: Some(kind),
                    state_key: Some(""),
                });
            }
            heroes.push(room_id);
        }
        // The client holds the reader's own member event (`$ME`, changes come as state): a
        // window of the reader's own events alone needs no lazily loaded member.
        let own_only =
            without(send, |n| n.others) && send.required_state.wants("m.room.member", user, user);
        if send.required_state.lazy_members() && !own_only {
            // The fold leaves out rooms of the reader's own new events when the list read
            // says so (`StateNews`): only such a read is matched with it. It decides that
            // before the reader is known (`Request::lazy_members`), so a room of the reader's
            // own events it left out that still wants members here (a config that excludes
            // the reader by user id) is read on its own.
            let left_out = without(send, |n| n.others)
                && fold_members.is_some_and(|m| !m.contains_key(room_id));
            if folded[i]
                && fold_members.is_some()
                && !send.full_state()
                && send.entry.news.is_some()
                && !left_out
            {
                lazy_folded.push(room_id);
            } else {
                lazy.push(Window { ..*window });
            }
        }
    }
    let wanted = CurrentStateWanted {
        slots,
        lazy: &lazy,
        lazy_limit: limit,
        heroes,
        user,
    };
    // The user's membership history decides which events of a window they may see; a room
    // they have been joined to since before the window opened (their current membership is
    // a join at or before its start) shows them every event in it, and needs no read.
    let joined_throughout = |s: &Delivery<'_>| {
        s.entry.membership == Membership::Join
            && s.after() > 0
            && s.entry.membership_at <= s.after()
    };
    let history_ids: Vec<&str> = rooms
        .iter()
        .filter(|s| !joined_throughout(s))
        .map(|s| s.entry.room_id.as_str())
        .collect();
    let summaries_wanted: Vec<SummaryWanted<'_>> = rooms
        .iter()
        .zip(&windows)
        .filter(|(s, _)| !without(s, |n| n.members))
        .map(|(s, w)| SummaryWanted {
            room_id: w.room_id,
            full: s.full_state(),
            after: w.after,
            up_to: w.up_to,
        })
        .collect();
    let (memberships, timelines, deltas, unread, current) = futures::join!(
        memberships_of(db, user, &history_ids, &summaries_wanted),
        batch::timelines(db, &read_windows, limit + 1),
        batch::states(db, &delta_windows),
        crate::storage::push::unread(db, user, &unread_ids),
        current_state_matching(db, &wanted),
    );
    let (mut timelines, mut deltas, mut unread, mut current) =
        (timelines?, deltas?, unread?, current?);
    // A room sent without its full state has no other current state read than its members.
    for room_id in lazy_folded {
        let members = fold_members.and_then(|m| m.get(room_id)).cloned();
        current.insert(room_id.to_owned(), members.unwrap_or_default());
    }
    if let Some(fold) = fold {
        for (window, _) in windows.iter().zip(&folded).filter(|(_, &f)| f) {
            let room_id = window.room_id;
            if let Some(rows) = fold.timelines.get(room_id) {
                timelines.insert(room_id.to_owned(), rows.clone());
            }
            if let Some(counts) = fold.unread.get(room_id) {
                unread.insert(room_id.to_owned(), counts.clone());
            }
        }
    }
    let (mut histories, mut summaries) = memberships?;

    let mut accesses: Vec<Access> = Vec::with_capacity(rooms.len());
    let mut parts: Vec<Timeline> = Vec::with_capacity(rooms.len());
    for (send, window) in rooms.iter().zip(&windows) {
        let version = RoomVersion::parse(&send.entry.room_version).unwrap_or(RoomVersion::V12);
        let history = if joined_throughout(send) {
            MembershipHistory(vec![(send.entry.membership_at, "join".to_owned())])
        } else {
            histories
                .remove(window.room_id)
                .unwrap_or_else(|| MembershipHistory(Vec::new()))
        };
        let access = Access { version, history };
        let mut rows = timelines.remove(window.room_id).unwrap_or_default();
        let own = send.timeline_limit as usize;
        let limited = rows.len() > own;
        rows.truncate(own);
        rows.reverse();
        let start = rows.first().map_or(window.up_to, |r| r.position() - 1);
        let events = rows.into_iter().filter(|r| access.can_see(r)).collect();
        parts.push(Timeline {
            events,
            limited,
            start,
        });
        accesses.push(access);
    }

    for ((send, part), access) in rooms.iter().zip(parts).zip(accesses) {
        let room_id = send.entry.room_id.as_str();
        let version = access.version;
        let joined = send.entry.membership == Membership::Join;
        // The state rows this room answer draws from: the current state read above (joined,
        // full), or the state that changed in its window.
        let current_rows = current.remove(room_id).unwrap_or_default();
        let delta_rows = deltas.remove(room_id).unwrap_or_default();
        let lazy: HashSet<String> = if send.required_state.lazy_members() {
            lazy_members(&part.events).into_iter().collect()
        } else {
            HashSet::new()
        };
        let wanted = |r: &EventRow| {
            let key = r.state_key.as_deref().unwrap_or_default();
            send.required_state.wants(&r.kind, key, user)
                || (r.kind == "m.room.member" && lazy.contains(key))
        };
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut required: Vec<Value> = Vec::new();
        let source: Vec<&EventRow> = if joined && send.full_state() {
            current_rows.iter().collect()
        } else {
            delta_rows.iter().chain(current_rows.iter()).collect()
        };
        for row in source.into_iter().filter(|r| wanted(r)) {
            if seen.insert(row.event_id.clone()) {
                required.push(row.to_client(version, user, &me.device_id));
            }
        }

        let mut room = Map::new();
        if send.due == Due::Initial {
            room.insert("initial".into(), json!(true));
            if send.entry.is_dm {
                room.insert("is_dm".into(), json!(true));
            }
        }
        room.insert("membership".into(), json!(send.entry.membership.as_str()));
        if !send.lists.is_empty() {
            room.insert("lists".into(), json!(send.lists));
        }
        room.insert("bump_stamp".into(), json!(send.entry.bump_stamp));
        room.insert("required_state".into(), Value::Array(required));
        let timeline: Vec<Value> = part
            .events
            .iter()
            .map(|r| r.to_client(version, user, &me.device_id))
            .collect();
        let live = from.map_or(0, |f| {
            part.events
                .iter()
                .filter(|r| r.position() > f.events)
                .count()
        });
        // An incremental answer with no new events (a changed config) carries no timeline
        // part: a `prev_batch` there would point at a gap that is not one.
        if send.due == Due::Initial || !timeline.is_empty() || part.limited {
            room.insert("timeline".into(), Value::Array(timeline));
            room.insert("limited".into(), json!(part.limited));
            room.insert(
                "prev_batch".into(),
                json!(position_token(part.start as i64)),
            );
            room.insert("num_live".into(), json!(live));
        }

        // Summary fields: in full on a full answer; otherwise only what the window changed.
        let summary_source: &[EventRow] = if joined && send.full_state() {
            &current_rows
        } else {
            &delta_rows
        };
        let find = |kind: &str| {
            summary_source
                .iter()
                .find(|r| r.kind == kind && r.state_key.as_deref() == Some(""))
        };
        let name = find("m.room.name")
            .map(content)
            .and_then(|c| c["name"].as_str().map(str::to_owned))
            .filter(|n| !n.is_empty());
        if let Some(name) = &name {
            room.insert("name".into(), json!(name));
        }
        if let Some(avatar) = find("m.room.avatar") {
            let url = content(avatar)["url"].clone();
            room.insert(
                "avatar".into(),
                if url.is_string() { url } else { Value::Null },
            );
        }
        let members_changed =
            send.full_state() || delta_rows.iter().any(|r| r.kind == "m.room.member");
        if members_changed {
            if let Some(summary) = summaries.remove(room_id) {
                room.insert(
                    "joined_count".into(),
                    summary["m.joined_member_count"].clone(),
                );
                room.insert(
                    "invited_count".into(),
                    summary["m.invited_member_count"].clone(),
                );
                if name.is_none() && send.full_state() {
                    let heroes: Vec<Value> = summary["m.heroes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|hero| hero_json(hero, &current_rows))
                        .collect();
                    room.insert("heroes".into(), Value::Array(heroes));
                }
            }
        }
        if joined {
            let total = unread.get(room_id).map(|u| u.total()).unwrap_or_default();
            room.insert("notification_count".into(), json!(total.notifications));
            room.insert("highlight_count".into(), json!(total.highlights));
        }
        out.insert(room_id.to_owned(), Value::Object(room));
    }
    Ok(out)
}

/// The members a lazy-loading client needs for a timeline: its senders and the subjects of its
/// membership events.
fn lazy_members(events: &[EventRow]) -> Vec<String> {
    let mut members: BTreeSet<String> = events.iter().map(|r| r.sender.clone()).collect();
    members.extend(
        events
            .iter()
            .filter(|r| r.kind == "m.room.member")
            .filter_map(|r| r.state_key.clone()),
    );
    members.into_iter().collect()
}

/// A hero with the display name and avatar of their member event, when the room has them.
fn hero_json(user_id: &str, state: &[EventRow]) -> Value {
    let mut hero = json!({ "user_id": user_id });
    if let Some(member) = state
        .iter()
        .find(|r| r.kind == "m.room.member" && r.state_key.as_deref() == Some(user_id))
    {
        let c = content(member);
        if let Some(name) = c["displayname"].as_str() {
            hero["displayname"] = json!(name);
        }
        if let Some(url) = c["avatar_url"].as_str() {
            hero["avatar_url"] = json!(url);
        }
    }
    hero
}

/// An invited or knocking user's room: stripped state only (what `/v3/sync` sends as
/// `invite_state`).
async fn pending_room(db: &Db, user: &str, send: &Delivery<'_>) -> Result<Value, MatrixError> {
    let row = MembershipRow {
        room_id: send.entry.room_id.clone(),
        membership: send.entry.membership.as_str().to_owned(),
        // Stripped state needs no membership event.
        event_id: String::new(),
        stream_ordering: send.entry.membership_at as i64,
        room_version: send.entry.room_version.clone(),
        left_by_self: false,
    };
    let stripped = crate::sync::handler::stripped_room(db, &row, user).await?;
    let name = stripped
        .iter()
        .find(|e| e["type"] == "m.room.name")
        .and_then(|e| e["content"]["name"].as_str().map(str::to_owned));
    let mut room = json!({
        "initial": true,
        "membership": send.entry.membership.as_str(),
        "bump_stamp": send.entry.bump_stamp,
        "invite_state": stripped,
    });
    if let Some(name) = name {
        room["name"] = json!(name);
    }
    if !send.lists.is_empty() {
        room["lists"] = json!(send.lists);
    }
    Ok(room)
}
