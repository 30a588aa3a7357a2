//! `GET /sync`: assembles the response from D1 and, when there is nothing new and the client
//! gave a timeout, waits on the platform's wake-ups until something for this user is written.
//!
//! Per joined room: a full room (initial sync, `full_state`, or joined since the token) gets
//! the state before its timeline; an incremental one gets new events, and the state that
//! changed in the gap when the timeline is `limited`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::filter::Filter;
use super::start::start_folding;
use super::token::StreamPosition;
use crate::api::request::{Ctx, Requester};
use crate::client::room_read::{add_memberships, position_token, Access};
use crate::client::threads;
use crate::http::{JsonResponse, MatrixError};
use crate::rooms::client_event::stripped_state;
use crate::rooms::visibility::MembershipHistory;
use crate::rooms::RoomVersion;
use crate::storage::events::{self, EventRow};
use crate::storage::sync::{self as stored, FirstRound, Fold, Inbox, MembershipRow, Memberships};
use crate::storage::sync_fold::Prefetched;
use crate::storage::sync_rooms::{self as batch, Window};
use crate::storage::{e2ee, presence as stored_presence, user_data, Db};
use crate::time::now_ms;

/// Longest a sync may wait: clients ask for 30 s; more only holds resources for nothing.
const MAX_TIMEOUT_MS: u64 = 60_000;
/// MSC4222: the client asks for `state_after` instead of `state`.
const STATE_AFTER_PARAM: &str = "org.matrix.msc4222.use_state_after";
const STATE_AFTER_FIELD: &str = "org.matrix.msc4222.state_after";
const DEFAULT_TIMELINE_LIMIT: u64 = 10;
/// To-device messages per response; the rest follow in the next sync (Synapse uses 100 too).
const TO_DEVICE_LIMIT: u64 = 100;
const MAX_TIMELINE_LIMIT: u64 = 100;
/// The filter the request asks for: inline JSON, or the stored filter `stored` that the first
/// read fetched for the id (`start`).
fn load_filter(ctx: &Ctx, stored: Option<&str>) -> Result<Filter, MatrixError> {
    let Some(raw) = ctx.query("filter") else {
        return Ok(Filter::default());
    };
    let text = if raw.trim_start().starts_with('{') {
        raw
    } else {
        raw.parse::<i64>()
            .map_err(|_| MatrixError::invalid_param("unknown filter id"))?;
        stored.ok_or_else(|| MatrixError::invalid_param("unknown filter id"))?
    };
    serde_json::from_str(text).map_err(|e| MatrixError::bad_json(format!("invalid filter: {e}")))
}

/// The timeline limit for the first statement's fold (`storage::sync_fold`): the inline
/// filter's, else the stored filter's as the statement reads it (`None`). A limit the fold got
/// wrong only costs the separate reads (`joined_rooms` compares).
fn fold(ctx: &Ctx, filter: Option<&Filter>) -> Fold {
    let limit = |f: &Filter| {
        f.room
            .timeline
            .limit_or(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT)
    };
    let limit = match (filter, ctx.query("filter")) {
        (Some(f), _) => Some(limit(f)),
        (None, None) => Some(DEFAULT_TIMELINE_LIMIT),
        (None, Some(raw)) if raw.trim_start().starts_with('{') => {
            serde_json::from_str(raw).ok().map(|f: Filter| limit(&f))
        }
        (None, Some(_)) => None,
    };
    Fold {
        limit,
        default: DEFAULT_TIMELINE_LIMIT,
        max: MAX_TIMELINE_LIMIT,
    }
}

/// A stored filter's id, when the request names one (checked by `load_filter`).
fn filter_id(ctx: &Ctx) -> Option<i64> {
    ctx.query("filter")
        .filter(|raw| !raw.trim_start().starts_with('{'))
        .and_then(|raw| raw.parse().ok())
}

