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

/// The transaction body (spec: `PUT /_matrix/app/v1/transactions/{txnId}`).
pub fn transaction_body(events: Vec<Value>) -> Value {
    json!({ "events": events })
}

/// The pause before retry number `failures` (1, 2, 4 ... seconds, at most five minutes: a
/// bridge that comes back is caught up soon).
pub fn backoff_ms(failures: u32) -> u64 {
    (1000u64 << failures.saturating_sub(1).min(20)).min(5 * 60 * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(super::backoff_ms(1), 1000);
        assert_eq!(super::backoff_ms(2), 2000);
        assert_eq!(super::backoff_ms(5), 16000);
        assert_eq!(super::backoff_ms(40), 300_000);
    }
}
