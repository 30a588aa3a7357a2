//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`: one answer of a sliding
//! sync connection, waiting for news (on the same wake-ups as `/v3/sync`) when the client gave
//! a `pos` and a `timeout` and nothing is due.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::connection::{unknown_pos, Connection, Held, ListSeen, Pos};
use super::extensions::{self, InView};
use super::list::{self, Membership};
use super::request::{self, Request};
use super::required_state::RequiredState;
use super::room::{self, Delivery, Due};
use crate::api::request::{Ctx, Requester};
use crate::http::{JsonResponse, MatrixError};
use crate::storage::sync::{Memberships, RoomList};
use crate::storage::{sliding_sync as stored, Db};
use crate::sync::start::start;
use crate::sync::start::KeyCounts;
use crate::sync::token::StreamPosition;
use crate::time::now_ms;

/// Longest an answer may wait (as `/v3/sync`).
const MAX_TIMEOUT_MS: u64 = 60_000;

pub(crate) async fn sync(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let db = ctx.db();
    // The token, the positions and the typing expiry in one read (src/sync/start.rs), before
    // anything else is checked: a bad token is refused first.
    // The request is read first so that the same read fetches the connection state its `pos`
    // names; its errors are reported after the token's.
    let since = ctx.query("pos").and_then(Pos::parse).map(|p| p.stream);
    let request = (|| {
        let body = Value::Object(ctx.json_object()?);
        request::parse(&body, ctx.query("pos"), ctx.query_u64("timeout")?)
    })();
    // With a connection that has lists or subscriptions, the same read fetches the room list:
    // when its lists allow, only the rooms that can be in their windows (`list::window_from`).
    let partial = request.as_ref().ok().map(|r| {
        let rooms: Vec<&str> = r.subscriptions.keys().map(String::as_str).collect();
        let keys: Map<String, Value> = r
            .lists
            .iter()
            .filter_map(|(name, l)| Some((name.clone(), json!(list::window_key(l)?))))
            .collect();
        json!({ "rooms": rooms, "keys": keys }).to_string()
    });
    let first = request
        .as_ref()
        .ok()
        .and_then(|r| wanted(r, partial.as_deref()));
    let mut look = start(ctx, &db, since, Memberships::Never, None, first).await?;
    let me = look.me.clone();
    let request = request?;
    let known_connection = look.connection.take();
    let own_presence = look.own_presence.take();
    if crate::client::presence::on_sync(ctx, &db, me.user_id.as_str(), own_presence).await {
        // A new look: its positions are later than the room list read with the first.
        let again = wanted(&request, partial.as_deref());
        look = start(ctx, &db, since, Memberships::Never, None, again).await?;
    }
    let user = me.user_id.as_str();
    let (connection, pos) = match &request.pos {
        None => (Connection::default(), None),
        Some(text) => {
            let pos = Pos::parse(text).ok_or_else(unknown_pos)?;
            let stored = match known_connection {
                Some(read) => read,
                None => {
                    stored::position(&db, pos.row, user, &me.device_id, &request.conn_id).await?
                }
            };
            (
                Connection::from_json(&stored.ok_or_else(unknown_pos)?)?,
                Some(pos),
            )
        }
    };
    // A first request answers at once (MSC4186: the timeout is ignored without a pos).
    let timeout = pos.map_or(0, |_| request.timeout_ms.unwrap_or(0).min(MAX_TIMEOUT_MS));
    let deadline = now_ms() + timeout;
    loop {
        let (typing_ends, now) = (look.typing_ends, look.now);
        let (room_list, fold) = (look.room_list.take(), look.sliding_fold.take());
        let answer = build(
            &db,
            &me,
            &request,
            &connection,
            (pos.as_ref(), &now),
            (room_list, fold),
            look.key_counts.clone(),
        )
        .await?;
        let remaining = deadline.saturating_sub(now_ms());
        if answer.news || remaining == 0 {
            let row = match pos {
                Some(pos) if answer.connection == connection => pos.row,
                _ => {
                    stored::save_position(
                        &db,
                        user,
                        &me.device_id,
                        &request.conn_id,
                        &answer.connection.to_json(),
                        pos.map(|p| p.row),
                    )
                    .await?
                }
            };
            let mut body = answer.body;
            body["pos"] = json!(Pos::format(row, &now));
            if let Some(txn_id) = &request.txn_id {
                body["txn_id"] = json!(txn_id);
            }
            return Ok(JsonResponse::ok(body));
        }
        let until_typing_ends = typing_ends.map_or(u64::MAX, |t| t.saturating_sub(now_ms()));
        let wait = remaining.min(until_typing_ends.max(1));
        ctx.platform.wakeups.wait(user, &now, wait).await;
        // The next look checks the token again: a revoked one ends the long poll with 401.
        // It reads the room list too, partially when it can, as the first look did.
        look = start(
            ctx,
            &db,
            pos.map(|p| p.stream),
            Memberships::Never,
            None,
            wanted(&request, partial.as_deref()),
        )
        .await?;
    }
}

