//! What a user's push queue (src/runtime/pusher.rs) sends to a push gateway, and what it reads
//! from the answer (push gateway API: `POST /_matrix/push/v1/notify`).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::pusher::Pusher;

/// The path every HTTP pusher's `url` must have (spec: "the URL … MUST be … with path
/// `/_matrix/push/v1/notify`").
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// The event and room facts of one notification, read once for all the user's pushers.
#[derive(Clone, Debug, Default)]
pub struct Notification {
    pub event_id: String,
    pub room_id: String,
    pub kind: String,
    pub sender: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub sender_display_name: Option<String>,
    pub room_name: Option<String>,
    pub room_alias: Option<String>,
    /// The matching rule's actions (their tweaks go to the device).
    pub actions: Vec<Value>,
    /// The user's unread notifications across their rooms.
    pub unread: u64,
}

/// The tweaks of `actions`, as the device entry's `tweaks` object.
pub fn tweaks(actions: &[Value]) -> Map<String, Value> {
    actions
        .iter()
        .filter_map(|a| {
            let name = a.get("set_tweak")?.as_str()?;
            // The spec's `highlight` tweak without a value means true.
            let value = a.get("value").cloned().unwrap_or(Value::Bool(true));
            Some((name.to_owned(), value))
        })
        .collect()
}

/// `high` for what a person is waiting for (a highlight, a sound, an encrypted event that may
/// be either), `low` otherwise: the gateway may batch low-priority pushes.
fn prio(n: &Notification) -> &'static str {
    let tweaks = tweaks(&n.actions);
    let highlight = tweaks.get("highlight").and_then(Value::as_bool) == Some(true);
    if highlight || tweaks.contains_key("sound") || n.kind == "m.room.encrypted" {
        "high"
    } else {
        "low"
    }
}

/// The request body for one pusher. With `data.format` `event_id_only` the event's details are
/// left out, so the gateway (and the phone vendor behind it) learn nothing but ids and counts.
pub fn body(n: &Notification, user_id: &str, pusher: &Pusher) -> Value {
    let mut data = pusher.data.clone();
    let event_id_only = data.get("format").and_then(Value::as_str) == Some("event_id_only");
    // The device sees `data` minus the gateway's own `url`.
    data.remove("url");
    let device = json!({
        "app_id": pusher.app_id,
        "pushkey": pusher.pushkey,
        "pushkey_ts": pusher.pushkey_ts / 1000,
        "data": data,
        "tweaks": tweaks(&n.actions),
    });
    let mut notification = json!({
        "event_id": n.event_id,
        "room_id": n.room_id,
        "prio": prio(n),
        "counts": { "unread": n.unread },
        "devices": [device],
    });
    if !event_id_only {
        let fields = notification.as_object_mut().expect("an object");
        fields.insert("type".into(), json!(n.kind));
        fields.insert("sender".into(), json!(n.sender));
        fields.insert("content".into(), n.content.clone());
        if let Some(name) = &n.sender_display_name {
            fields.insert("sender_display_name".into(), json!(name));
        }
        if let Some(name) = &n.room_name {
            fields.insert("room_name".into(), json!(name));
        }
        if let Some(alias) = &n.room_alias {
            fields.insert("room_alias".into(), json!(alias));
        }
        if n.kind == "m.room.member" {
            fields.insert(
                "user_is_target".into(),
                json!(n.state_key.as_deref() == Some(user_id)),
            );
        }
    }
    json!({ "notification": notification })
}

/// The pushkeys the gateway rejected: their pushers are to be removed (spec: "the homeserver
/// MUST remove the pushers for the rejected pushkeys").
pub fn rejected(answer: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        rejected: Vec<String>,
    }
    serde_json::from_slice::<Answer>(answer)
        .map(|a| a.rejected)
        .unwrap_or_default()
}

/// Delay before the `failures`-th retry of a gateway that failed: 1 s doubling, at most an
/// hour.
pub fn backoff_ms(failures: u32) -> u64 {
    1000u64
        .saturating_mul(1u64 << failures.saturating_sub(1).min(12))
        .min(3_600_000)
}