pub(crate) async fn sync(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let db = ctx.db();
    let since = ctx
        .query("since")
        .map(|s| {
            StreamPosition::parse(s)
                .ok_or_else(|| MatrixError::invalid_param("unknown since token"))
        })
        .transpose();
    let full_state = ctx.query("full_state") == Some("true");
    let memberships = if full_state {
        Memberships::Always
    } else {
        Memberships::IfMoved
    };
    // Authentication first: a bad token is refused before any other error is reported.
    let first = start_folding(
        ctx,
        &db,
        since.clone().ok().flatten(),
        memberships,
        filter_id(ctx),
        fold(ctx, None),
    )
    .await?;
    let since = since?;
    let me = first.me.clone();
    let filter = load_filter(ctx, first.filter.as_deref())?;
    let own_presence = first.own_presence.clone();
    let mut look =
        if crate::client::presence::on_sync(ctx, &db, me.user_id.as_str(), own_presence).await {
            // The user's own presence moved: read again so this answer carries it.
            start_folding(ctx, &db, since, memberships, None, fold(ctx, Some(&filter))).await?
        } else {
            first
        };
    let state_after = ctx.query(STATE_AFTER_PARAM) == Some("true");
    let timeout = ctx.query_u64("timeout")?.unwrap_or(0).min(MAX_TIMEOUT_MS);
    let deadline = now_ms() + timeout;
    loop {
        let now = look.now;
        let remaining = deadline.saturating_sub(now_ms());
        // Every stream is global: when none has moved since the client's token, nothing can be
        // new for this user, and the whole per-room read is skipped (a sync that finds nothing
        // is the common case for a connected client).
        let quiet = since == Some(now) && !full_state;
        if !quiet {
            let known = Known {
                memberships: look.memberships.take(),
                first_round: look.first_round.take(),
                key_counts: look.key_counts.clone(),
                inbox: look.inbox,
                prefetched: look.prefetched.take(),
            };
            let (body, news) = build(
                &db,
                &me,
                &filter,
                since,
                now,
                full_state,
                state_after,
                known,
            )
            .await?;
            if news || since.is_none() || full_state || remaining == 0 {
                return Ok(JsonResponse::ok(body));
            }
        } else if remaining == 0 {
            return Ok(JsonResponse::ok(quiet_body(look.key_counts, now)));
        }
        let until_typing_ends = look
            .typing_ends
            .map_or(u64::MAX, |t| t.saturating_sub(now_ms()));
        let wait = remaining.min(until_typing_ends.max(1));
        // After the wait, one more look; past the deadline it answers whatever it finds. The
        // look checks the token again, so a long poll ends with 401 once its token is revoked.
        ctx.platform
            .wakeups
            .wait(me.user_id.as_str(), &now, wait)
            .await;
        look = start_folding(ctx, &db, since, memberships, None, fold(ctx, Some(&filter))).await?;
    }
}

/// What the first read already has, so `build` does not read it again.
struct Known {
    memberships: Option<Vec<MembershipRow>>,
    first_round: Option<FirstRound>,
    key_counts: (BTreeMap<String, u64>, Vec<String>),
    inbox: Option<Inbox>,
    /// The rooms' first round and the device-list changes, read with the positions.
    prefetched: Option<Prefetched>,
}

/// The current stream positions, never behind the client's token: the to-device inbox deletes
/// what was delivered, so its maximum can fall below a position a client has already seen.
async fn position(db: &Db, since: Option<StreamPosition>) -> Result<StreamPosition, MatrixError> {
    let mut now = stored::current_position(db).await?;
    if let Some(since) = since {
        now.to_device = now.to_device.max(since.to_device);
        now.device_lists = now.device_lists.max(since.device_lists);
    }
    Ok(now)
}

/// When the next typing notification in the user's rooms runs out (no writer wakes a long
/// poll then, so it has to wake itself), and the stream positions. Both are read at once; only
/// when a notification has already run out is it ended first, which moves the typing stream,
/// and both are read again.
pub(crate) async fn typing_and_position(
    db: &Db,
    me: &Requester,
    since: Option<StreamPosition>,
) -> Result<(Option<u64>, StreamPosition), MatrixError> {
    let user = me.user_id.as_str();
    let (next, now) = futures::join!(user_data::next_typing_expiry(db, user), position(db, since));
    let next = next?;
    if next.is_none_or(|t| t > now_ms()) {
        return Ok((next, now?));
    }
    user_data::expire_typing(db, now_ms()).await?;
    let (next, now) = futures::join!(user_data::next_typing_expiry(db, user), position(db, since));
    Ok((next?, now?))
}

