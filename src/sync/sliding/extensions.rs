//! The extensions of simplified sliding sync, each off unless the request enables it:
//! `to_device` (MSC3885, with its own `since`), `e2ee` (MSC3884: device list changes, one-time
//! key counts, unused fallback key types), `account_data`, `receipts` (MSC3960) and `typing`,
//! the last three scoped to the rooms of the lists and subscriptions they name.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::request::Extensions;
use crate::api::request::Requester;
use crate::http::MatrixError;
use crate::storage::sync_rooms::{self as batch, Window};
use crate::storage::{e2ee, user_data, Db};
use crate::sync::handler::receipt_content;
use crate::sync::start::KeyCounts;
use crate::sync::token::StreamPosition;
use crate::time::now_ms;

/// Most to-device messages per answer (as `/v3/sync`); the rest follow in the next one.
const TO_DEVICE_LIMIT: u64 = 100;

/// A joined room in view (in a list window or a subscription), for the room-scoped extensions.
pub struct InView<'a> {
    pub room_id: &'a str,
    pub lists: Vec<&'a str>,
    pub subscribed: bool,
    /// Sent with `initial: true` in this answer: its receipts and typing are sent in full.
    pub initial: bool,
}

pub struct Answer {
    pub body: Value,
    /// Something a waiting client should be woken for (key counts alone are not).
    pub news: bool,
}