/// What a look reads besides the token with its first statement (`start`): the connection
/// state its `pos` names and, when it has lists or subscriptions, the room list (partially when
/// `partial`, `stored::ListRead`, and its lists allow).
fn wanted<'a>(
    r: &'a Request,
    partial: Option<&'a str>,
) -> Option<(u64, &'a str, Option<stored::ListRead<'a>>)> {
    let pos = Pos::parse(r.pos.as_deref()?)?;
    let read = stored::ListRead {
        columns: r.list_columns(),
        partial: partial.filter(|_| list::partial_allowed(r)),
        timeline_limit: r.timeline_limit(),
        lazy_members: r.lazy_members(),
    };
    Some((pos.row, r.conn_id.as_str(), r.wants_rooms().then_some(read)))
}

/// One answer, and the connection state after it.
struct Answer {
    body: Value,
    news: bool,
    connection: Connection,
}

/// What the rules of the request ask of one room in view.
#[derive(Default)]
struct Rule {
    timeline_limit: u64,
    required_state: RequiredState,
    lists: Vec<String>,
    subscribed: bool,
}

impl Rule {
    fn add(&mut self, config: &request::RoomConfig) {
        self.timeline_limit = self.timeline_limit.max(config.timeline_limit);
        self.required_state.add(&config.required_state);
    }
}