#[allow(clippy::too_many_arguments)]
async fn build(
    db: &Db,
    me: &Requester,
    filter: &Filter,
    since: Option<StreamPosition>,
    now: StreamPosition,
    full_state: bool,
    state_after: bool,
    known: Known,
) -> Result<(Value, bool), MatrixError> {
    let from = since.unwrap_or_default();
    let user = me.user_id.as_str();
    let memberships = async {
        match known.memberships {
            Some(rows) => Ok(rows),
            None => stored::memberships(db, user, since.map(|s| s.events)).await,
        }
    };
    // Independent reads go out together: each D1 query is a round trip, and a sync waits for
    // the slowest of a group rather than for their sum.
    // The first round: what `start` read already, else read now.
    let first_round = async {
        if let Some(known) = known.first_round {
            return Ok(known);
        }
        let changed = async {
            match since {
                Some(since) => stored::changed_rooms(db, user, &since, &now).await,
                None => Ok(Vec::new()),
            }
        };
        let (changed, account_data, presence) = futures::join!(
            changed,
            user_data::account_data_since(db, user, from.account_data, now.account_data),
            stored_presence::changed_for(
                db,
                user,
                from.presence,
                now.presence,
                (since.map_or(now.events, |s| s.events), now.events),
            ),
        );
        Ok::<_, MatrixError>(FirstRound {
            changed: changed?,
            account_data: account_data?,
            presence: presence?,
        })
    };
    let (memberships, first_round) = futures::join!(memberships, first_round);
    let memberships = memberships?;
    let FirstRound {
        changed,
        account_data,
        presence,
    } = first_round?;
    let at = now_ms();
    let presence: Vec<Value> = presence
        .into_iter()
        .filter(|(sender, _)| filter.presence.allows("m.presence", sender))
        .map(|(sender, p)| json!({ "type": "m.presence", "sender": sender, "content": p.content(at) }))
        .collect();
    let changed: HashSet<String> = changed.into_iter().collect();
    let mut room_account_data: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut global_account_data = Vec::new();
    for row in &account_data {
        let event = json!({ "type": row.kind, "content": serde_json::from_str::<Value>(&row.content).unwrap_or(Value::Null) });
        if row.room_id.is_empty() {
            if filter.account_data.allows(&row.kind, "") {
                global_account_data.push(event);
            }
        } else if filter.room.account_data.allows(&row.kind, "") {
            room_account_data
                .entry(row.room_id.clone())
                .or_default()
                .push(event);
        }
    }

    // A user who never changed a push rule has no stored m.push_rules: an initial sync still
    // gives the rules in force, as clients read them from there (spec: "Push Rules: API").
    if since.is_none()
        && filter.account_data.allows("m.push_rules", "")
        && !account_data
            .iter()
            .any(|r| r.room_id.is_empty() && r.kind == "m.push_rules")
    {
        global_account_data.push(json!({
            "type": "m.push_rules",
            "content": { "global": crate::client::push_rules::default_ruleset(&me.user_id) },
        }));
    }

    // The encryption parts need only the positions: their reads go out with the rooms' first
    // batch (in the common case, the first statement already read everything else).
    let (prefetched, device_lists) = match known.prefetched {
        Some(mut p) => {
            let lists = std::mem::take(&mut p.device_lists);
            (Some(p), Some(lists))
        }
        None => (None, None),
    };
    let rooms = rooms(
        db,
        me,
        filter,
        &memberships,
        &changed,
        room_account_data,
        (since, now, full_state, state_after),
        prefetched,
    );
    let (rooms, e2ee) = futures::join!(
        rooms,
        encryption(
            db,
            me,
            since,
            now,
            known.key_counts,
            known.inbox,
            device_lists
        ),
    );
    let ((join, invite, knock, leave), e2ee) = (rooms?, e2ee?);
    let news = !join.is_empty()
        || !invite.is_empty()
        || !knock.is_empty()
        || !leave.is_empty()
        || !global_account_data.is_empty()
        || !presence.is_empty()
        || e2ee.is_news();
    let body = response(
        join,
        invite,
        knock,
        leave,
        global_account_data,
        presence,
        e2ee,
    );
    Ok((body, news))
}

/// The joined, invited, knocked and left rooms of the response.
type Rooms = (
    Map<String, Value>,
    Map<String, Value>,
    Map<String, Value>,
    Map<String, Value>,
);

