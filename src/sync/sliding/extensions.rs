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
) -> Result<Answer, MatrixError> {
    let mut body = Map::new();
    let mut news = false;
    let user = me.user_id.as_str();
    let start = from.copied().unwrap_or_default();

    if config.to_device.enabled == Some(true) {
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
            user,
            &me.device_id,
            since,
            now.to_device.max(since),
            limit,
        )
        .await?;
        let next = inbox.last().map_or(since, |m| m.stream_id as u64);
        let events: Vec<Value> = inbox.iter().map(e2ee::ToDeviceRow::to_client).collect();
        news |= !events.is_empty();
        body.insert(
            "to_device".into(),
            json!({ "next_batch": next.to_string(), "events": events }),
        );
    }

    if config.e2ee.on() {
        let (changed, left) = match from {
            Some(from) => e2ee::device_list_delta(db, user, from, now).await?,
            None => (Vec::new(), Vec::new()),
        };
        let (counts, fallback) = e2ee::key_counts(db, user, &me.device_id).await?;
        news |= !changed.is_empty() || !left.is_empty();
        body.insert(
            "e2ee".into(),
            json!({
                "device_lists": { "changed": changed, "left": left },
                "device_one_time_keys_count": counts,
                "device_unused_fallback_key_types": fallback,
            }),
        );
    }

    if config.account_data.on() {
        let covered: Vec<&InView<'_>> = rooms
            .iter()
            .filter(|r| {
                config
                    .account_data
                    .covers(r.room_id, &r.lists, r.subscribed)
            })
            .collect();
        let changed =
            user_data::account_data_since(db, user, start.account_data, now.account_data).await?;
        // A room sent for the first time gets its account data in full, changed or not.
        let first_time = from.is_some() && covered.iter().any(|r| r.initial);
        let earlier = if first_time {
            user_data::account_data_since(db, user, 0, start.account_data).await?
        } else {
            Vec::new()
        };
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
        news |= !global.is_empty() || !by_room.is_empty();
        body.insert(
            "account_data".into(),
            json!({ "global": global, "rooms": by_room }),
        );
    }

    if config.receipts.on() {
        let windows: Vec<Window<'_>> = rooms
            .iter()
            .filter(|r| config.receipts.covers(r.room_id, &r.lists, r.subscribed))
            .map(|r| Window {
                room_id: r.room_id,
                after: if r.initial { 0 } else { start.receipts },
                up_to: now.receipts,
            })
            .collect();
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
        news |= !out.is_empty();
        body.insert("receipts".into(), json!({ "rooms": out }));
    }

    if config.typing.on() {
        let windows: Vec<Window<'_>> = rooms
            .iter()
            .filter(|r| config.typing.covers(r.room_id, &r.lists, r.subscribed))
            .map(|r| Window {
                room_id: r.room_id,
                after: if r.initial { 0 } else { start.typing },
                up_to: now.typing,
            })
            .collect();
        let typing = batch::typing(db, &windows, now_ms()).await?;
        let mut out = Map::new();
        for (room_id, users) in typing {
            out.insert(
                room_id,
                json!({ "type": "m.typing", "content": { "user_ids": users } }),
            );
        }
        news |= !out.is_empty();
        body.insert("typing".into(), json!({ "rooms": out }));
    }

    Ok(Answer {
        body: Value::Object(body),
        news,
    })
}
