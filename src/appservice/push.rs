//! What goes into a service's next transaction. The service's queue (one Durable Object per
//! service, src/runtime/appservice.rs) keeps a cursor into the event stream and asks this
//! module for the events after it that concern the service. Reading from D1 instead of being
//! handed events keeps the senders' paths free of the service: a write only pokes the queue.
//!
//! A transaction, once built, is stored by the queue before it is sent and re-sent unchanged
//! (same id, same events) until the service accepts it, as the spec requires.

use std::collections::HashMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::registration::is_interested_in_event;
use super::AppService;
use crate::http::MatrixError;
use crate::platform::Platform;
use crate::rooms::RoomVersion;
use crate::storage::{accounts, appservices, rooms, Db};

/// Events looked at per step; a transaction carries at most this many.
pub const EVENTS_PER_STEP: u64 = 100;

/// A transaction waiting to be accepted by the service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingTransaction {
    pub txn_id: String,
    pub body: Value,
    /// The stream position the queue's cursor moves to once the service accepts it.
    pub through: i64,
    /// The same for receipts and typing (MSC2409), when the service takes them.
    #[serde(default)]
    pub receipts_through: Option<i64>,
    /// The same for to-device messages and device lists (with `org.matrix.msc3202`), and the
    /// to-device messages sent.
    #[serde(default)]
    pub to_device_through: Option<i64>,
    #[serde(default)]
    pub device_lists_through: Option<i64>,
    #[serde(default)]
    pub to_device_ids: Vec<i64>,
    #[serde(default)]
    pub typing_through: Option<i64>,
}

/// The next step of a queue: the events after `after` that concern the service (possibly none),
/// the position they reach, and whether more events wait after it.
pub struct Step {
    pub events: Vec<Value>,
    pub through: i64,
    pub more: bool,
}

pub(crate) async fn next_step(
    platform: &Platform,
    db: &Db,
    service: &Rc<AppService>,
    server: &str,
    after: i64,
) -> Result<Step, MatrixError> {
    let rows = appservices::events_after(db, after, EVENTS_PER_STEP).await?;
    let more = rows.len() as u64 == EVENTS_PER_STEP;
    let through = rows.last().map_or(after, |r| r.stream_ordering);
    let mut rooms_seen: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    let mut versions: HashMap<String, Option<RoomVersion>> = HashMap::new();
    let mut events = Vec::new();
    for row in &rows {
        let summary = json!({
            "room_id": row.room_id,
            "sender": row.sender,
            "type": row.kind,
            "state_key": row.state_key,
        });
        let mut interested = is_interested_in_event(service, &summary, &[], &[]);
        if !interested {
            if !rooms_seen.contains_key(&row.room_id) {
                let found = appservices::room_aliases_and_members(db, &row.room_id).await?;
                rooms_seen.insert(row.room_id.clone(), found);
            }
            let (aliases, members) = &rooms_seen[&row.room_id];
            interested = is_interested_in_event(service, &summary, aliases, members);
        }
        if !interested {
            continue;
        }
        // As Synapse does: a sender or member of ours that does not exist yet is asked of the
        // service first, so that it can create the user before it sees the event.
        let suffix = format!(":{server}");
        for user in [
            Some(&row.sender),
            row.state_key
                .as_ref()
                .filter(|_| row.kind == "m.room.member"),
        ]
        .into_iter()
        .flatten()
        {
            if user.ends_with(&suffix)
                && *user != service.sender
                && !accounts::user_exists(db, user).await?
            {
                let services = std::slice::from_ref(service);
                super::queries::ask(platform, services, super::queries::Query::User, user).await;
            }
        }
        if !versions.contains_key(&row.room_id) {
            let version = rooms::room_version(db, &row.room_id).await?;
            versions.insert(row.room_id.clone(), version);
        }
        let Some(version) = versions[&row.room_id] else {
            continue;
        };
        let mut event = row.to_client(version, "", "");
        // The client format carries no transaction id for a service, and `age` would be stale
        // by the time a retried transaction arrives: the service gets the timestamp alone.
        if let Some(unsigned) = event.get_mut("unsigned").and_then(Value::as_object_mut) {
            unsigned.remove("age");
        }
        events.push(event);
    }
    Ok(Step {
        events,
        through,
        more,
    })
}

/// The ephemeral side of a step (MSC2409): receipts and typing in rooms that concern the
/// service, and the stream positions they reach.
pub struct EphemeralStep {
    pub edus: Vec<Value>,
    pub receipts_through: i64,
    pub typing_through: i64,
    /// Whether receipts or typing changes wait past this step.
    pub more: bool,
}