/// `room_list`: the user's rooms and DMs when the look at `now` read them (else read here),
/// and `fold`, the reads of its rooms with new events when it made them;
/// `key_counts`: the device's one-time key counts and unused fallback key types, as that look
/// read them.
async fn build(
    db: &Db,
    me: &Requester,
    request: &Request,
    connection: &Connection,
    (pos, now): (Option<&Pos>, &StreamPosition),
    (room_list, fold): (Option<RoomList>, Option<stored::Fold>),
    key_counts: KeyCounts,
) -> Result<Answer, MatrixError> {
    let user = me.user_id.as_str();
    let from = pos.map(|p| p.stream);
    // A connection for extensions only (matrix-rust-sdk's encryption sync has no lists and no
    // subscriptions) reads no room at all.
    let wants_rooms = request.wants_rooms();
    let spaces: Vec<String> = request
        .lists
        .values()
        .filter_map(|l| l.filters.spaces.clone())
        .flatten()
        .collect();
    // The user's rooms, DMs, the spaces' children and the rooms read elsewhere: independent
    // reads, started together so they share one D1 round trip.
    let every_room = || async {
        futures::try_join!(
            stored::room_entries(db, user, request.list_columns()),
            stored::direct_rooms(db, user)
        )
        .map(|(rows, direct)| Some((rows, direct, false)))
    };
    let rows = async {
        if room_list.is_some() {
            Ok(room_list)
        } else if wants_rooms {
            every_room().await
        } else {
            Ok(None)
        }
    };
    let (rows, children, read_elsewhere) = futures::join!(
        rows,
        stored::space_children(db, &spaces),
        stored::rooms_with_own_receipts(
            db,
            user,
            from.map_or(now.receipts, |f| f.receipts),
            now.receipts
        ),
    );
    let (mut rows, children, read_elsewhere) = (rows?, children?, read_elsewhere?);
    let sent_before = |room_id: &str| connection.rooms.contains_key(room_id);
    let mut entries = Vec::new();
    let mut partial = false;
    if let Some((read, direct, is_partial)) = rows.take() {
        entries = list::build(read, user, &direct, sent_before);
        // A partial read that does not hold the windows (a membership changed, a list changed
        // its ranges or filters) is done again over every room: rare, one more round trip.
        partial = is_partial
            && from.is_some_and(|f| {
                list::partial_holds(
                    &entries,
                    f.events,
                    &request.lists,
                    &connection.lists,
                    f.account_data != now.account_data,
                )
            });
        if is_partial && !partial {
            if let Some((read, direct, _)) = every_room().await? {
                entries = list::build(read, user, &direct, sent_before);
            }
        }
    }

    // Which rooms are in view, under which rules.
    let mut view: BTreeMap<usize, Rule> = BTreeMap::new();
    let mut lists = Map::new();
    let mut seen_lists: BTreeMap<String, ListSeen> = BTreeMap::new();
    for (name, config) in &request.lists {
        let (count, picked) = match connection.lists.get(name).filter(|_| partial) {
            Some(seen) => list::window_from(&entries, config, seen),
            None => list::window(&entries, config, &children),
        };
        lists.insert(name.clone(), json!({ "count": count }));
        if let Some(key) = list::window_key(config) {
            seen_lists.insert(
                name.clone(),
                ListSeen {
                    key,
                    count: count as u64,
                    rooms: picked.iter().map(|&i| entries[i].room_id.clone()).collect(),
                },
            );
        }
        for i in picked {
            let rule = view.entry(i).or_default();
            rule.add(&config.room);
            rule.lists.push(name.clone());
        }
    }
    let index: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.room_id.as_str(), i))
        .collect();
    // Subscriptions to rooms the user has no membership in are ignored (MSC4186).
    for (room_id, config) in &request.subscriptions {
        if let Some(&i) = index.get(room_id.as_str()) {
            let rule = view.entry(i).or_default();
            rule.add(config);
            rule.subscribed = true;
        }
    }

    // Which of them are due, and why.
    let mut sends: Vec<Delivery<'_>> = Vec::new();
    let mut in_view: BTreeMap<String, String> = BTreeMap::new();
    for (&i, rule) in &view {
        let entry = &entries[i];
        let fingerprint = rule.required_state.fingerprint();
        in_view.insert(entry.room_id.clone(), fingerprint.clone());
        let new_membership = from.is_some_and(|f| entry.membership_at > f.events);
        let due = match connection.rooms.get(&entry.room_id) {
            None => Some(Due::Initial),
            Some(_)
                if new_membership
                    && (entry.membership == Membership::Join || entry.membership.is_pending()) =>
            {
                Some(Due::Initial)
            }
            Some(_) if entry.membership.is_pending() => None,
            Some(sent) => {
                let after = match sent.held {
                    Held::Live => from.map_or(0, |f| f.events),
                    Held::Until(n) => n,
                };
                let changed = (entry.latest > after && entry.visible_up_to(now.events) > after)
                    || (sent.held == Held::Live && read_elsewhere.contains(&entry.room_id));
                let full_state = sent.required_state != fingerprint;
                (changed || full_state).then_some(Due::Since { after, full_state })
            }
        };
        if let Some(due) = due {
            sends.push(Delivery {
                entry,
                due,
                timeline_limit: rule.timeline_limit,
                required_state: rule.required_state.clone(),
                lists: rule.lists.clone(),
            });
        }
    }
    let sent: BTreeMap<String, String> = sends
        .iter()
        .map(|s| (s.entry.room_id.clone(), s.required_state.fingerprint()))
        .collect();

    let in_view_joined: Vec<InView<'_>> = view
        .iter()
        .filter(|(&i, _)| entries[i].membership == Membership::Join)
        .map(|(&i, rule)| InView {
            room_id: &entries[i].room_id,
            lists: rule.lists.iter().map(String::as_str).collect(),
            subscribed: rule.subscribed,
            initial: sends
                .iter()
                .any(|s| s.entry.room_id == entries[i].room_id && s.due == Due::Initial),
        })
        .collect();
    let (rooms, extensions) = futures::join!(
        room::build(db, me, &sends, (from.as_ref(), now), fold.as_ref()),
        extensions::build(
            db,
            me,
            &request.extensions,
            from.as_ref(),
            now,
            &in_view_joined,
            key_counts,
        ),
    );
    let (rooms, extensions) = (rooms?, extensions?);
    let news = !rooms.is_empty() || extensions.news;
    let body = json!({
        "lists": lists,
        "rooms": rooms,
        "extensions": extensions.body,
    });
    Ok(Answer {
        body,
        news,
        connection: connection.advance(from.map_or(0, |f| f.events), &in_view, &sent, seen_lists),
    })
}
