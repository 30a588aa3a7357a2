//! The room's Durable Object: the only writer of its room (DESIGN.md invariant 1). Commands are
//! handled one at a time; each accepted event is persisted with its state change in one D1 batch
//! before it becomes the room's new tip in memory, and then the local members are woken.

use std::cell::RefCell;
use std::sync::Arc;

use futures::lock::Mutex;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{json, Value};
use worker::{durable_object, Env, Request, Response, State};

use crate::federation::keys::{verify_pdu_with, KeyMemo};
use crate::http::route::percent_encode;
use crate::http::{ErrorCode, MatrixError};
use crate::rooms::builder::{BuildError, EventTemplate};
use crate::rooms::command::{MembershipReply, RoomCommand, SendResult};
use crate::rooms::engine::{Accepted, EngineError, LocalServer, RoomEngine, Tip};
use crate::rooms::power::PowerLevels;
use crate::rooms::state_groups::{GroupRef, SlotChange};
use crate::rooms::{Pdu, RoomVersion};
use crate::signing::event::into_json;
use crate::storage::rooms::{self as stored, EventWrite, NewRoom, RoomWrite, StoredAs};
use crate::storage::state_groups::{self, At};
use crate::storage::{signing_keys, Db};
use crate::time::now_ms;

mod backfill;
mod missing_state;
mod remote_join;

#[durable_object]
pub struct RoomObject {
    /// This object's own storage holds a remote join under way (`remote_join`), and nothing
    /// else: D1 is the truth.
    state: State,
    env: Env,
    engine: RefCell<Option<RoomEngine>>,
    /// Commands run one at a time: D1 calls are awaited, and without this a second command
    /// could build on the same tip while the first is being written.
    writer: Mutex<()>,
}

impl worker::DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
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
            RoomCommand::ContinueJoin {
                room_id,
                in_background,
            } => {
                if in_background {
                    self.join_in_background().await
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
        };
        match result {
            Ok(value) => Response::from_json(&value),
            Err(error) => error_response(error),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let _turn = self.writer.lock().await;
        self.join_alarm().await?;
        Response::ok("")
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
        EngineError::Resolution(e) => {
            MatrixError::internal(format!("state resolution failed: {}", e.0))
        }
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

/// The other servers with members in the room (and the server of a membership event's target),
/// which must receive a new local event.
fn remote_servers(engine: &RoomEngine, pdu: &Pdu, us: &ServerName) -> Vec<OwnedServerName> {
    let mut servers: Vec<OwnedServerName> = engine
        .state()
        .events()
        .filter(|e| {
            e.kind().to_string() == "m.room.member" && membership_of(e).as_deref() == Some("join")
        })
        .filter_map(|e| e.state_key().and_then(|k| UserId::parse(k).ok()))
        .map(|u| u.server_name().to_owned())
        .collect();
    if pdu.kind().to_string() == "m.room.member" {
        if let Some(target) = pdu.state_key().and_then(|k| UserId::parse(k).ok()) {
            servers.push(target.server_name().to_owned());
        }
    }
    servers.sort();
    servers.dedup();
    servers.retain(|s| s != us);
    servers
}

/// The server of the user an invite is for, when that is not us: the invitee's server must
/// co-sign the invite before it enters the room.
fn remote_invitee(pdu: &Pdu, us: &ServerName) -> Option<OwnedServerName> {
    if pdu.kind().to_string() != "m.room.member" || membership_of(pdu).as_deref() != Some("invite")
    {
        return None;
    }
    let target = UserId::parse(pdu.state_key()?).ok()?;
    (target.server_name() != us).then(|| target.server_name().to_owned())
}

/// Tries `attempt` with each server in turn (unparsable names skipped) until one succeeds; the
/// last failure otherwise. `what` names the attempt in the log.
async fn through_servers<T, F, Fut>(
    servers: Vec<String>,
    what: &str,
    room_id: &RoomId,
    mut attempt: F,
) -> Result<T, MatrixError>
where
    F: FnMut(OwnedServerName) -> Fut,
    Fut: std::future::Future<Output = Result<T, MatrixError>>,
{
    let mut last_error = MatrixError::not_found(format!("No server to {what} the room through"));
    for server in servers {
        let Ok(server) = ServerName::parse(&server) else {
            continue;
        };
        match attempt(server.clone()).await {
            Ok(done) => return Ok(done),
            Err(e) => {
                worker::console_warn!("{what} of {room_id} through {server} failed: {e}");
                last_error = e;
            }
        }
    }
    Err(last_error)
}

/// A membership event of a room we do not hold (an invite from another server, the leave that
/// rejects it, a knock): stored as an outlier, with the user's membership, which is all of that
/// room's state we keep. A room new to us is recorded with its version.
async fn persist_outlier_membership(
    db: &Db,
    room_id: &OwnedRoomId,
    pdu: &Pdu,
    version: RoomVersion,
) -> Result<(), MatrixError> {
    let known = stored::room_version(db, room_id.as_str()).await?.is_some();
    let creator = pdu.sender().to_string();
    let new_room = (!known).then_some(NewRoom {
        version,
        creator: &creator,
        alias: None,
        publish: false,
    });
    let user = pdu.state_key().unwrap_or_default().to_owned();
    let membership: SlotChange = (
        (StateEventType::RoomMember, user),
        Some(pdu.event_id().to_owned()),
    );
    let event = EventWrite::outlier(pdu, room_id);
    stored::persist(
        db,
        RoomWrite {
            events: vec![event],
            state_changes: vec![&membership],
            new_room,
            ..RoomWrite::default()
        },
    )
    .await
}

/// The event row of an accepted event.
fn event_write<'a>(
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
    }
}