/// Whether a room concerns the service (its id, aliases or joined members), cached per step.
async fn room_concerns(
    db: &Db,
    service: &AppService,
    room_id: &str,
    seen: &mut HashMap<String, bool>,
) -> Result<bool, MatrixError> {
    if let Some(known) = seen.get(room_id) {
        return Ok(*known);
    }
    let (aliases, members) = appservices::room_aliases_and_members(db, room_id).await?;
    let summary = json!({ "room_id": room_id });
    let concerns = is_interested_in_event(service, &summary, &aliases, &members);
    seen.insert(room_id.to_owned(), concerns);
    Ok(concerns)
}

pub(crate) async fn ephemeral_step(
    db: &Db,
    service: &AppService,
    since_ts: i64,
    receipts_after: i64,
    typing_after: i64,
) -> Result<EphemeralStep, MatrixError> {
    let mut seen = HashMap::new();
    let mut edus = Vec::new();
    let receipts =
        appservices::receipts_after(db, receipts_after, since_ts, EVENTS_PER_STEP).await?;
    let receipts_through = receipts.last().map_or(receipts_after, |r| r.stream_id);
    let mut more = receipts.len() as u64 == EVENTS_PER_STEP;
    for receipt in receipts {
        if !room_concerns(db, service, &receipt.room_id, &mut seen).await? {
            continue;
        }
        let mut at = json!({ "ts": receipt.ts });
        if !receipt.thread_id.is_empty() {
            at["thread_id"] = json!(receipt.thread_id);
        }
        edus.push(json!({
            "type": "m.receipt",
            "room_id": receipt.room_id,
            "content": { receipt.event_id: { receipt.receipt_type: { receipt.user_id: at } } },
        }));
    }
    let changes = appservices::typing_after(db, typing_after, EVENTS_PER_STEP).await?;
    let typing_through = changes.last().map_or(typing_after, |c| c.stream_id);
    more |= changes.len() as u64 == EVENTS_PER_STEP;
    let mut rooms: Vec<String> = Vec::new();
    for change in changes {
        if !rooms.contains(&change.room_id) {
            rooms.push(change.room_id);
        }
    }
    for room_id in rooms {
        if !room_concerns(db, service, &room_id, &mut seen).await? {
            continue;
        }
        let typing = appservices::typing_now(db, &room_id, crate::time::now_ms()).await?;
        edus.push(json!({
            "type": "m.typing",
            "room_id": room_id,
            "content": { "user_ids": typing },
        }));
    }
    Ok(EphemeralStep {
        edus,
        receipts_through,
        typing_through,
        more,
    })
}

/// What a service that declares `org.matrix.msc3202: true` (an encrypting bridge) also gets:
/// to-device messages for its users (MSC2409's `to_device`) and the one-time key counts and
/// unused fallback key types of the users a transaction concerns (MSC3202). Synapse gates both
/// behind experimental settings; here the registration's own flag opts in.
#[derive(Default)]
pub struct DeviceStep {
    pub to_device: Vec<Value>,
    /// The stream ids of the messages sent, deleted once the service accepts them.
    pub to_device_ids: Vec<i64>,
    pub to_device_through: i64,
    pub one_time_keys_count: serde_json::Map<String, Value>,
    pub unused_fallback_key_types: serde_json::Map<String, Value>,
    /// Users sharing a room with one of the service's users whose devices changed (MSC3202's
    /// `device_lists.changed`), and the device-list stream position reached.
    pub device_lists_changed: Vec<String>,
    pub device_lists_through: i64,
    pub more: bool,
}

