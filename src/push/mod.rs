//! Push: which local users an event notifies, the counts /sync shows from that, and delivery to
//! push gateways (spec: client-server "Push Notifications", and the push gateway API).
//!
//! The room's writer has the members' rules read in one query ([`prefetch`]), evaluated in
//! memory ([`decide`], `evaluate`), and the users to notify stored in the `push` column of the
//! event's own row before it wakes the room's members: written with the row for a message
//! (`EventWrite::push`), by one update of it for a state event, whose membership change may
//! change who is notified ([`after_event`]); an event that notifies nobody leaves it NULL.
//! /sync counts the notifying events after the user's read receipts (`counts`,
//! src/storage/push.rs). Users with a pusher have their push queue poked
//! (src/runtime/pusher.rs), which reads what is new from D1 and sends it (`deliver`), so a slow
//! gateway never slows a sender.

pub mod counts;
// The push queue's step runs in the runtime's Durable Object (wasm only) and in tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub mod deliver;
pub mod evaluate;
pub mod gateway;
pub mod pusher;
#[cfg(test)]
mod tests;

use ruma::events::StateEventType;
use ruma::serde::Raw;
use ruma::{ServerName, UserId};
use serde_json::Value;

use crate::client::push_rules::StoredPushRules;
use crate::platform::Platform;
use crate::rooms::power::PowerLevels;
use crate::rooms::state::RoomState;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::push::{self as stored, NotifiedUser};
use crate::storage::Db;
use crate::time::now_ms;
use evaluate::{Recipient, RoomFacts};

/// Who an event is evaluated for, and what the room says at it: taken from the room's state
/// after the event, in the writer, so no query is needed for it.
pub struct Audience {
    pub facts: RoomFacts,
    /// Local users and their display names in the room: joined members, and the target of a
    /// membership event (an invitee is notified of their invite). The sender is left out.
    pub users: Vec<(String, String)>,
}

fn content(pdu: &Pdu) -> Value {
    serde_json::from_str(pdu.content().get()).unwrap_or(Value::Null)
}

/// The audience of `pdu` in a room whose state (after the event) is `state`.
pub fn audience(
    state: &RoomState,
    version: RoomVersion,
    pdu: &Pdu,
    server: &ServerName,
) -> Audience {
    let mut member_count = 0u64;
    let mut users = Vec::new();
    let target = (pdu.kind().to_string() == "m.room.member")
        .then(|| pdu.state_key())
        .flatten();
    for member in state
        .events()
        .filter(|e| e.kind().to_string() == "m.room.member")
    {
        let Some(user) = member.state_key() else {
            continue;
        };
        let content = content(member);
        let joined = content["membership"] == "join";
        member_count += joined as u64;
        let local = UserId::parse(user).is_ok_and(|u| u.server_name() == server);
        if local && user != pdu.sender().as_str() && (joined || target == Some(user)) {
            let name = content["displayname"].as_str().unwrap_or(user);
            users.push((user.to_owned(), name.to_owned()));
        }
    }
    let power = PowerLevels::from_state(state, version);
    let notifications = state
        .get(&StateEventType::RoomPowerLevels, "")
        .map(|p| content(p)["notifications"].clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()));
    Audience {
        facts: RoomFacts {
            room_id: pdu.room_id(),
            member_count,
            sender_level: power.user_level(pdu.sender()),
            notifications,
        },
        users,
    }
}

/// The part of an event that push rules can look at (the spec's event fields; not the PDU's
/// hashes, signatures and DAG references): ruma flattens the event once per user evaluated, so
/// what it is given is kept small.
pub fn evaluated_fields(pdu: &Pdu) -> Value {
    let mut event = serde_json::json!({
        "type": pdu.kind().to_string(),
        "sender": pdu.sender().as_str(),
        "room_id": pdu.room_id().as_str(),
        "content": content(pdu),
    });
    if let Some(key) = pdu.state_key() {
        event["state_key"] = Value::String(key.to_owned());
    }
    event
}

/// The local users an event may notify, from the room's state *before* it: joined members and
/// the target of a membership event, the sender left out. A superset of the [`audience`] after
/// the event (only a membership event changes membership, and its target is in), so their rules
/// can be read while the event is being written.
pub fn candidates(state: &RoomState, pdu: &Pdu, server: &ServerName) -> Vec<String> {
    let kind = pdu.kind().to_string();
    candidates_of(state, pdu.sender(), &kind, pdu.state_key(), server)
}

