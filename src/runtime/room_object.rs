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

use crate::http::route::percent_encode;
use crate::http::{ErrorCode, MatrixError};
use crate::rooms::builder::{BuildError, EventTemplate};
use crate::rooms::command::{RoomCommand, SendResult};
use crate::rooms::engine::{EngineError, LocalServer, RoomEngine};
use crate::rooms::power::PowerLevels;
use crate::rooms::{Pdu, RoomVersion};
use crate::signing::event::into_json;
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
                outlier: false,
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
        let pdu = match remote_invitee(&pdu, &config.server_name) {
            Some(server) => self.invite_over_federation(&db, &server, pdu).await?,
            None => pdu,
        };
        let write = EventWrite {
            pdu: &pdu,
            room_id: &room_id,
            history_visibility: &visibility,
            transaction: transaction
                .as_ref()
                .map(|(device, txn)| (sender.as_str(), device.as_str(), txn.as_str())),
            outlier: false,
        };
        if let Err(e) = stored::persist(&db, &[write], None).await {
            // D1 may or may not have it: forget the in-memory tip and rebuild from D1.
            *self.engine.borrow_mut() = None;
            return Err(e);
        }
        let (audience, servers) = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded above");
            engine.apply(pdu.clone());
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
        let mut content = json!({ "membership": membership });
        if membership == "join" {
            // Refuse early what the auth rules would refuse: the user's server would only
            // learn it after signing and sending the event.
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
            let allowed = match current.as_deref() {
                Some("ban") => false,
                Some("join") | Some("invite") => true,
                _ => join_rule == "public",
            };
            if !allowed {
                return Err(MatrixError::forbidden("You are not invited to this room"));
            }
            content = json!({ "membership": "join" });
        }
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
        membership_reply: bool,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.env)?;
        self.ensure_engine(&db, &room_id).await?;
        let config = super::config(&self.env)?;
        let mut results = serde_json::Map::new();
        let mut reply = Value::Null;
        for raw in pdus {
            let text = raw.to_string();
            let outcome = self
                .accept_remote(&db, &room_id, raw, membership_reply)
                .await;
            match outcome {
                Ok((event_id, state_before)) => {
                    if membership_reply {
                        reply = self
                            .membership_reply(&db, state_before, &config.server_name)
                            .await?;
                    }
                    results.insert(event_id, json!({}));
                }
                Err((event_id, reason)) => {
                    worker::console_warn!(
                        "refused PDU {event_id} from {origin} in {room_id}: {reason}"
                    );
                    crate::storage::remote_keys::record_rejection(
                        &db,
                        &event_id,
                        room_id.as_str(),
                        origin,
                        &reason,
                        &text,
                    )
                    .await?;
                    if membership_reply {
                        return Err(MatrixError::forbidden(reason));
                    }
                    results.insert(event_id, json!({ "error": reason }));
                }
            }
        }
        if membership_reply {
            return Ok(reply);
        }
        Ok(json!({ "pdus": results }))
    }

    /// Accepts one remote PDU; on success returns its id and the state before it.
    async fn accept_remote(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        raw: Value,
        is_membership: bool,
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
        let (visibility, state_before) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            engine
                .check_remote(&pdu)
                .map_err(|e| fail(format!("{e:?}")))?;
            (
                history_visibility(engine),
                engine.state().events().cloned().collect::<Vec<_>>(),
            )
        };
        let write = EventWrite {
            pdu: &pdu,
            room_id,
            history_visibility: &visibility,
            transaction: None,
            outlier: false,
        };
        if let Err(e) = stored::persist(db, &[write], None).await {
            *self.engine.borrow_mut() = None;
            return Err(fail(e.message));
        }
        let config = super::config(&self.env).map_err(|e| fail(e.message))?;
        let audience = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded by the caller");
            engine.apply(pdu.clone());
            local_audience(engine, &pdu, &config.server_name)
        };
        super::notifier::notify(&self.env, audience).await;
        Ok((event_id, state_before))
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
            let stripped: Vec<Value> = engine
                .state()
                .events()
                .filter(|e| {
                    crate::rooms::client_event::INVITE_STATE
                        .contains(&e.kind().to_string().as_str())
                })
                .map(|e| {
                    crate::rooms::client_event::stripped_state(
                        &into_json(e.json().clone()).to_string(),
                    )
                })
                .collect();
            (engine.version(), stripped)
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
        let (status, answer) = crate::federation::client::signed(
            &self.env,
            server,
            worker::Method::Put,
            &path,
            Some(&body),
        )
        .await?;
        if status != 200 {
            let reason = answer["error"].as_str().unwrap_or("refused");
            return Err(MatrixError::forbidden(format!(
                "{server} refused the invite: {reason}"
            )));
        }
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
    async fn join_remote(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        servers: Vec<String>,
        content: Value,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.env)?;
        let config = super::config(&self.env)?;
        let us = config.server_name.as_str();
        if crate::storage::sync::members_of_server(&db, room_id.as_str(), us).await? > 0 {
            return Err(MatrixError::new(
                409,
                ErrorCode::Unknown,
                "This server is in the room: join it locally",
            ));
        }
        let mut last_error = MatrixError::not_found("No server to join the room through");
        for server in servers {
            let Ok(server) = ServerName::parse(&server) else {
                continue;
            };
            match self
                .join_through(&db, &room_id, user, &server, content.clone())
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    worker::console_warn!("join of {room_id} through {server} failed: {e}");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        user: &UserId,
        server: &ServerName,
        content: Value,
    ) -> Result<Value, MatrixError> {
        // Phase timings for the bench (bench/big_join.py), logged when EXPOSE_D1_USAGE is on.
        let mut stamps = vec![("start", now_ms())];
        let versions: String = RoomVersion::ALL
            .iter()
            .map(|v| format!("&ver={}", v.as_str()))
            .collect();
        let path = format!(
            "/_matrix/federation/v1/make_join/{}/{}?{}",
            percent_encode(room_id.as_str()),
            percent_encode(user.as_str()),
            &versions[1..]
        );
        let (status, answer) =
            crate::federation::client::signed(&self.env, server, worker::Method::Get, &path, None)
                .await?;
        if status != 200 {
            let code = ErrorCode::parse(answer["errcode"].as_str().unwrap_or_default());
            let message = answer["error"].as_str().unwrap_or("make_join refused");
            return Err(MatrixError::new(
                if status == 404 { 404 } else { 403 },
                code,
                format!("{server}: {message}"),
            ));
        }
        stamps.push(("make_join", now_ms()));
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
        {
            return Err(MatrixError::new(
                502,
                ErrorCode::Unknown,
                format!("{server} sent a wrong join template"),
            ));
        }
        let mut joined = content;
        joined["membership"] = json!("join");
        event["content"] = joined;
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
        let join = Arc::new(
            Pdu::from_json(signed.clone(), version)
                .map_err(|e| MatrixError::internal(e.to_string()))?,
        );
        let path = format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            percent_encode(room_id.as_str()),
            percent_encode(join.event_id().as_str())
        );
        let body = into_json(signed);
        let (status, answer) = crate::federation::client::signed(
            &self.env,
            server,
            worker::Method::Put,
            &path,
            Some(&body),
        )
        .await?;
        if status != 200 {
            let message = answer["error"].as_str().unwrap_or("send_join refused");
            return Err(MatrixError::forbidden(format!("{server}: {message}")));
        }
        stamps.push(("send_join", now_ms()));
        let bad = |why: String| {
            MatrixError::new(
                502,
                ErrorCode::Unknown,
                format!("{server} sent a bad join answer: {why}"),
            )
        };
        let mut state = Vec::new();
        for raw in answer["state"].as_array().cloned().unwrap_or_default() {
            state.push(
                self.verified_remote_pdu(db, raw, version)
                    .await
                    .map_err(bad)?,
            );
        }
        let mut chain = Vec::new();
        for raw in answer["auth_chain"].as_array().cloned().unwrap_or_default() {
            chain.push(
                self.verified_remote_pdu(db, raw, version)
                    .await
                    .map_err(bad)?,
            );
        }
        stamps.push(("verify", now_ms()));
        let counts = (state.len(), chain.len());
        let ordered = crate::rooms::remote_join::check_state_and_auth_chain(state.clone(), chain)
            .map_err(bad)?;
        let engine = RoomEngine::restore(
            version,
            room_id.clone(),
            state,
            join.prev_events().to_vec(),
            join.depth() - 1,
        );
        engine.check_remote(&join).map_err(|e| {
            MatrixError::forbidden(format!("our join does not pass the room's rules: {e:?}"))
        })?;
        let visibility = history_visibility(&engine);
        let creator = ordered
            .iter()
            .find(|(p, _)| p.kind().to_string() == "m.room.create")
            .map(|(p, _)| p.sender().to_string())
            .unwrap_or_default();
        let mut writes: Vec<EventWrite<'_>> = ordered
            .iter()
            .map(|(pdu, _)| EventWrite {
                pdu,
                room_id,
                history_visibility: "shared",
                transaction: None,
                outlier: true,
            })
            .collect();
        writes.push(EventWrite {
            pdu: &join,
            room_id,
            history_visibility: &visibility,
            transaction: None,
            outlier: false,
        });
        let new_room = NewRoom {
            version,
            creator: &creator,
            alias: None,
            publish: false,
        };
        let known = stored::room_version(db, room_id.as_str()).await?.is_some();
        // After an await: workerd's clock stands still during pure computation.
        stamps.push(("auth_checks", now_ms()));
        stored::persist(db, &writes, (!known).then_some(new_room)).await?;
        stamps.push(("d1_write", now_ms()));
        if config.expose_d1_usage {
            let phases: Vec<String> = (1..stamps.len())
                .map(|i| format!("{}={}", stamps[i].0, stamps[i].1 - stamps[i - 1].1))
                .collect();
            worker::console_log!(
                "remote join timing: {room_id} via {server} state={} auth_chain={} {}",
                counts.0,
                counts.1,
                phases.join(" ")
            );
        }
        // Rebuilt from D1 on the next command, with the state just stored.
        *self.engine.borrow_mut() = None;
        super::notifier::notify(&self.env, vec![user.to_string()]).await;
        Ok(json!({ "room_id": room_id }))
    }

    /// A PDU from a join answer with its signatures and hash checked.
    async fn verified_remote_pdu(
        &self,
        db: &Db,
        raw: Value,
        version: RoomVersion,
    ) -> Result<Arc<Pdu>, String> {
        let object = crate::signing::to_canonical_object(raw).map_err(|e| e.to_string())?;
        let object =
            crate::federation::keys::verify_pdu(&self.env, db, object, version, now_ms()).await?;
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
        let known = stored::room_version(&db, room_id.as_str()).await?.is_some();
        let write = EventWrite {
            pdu: &pdu,
            room_id: &room_id,
            history_visibility: "shared",
            transaction: None,
            outlier: true,
        };
        let creator = pdu.sender().to_string();
        let new_room = NewRoom {
            version,
            creator: &creator,
            alias: None,
            publish: false,
        };
        stored::persist(&db, &[write], (!known).then_some(new_room)).await?;
        let state = serde_json::to_string(&invite_state).unwrap_or_else(|_| "[]".into());
        stored::save_invite_state(&db, room_id.as_str(), &invitee, &state).await?;
        *self.engine.borrow_mut() = None;
        super::notifier::notify(&self.env, vec![invitee]).await;
        Ok(json!({}))
    }
}
