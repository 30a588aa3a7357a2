//! One step of a user's push queue (the `PushQueue` Durable Object, src/runtime/pusher.rs):
//! the user's oldest notification after the queue's cursor that is still unread goes to each of
//! the user's HTTP pushers. The queue keeps [`QueueState`] in its own storage and calls [`step`]
//! from its alarm until it answers [`Next::Idle`].
//!
//! A pusher that already took the notification is remembered (`done`), so a retry after one
//! gateway failed does not send it twice to the others. Gateways that fail (network, 5xx, 429)
//! are retried with backoff; after [`MAX_FAILURES`] the notification is dropped, as a phone
//! that has been unreachable for an hour gains nothing from a stale push. Pushkeys the gateway
//! rejects lose their pusher (spec: push gateway API, `rejected`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::gateway::{self, Notification};
use super::pusher::Pusher;
use crate::http::MatrixError;
use crate::platform::{HttpRequest, Method, Platform};
use crate::storage::push as stored;
use crate::storage::Db;

/// Failed attempts after which a notification is given up (about an hour of backoff).
pub const MAX_FAILURES: u32 = 12;

/// How long a gateway may take to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// What the queue keeps between steps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QueueState {
    pub user_id: String,
    /// Notifications up to this position were sent, dropped or read before their turn.
    pub cursor: i64,
    /// Pushers (`app_id` and `pushkey`) that took the notification after the cursor.
    #[serde(default)]
    pub done: Vec<(String, String)>,
    #[serde(default)]
    pub failures: u32,
}

/// When the queue should run its next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing waits: sleep until poked.
    Idle,
    /// More may wait: step again now.
    Now,
    /// A gateway failed: retry after this many milliseconds.
    After(u64),
}

enum Outcome {
    Taken,
    Retry(String),
}

/// Sends the next notification. Errors are D1's: the caller retries later.
pub(crate) async fn step(
    platform: &Platform,
    db: &Db,
    state: &mut QueueState,
) -> Result<Next, MatrixError> {
    let pushers: Vec<(Pusher, i64)> = stored::pushers(db, &state.user_id)
        .await?
        .into_iter()
        .filter(|(p, _)| p.kind == "http" && p.url().is_some())
        .collect();
    let Some(floor) = pushers.iter().map(|(_, start)| *start).min() else {
        return Ok(Next::Idle);
    };
    let after = state.cursor.max(floor);
    let (pending, looked_to, more) = stored::pending_pushes(db, &state.user_id, after, 1).await?;
    let Some(pending) = pending.into_iter().next() else {
        // Nothing up to where this step looked: go on from there, at once while the stream
        // goes further (each step reads a bounded stretch of it).
        state.cursor = looked_to;
        state.done.clear();
        return Ok(if more { Next::Now } else { Next::Idle });
    };
    let notification = notification(db, &state.user_id, &pending).await?;
    let mut retry = None;
    for (pusher, start) in &pushers {
        let key = (pusher.app_id.clone(), pusher.pushkey.clone());
        if *start >= pending.stream_ordering || state.done.contains(&key) {
            continue;
        }
        match send(platform, db, &state.user_id, pusher, &notification).await? {
            Outcome::Taken => state.done.push(key),
            Outcome::Retry(why) => retry = Some(why),
        }
    }
    if let Some(why) = retry {
        state.failures += 1;
        if state.failures < MAX_FAILURES {
            let wait = gateway::backoff_ms(state.failures);
            crate::log_warn!(
                "push of {} to {} failed ({why}), retrying in {wait} ms",
                pending.event_id,
                state.user_id
            );
            return Ok(Next::After(wait));
        }
        crate::log_warn!(
            "push of {} to {} dropped after {} failures ({why})",
            pending.event_id,
            state.user_id,
            state.failures
        );
    }
    state.cursor = pending.stream_ordering;
    state.done.clear();
    state.failures = 0;
    Ok(Next::Now)
}

async fn notification(
    db: &Db,
    user_id: &str,
    pending: &stored::PendingPush,
) -> Result<Notification, MatrixError> {
    let pdu: Value = serde_json::from_str(&pending.pdu).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Ok(Notification {
        event_id: pending.event_id.clone(),
        room_id: pending.room_id.clone(),
        kind: text(&pdu["type"]).unwrap_or_default(),
        sender: text(&pdu["sender"]).unwrap_or_default(),
        state_key: text(&pdu["state_key"]),
        content: pdu["content"].clone(),
        sender_display_name: pending.sender_name.clone(),
        room_name: pending.room_name.clone(),
        room_alias: pending.room_alias.clone(),
        actions: serde_json::from_str(&pending.actions).unwrap_or_default(),
        unread: stored::unread_total(db, user_id).await?,
    })
}

async fn send(
    platform: &Platform,
    db: &Db,
    user_id: &str,
    pusher: &Pusher,
    notification: &Notification,
) -> Result<Outcome, MatrixError> {
    let body = gateway::body(notification, user_id, pusher);
    let request = HttpRequest {
        method: Method::Post,
        url: pusher.url().unwrap_or_default().to_owned(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some(body.to_string().into_bytes()),
        timeout: SEND_TIMEOUT,
        max_body: Some(64 * 1024),
        follow_redirects: false,
    };
    let response = match platform.http.fetch(request).await {
        Ok(response) => response,
        Err(e) => return Ok(Outcome::Retry(e)),
    };
    match response.status {
        200..=299 => {
            let rejected = gateway::rejected(&response.body);
            if !rejected.is_empty() {
                crate::log_warn!(
                    "push gateway of {user_id} rejected {rejected:?}: removing those pushers"
                );
                stored::delete_rejected(db, user_id, &pusher.app_id, &rejected).await?;
            }
            Ok(Outcome::Taken)
        }
        429 | 500..=599 => Ok(Outcome::Retry(format!("status {}", response.status))),
        status => {
            // The gateway refuses this request for good: retrying it would change nothing.
            crate::log_warn!(
                "push gateway {} refused a push for {user_id} with status {status}",
                pusher.url().unwrap_or_default()
            );
            Ok(Outcome::Taken)
        }
    }
}