/// Everything a run of accepted events writes besides their event rows: state groups, current
/// state changes (in order, later ones win) and the forward extremities after the last.
fn room_write<'a>(accepted: &'a [Accepted], events: Vec<EventWrite<'a>>) -> RoomWrite<'a> {
    RoomWrite {
        events,
        groups: accepted.iter().flat_map(|a| &a.placement.groups).collect(),
        state_changes: accepted.iter().flat_map(|a| &a.state_changes).collect(),
        extremities: accepted.iter().rev().find_map(|a| a.extremities()),
        new_room: None,
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

fn membership_of(pdu: &Pdu) -> Option<String> {
    serde_json::from_str::<Value>(pdu.content().get())
        .ok()?
        .get("membership")?
        .as_str()
        .map(str::to_owned)
}

impl RoomObject {
    async fn ensure_engine(&self, db: &Db, room_id: &RoomId) -> Result<(), MatrixError> {
        if self.engine.borrow().is_some() {
            return Ok(());
        }
        let room = stored::load(db, room_id.as_str())
            .await?
            .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
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
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut visibilities: Vec<String> = Vec::new();
        for template in events {
            visibilities.push(history_visibility(&engine));
            accepted.push(
                engine
                    .create_local(creator, template, origin_server_ts, &server)
                    .map_err(engine_error)?,
            );
        }
        if engine.room_id() != Some(&room_id) {
            return Err(MatrixError::internal(
                "the create event does not derive the expected room id",
            ));
        }
        let events = accepted
            .iter()
            .zip(&visibilities)
            .map(|(a, visibility)| event_write(a, &room_id, visibility, None))
            .collect();
        let mut write = room_write(&accepted, events);
        write.new_room = Some(NewRoom {
            version,
            creator: creator.as_str(),
            alias: alias.as_deref(),
            publish,
        });
        stored::persist(&db, write).await.map_err(|e| {
            if alias.is_some() && e.message.contains("UNIQUE") {
                MatrixError::new(400, ErrorCode::RoomInUse, "The room alias is already taken")
            } else {
                e
            }
        })?;
        let audience = accepted
            .iter()
            .flat_map(|a| local_audience(&engine, &a.pdu, &config.server_name))
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
        let pdu = match remote_invitee(&pdu, &config.server_name) {
            Some(server) => self.invite_over_federation(&db, &server, pdu).await?,
            None => pdu,
        };
        let accepted = self
            .engine
            .borrow()
            .as_ref()
            .expect("loaded above")
            .accept_local(pdu.clone());
        let transaction = transaction
            .as_ref()
            .map(|(device, txn)| (sender.as_str(), device.as_str(), txn.as_str()));
        let event = event_write(&accepted, &room_id, &visibility, transaction);
        let write = room_write(std::slice::from_ref(&accepted), vec![event]);
        if let Err(e) = stored::persist(&db, write).await {
            // D1 may or may not have it: forget the in-memory tip and rebuild from D1.
            *self.engine.borrow_mut() = None;
            return Err(e);
        }
        let (audience, servers) = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded above");
            engine.commit(&accepted);
            (
                local_audience(engine, &pdu, &config.server_name),
                remote_servers(engine, &pdu, &config.server_name),
            )
        };
        super::notifier::notify(&self.env, audience).await;
        for server in servers {
            super::destination::enqueue(
                &self.env,
                &server,
                vec![into_json(pdu.json().clone())],
                vec![],
            )
            .await;
        }
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

// --- Federation -----------------------------------------------------------------------------

impl RoomObject {
    async fn make_membership(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        membership: &str,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.env)?;
        self.ensure_engine(&db, &room_id).await?;
        let engine = self.engine.borrow();
        let engine = engine.as_ref().expect("loaded above");
        // Refuse early what the auth rules would refuse: the user's server would only learn it
        // after signing and sending the event.
        let join_rule = engine
            .state()
            .get(&StateEventType::RoomJoinRules, "")
            .and_then(|p| serde_json::from_str::<Value>(p.content().get()).ok())
            .and_then(|c| c["join_rule"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "invite".into());
        let current = engine
            .state()
            .get(&StateEventType::RoomMember, user.as_str())
            .and_then(|p| membership_of(p));
        let refusal = match (membership, current.as_deref()) {
            ("join" | "knock", Some("ban")) => Some("You are banned from this room"),
            ("join", Some("join" | "invite")) => None,
            ("join", _) if join_rule != "public" => Some("You are not invited to this room"),
            ("knock", Some("join" | "invite")) => {
                Some("You are already in or invited to this room")
            }
            ("knock", _) if !matches!(join_rule.as_str(), "knock" | "knock_restricted") => {
                Some("This room does not accept knocks")
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Err(MatrixError::forbidden(refusal));
        }
        let content = json!({ "membership": membership });
        let template = EventTemplate::state("m.room.member", user.as_str(), content);
        let event = engine
            .template_for(user, template, now_ms())
            .map_err(engine_error)?;
        Ok(json!({ "event": event, "room_version": engine.version().as_str() }))
    }

    /// The federation pipeline for each PDU: format and event id, signatures and content hash
    /// (redacted on mismatch), auth events and auth rules; then the same atomic persistence as
    /// local events. Refused PDUs are recorded and logged, never served.
    async fn remote(
        &self,
        room_id: OwnedRoomId,
        origin: &str,
        pdus: Vec<Value>,
        membership_reply: Option<MembershipReply>,
    ) -> Result<Value, MatrixError> {
        if self.joining().await? {
            // Until the join's last step stores the room there is no state to check these
            // against; the events are fetched as missing ones once the next one arrives.
            return Err(MatrixError::new(
                503,
                ErrorCode::Unknown,
                "This server is still joining the room",
            ));
        }
        let db = Db::new(&self.env)?;
        self.ensure_engine(&db, &room_id).await?;
        let config = super::config(&self.env)?;
        let mut results = serde_json::Map::new();
        let mut reply = Value::Null;
        for raw in pdus {
            if membership_reply.is_none() {
                // Earlier events we lack come first, through the same pipeline; their own
                // failures are recorded like any refused PDU and do not stop this one.
                for missing in self.missing_before(&db, &room_id, origin, &raw).await {
                    let text = missing.to_string();
                    if let Err((event_id, reason)) = self
                        .accept_remote(&db, &room_id, missing, false, origin)
                        .await
                    {
                        self.refused(&db, &room_id, origin, &event_id, &reason, &text)
                            .await?;
                    }
                }
            }
            let text = raw.to_string();
            let outcome = self
                .accept_remote(&db, &room_id, raw, membership_reply.is_some(), origin)
                .await;
            match outcome {
                Ok((event_id, state_before)) => {
                    match membership_reply {
                        Some(MembershipReply::StateAndAuthChain) => {
                            reply = self
                                .membership_reply(&db, state_before, &config.server_name)
                                .await?;
                        }
                        Some(MembershipReply::StrippedState) => {
                            let engine = self.engine.borrow();
                            let engine = engine.as_ref().expect("loaded above");
                            reply = json!({ "knock_room_state": stripped_room_state(engine) });
                        }
                        None => {}
                    }
                    results.insert(event_id, json!({}));
                }
                Err((event_id, reason)) => {
                    self.refused(&db, &room_id, origin, &event_id, &reason, &text)
                        .await?;
                    if membership_reply.is_some() {
                        return Err(MatrixError::forbidden(reason));
                    }
                    results.insert(event_id, json!({ "error": reason }));
                }
            }
        }
        if membership_reply.is_some() {
            return Ok(reply);
        }
        Ok(json!({ "pdus": results }))
    }

    /// A refused PDU is logged and recorded, never stored as part of the room.
    async fn refused(
        &self,
        db: &Db,
        room_id: &RoomId,
        origin: &str,
        event_id: &str,
        reason: &str,
        text: &str,
    ) -> Result<(), MatrixError> {
        worker::console_warn!("refused PDU {event_id} from {origin} in {room_id}: {reason}");
        crate::storage::remote_keys::record_rejection(
            db,
            event_id,
            room_id.as_str(),
            origin,
            reason,
            text,
        )
        .await
    }

    /// The events between our forward extremities and `raw` that we lack, oldest first, from
    /// the sending server's `get_missing_events` (at most `MISSING_EVENTS_LIMIT`, so a long
    /// outage costs one bounded request; older gaps stay gaps, and the state before the
    /// event then comes from the predecessors we do hold). Empty when nothing is missing or
    /// the server cannot help.
    async fn missing_before(
        &self,
        db: &Db,
        room_id: &RoomId,
        origin: &str,
        raw: &Value,
    ) -> Vec<Value> {
        const MISSING_EVENTS_LIMIT: usize = 50;
        // Predecessors that are forward extremities are held: the common, linear case costs
        // no query at all.
        let prevs: Vec<&str> = {
            let engine = self.engine.borrow();
            raw["prev_events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|id| {
                    let tip = ruma::EventId::parse(*id)
                        .ok()
                        .and_then(|id| engine.as_ref()?.tip_state(&id).map(|_| ()));
                    tip.is_none()
                })
                .collect()
        };
        let (Some(event_id), false) = (
            crate::signing::to_canonical_object(raw.clone())
                .ok()
                .and_then(|o| {
                    let version = self.engine.borrow().as_ref()?.version();
                    Pdu::from_json(o, version).ok()
                })
                .map(|p| p.event_id().to_string()),
            prevs.is_empty(),
        ) else {
            return Vec::new();
        };
        let held = match crate::storage::events::by_ids(db, room_id.as_str(), &prevs).await {
            Ok(rows) => rows.len(),
            Err(_) => return Vec::new(),
        };
        if held == prevs.len() {
            return Vec::new();
        }
        let Ok(server) = ServerName::parse(origin) else {
            return Vec::new();
        };
        let Some(earliest) = self
            .engine
            .borrow()
            .as_ref()
            .map(|e| e.forward_extremities())
        else {
            return Vec::new();
        };
        // Nothing older than our oldest forward extremity: history from before we joined is
        // not a gap to fill (it is what backfill is for).
        let tips: Vec<&str> = earliest.iter().map(|id| id.as_str()).collect();
        let min_depth = crate::storage::events::by_ids(db, room_id.as_str(), &tips)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|row| serde_json::from_str::<Value>(&row.pdu).ok()?["depth"].as_u64())
            .min()
            .unwrap_or(0);
        let body = json!({
            "earliest_events": earliest,
            "latest_events": [event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": min_depth,
        });
        let path = format!(
            "/_matrix/federation/v1/get_missing_events/{}",
            percent_encode(room_id.as_str())
        );
        let answer = crate::federation::client::signed(
            &self.env,
            &server,
            worker::Method::Post,
            &path,
            Some(&body),
        )
        .await;
        let mut events = match answer {
            Ok((200, answer)) => answer["events"].as_array().cloned().unwrap_or_default(),
            Ok((status, _)) => {
                worker::console_warn!("get_missing_events from {origin}: HTTP {status}");
                return Vec::new();
            }
            Err(e) => {
                worker::console_warn!("get_missing_events from {origin}: {e}");
                return Vec::new();
            }
        };
        events.truncate(MISSING_EVENTS_LIMIT);
        events.retain(|e| {
            e["room_id"].as_str() == Some(room_id.as_str()) || e.get("room_id").is_none()
        });
        events.sort_by_key(|e| e["depth"].as_u64().unwrap_or(0));
        worker::console_log!(
            "{room_id}: {} events missing before a PDU from {origin}, fetched {}",
            prevs.len() - held,
            events.len()
        );
        events
    }

    /// Accepts one remote PDU; on success returns its id and the state before it.
    async fn accept_remote(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        raw: Value,
        is_membership: bool,
        origin: &str,
    ) -> Result<(String, Vec<Arc<Pdu>>), (String, String)> {
        let version = self
            .engine
            .borrow()
            .as_ref()
            .map(|e| e.version())
            .ok_or_else(|| (String::new(), "room not loaded".to_owned()))?;
        let object =
            crate::signing::to_canonical_object(raw).map_err(|e| (String::new(), e.to_string()))?;
        let pdu =
            Pdu::from_json(object.clone(), version).map_err(|e| (String::new(), e.to_string()))?;
        let event_id = pdu.event_id().to_string();
        let fail = |reason: String| (event_id.clone(), reason);
        if pdu.room_id() != *room_id {
            return Err(fail("the event belongs to another room".into()));
        }
        if is_membership && pdu.kind().to_string() != "m.room.member" {
            return Err(fail("not a membership event".into()));
        }
        if crate::storage::events::event(db, &event_id)
            .await
            .map_err(|e| fail(e.message))?
            .is_some()
        {
            // Already accepted: a retried transaction. Nothing to do.
            let state = self
                .engine
                .borrow()
                .as_ref()
                .map(|e| e.state().events().cloned().collect())
                .unwrap_or_default();
            return Ok((event_id, state));
        }
        // Signatures of every server that must have signed it, with keys valid at the time.
        let ts = u64::from(ruma::state_res::Event::origin_server_ts(&pdu).get());
        let object = crate::federation::keys::verify_pdu(&self.env, db, object, version, ts)
            .await
            .map_err(fail)?;
        let pdu = Arc::new(Pdu::from_json(object, version).map_err(|e| fail(e.to_string()))?);
        self.fetch_missing_auth_events(db, room_id, origin, &pdu)
            .await
            .map_err(fail)?;
        let prevs = self
            .prev_states(db, room_id, origin, &pdu)
            .await
            .map_err(|e| fail(e.message))?;
        let (visibility, accepted) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            let accepted = engine
                .accept_remote(pdu.clone(), prevs)
                .map_err(|e| fail(format!("{e:?}")))?;
            (history_visibility(engine), accepted)
        };
        if accepted.soft_failed {
            worker::console_warn!(
                "soft-failed PDU {event_id} in {room_id}: not allowed by the current state"
            );
        }
        let event = event_write(&accepted, room_id, &visibility, None);
        let write = room_write(std::slice::from_ref(&accepted), vec![event]);
        if let Err(e) = stored::persist(db, write).await {
            *self.engine.borrow_mut() = None;
            return Err(fail(e.message));
        }
        let config = super::config(&self.env).map_err(|e| fail(e.message))?;
        let (audience, state_before) = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded by the caller");
            engine.commit(&accepted);
            let audience = if accepted.soft_failed {
                Vec::new()
            } else {
                local_audience(engine, &pdu, &config.server_name)
            };
            (audience, engine.events_of(&accepted.state_before))
        };
        if !audience.is_empty() {
            super::notifier::notify(&self.env, audience).await;
        }
        Ok((event_id, state_before))
    }

    /// When the event cites auth events we do not hold, fetches its auth chain from the sending
    /// server (`event_auth`), checks every event of it (signatures, hashes, each against its
    /// own auth events) and stores them as outliers, so that the event can be authorised.
    async fn fetch_missing_auth_events(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        origin: &str,
        pdu: &Pdu,
    ) -> Result<(), String> {
        /// A chain longer than this is refused rather than verified in one request.
        const MAX_AUTH_CHAIN: usize = 500;
        let (version, create) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().ok_or("room not loaded")?;
            if pdu
                .auth_events()
                .iter()
                .all(|id| engine.known(id).is_some())
            {
                return Ok(());
            }
            (
                engine.version(),
                engine.state().get(&StateEventType::RoomCreate, "").cloned(),
            )
        };
        let server = ServerName::parse(origin).map_err(|e| e.to_string())?;
        let path = format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            percent_encode(room_id.as_str()),
            percent_encode(pdu.event_id().as_str())
        );
        let (status, answer) =
            crate::federation::client::signed(&self.env, &server, worker::Method::Get, &path, None)
                .await
                .map_err(|e| format!("auth events missing, and event_auth failed: {e}"))?;
        let events = answer["auth_chain"].as_array().cloned().unwrap_or_default();
        if status != 200 || events.len() > MAX_AUTH_CHAIN {
            return Err(format!(
                "auth events missing, and event_auth answered HTTP {status} with {} events",
                events.len()
            ));
        }
        let mut chain = Vec::new();
        let mut memo = (now_ms(), KeyMemo::default());
        for raw in events {
            let fetched = self
                .verified_remote_pdu(db, raw, version, &mut memo)
                .await?;
            if fetched.room_id() != *room_id {
                return Err("event_auth returned an event of another room".into());
            }
            chain.push(fetched);
        }
        // From v12 the create event is not cited, so the chain may lack it.
        chain.extend(create);
        let ordered = crate::rooms::remote_join::check_state_and_auth_chain(Vec::new(), chain)?;
        let fetched: Vec<Arc<Pdu>> = ordered.into_iter().map(|(p, _)| p).collect();
        let events = fetched
            .iter()
            .map(|pdu| EventWrite::outlier(pdu, room_id))
            .collect();
        stored::persist(
            db,
            RoomWrite {
                events,
                ..RoomWrite::default()
            },
        )
        .await
        .map_err(|e| e.message)?;
        worker::console_log!(
            "{room_id}: fetched {} auth events of {} from {origin}",
            fetched.len(),
            pdu.event_id()
        );
        if let Some(engine) = self.engine.borrow_mut().as_mut() {
            engine.add_outliers(fetched);
        }
        Ok(())
    }

    /// The states after the event's `prev_events`: from the forward extremities in memory, else
    /// from their state groups in D1, else (a gap `get_missing_events` did not close) from the
    /// sending server (`missing_state`). Predecessors whose state cannot be had are left out
    /// (the engine falls back to the current state when none is left).
    async fn prev_states(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        origin: &str,
        pdu: &Pdu,
    ) -> Result<Vec<GroupRef>, MatrixError> {
        let mut states = Vec::new();
        let mut asked = 0;
        for prev in pdu.prev_events() {
            let tip = self
                .engine
                .borrow()
                .as_ref()
                .and_then(|e| e.tip_state(prev).cloned());
            let state = match tip {
                Some(state) => Some(state),
                None => state_groups::state_at(db, prev.as_str(), At::After).await?,
            };
            let state = match (state, ServerName::parse(origin)) {
                (Some(state), _) => Some(state),
                (None, Ok(origin)) if asked < missing_state::MAX_UNKNOWN_PREVS => {
                    asked += 1;
                    self.remote_state_after(db, room_id, &origin, prev)
                        .await
                        .inspect_err(|why| {
                            worker::console_warn!(
                                "{room_id}: no state after {prev} from {origin}: {why}"
                            )
                        })
                        .ok()
                }
                (None, _) => None,
            };
            states.extend(state);
        }
        Ok(states)
    }

    /// Sends an invite to the invitee's server (`PUT /v2/invite`) and returns the event it
    /// co-signed, after checking that it is the same event with a valid signature of theirs.
    async fn invite_over_federation(
        &self,
        db: &Db,
        server: &ServerName,
        pdu: Arc<Pdu>,
    ) -> Result<Arc<Pdu>, MatrixError> {
        let (version, stripped) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            (engine.version(), stripped_room_state(engine))
        };
        let body = json!({
            "event": into_json(pdu.json().clone()),
            "room_version": version.as_str(),
            "invite_room_state": stripped,
        });
        let path = format!(
            "/_matrix/federation/v2/invite/{}/{}",
            percent_encode(pdu.room_id().as_str()),
            percent_encode(pdu.event_id().as_str())
        );
        let answer = self.put_to(server, &path, &body, "the invite").await?;
        let object = crate::signing::to_canonical_object(answer["event"].clone()).map_err(|e| {
            MatrixError::new(502, ErrorCode::Unknown, format!("bad invite answer: {e}"))
        })?;
        let signed = Pdu::from_json(object.clone(), version).map_err(|e| {
            MatrixError::new(502, ErrorCode::Unknown, format!("bad invite answer: {e}"))
        })?;
        if signed.event_id() != pdu.event_id() {
            return Err(MatrixError::new(
                502,
                ErrorCode::Unknown,
                "the invitee's server changed the invite",
            ));
        }
        let key_ids: Vec<String> = match object.get("signatures") {
            Some(ruma::CanonicalJsonValue::Object(by_server)) => match by_server
                .get(server.as_str())
            {
                Some(ruma::CanonicalJsonValue::Object(by_key)) => by_key.keys().cloned().collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut set = ruma::signatures::PublicKeySet::new();
        for key_id in key_ids {
            if let Some(key) =
                crate::federation::keys::public_key(&self.env, db, server, &key_id, now_ms())
                    .await?
            {
                if let Ok(key) = ruma::serde::Base64::parse(key) {
                    set.insert(key_id, key);
                }
            }
        }
        let mut map = ruma::signatures::PublicKeyMap::new();
        map.insert(server.to_string(), set);
        // Every signature on the object is checked, ours included.
        let ours = signing_keys::server_keys(&self.env).await?;
        let config = super::config(&self.env)?;
        let mut own = ruma::signatures::PublicKeySet::new();
        if let Ok(key) = ruma::serde::Base64::parse(ours.current.public_key_base64()) {
            own.insert(ours.current.key_id(), key);
        }
        map.insert(config.server_name.to_string(), own);
        ruma::signatures::verify_json(&map, &object).map_err(|e| {
            MatrixError::new(
                502,
                ErrorCode::Unknown,
                format!("the invitee's server did not sign the invite: {e}"),
            )
        })?;
        Ok(Arc::new(signed))
    }

    /// `send_join`'s answer: the state before the join and its full auth chain.
    async fn membership_reply(
        &self,
        db: &Db,
        state: Vec<Arc<Pdu>>,
        us: &ServerName,
    ) -> Result<Value, MatrixError> {
        let version = self
            .engine
            .borrow()
            .as_ref()
            .map(|e| e.version())
            .ok_or_else(|| MatrixError::internal("room not loaded"))?;
        let mut chain: std::collections::BTreeMap<String, Value> =
            std::collections::BTreeMap::new();
        let mut todo: Vec<ruma::OwnedEventId> = state
            .iter()
            .flat_map(|p| p.auth_events().to_vec())
            .collect();
        while let Some(id) = todo.pop() {
            if chain.contains_key(id.as_str()) {
                continue;
            }
            let known = self
                .engine
                .borrow()
                .as_ref()
                .and_then(|e| e.known(&id).cloned());
            let pdu = match known {
                Some(pdu) => pdu,
                None => match crate::storage::events::event(db, id.as_str()).await? {
                    Some(row) => Arc::new(stored::parse_pdu(&row.pdu, version)?),
                    None => continue,
                },
            };
            todo.extend(pdu.auth_events().iter().cloned());
            chain.insert(id.to_string(), into_json(pdu.json().clone()));
        }
        let mut servers: Vec<String> = state
            .iter()
            .filter(|e| {
                e.kind().to_string() == "m.room.member"
                    && membership_of(e).as_deref() == Some("join")
            })
            .filter_map(|e| {
                e.state_key()
                    .and_then(|k| UserId::parse(k).ok())
                    .map(|u| u.server_name().to_string())
            })
            .collect();
        servers.push(us.to_string());
        servers.sort();
        servers.dedup();
        Ok(json!({
            "state": state.iter().map(|p| into_json(p.json().clone())).collect::<Vec<_>>(),
            "auth_chain": chain.into_values().collect::<Vec<_>>(),
            "members_omitted": false,
            "servers_in_room": servers,
        }))
    }
}