/// [`candidates`] of an event still to be built, from its sender, type and state key: the
/// room's writer reads their rules in the round trip that checks the transaction id.
pub fn candidates_of(
    state: &RoomState,
    sender: &UserId,
    kind: &str,
    state_key: Option<&str>,
    server: &ServerName,
) -> Vec<String> {
    let target = (kind == "m.room.member").then_some(state_key).flatten();
    let mut users: Vec<String> = state
        .events()
        .filter(|e| e.kind().to_string() == "m.room.member")
        .filter(|e| content(e)["membership"] == "join")
        .filter_map(|e| e.state_key())
        .chain(target)
        .filter(|u| *u != sender.as_str())
        .filter(|u| UserId::parse(*u).is_ok_and(|u| u.server_name() == server))
        .map(str::to_owned)
        .collect();
    users.sort();
    users.dedup();
    users
}

/// Reads the rules of `users` (see [`candidates`]), for [`after_event`].
pub(crate) async fn prefetch(
    db: &Db,
    users: &[String],
) -> Result<Vec<stored::RecipientRow>, crate::http::MatrixError> {
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    stored::recipients(db, &names).await
}

/// Evaluates a stored event for its audience, stores the notifications and pokes the push
/// queues of notified users with pushers. `prefetched` is what [`prefetch`] read while the event
/// was written, if it was; otherwise the rules are read now. Failures are logged, never the
/// sender's: the event is already stored, and only counts and pushes of it would be missing.
pub(crate) async fn after_event(
    platform: &Platform,
    db: &Db,
    audience: Audience,
    pdu: &Pdu,
    prefetched: Option<Result<Vec<stored::RecipientRow>, crate::http::MatrixError>>,
) {
    if audience.users.is_empty() {
        return;
    }
    match notify(db, &audience, pdu, prefetched).await {
        Ok(poke) if !poke.is_empty() => platform.pushers.poke(poke).await,
        Ok(_) => {}
        Err(e) => crate::log_warn!(
            "push rules of {} not evaluated: {}",
            pdu.event_id(),
            e.message
        ),
    }
}

/// The evaluation and its one write; returns the notified users who have pushers.
async fn notify(
    db: &Db,
    audience: &Audience,
    pdu: &Pdu,
    prefetched: Option<Result<Vec<stored::RecipientRow>, crate::http::MatrixError>>,
) -> Result<Vec<String>, crate::http::MatrixError> {
    let rows = match prefetched {
        Some(Ok(rows)) => rows,
        _ => {
            let names: Vec<&str> = audience.users.iter().map(|(u, _)| u.as_str()).collect();
            stored::recipients(db, &names).await?
        }
    };
    let decided = decide(audience, pdu, &rows).await?;
    if let Some(push) = decided.push {
        let room_id = pdu.room_id();
        let statement =
            stored::notifications_statement(db, pdu.event_id().as_str(), room_id.as_str(), &push);
        db.batch(vec![statement]).await?;
    }
    Ok(decided.poke)
}

/// An event's notifications, decided before they are stored: the value of its row's `push`
/// column (`EventWrite::push` when the row is still to be written) and the notified users who
/// have pushers, whose push queues are poked once it is stored.
pub(crate) struct Decided {
    pub push: Option<String>,
    pub poke: Vec<String>,
}

/// Evaluates `pdu` for its audience with the rules in `rows` (read by [`prefetch`], possibly
/// for a superset of the audience).
pub(crate) async fn decide(
    audience: &Audience,
    pdu: &Pdu,
    rows: &[stored::RecipientRow],
) -> Result<Decided, crate::http::MatrixError> {
    // Only the audience after the event: a prefetched superset may hold someone who just left.
    let rows: Vec<_> = rows
        .iter()
        .filter(|r| audience.users.iter().any(|(u, _)| *u == r.user_id))
        .collect();
    let event = evaluated_fields(pdu);
    let event = Raw::new(&event).map_err(|e| crate::http::MatrixError::internal(e.to_string()))?;
    let mut decisions = Vec::new();
    for row in rows {
        let Ok(user_id) = UserId::parse(row.user_id.as_str()) else {
            continue;
        };
        let display_name = audience
            .users
            .iter()
            .find(|(u, _)| *u == row.user_id)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let recipient = Recipient {
            user_id,
            display_name,
            stored: row
                .rules
                .as_deref()
                .and_then(|r| serde_json::from_str::<StoredPushRules>(r).ok()),
        };
        if let Some(decision) =
            evaluate::evaluate(&event, pdu.sender(), &audience.facts, &recipient).await
        {
            decisions.push((row, decision));
        }
    }
    let notified: Vec<NotifiedUser<'_>> = decisions
        .iter()
        .map(|(row, d)| NotifiedUser {
            user_id: &row.user_id,
            highlight: d.highlight,
            actions: &d.actions,
        })
        .collect();
    Ok(Decided {
        push: stored::notified_json(&notified, now_ms()),
        poke: decisions
            .iter()
            .filter(|(row, _)| row.has_pusher != 0)
            .map(|(row, _)| row.user_id.clone())
            .collect(),
    })
}