/// The rooms part of a sync: which rooms go in, under which membership, and each one built.
#[allow(clippy::too_many_arguments)]
async fn rooms(
    db: &Db,
    me: &Requester,
    filter: &Filter,
    memberships: &[MembershipRow],
    changed: &HashSet<String>,
    mut room_account_data: BTreeMap<String, Vec<Value>>,
    (since, now, full_state, state_after): (Option<StreamPosition>, StreamPosition, bool, bool),
    prefetched: Option<Prefetched>,
) -> Result<Rooms, MatrixError> {
    let from = since.unwrap_or_default();
    let mut joined: Vec<JoinedRoom<'_>> = Vec::new();
    let mut invite = Map::new();
    let mut ignored: Option<Vec<String>> = None;
    let mut knock = Map::new();
    let mut leave = Map::new();
    for m in memberships
        .iter()
        .filter(|m| filter.room.allows_room(&m.room_id))
    {
        let Some(version) = RoomVersion::parse(&m.room_version) else {
            continue;
        };
        let new_membership = since.is_none_or(|s| m.stream_ordering as u64 > s.events);
        match m.membership.as_str() {
            "join" => {
                let full = since.is_none() || full_state || new_membership;
                let extra = room_account_data.remove(&m.room_id);
                if !full && !changed.contains(&m.room_id) && extra.is_none() {
                    continue;
                }
                joined.push(JoinedRoom {
                    room_id: &m.room_id,
                    version,
                    full,
                    account_data: extra,
                });
            }
            "invite" if new_membership || full_state => {
                let events = stripped_room(db, m, me.user_id.as_str()).await?;
                // Invites from users this user ignores are not shown (spec: ignoring users).
                if ignored.is_none() {
                    ignored = Some(ignored_users(db, me.user_id.as_str()).await?);
                }
                if inviter(&events, me.user_id.as_str()).is_some_and(|sender| {
                    ignored
                        .as_ref()
                        .is_some_and(|i| i.iter().any(|u| u == sender))
                }) {
                    continue;
                }
                invite.insert(
                    m.room_id.clone(),
                    json!({ "invite_state": { "events": events } }),
                );
            }
            "knock" if new_membership || full_state => {
                let events = stripped_room(db, m, me.user_id.as_str()).await?;
                knock.insert(
                    m.room_id.clone(),
                    json!({ "knock_state": { "events": events } }),
                );
            }
            // A whole-state answer shows the rooms the user was kicked or banned from; rooms
            // they left themselves only when the filter asks (`include_leave`).
            "leave" | "ban"
                if (since.is_some() && new_membership)
                    || ((since.is_none() || full_state)
                        && (filter.room.include_leave || !m.left_by_self)) =>
            {
                leave.insert(
                    m.room_id.clone(),
                    left_room(db, me, filter, m, version, from).await?,
                );
            }
            _ => {}
        }
    }
    let join = joined_rooms(db, me, filter, joined, from, now, state_after, prefetched).await?;
    Ok((join, invite, knock, leave))
}

/// A sync response from its parts.
fn response(
    join: serde_json::Map<String, Value>,
    invite: serde_json::Map<String, Value>,
    knock: serde_json::Map<String, Value>,
    leave: serde_json::Map<String, Value>,
    account_data: Vec<Value>,
    presence: Vec<Value>,
    e2ee: Encryption,
) -> Value {
    json!({
        "next_batch": e2ee.next.to_string(),
        "rooms": { "join": join, "invite": invite, "knock": knock, "leave": leave },
        "account_data": { "events": account_data },
        "presence": { "events": presence },
        "to_device": { "events": e2ee.to_device },
        "device_lists": { "changed": e2ee.changed, "left": e2ee.left },
        "device_one_time_keys_count": e2ee.one_time_key_counts,
        "device_unused_fallback_key_types": e2ee.unused_fallback_key_types,
    })
}

/// The answer when no stream has moved: empty, but with the device's key counts, which clients
/// read from every response (a missing count makes them upload keys).
fn quiet_body(
    (one_time_key_counts, unused_fallback_key_types): (BTreeMap<String, u64>, Vec<String>),
    now: StreamPosition,
) -> Value {
    let e2ee = Encryption {
        to_device: Vec::new(),
        changed: Vec::new(),
        left: Vec::new(),
        one_time_key_counts,
        unused_fallback_key_types,
        next: now,
    };
    response(
        Default::default(),
        Default::default(),
        Default::default(),
        Default::default(),
        Vec::new(),
        Vec::new(),
        e2ee,
    )
}

/// The encryption parts of a sync response, and the token that acknowledges them.
struct Encryption {
    to_device: Vec<Value>,
    changed: Vec<String>,
    left: Vec<String>,
    one_time_key_counts: BTreeMap<String, u64>,
    unused_fallback_key_types: Vec<String>,
    next: StreamPosition,
}

impl Encryption {
    /// Key counts alone do not end a long poll: they only change through the client's own
    /// uploads or others' claims, which the client learns at its next sync anyway.
    fn is_news(&self) -> bool {
        !self.to_device.is_empty() || !self.changed.is_empty() || !self.left.is_empty()
    }
}

