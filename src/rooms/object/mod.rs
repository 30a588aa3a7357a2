//! A room's writer: the only one of its room (docs/design.md, invariant 1). The runtime hosts
//! one `RoomObject` per room (a Durable Object in the Worker) and hands it every command for the
//! room; nothing else writes the room's events or state.
//!
//! - One writer per room: commands are handled one at a time (`writer`), so no two of them
//!   build on the same tip.
//! - D1 is the truth: each accepted event is persisted with its state change in one D1 batch
//!   before it becomes the room's new tip in memory, and then the local members are woken (a
//!   group of queued messages, `queued`, is built on the in-memory tip within one turn and
//!   dropped with the engine if its batch fails: no other command sees it before). The
//!   in-memory engine is a cache of D1, dropped and rebuilt from it whenever a write may or may
//!   not have landed.
//! - The object's own storage (`ObjectStorage`) holds a remote join under way and nothing else,
//!   plus the alarm that carries such a join on.
//!
//! One job per file: `local` (events of our users), `incoming` (PDUs of other servers),
//! `membership` (membership handshakes with other servers, invites from them), `remote_join`
//! (joining a room another server holds, in steps), `missing_state` (the state across a gap),
//! `backfill` (history from before we joined), `queued` (messages written together),
//! `transactions` (client transaction ids already used).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures::lock::Mutex;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use crate::http::{ErrorCode, MatrixError};
use crate::platform::{ObjectStorage, Platform};
use crate::rooms::builder::BuildError;
use crate::rooms::command::RoomCommand;
use crate::rooms::engine::{Accepted, EngineError, RoomEngine, Tip};
use crate::rooms::state_groups::GroupRef;
use crate::rooms::Pdu;
use crate::signing::event::into_json;
use crate::storage::rooms::{self as stored, EventWrite, RoomWrite, StoredAs};
use crate::storage::Db;

mod backfill;
mod incoming;
#[cfg(test)]
mod join_tests;
mod local;
mod membership;
mod missing_state;
mod queued;
#[cfg(test)]
mod queued_tests;
mod remote_join;
mod restricted;
#[cfg(test)]
mod tests;
mod transactions;