pub(crate) async fn device_step(
    db: &Db,
    service: &AppService,
    to_device_after: i64,
    device_lists_after: i64,
    rooms: &[String],
) -> Result<DeviceStep, MatrixError> {
    let rows = appservices::to_device_after(db, to_device_after, EVENTS_PER_STEP).await?;
    let changes =
        appservices::device_list_changes_after(db, device_lists_after, EVENTS_PER_STEP).await?;
    let mut step = DeviceStep {
        to_device_through: rows.last().map_or(to_device_after, |r| r.stream_id),
        device_lists_through: changes.last().map_or(device_lists_after, |c| c.stream_id),
        more: rows.len() as u64 == EVENTS_PER_STEP || changes.len() as u64 == EVENTS_PER_STEP,
        ..DeviceStep::default()
    };
    for change in changes {
        let sharing = crate::storage::e2ee::users_sharing_rooms(db, &[&change.user_id]).await?;
        if sharing.iter().any(|u| service.is_interested_in_user(u)) {
            step.device_lists_changed.push(change.user_id);
        }
    }
    // The users whose key counts go along: the bot, the service's users in the rooms the
    // transaction speaks of, and the recipients of its to-device messages.
    let mut users = vec![service.sender.clone()];
    for row in rows {
        if !service.is_interested_in_user(&row.user_id) {
            continue;
        }
        step.to_device.push(json!({
            "type": row.kind,
            "sender": row.sender,
            "content": serde_json::from_str::<Value>(&row.content).unwrap_or(Value::Null),
            "to_user_id": row.user_id,
            "to_device_id": row.device_id,
        }));
        step.to_device_ids.push(row.stream_id);
        users.push(row.user_id);
    }
    for room in rooms {
        let (_, members) = appservices::room_aliases_and_members(db, room).await?;
        users.extend(
            members
                .into_iter()
                .filter(|m| service.is_interested_in_user(m)),
        );
    }
    users.sort();
    users.dedup();
    for user in users {
        let mut devices = serde_json::Map::new();
        for count in appservices::one_time_key_counts(db, &user).await? {
            let entry = devices
                .entry(count.device_id)
                .or_insert_with(|| json!({ "signed_curve25519": 0 }));
            if let Some(algorithm) = count.algorithm {
                entry[algorithm] = json!(count.n);
            }
        }
        if !devices.is_empty() {
            step.one_time_keys_count
                .insert(user.clone(), Value::Object(devices));
        }
        let mut fallbacks = serde_json::Map::new();
        for key in appservices::unused_fallback_keys(db, &user).await? {
            let entry = fallbacks.entry(key.device_id).or_insert_with(|| json!([]));
            if let Some(list) = entry.as_array_mut() {
                list.push(json!(key.algorithm));
            }
        }
        if !fallbacks.is_empty() {
            step.unused_fallback_key_types
                .insert(user, Value::Object(fallbacks));
        }
    }
    Ok(step)
}

/// Adds a device step's fields to a transaction body (the field names Synapse uses).
pub fn add_device_fields(body: &mut Value, step: &DeviceStep) {
    body["de.sorunome.msc2409.to_device"] = json!(step.to_device);
    let counts = Value::Object(step.one_time_keys_count.clone());
    body["org.matrix.msc3202.device_one_time_keys_count"] = counts.clone();
    body["org.matrix.msc3202.device_one_time_key_counts"] = counts;
    body["org.matrix.msc3202.device_unused_fallback_key_types"] =
        Value::Object(step.unused_fallback_key_types.clone());
    body["org.matrix.msc3202.device_lists"] =
        json!({ "changed": step.device_lists_changed, "left": [] });
}

/// The transaction body (spec: `PUT /_matrix/app/v1/transactions/{txnId}`), with the
/// ephemeral events under the field names the registration asked for (as Synapse sends them;
/// to-device messages are not forwarded, as in Synapse without its experimental flag).
pub fn transaction_body(service: &AppService, events: Vec<Value>, ephemeral: Vec<Value>) -> Value {
    let mut body = json!({ "events": events });
    if service.file.receive_ephemeral.unwrap_or(false) {
        body["ephemeral"] = json!(ephemeral);
    }
    if service.file.msc2409_push_ephemeral.unwrap_or(false) {
        body["de.sorunome.msc2409.ephemeral"] = json!(ephemeral);
    }
    if service.receives_ephemeral() {
        body["de.sorunome.msc2409.to_device"] = json!([]);
    }
    body
}

/// The pause before retry number `failures` (1, 2, 4 ... seconds, at most five minutes: a
/// bridge that comes back is caught up soon).
pub fn backoff_ms(failures: u32) -> u64 {
    (1000u64 << failures.saturating_sub(1).min(20)).min(5 * 60 * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ephemeral_fields_follow_the_registration() {
        let service = |extra: &str| {
            let text = format!(
                r#"{{"id":"x","url":null,"as_token":"a","hs_token":"h","sender_localpart":"b"{extra}}}"#
            );
            super::AppService::from_json(&text, "example.org").unwrap()
        };
        let receipt = serde_json::json!({"type": "m.receipt"});
        let plain = super::transaction_body(&service(""), vec![], vec![receipt.clone()]);
        assert_eq!(plain, serde_json::json!({"events": []}));
        let stable = super::transaction_body(
            &service(r#","receive_ephemeral":true"#),
            vec![],
            vec![receipt.clone()],
        );
        assert_eq!(stable["ephemeral"][0], receipt);
        assert!(stable.get("de.sorunome.msc2409.ephemeral").is_none());
        let unstable = super::transaction_body(
            &service(r#","de.sorunome.msc2409.push_ephemeral":true"#),
            vec![],
            vec![receipt.clone()],
        );
        assert_eq!(unstable["de.sorunome.msc2409.ephemeral"][0], receipt);
        assert_eq!(
            unstable["de.sorunome.msc2409.to_device"],
            serde_json::json!([])
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(super::backoff_ms(1), 1000);
        assert_eq!(super::backoff_ms(2), 2000);
        assert_eq!(super::backoff_ms(5), 16000);
        assert_eq!(super::backoff_ms(40), 300_000);
    }
}