/// To-device messages for this device (acknowledging those below `since`) and device-list
/// changes of users sharing a room, read together (two queries, whatever the number of rooms
/// or devices), with the device's key counts from the first read.
async fn encryption(
    db: &Db,
    me: &Requester,
    since: Option<StreamPosition>,
    now: StreamPosition,
    (one_time_key_counts, unused_fallback_key_types): (BTreeMap<String, u64>, Vec<String>),
    inbox: Option<Inbox>,
    device_lists: Option<(Vec<String>, Vec<String>)>,
) -> Result<Encryption, MatrixError> {
    let user = me.user_id.as_str();
    let from = since.unwrap_or_default();
    // An initial sync has no "since" to compare with: the client queries every key it needs.
    let delta = async {
        match (since, device_lists) {
            (Some(_), Some(known)) => Ok(known),
            (Some(since), None) => e2ee::device_list_delta(db, user, &since, &now).await,
            (None, _) => Ok((Vec::new(), Vec::new())),
        }
    };
    let inbox = async {
        let bounds = (from.to_device, now.to_device, TO_DEVICE_LIMIT);
        match inbox {
            Some(inbox) => {
                e2ee::to_device_inbox_within(db, user, &me.device_id, bounds, inbox).await
            }
            None => {
                e2ee::to_device_inbox(db, user, &me.device_id, bounds.0, bounds.1, bounds.2).await
            }
        }
    };
    let (inbox, delta) = futures::join!(inbox, delta);
    let (inbox, (changed, left)) = (inbox?, delta?);
    let mut next = now;
    if inbox.len() as u64 == TO_DEVICE_LIMIT {
        // More are waiting: the token stops after the last one delivered.
        next.to_device = inbox.last().map_or(now.to_device, |m| m.stream_id as u64);
    }
    let to_device = inbox.iter().map(e2ee::ToDeviceRow::to_client).collect();
    Ok(Encryption {
        to_device,
        changed,
        left,
        one_time_key_counts,
        unused_fallback_key_types,
        next,
    })
}

fn to_client(rows: &[EventRow], version: RoomVersion, me: &Requester) -> Vec<Value> {
    rows.iter()
        .map(|r| r.to_client(version, me.user_id.as_str(), &me.device_id))
        .collect()
}

/// The timeline of a room between positions, visible events only, oldest first; with whether
/// it was cut short and the token before its first event.
async fn timeline(
    db: &Db,
    room_id: &str,
    access: &Access,
    filter: &Filter,
    after: u64,
    up_to: u64,
) -> Result<(Vec<EventRow>, bool, u64), MatrixError> {
    let limit = filter
        .room
        .timeline
        .limit_or(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT);
    let mut rows =
        events::timeline_backwards(db, room_id, after as i64, up_to as i64, limit + 1).await?;
    let limited = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    rows.reverse();
    let start = rows.first().map_or(up_to, |r| r.position() - 1);
    let rows = rows
        .into_iter()
        .filter(|r| access.can_see(r) && filter.room.timeline.allows_event(r))
        .collect();
    Ok((rows, limited, start))
}

/// State events as the filter wants them: lazy loading keeps only the timeline's senders.
fn filter_state(
    rows: Vec<EventRow>,
    filter: &Filter,
    timeline: &[EventRow],
    me: &str,
    drop_timeline_events: bool,
) -> Vec<EventRow> {
    let lazy = filter.room.state.lazy_load_members;
    let senders: HashSet<&str> = timeline
        .iter()
        .map(|r| r.sender.as_str())
        .chain([me])
        .collect();
    let in_timeline: HashSet<&str> = timeline.iter().map(|r| r.event_id.as_str()).collect();
    rows.into_iter()
        .filter(|r| filter.room.state.allows(&r.kind, &r.sender))
        .filter(|r| !drop_timeline_events || !in_timeline.contains(r.event_id.as_str()))
        .filter(|r| {
            !lazy
                || r.kind != "m.room.member"
                || r.state_key.as_deref().is_some_and(|k| senders.contains(k))
        })
        .collect()
}

/// A room's window: from the start for full rooms, else from the client's position.
fn window<'a>(r: &JoinedRoom<'a>, since: u64, up_to: u64) -> Window<'a> {
    Window {
        room_id: r.room_id,
        after: if r.full { 0 } else { since },
        up_to,
    }
}

/// A joined room that goes into this response.
struct JoinedRoom<'a> {
    room_id: &'a str,
    version: RoomVersion,
    /// Initial sync, `full_state`, or joined since the token: state from the start.
    full: bool,
    account_data: Option<Vec<Value>>,
}