// --- Joining rooms of other servers -----------------------------------------------------------

impl RoomObject {
    /// `make_join`/`make_leave` against `server`: the template it offers, checked to be the
    /// user's own membership, completed with `content`, hashed and signed by us.
    async fn membership_handshake(
        &self,
        room_id: &RoomId,
        user: &UserId,
        server: &ServerName,
        membership: &str,
        content: Value,
    ) -> Result<(RoomVersion, Arc<Pdu>), MatrixError> {
        // The joining or knocking server lists the room versions it supports; make_leave
        // takes none.
        let versions: String = RoomVersion::ALL
            .iter()
            .map(|v| format!("&ver={}", v.as_str()))
            .collect();
        let query = if membership == "join" || membership == "knock" {
            format!("?{}", &versions[1..])
        } else {
            String::new()
        };
        let path = format!(
            "/_matrix/federation/v1/make_{membership}/{}/{}{query}",
            percent_encode(room_id.as_str()),
            percent_encode(user.as_str()),
        );
        let (status, answer) =
            crate::federation::client::signed(&self.env, server, worker::Method::Get, &path, None)
                .await?;
        if status != 200 {
            let code = ErrorCode::parse(answer["errcode"].as_str().unwrap_or_default());
            let message = answer["error"].as_str().unwrap_or("refused");
            return Err(MatrixError::new(
                if status == 404 { 404 } else { 403 },
                code,
                format!("{server}: make_{membership}: {message}"),
            ));
        }
        let version = answer["room_version"]
            .as_str()
            .and_then(RoomVersion::parse)
            .ok_or_else(|| {
                MatrixError::new(
                    400,
                    ErrorCode::IncompatibleRoomVersion,
                    "The room's version is not supported here",
                )
            })?;
        let mut event = answer["event"].clone();
        if event["type"] != "m.room.member"
            || event["state_key"] != json!(user)
            || event["sender"] != json!(user)
            || event["room_id"]
                .as_str()
                .is_some_and(|r| r != room_id.as_str())
        {
            return Err(MatrixError::new(
                502,
                ErrorCode::Unknown,
                format!("{server} sent a wrong {membership} template"),
            ));
        }
        let mut content = content;
        content["membership"] = json!(membership);
        event["content"] = content;
        event["origin_server_ts"] = json!(now_ms());
        if let Some(object) = event.as_object_mut() {
            for field in ["hashes", "signatures", "unsigned", "event_id"] {
                object.remove(field);
            }
        }
        let config = super::config(&self.env)?;
        let keys = signing_keys::server_keys(&self.env).await?;
        let signed = crate::signing::event::hash_and_sign(
            config.server_name.as_str(),
            &keys.current,
            event,
            &version.rules(),
        )
        .map_err(|e| MatrixError::internal(e.to_string()))?;
        let pdu =
            Pdu::from_json(signed, version).map_err(|e| MatrixError::internal(e.to_string()))?;
        Ok((version, Arc::new(pdu)))
    }