/// The writer of one room, with what it needs of the platform. Plain Rust: the runtime turns
/// its requests into `RoomCommand`s and its answers (or errors) back into responses.
// Only the runtime (wasm32 only) and the native test fakes host the object: a native build of
// the library alone never constructs it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) struct RoomObject {
    platform: Platform,
    /// This object's own storage holds a remote join under way (`remote_join`), and nothing
    /// else: D1 is the truth.
    storage: Rc<dyn ObjectStorage>,
    /// The room as last read from or written to D1; `None` until the first command needs it,
    /// and again after any write whose outcome is unknown.
    engine: RefCell<Option<RoomEngine>>,
    /// The room's recent client transaction ids, loaded with the engine from D1.
    transactions: RefCell<transactions::Transactions>,
    /// Commands run one at a time: D1 calls are awaited, and without this a second command
    /// could build on the same tip while the first is being written.
    writer: Mutex<()>,
    /// Messages waiting for the writer, written together by whichever command takes the next
    /// turn (`queued`).
    queued: RefCell<Vec<queued::QueuedMessage>>,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl RoomObject {
    pub(crate) fn new(platform: Platform, storage: Rc<dyn ObjectStorage>) -> Self {
        Self {
            platform,
            storage,
            engine: RefCell::new(None),
            transactions: RefCell::default(),
            writer: Mutex::new(()),
            queued: RefCell::new(Vec::new()),
        }
    }

    /// Handles one command, after any other under way; its answer, or an error that keeps its
    /// status, code and extra fields.
    pub(crate) async fn handle(&self, command: RoomCommand) -> Result<Value, MatrixError> {
        let command = match command {
            RoomCommand::Send {
                room_id,
                sender,
                event,
                transaction,
            } if queued::queueable(&event) => {
                return self.send_queued(room_id, sender, event, transaction).await;
            }
            other => other,
        };
        let _turn = self.writer.lock().await;
        match command {
            RoomCommand::Create {
                room_version,
                room_id,
                creator,
                origin_server_ts,
                events,
                alias,
                publish,
            } => {
                self.create(
                    &room_version,
                    room_id,
                    &creator,
                    origin_server_ts,
                    events,
                    alias,
                    publish,
                )
                .await
            }
            RoomCommand::Send {
                room_id,
                sender,
                event,
                transaction,
            } => self.send(room_id, &sender, event, transaction).await,
            RoomCommand::MakeMembership {
                room_id,
                user_id,
                membership,
            } => self.make_membership(room_id, &user_id, &membership).await,
            RoomCommand::JoinRemote {
                room_id,
                user_id,
                servers,
                content,
            } => self.join_remote(room_id, &user_id, servers, content).await,
            RoomCommand::Backfill { room_id, limit } => self.backfill(room_id, limit).await,
            RoomCommand::JoinAnswered {
                room_id,
                user_id,
                server,
                fallback,
                content,
                room_version,
                join_event,
                answer,
                answered_at,
                timing,
            } => {
                self.join_answered(
                    room_id,
                    &user_id,
                    server,
                    fallback,
                    content,
                    &room_version,
                    join_event,
                    answer,
                    answered_at,
                    timing,
                )
                .await
            }
            RoomCommand::ContinueJoin {
                room_id,
                in_background,
            } => {
                if in_background {
                    self.join_in_background(&room_id).await
                } else {
                    self.continue_join(room_id).await
                }
            }
            RoomCommand::RemoteMembership {
                room_id,
                user_id,
                servers,
                membership,
                content,
            } => {
                self.remote_membership(room_id, &user_id, servers, &membership, content)
                    .await
            }
            RoomCommand::JoinThrough {
                room_id,
                user_id,
                servers,
                content,
            } => self.join_through(room_id, &user_id, servers, content).await,
            RoomCommand::ReceiveInvite {
                room_id,
                room_version,
                event,
                invite_state,
            } => {
                self.receive_invite(room_id, &room_version, event, invite_state)
                    .await
            }
            RoomCommand::Remote {
                room_id,
                origin,
                pdus,
                membership_reply,
            } => self.remote(room_id, &origin, pdus, membership_reply).await,
        }
    }

    /// The object's alarm, after any command under way: the next steps of a remote join
    /// nobody is driving (`remote_join`).
    pub(crate) async fn alarm(&self) -> Result<(), MatrixError> {
        let _turn = self.writer.lock().await;
        self.join_alarm().await
    }
}

fn engine_error(e: EngineError) -> MatrixError {
    match e {
        EngineError::Build(BuildError::TooLarge(m)) => {
            MatrixError::new(413, ErrorCode::TooLarge, m)
        }
        EngineError::Build(BuildError::BadContent(m)) => MatrixError::bad_json(m),
        EngineError::Build(BuildError::Invalid(m)) => MatrixError::internal(m),
        EngineError::Forbidden(reason) => MatrixError::forbidden(reason.to_string()),
        EngineError::NotCreated => MatrixError::internal("the room has no create event"),
        EngineError::Resolution(e) => {
            MatrixError::internal(format!("state resolution failed: {}", e.0))
        }
    }
}