/// Builds every joined room of the response with a fixed number of queries (see
/// `storage::sync_rooms`), whatever the number of rooms; none for the first round when the
/// first statement read it for exactly these windows (`prefetched`).
#[allow(clippy::too_many_arguments)]
async fn joined_rooms(
    db: &Db,
    me: &Requester,
    filter: &Filter,
    rooms: Vec<JoinedRoom<'_>>,
    from: StreamPosition,
    now: StreamPosition,
    state_after: bool,
    prefetched: Option<Prefetched>,
) -> Result<Map<String, Value>, MatrixError> {
    if rooms.is_empty() {
        return Ok(Map::new());
    }
    let user = me.user_id.as_str();
    let ids: Vec<&str> = rooms.iter().map(|r| r.room_id).collect();
    let limit = filter
        .room
        .timeline
        .limit_or(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT);
    let timeline_windows: Vec<Window<'_>> = rooms
        .iter()
        .map(|r| window(r, from.events, now.events))
        .collect();
    let ephemeral_rooms: Vec<&JoinedRoom<'_>> = rooms
        .iter()
        .filter(|r| filter.room.ephemeral.allows_room(r.room_id))
        .collect();
    let typing_windows: Vec<Window<'_>> = ephemeral_rooms
        .iter()
        .map(|r| window(r, from.typing, now.typing))
        .collect();
    let receipt_windows: Vec<Window<'_>> = ephemeral_rooms
        .iter()
        .map(|r| window(r, from.receipts, now.receipts))
        .collect();
    // Incremental windows that cross a hole federation could not fill start after it (below).
    let gap_windows: Vec<Window<'_>> = rooms
        .iter()
        .zip(&timeline_windows)
        .filter(|(r, _)| !r.full)
        .map(|(_, w)| Window {
            room_id: w.room_id,
            after: w.after,
            up_to: w.up_to,
        })
        .collect();
    // Two rounds of reads, each sent together: what needs nothing else first (thread roots
    // among the timelines are found in SQL, so their summaries come with them), then what
    // depends on the timelines (only for full, limited or lazy-loading rooms, and rooms whose
    // members changed: an incremental sync of a few new messages has no second round).
    // The first statement read these windows when every room is one the user was already in
    // and changed since the token (`storage::sync_fold`), with this timeline limit.
    let prefetched = prefetched.filter(|p| {
        p.limit == limit + 1
            && rooms
                .iter()
                .all(|r| !r.full && p.rooms.iter().any(|id| id == r.room_id))
    });
    let first_round = match prefetched {
        Some(p) => {
            // It read every changed room; the ephemeral filter keeps its own.
            let allowed = |room: &str| ephemeral_rooms.iter().any(|r| r.room_id == room);
            let typing_rows = p.typing.into_iter().filter(|t| allowed(t.room_id()));
            let receipt_rows = p.receipts.into_iter().filter(|r| allowed(&r.room_id));
            (
                p.histories,
                p.timelines,
                p.thread_summaries,
                batch::typing_from(typing_rows.collect(), now_ms()),
                receipt_rows.collect(),
                p.unread,
                p.gaps,
            )
        }
        None => {
            let (histories, timelines, thread_summaries, typing, receipt_rows, read, gaps) = futures::join!(
                batch::membership_histories(db, user, &ids),
                batch::timelines(db, &timeline_windows, limit + 1),
                batch::thread_summaries(db, &timeline_windows, limit + 1, user),
                batch::typing(db, &typing_windows, now_ms()),
                batch::receipts(db, &receipt_windows),
                crate::storage::push::unread(db, user, &ids),
                batch::gaps(db, &gap_windows),
            );
            (
                histories?,
                timelines?,
                thread_summaries?,
                typing?,
                receipt_rows?,
                read?,
                gaps?,
            )
        }
    };
    let (
        mut histories,
        mut timelines,
        thread_summaries,
        mut typing,
        receipt_rows,
        mut unread,
        gaps,
    ) = first_round;
    let mut receipts: HashMap<String, Vec<batch::ReceiptRow>> = HashMap::new();
    for receipt in receipt_rows {
        receipts
            .entry(receipt.room_id.clone())
            .or_default()
            .push(receipt);
    }

    // Per room: the visible timeline, whether it was cut, and where it starts.
    struct Part {
        access: Access,
        timeline: Vec<EventRow>,
        limited: bool,
        start: u64,
        prev_batch: u64,
    }
    let mut parts: Vec<Part> = Vec::with_capacity(rooms.len());
    for r in &rooms {
        let access = Access {
            version: r.version,
            history: histories
                .remove(r.room_id)
                .unwrap_or_else(|| MembershipHistory(Vec::new())),
        };
        let mut rows = timelines.remove(r.room_id).unwrap_or_default();
        let mut limited = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        // What precedes a gap is not contiguous with what follows it: the timeline starts at
        // the gap and is `limited`, so the client pages back over the hole (spec: a limited
        // timeline means events are missing between `since` and the timeline's start).
        if let Some(&gap) = gaps.get(r.room_id) {
            rows.retain(|row| row.position() >= gap);
            limited = true;
        }
        rows.reverse();
        let start = rows.first().map_or(now.events, |row| row.position() - 1);
        // A timeline that begins with the room's creation has nothing before it to page to
        // (the spec lets `prev_batch` go then); the token then names the end of this sync
        // instead, the point whose state the client now holds, for `/members?at=` (as Synapse).
        let whole_room = !limited && rows.first().is_some_and(|row| row.kind == "m.room.create");
        let prev_batch = if whole_room { now.events } else { start };
        let timeline = rows
            .into_iter()
            .filter(|row| access.can_see(row) && filter.room.timeline.allows_event(row))
            .collect();
        parts.push(Part {
            access,
            timeline,
            limited,
            start,
            prev_batch,
        });
    }

    // MSC4222 (`use_state_after`): the state at the end of the timeline, timeline included,
    // so a client never has to replay timeline events to know the current state.
    let state_end = |p: &Part| if state_after { now.events } else { p.start };
    let state_windows: Vec<Window<'_>> = rooms
        .iter()
        .zip(&parts)
        .filter(|(r, p)| r.full || p.limited || state_after)
        .map(|(r, p)| window(r, from.events, state_end(p)))
        .collect();

    // Lazy loading without a record of what each client was already sent: an incremental sync
    // carries the membership of every timeline sender (the spec allows redundant ones), so a
    // client always has the member event of whoever just spoke.
    let lazy_wanted: Vec<(&str, u64, Vec<&str>)> = if filter.room.state.lazy_load_members {
        rooms
            .iter()
            .zip(&parts)
            .filter(|(r, _)| !r.full)
            .map(|(r, p)| {
                let senders: HashSet<&str> =
                    p.timeline.iter().map(|row| row.sender.as_str()).collect();
                (r.room_id, state_end(p), senders.into_iter().collect())
            })
            .collect()
    } else {
        Vec::new()
    };
    let summary_rooms: Vec<&str> = rooms
        .iter()
        .zip(&parts)
        .filter(|(r, p)| {
            r.full || p.timeline.iter().any(|row| row.kind == "m.room.member") || p.limited
        })
        .map(|(r, _)| r.room_id)
        .collect();
    let (states, sender_members, summaries) = futures::join!(
        batch::states(db, &state_windows),
        batch::members_at(db, &lazy_wanted),
        batch::summaries(db, user, &summary_rooms),
    );
    let (mut states, mut sender_members, mut summaries) = (states?, sender_members?, summaries?);

    let mut out = Map::new();
    for (r, p) in rooms.into_iter().zip(parts) {
        let mut state_rows = states.remove(r.room_id).unwrap_or_default();
        let have: HashSet<String> = state_rows.iter().map(|row| row.event_id.clone()).collect();
        let extra = sender_members.remove(r.room_id).unwrap_or_default();
        state_rows.extend(
            extra
                .into_iter()
                .filter(|row| !have.contains(&row.event_id)),
        );
        let state_rows = filter_state(state_rows, filter, &p.timeline, user, !state_after);
        let mut ephemeral = Vec::new();
        if let Some(users) = typing.remove(r.room_id) {
            if filter.room.ephemeral.allows("m.typing", "") {
                ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
            }
        }
        let content = receipt_content(receipts.remove(r.room_id).unwrap_or_default(), user);
        if !content.is_empty() && filter.room.ephemeral.allows("m.receipt", "") {
            ephemeral.push(json!({ "type": "m.receipt", "content": content }));
        }
        let mut room = room_json(
            &p.timeline,
            p.limited,
            p.prev_batch,
            &state_rows,
            state_after,
            r.version,
            me,
        );
        if let Some(events) = room["timeline"]["events"].as_array_mut() {
            add_memberships(&p.timeline, events, &p.access);
            threads::attach(&thread_summaries, &p.timeline, events, &p.access, me);
        }
        room["ephemeral"] = json!({ "events": ephemeral });
        room["account_data"] = json!({ "events": r.account_data.unwrap_or_default() });
        let (counts, thread_counts) = unread
            .remove(r.room_id)
            .unwrap_or_default()
            .sync_fields(filter.room.timeline.unread_thread_notifications);
        room["unread_notifications"] = counts;
        if let Some(thread_counts) = thread_counts {
            room["unread_thread_notifications"] = thread_counts;
        }
        if let Some(summary) = summaries.remove(r.room_id) {
            room["summary"] = summary;
        }
        out.insert(r.room_id.to_owned(), room);
    }
    Ok(out)
}