pub async fn build(
    db: &Db,
    me: &Requester,
    config: &Extensions,
    from: Option<&StreamPosition>,
    now: &StreamPosition,
    rooms: &[InView<'_>],
    key_counts: KeyCounts,
) -> Result<Answer, MatrixError> {
    let mut body = Map::new();
    let mut news = false;
    let user = me.user_id.as_str();
    let start = from.copied().unwrap_or_default();

    // Every extension's reads start together (one D1 batch with the rooms' first round, which
    // the handler starts alongside); a read whose window is empty (its stream did not move, no
    // room is new) is not made at all: it could find nothing.
    let (to_device, e2ee, account_data, receipts, typing) = futures::join!(
        to_device(db, me, config, now),
        e2ee(db, me, config, from, now, key_counts),
        account_data(db, user, config, from, now, rooms),
        receipts(db, user, config, &start, now, rooms),
        typing(db, config, &start, now, rooms),
    );
    for (name, part) in [
        ("to_device", to_device?),
        ("e2ee", e2ee?),
        ("account_data", account_data?),
        ("receipts", receipts?),
        ("typing", typing?),
    ] {
        if let Some((value, new)) = part {
            news |= new;
            body.insert(name.into(), value);
        }
    }

    Ok(Answer {
        body: Value::Object(body),
        news,
    })
}

/// One extension's part of the body and whether it is news (`None`: not enabled).
type Part = Result<Option<(Value, bool)>, MatrixError>;

async fn to_device(db: &Db, me: &Requester, config: &Extensions, now: &StreamPosition) -> Part {
    if config.to_device.enabled != Some(true) {
        return Ok(None);
    }
    let since: u64 = match config.to_device.since.as_deref() {
        None | Some("") => 0,
        Some(s) => s
            .parse()
            .map_err(|_| MatrixError::invalid_param("invalid to_device since"))?,
    };
    let limit = config
        .to_device
        .limit
        .unwrap_or(TO_DEVICE_LIMIT)
        .clamp(1, TO_DEVICE_LIMIT);
    // Acknowledges (deletes) what the client had up to `since`, then reads on from there.
    let inbox = e2ee::to_device_inbox(
        db,
        me.user_id.as_str(),
        &me.device_id,
        since,
        now.to_device.max(since),
        limit,
    )
    .await?;
    let next = inbox.last().map_or(since, |m| m.stream_id as u64);
    let events: Vec<Value> = inbox.iter().map(e2ee::ToDeviceRow::to_client).collect();
    let news = !events.is_empty();
    Ok(Some((
        json!({ "next_batch": next.to_string(), "events": events }),
        news,
    )))
}

async fn e2ee(
    db: &Db,
    me: &Requester,
    config: &Extensions,
    from: Option<&StreamPosition>,
    now: &StreamPosition,
    (counts, fallback): KeyCounts,
) -> Part {
    if !config.e2ee.on() {
        return Ok(None);
    }
    let user = me.user_id.as_str();
    // The key counts come from the request's first statement, at the same `now`.
    let (changed, left) = match from {
        Some(from) => e2ee::device_list_delta(db, user, from, now).await?,
        None => (Vec::new(), Vec::new()),
    };
    let news = !changed.is_empty() || !left.is_empty();
    Ok(Some((
        json!({
            "device_lists": { "changed": changed, "left": left },
            "device_one_time_keys_count": counts,
            "device_unused_fallback_key_types": fallback,
        }),
        news,
    )))
}

/// Account data that changed in `(after, up_to]`; an empty window reads nothing.
async fn account_data_within(
    db: &Db,
    user: &str,
    after: u64,
    up_to: u64,
) -> Result<Vec<user_data::AccountDataRow>, MatrixError> {
    if up_to <= after {
        return Ok(Vec::new());
    }
    user_data::account_data_since(db, user, after, up_to).await
}

async fn account_data(
    db: &Db,
    user: &str,
    config: &Extensions,
    from: Option<&StreamPosition>,
    now: &StreamPosition,
    rooms: &[InView<'_>],
) -> Part {
    if !config.account_data.on() {
        return Ok(None);
    }
    let start = from.copied().unwrap_or_default();
    let covered: Vec<&InView<'_>> = rooms
        .iter()
        .filter(|r| {
            config
                .account_data
                .covers(r.room_id, &r.lists, r.subscribed)
        })
        .collect();
    // A room sent for the first time gets its account data in full, changed or not.
    let first_time = from.is_some() && covered.iter().any(|r| r.initial);
    let earlier = async {
        if first_time {
            account_data_within(db, user, 0, start.account_data).await
        } else {
            Ok(Vec::new())
        }
    };
    let (changed, earlier) = futures::join!(
        account_data_within(db, user, start.account_data, now.account_data),
        earlier
    );
    let (changed, earlier) = (changed?, earlier?);
    let mut global = Vec::new();
    let mut by_room: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in &changed {
        let event = json!({
            "type": row.kind,
            "content": serde_json::from_str::<Value>(&row.content).unwrap_or(Value::Null),
        });
        if row.room_id.is_empty() {
            global.push(event);
        } else if covered.iter().any(|r| r.room_id == row.room_id) {
            by_room.entry(row.room_id.clone()).or_default().push(event);
        }
    }
    for row in &earlier {
        if covered
            .iter()
            .any(|r| r.initial && r.room_id == row.room_id)
        {
            let event = json!({
                "type": row.kind,
                "content": serde_json::from_str::<Value>(&row.content).unwrap_or(Value::Null),
            });
            by_room.entry(row.room_id.clone()).or_default().push(event);
        }
    }
    let news = !global.is_empty() || !by_room.is_empty();
    Ok(Some((json!({ "global": global, "rooms": by_room }), news)))
}

async fn receipts(
    db: &Db,
    user: &str,
    config: &Extensions,
    start: &StreamPosition,
    now: &StreamPosition,
    rooms: &[InView<'_>],
) -> Part {
    if !config.receipts.on() {
        return Ok(None);
    }
    let windows = moved_windows(
        rooms,
        |r| config.receipts.covers(r.room_id, &r.lists, r.subscribed),
        start.receipts,
        now.receipts,
    );
    let mut grouped: BTreeMap<String, Vec<batch::ReceiptRow>> = BTreeMap::new();
    for row in batch::receipts(db, &windows).await? {
        grouped.entry(row.room_id.clone()).or_default().push(row);
    }
    let mut out = Map::new();
    for (room_id, rows) in grouped {
        let content = receipt_content(rows, user);
        if !content.is_empty() {
            out.insert(room_id, json!({ "type": "m.receipt", "content": content }));
        }
    }
    let news = !out.is_empty();
    Ok(Some((json!({ "rooms": out }), news)))
}

async fn typing(
    db: &Db,
    config: &Extensions,
    start: &StreamPosition,
    now: &StreamPosition,
    rooms: &[InView<'_>],
) -> Part {
    if !config.typing.on() {
        return Ok(None);
    }
    let windows = moved_windows(
        rooms,
        |r| config.typing.covers(r.room_id, &r.lists, r.subscribed),
        start.typing,
        now.typing,
    );
    let typing = batch::typing(db, &windows, now_ms()).await?;
    let mut out = Map::new();
    for (room_id, users) in typing {
        out.insert(
            room_id,
            json!({ "type": "m.typing", "content": { "user_ids": users } }),
        );
    }
    let news = !out.is_empty();
    Ok(Some((json!({ "rooms": out }), news)))
}

/// The windows of the covered rooms over `(after, up_to]` (from 0 for a room sent in full in
/// this answer), leaving out the empty ones: where the stream did not move there is nothing to
/// read.
fn moved_windows<'a>(
    rooms: &[InView<'a>],
    covers: impl Fn(&InView<'a>) -> bool,
    after: u64,
    up_to: u64,
) -> Vec<Window<'a>> {
    rooms
        .iter()
        .filter(|r| covers(r))
        .map(|r| Window {
            room_id: r.room_id,
            after: if r.initial { 0 } else { after },
            up_to,
        })
        .filter(|w| w.after < w.up_to)
        .collect()
}