/// The history visibility in force at the next event: the current state's, `shared` by default.
pub(crate) fn history_visibility(engine: &RoomEngine) -> String {
    engine
        .state()
        .get(&StateEventType::RoomHistoryVisibility, "")
        .and_then(|pdu| serde_json::from_str::<Value>(pdu.content().get()).ok())
        .and_then(|c| {
            c.get("history_visibility")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "shared".to_owned())
}

/// Local users to wake after an event: current members and invitees, and whoever a
/// membership event is about (a kicked user must see their leave).
fn local_audience(engine: &RoomEngine, pdu: &Pdu, server: &ruma::ServerName) -> Vec<String> {
    let mut users: Vec<String> = engine
        .state()
        .events()
        .filter(|e| e.kind().to_string() == "m.room.member")
        .filter(|e| {
            serde_json::from_str::<Value>(e.content().get())
                .ok()
                .and_then(|c| {
                    c.get("membership")
                        .and_then(Value::as_str)
                        .map(|m| m == "join" || m == "invite")
                })
                .unwrap_or(false)
        })
        .filter_map(|e| e.state_key().map(str::to_owned))
        .collect();
    if pdu.kind().to_string() == "m.room.member" {
        if let Some(target) = pdu.state_key() {
            users.push(target.to_owned());
        }
    }
    users.sort();
    users.dedup();
    users.retain(|u| UserId::parse(u.as_str()).is_ok_and(|u| u.server_name() == server));
    users
}

/// The event row of an accepted event.
pub(crate) fn event_write<'a>(
    accepted: &'a Accepted,
    room_id: &'a OwnedRoomId,
    history_visibility: &'a str,
    transaction: Option<(&'a str, &'a str, &'a str)>,
) -> EventWrite<'a> {
    EventWrite {
        pdu: &accepted.pdu,
        room_id,
        history_visibility,
        transaction,
        stored_as: if accepted.soft_failed {
            StoredAs::SoftFailed
        } else {
            StoredAs::Timeline
        },
        state_group: accepted.placement.after.id.as_deref(),
        replaces_state: accepted.pdu.state_key().and_then(|key| {
            let slot = (accepted.pdu.kind().to_string().into(), key.to_owned());
            accepted.state_before.get(&slot).map(|id| id.as_str())
        }),
        push: None,
    }
}

/// Everything a run of accepted events writes besides their event rows: state groups, current
/// state changes (in order, later ones win) and the forward extremities after the last.
pub(crate) fn room_write<'a>(
    accepted: &'a [Accepted],
    events: Vec<EventWrite<'a>>,
) -> RoomWrite<'a> {
    RoomWrite {
        events,
        groups: accepted.iter().flat_map(|a| &a.placement.groups).collect(),
        state_changes: accepted.iter().flat_map(|a| &a.state_changes).collect(),
        extremities: accepted.iter().rev().find_map(|a| a.extremities()),
        new_room: None,
        gap_before: None,
    }
}

/// The room's current state that an invitee or a knocking user may see before joining
/// (spec: stripped state), stripped.
fn stripped_room_state(engine: &RoomEngine) -> Vec<Value> {
    engine
        .state()
        .events()
        .filter(|e| {
            crate::rooms::client_event::INVITE_STATE.contains(&e.kind().to_string().as_str())
        })
        .map(|e| {
            crate::rooms::client_event::stripped_state(&into_json(e.json().clone()).to_string())
        })
        .collect()
}

/// The users these state events show as joined: a room's joined members, from its state.
fn joined_users<'a, I: IntoIterator<Item = &'a Arc<Pdu>>>(
    state: I,
) -> impl Iterator<Item = OwnedUserId> + use<'a, I> {
    state
        .into_iter()
        .filter(|e| {
            e.kind().to_string() == "m.room.member" && e.membership().as_deref() == Some("join")
        })
        .filter_map(|e| e.state_key().and_then(|k| UserId::parse(k).ok()))
}

impl RoomObject {
    /// Loads the room from D1 into memory, unless it is there already.
    async fn ensure_engine(&self, db: &Db, room_id: &RoomId) -> Result<(), MatrixError> {
        if self.engine.borrow().is_some() {
            return Ok(());
        }
        let since = crate::time::now_ms().saturating_sub(transactions::KEEP_MS);
        let room = stored::load(db, room_id.as_str(), since)
            .await?
            .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        *self.transactions.borrow_mut() =
            transactions::Transactions::from_stored(room.transactions);
        let current = Arc::new(room.current);
        let tips = room
            .tips
            .into_iter()
            .map(|(event_id, group)| Tip {
                event_id,
                // A tip from before state groups: the current state is the state after it.
                state: group.unwrap_or_else(|| GroupRef::unstored(current.clone())),
            })
            .collect();
        *self.engine.borrow_mut() = Some(RoomEngine::restore(
            room.version,
            room_id.to_owned(),
            room.state_events,
            (*current).clone(),
            tips,
            room.depth,
        ));
        Ok(())
    }
}