/// The `m.receipt` content: event id → receipt type → user → receipt. Private receipts only
/// reach their owner.
pub(crate) fn receipt_content(receipts: Vec<batch::ReceiptRow>, me: &str) -> Map<String, Value> {
    let mut content = Map::new();
    for r in receipts
        .iter()
        .filter(|r| r.receipt_type != "m.read.private" || r.user_id == me)
    {
        let mut receipt = json!({ "ts": r.ts });
        if !r.thread_id.is_empty() {
            receipt["thread_id"] = json!(r.thread_id);
        }
        let by_type = content
            .entry(r.event_id.clone())
            .or_insert_with(|| json!({}));
        // A user's threaded and unthreaded receipts on one event share one slot: the
        // unthreaded one wins, as it says more (MSC4102).
        let slot = &mut by_type[&r.receipt_type][&r.user_id];
        if slot.is_null() || r.thread_id.is_empty() || slot.get("thread_id").is_some() {
            *slot = receipt;
        }
    }
    content
}

/// What an invited or knocking user sees of a room (spec: stripped state), their own
/// membership event included.
pub(crate) async fn stripped_room(
    db: &Db,
    m: &MembershipRow,
    me: &str,
) -> Result<Vec<Value>, MatrixError> {
    let state = events::state_at(db, &m.room_id, m.stream_ordering as u64).await?;
    // A room another server holds: what that server sent of the room with its invite (or in
    // answer to the knock), and the membership event itself.
    if let Some(mut events) = crate::storage::rooms::invite_state(db, &m.room_id, me).await? {
        events.extend(
            state
                .iter()
                .filter(|r| r.stream_ordering == m.stream_ordering)
                .map(|r| stripped_state(&r.pdu)),
        );
        return Ok(events);
    }
    let events: Vec<Value> = state
        .iter()
        .filter(|r| {
            crate::rooms::client_event::INVITE_STATE.contains(&r.kind.as_str())
                || r.stream_ordering == m.stream_ordering
        })
        .map(|r| stripped_state(&r.pdu))
        .collect();
    Ok(events)
}

