//! The room's Durable Object: the only writer of its room (DESIGN.md invariant 1). Commands are
//! handled one at a time; each accepted event is persisted with its state change in one D1 batch
//! before it becomes the room's new tip in memory, and then the local members are woken.

use std::cell::RefCell;
use std::sync::Arc;

use futures::lock::Mutex;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{json, Value};
use worker::{durable_object, Env, Request, Response, State};

use crate::http::{ErrorCode, MatrixError};
use crate::rooms::builder::{BuildError, EventTemplate};
use crate::rooms::command::{RoomCommand, SendResult};
use crate::rooms::engine::{EngineError, LocalServer, RoomEngine};
use crate::rooms::power::PowerLevels;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::rooms::{self as stored, EventWrite, NewRoom};
use crate::storage::{signing_keys, Db};
use crate::time::now_ms;

#[durable_object]
pub struct RoomObject {
    env: Env,
    engine: RefCell<Option<RoomEngine>>,
    /// Commands run one at a time: D1 calls are awaited, and without this a second command
    /// could build on the same tip while the first is being written.
    writer: Mutex<()>,
}

impl worker::DurableObject for RoomObject {
    fn new(_state: State, env: Env) -> Self {
        Self {
            env,
            engine: RefCell::new(None),
            writer: Mutex::new(()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command: RoomCommand = match req.json().await {
            Ok(command) => command,
            Err(e) => {
                return error_response(MatrixError::internal(format!("bad room command: {e}")))
            }
        };
        let _turn = self.writer.lock().await;
        let result = match command {
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
        };
        match result {
            Ok(value) => Response::from_json(&value),
            Err(error) => error_response(error),
        }
    }
}

fn error_response(error: MatrixError) -> worker::Result<Response> {
    let status = error.status;
    Ok(Response::from_json(&error.into_response().body)?.with_status(status))
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
    }
}

/// The history visibility in force at the next event: the current state's, `shared` by default.
fn history_visibility(engine: &RoomEngine) -> String {
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

impl RoomObject {
    async fn ensure_engine(&self, db: &Db, room_id: &RoomId) -> Result<(), MatrixError> {
        if self.engine.borrow().is_some() {
            return Ok(());
        }
        let room = stored::load(db, room_id.as_str())
            .await?
            .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        *self.engine.borrow_mut() = Some(RoomEngine::restore(
            room.version,
            room_id.to_owned(),
            room.state,
            room.forward_extremities,
            room.depth,
        ));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        version: &str,
        room_id: OwnedRoomId,
        creator: &UserId,
        origin_server_ts: u64,
        events: Vec<EventTemplate>,
        alias: Option<String>,
        publish: bool,
    ) -> Result<Value, MatrixError> {
        let version = RoomVersion::parse(version).ok_or_else(|| {
            MatrixError::new(
                400,
                ErrorCode::UnsupportedRoomVersion,
                "Unsupported room version",
            )
        })?;
        let db = Db::new(&self.env)?;
        if stored::room_version(&db, room_id.as_str()).await?.is_some() {
            return Err(MatrixError::new(
                400,
                ErrorCode::RoomInUse,
                "The room already exists",
            ));
        }
        let config = super::config(&self.env)?;
        let keys = signing_keys::server_keys(&self.env).await?;
        let server = LocalServer {
            name: &config.server_name,
            key: &keys.current,
        };
        let mut engine = RoomEngine::new(
            version,
            (!version.room_id_from_create_event()).then(|| room_id.clone()),
        );
        let mut accepted: Vec<(Arc<Pdu>, String)> = Vec::new();
        for template in events {
            let visibility = history_visibility(&engine);
            let pdu = engine
                .create_local(creator, template, origin_server_ts, &server)
                .map_err(engine_error)?;
            accepted.push((pdu, visibility));
        }
        if engine.room_id() != Some(&room_id) {
            return Err(MatrixError::internal(
                "the create event does not derive the expected room id",
            ));
        }
        let writes: Vec<EventWrite<'_>> = accepted
            .iter()
            .map(|(pdu, visibility)| EventWrite {
                pdu,
                room_id: &room_id,
                history_visibility: visibility,
                transaction: None,
            })
            .collect();
        let new_room = NewRoom {
            version,
            creator: creator.as_str(),
            alias: alias.as_deref(),
            publish,
        };
        stored::persist(&db, &writes, Some(new_room))
            .await
            .map_err(|e| {
                if alias.is_some() && e.message.contains("UNIQUE") {
                    MatrixError::new(400, ErrorCode::RoomInUse, "The room alias is already taken")
                } else {
                    e
                }
            })?;
        let audience = accepted
            .iter()
            .flat_map(|(pdu, _)| local_audience(&engine, pdu, &config.server_name))
            .collect::<std::collections::BTreeSet<_>>();
        *self.engine.borrow_mut() = Some(engine);
        super::notifier::notify(&self.env, audience.into_iter().collect()).await;
        Ok(json!({ "room_id": room_id }))
    }

    async fn send(
        &self,
        room_id: OwnedRoomId,
        sender: &UserId,
        event: EventTemplate,
        transaction: Option<(String, String)>,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.env)?;
        if let Some((device, txn)) = &transaction {
            if let Some(event_id) =
                stored::transaction_result(&db, sender.as_str(), device, room_id.as_str(), txn)
                    .await?
            {
                return Ok(json!({ "event_id": event_id }));
            }
        }
        self.ensure_engine(&db, &room_id).await?;
        if event.kind == "m.room.redaction" {
            self.check_redaction(&db, &room_id, sender, &event).await?;
        }
        let config = super::config(&self.env)?;
        let keys = signing_keys::server_keys(&self.env).await?;
        let server = LocalServer {
            name: &config.server_name,
            key: &keys.current,
        };
        let (pdu, visibility) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded above");
            let pdu = engine
                .prepare_local(sender, event, now_ms(), &server)
                .map_err(engine_error)?;
            (pdu, history_visibility(engine))
        };
        let write = EventWrite {
            pdu: &pdu,
            room_id: &room_id,
            history_visibility: &visibility,
            transaction: transaction
                .as_ref()
                .map(|(device, txn)| (sender.as_str(), device.as_str(), txn.as_str())),
        };
        if let Err(e) = stored::persist(&db, &[write], None).await {
            // D1 may or may not have it: forget the in-memory tip and rebuild from D1.
            *self.engine.borrow_mut() = None;
            return Err(e);
        }
        let audience = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded above");
            engine.apply(pdu.clone());
            local_audience(engine, &pdu, &config.server_name)
        };
        super::notifier::notify(&self.env, audience).await;
        Ok(serde_json::to_value(SendResult {
            event_id: pdu.event_id().to_owned(),
        })
        .unwrap_or_default())
    }

    /// Only the original sender, or someone with the room's redact level, may redact an event
    /// (the auth rules leave this to the server that applies the redaction).
    async fn check_redaction(
        &self,
        db: &Db,
        room_id: &RoomId,
        sender: &UserId,
        event: &EventTemplate,
    ) -> Result<(), MatrixError> {
        let target = event
            .content
            .get("redacts")
            .and_then(Value::as_str)
            .ok_or_else(|| MatrixError::bad_json("redacts is required"))?;
        let original = stored::event_sender(db, room_id.as_str(), target)
            .await?
            .ok_or_else(|| MatrixError::not_found("No such event in this room"))?;
        if original == sender.as_str() {
            return Ok(());
        }
        let engine = self.engine.borrow();
        let engine = engine.as_ref().expect("loaded by the caller");
        let levels = PowerLevels::from_state(engine.state(), engine.version());
        if levels.user_level(sender) >= levels.redact {
            Ok(())
        } else {
            Err(MatrixError::forbidden(
                "You may only redact your own events",
            ))
        }
    }
}