    /// `send_join`/`send_leave` (v2) or `send_knock` (v1, the only one) of our signed
    /// membership event; the server's answer.
    async fn send_membership(
        &self,
        room_id: &RoomId,
        server: &ServerName,
        membership: &str,
        pdu: &Pdu,
    ) -> Result<Value, MatrixError> {
        let text = self
            .send_membership_text(room_id, server, membership, pdu)
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `send_membership` with the answer as text: a big room's `send_join` answer is parsed
    /// without building a JSON tree of it (`remote_join`).
    async fn send_membership_text(
        &self,
        room_id: &RoomId,
        server: &ServerName,
        membership: &str,
        pdu: &Pdu,
    ) -> Result<String, MatrixError> {
        let api = if membership == "knock" { "v1" } else { "v2" };
        let path = format!(
            "/_matrix/federation/{api}/send_{membership}/{}/{}",
            percent_encode(room_id.as_str()),
            percent_encode(pdu.event_id().as_str())
        );
        let body = into_json(pdu.json().clone());
        self.put_to_text(server, &path, &body, &format!("send_{membership}"))
            .await
    }

    /// A signed `PUT` of one of our events to another server; a refusal is a 403 naming it.
    async fn put_to(
        &self,
        server: &ServerName,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<Value, MatrixError> {
        let text = self.put_to_text(server, path, body, what).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn put_to_text(
        &self,
        server: &ServerName,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<String, MatrixError> {
        let (status, text) = crate::federation::client::signed_text(
            &self.env,
            server,
            worker::Method::Put,
            path,
            Some(body),
        )
        .await?;
        if status != 200 {
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let reason = answer["error"].as_str().unwrap_or("refused");
            return Err(MatrixError::forbidden(format!(
                "{server} refused {what}: {reason}"
            )));
        }
        Ok(text)
    }

    /// A membership of a local user in a room no user of ours is in, through the servers that
    /// hold it: `make_{membership}`, sign, `send_{membership}`. `leave` rejects an invite,
    /// withdraws a knock or leaves; `knock` asks to be let in, and keeps the stripped state the
    /// server answers for the user's sync. Our copy of the event is kept as an outlier with the
    /// user's membership, as an invite is.
    async fn remote_membership(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        servers: Vec<String>,
        membership: &str,
        content: Value,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.env)?;
        let room_id = &room_id;
        let (version, event, answer) = through_servers(servers, membership, room_id, |server| {
            let content = content.clone();
            async move {
                let (version, event) = self
                    .membership_handshake(room_id, user, &server, membership, content)
                    .await?;
                let answer = self
                    .send_membership(room_id, &server, membership, &event)
                    .await?;
                Ok((version, event, answer))
            }
        })
        .await?;
        persist_outlier_membership(&db, room_id, &event, version).await?;
        if membership == "knock" {
            // `knock_state_events` is the name before the spec settled on one.
            let state = answer
                .get("knock_room_state")
                .or_else(|| answer.get("knock_state_events"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let state = Value::Array(state).to_string();
            stored::save_invite_state(&db, room_id.as_str(), user.as_str(), &state).await?;
        }
        *self.engine.borrow_mut() = None;
        super::notifier::notify(&self.env, vec![user.to_string()]).await;
        Ok(json!({ "event_id": event.event_id() }))
    }

    /// A PDU of a join answer or a fetched auth chain with its signatures and hash checked,
    /// with keys valid now (`memo` holds the time and the keys already looked up).
    async fn verified_remote_pdu(
        &self,
        db: &Db,
        raw: Value,
        version: RoomVersion,
        memo: &mut (u64, KeyMemo),
    ) -> Result<Arc<Pdu>, String> {
        let object = crate::signing::to_canonical_object(raw).map_err(|e| e.to_string())?;
        let object = verify_pdu_with(&self.env, db, object, version, memo.0, &mut memo.1).await?;
        Pdu::from_json(object, version)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

// --- Invites from other servers -----------------------------------------------------------------

impl RoomObject {
    /// Stores an invite for a room we may not hold: the event as an outlier (never in a
    /// timeline), the invitee's membership, and the stripped state for their sync.
    async fn receive_invite(
        &self,
        room_id: OwnedRoomId,
        room_version: &str,
        event: Value,
        invite_state: Vec<Value>,
    ) -> Result<Value, MatrixError> {
        let version = RoomVersion::parse(room_version).ok_or_else(|| {
            MatrixError::new(
                400,
                ErrorCode::IncompatibleRoomVersion,
                "Unsupported room version",
            )
        })?;
        let db = Db::new(&self.env)?;
        let object = crate::signing::to_canonical_object(event)
            .map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let pdu =
            Pdu::from_json(object, version).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let invitee = pdu.state_key().unwrap_or_default().to_owned();
        persist_outlier_membership(&db, &room_id, &pdu, version).await?;
        let state = serde_json::to_string(&invite_state).unwrap_or_else(|_| "[]".into());
        stored::save_invite_state(&db, room_id.as_str(), &invitee, &state).await?;
        *self.engine.borrow_mut() = None;
        super::notifier::notify(&self.env, vec![invitee]).await;
        Ok(json!({}))
    }
}