async fn left_room(
    db: &Db,
    me: &Requester,
    filter: &Filter,
    m: &MembershipRow,
    version: RoomVersion,
    from: StreamPosition,
) -> Result<Value, MatrixError> {
    let access = Access {
        version,
        history: events::membership_history(db, &m.room_id, me.user_id.as_str()).await?,
    };
    let left_at = m.stream_ordering as u64;
    let (mut timeline_rows, limited, start) = timeline(
        db,
        &m.room_id,
        &access,
        filter,
        from.events.min(left_at - 1),
        left_at,
    )
    .await?;
    if timeline_rows.is_empty() {
        // A rejected or rescinded invite of a room we never held: the leave is all there is.
        if let Some(row) = events::out_of_band_membership(db, &m.event_id).await? {
            timeline_rows.push(row);
        }
    }
    let state_rows = if limited || from.events == 0 {
        events::state_at(db, &m.room_id, start).await?
    } else {
        Vec::new()
    };
    let state_rows = filter_state(
        state_rows,
        filter,
        &timeline_rows,
        me.user_id.as_str(),
        true,
    );
    let mut room = room_json(
        &timeline_rows,
        limited,
        start,
        &state_rows,
        false,
        version,
        me,
    );
    if let Some(events) = room["timeline"]["events"].as_array_mut() {
        add_memberships(&timeline_rows, events, &access);
    }
    room["account_data"] = json!({ "events": [] });
    Ok(room)
}

/// The timeline and state parts of a room in the sync response.
fn room_json(
    timeline: &[EventRow],
    limited: bool,
    start: u64,
    state: &[EventRow],
    state_after: bool,
    version: RoomVersion,
    me: &Requester,
) -> Value {
    let state_field = if state_after {
        STATE_AFTER_FIELD
    } else {
        "state"
    };
    let mut room = json!({
        "timeline": {
            "events": to_client(timeline, version, me),
            "limited": limited,
            "prev_batch": position_token(start as i64),
        },
    });
    room[state_field] = json!({ "events": to_client(state, version, me) });
    room
}

/// The users `user_id` ignores (`m.ignored_user_list`).
async fn ignored_users(db: &Db, user_id: &str) -> Result<Vec<String>, MatrixError> {
    let list =
        crate::storage::user_data::account_data(db, user_id, "", "m.ignored_user_list").await?;
    Ok(list
        .as_ref()
        .and_then(|l| l["ignored_users"].as_object())
        .map(|users| users.keys().cloned().collect())
        .unwrap_or_default())
}

/// Who sent `user_id` the invite, from the invite's stripped state.
fn inviter<'a>(events: &'a [Value], user_id: &str) -> Option<&'a str> {
    events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user_id)
        .and_then(|e| e["sender"].as_str())
}
