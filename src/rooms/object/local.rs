//! Events of our own users: a room's creation (its first events in one write) and one event
//! at the tip of the room, with the checks the auth rules leave to the server (who may redact)
//! and the invitee's co-signature when a local user invites a user of another server. Each is
//! written to D1 before it becomes the tip, then sent to the room's other servers.

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::{
    engine_error, event_write, history_visibility, joined_users, local_audience, room_write,
    stripped_room_state, RoomObject,
};
use crate::http::route::percent_encode;
use crate::http::{ErrorCode, MatrixError};
use crate::rooms::builder::EventTemplate;
use crate::rooms::command::SendResult;
use crate::rooms::engine::{Accepted, LocalServer, RoomEngine};
use crate::rooms::power::PowerLevels;
use crate::rooms::{Pdu, RoomVersion};
use crate::signing::event::into_json;
use crate::storage::rooms::{self as stored, NewRoom};
use crate::storage::{signing_keys, Db};
use crate::time::now_ms;

impl RoomObject {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create(
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
        let db = Db::new(&self.platform);
        if stored::room_version(&db, room_id.as_str()).await?.is_some() {
            return Err(MatrixError::new(
                400,
                ErrorCode::RoomInUse,
                "The room already exists",
            ));
        }
        let config = self.platform.config()?;
        let keys = signing_keys::server_keys(&self.platform).await?;
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
        self.platform
            .wakeups
            .notify(audience.into_iter().collect())
            .await;
        Ok(json!({ "room_id": room_id }))
    }

    /// A state event that would repeat the current one (same sender, same content) is not
    /// sent again: the client gets the current event's id, and the room no new event (as
    /// clients and other servers expect of setting state or joining twice).
    fn same_state(&self, sender: &UserId, event: &EventTemplate) -> Option<String> {
        let state_key = event.state_key.as_deref()?;
        let engine = self.engine.borrow();
        let current = engine
            .as_ref()?
            .state()
            .get(&event.kind.as_str().into(), state_key)?;
        let content: Value = serde_json::from_str(current.content().get()).ok()?;
        (current.sender() == sender && content == event.content)
            .then(|| current.event_id().to_string())
    }

    pub(super) async fn send(
        &self,
        room_id: OwnedRoomId,
        sender: &UserId,
        event: EventTemplate,
        transaction: Option<(String, String)>,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.platform);
        self.ensure_engine(&db, &room_id).await?;
        let config = self.platform.config()?;
        // A retried transaction is found in memory (`transactions`): the first event's id.
        let earlier = transaction.as_ref().and_then(|(device, txn)| {
            (self.transactions.borrow()).find(sender.as_str(), device, txn)
        });
        if let Some(event_id) = earlier {
            return Ok(json!({ "event_id": event_id }));
        }
        // The push rules of the room's local members are read before the event is built, so
        // that its notifications go into its own row (src/push/).
        let members = crate::push::candidates_of(
            self.engine.borrow().as_ref().expect("loaded above").state(),
            sender,
            &event.kind,
            event.state_key.as_deref(),
            &config.server_name,
        );
        let rules = crate::push::prefetch(&db, &members).await;
        if let Some(existing) = self.same_state(sender, &event) {
            return Ok(json!({ "event_id": existing }));
        }
        if event.kind == "m.room.redaction" {
            self.check_redaction(&db, &room_id, sender, &event).await?;
        }
        let mut event = event;
        let own_join = event.kind == "m.room.member"
            && event.state_key.as_deref() == Some(sender.as_str())
            && event.content["membership"] == "join";
        if own_join {
            // A restricted room: one of our members with the power to invite vouches for the
            // join once the allow list is checked (rooms/object/restricted.rs). Whatever the
            // client put there is replaced, or dropped when the join needs no authoriser
            // (already joined or invited): a client cannot name its own.
            const FIELD: &str = "join_authorised_via_users_server";
            match self
                .join_authoriser(&db, sender, &config.server_name)
                .await?
            {
                Some(authoriser) => event.content[FIELD] = json!(authoriser),
                None => {
                    if let Some(content) = event.content.as_object_mut() {
                        content.remove(FIELD);
                    }
                }
            }
        }
        let keys = signing_keys::server_keys(&self.platform).await?;
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
        let mut write = room_write(std::slice::from_ref(&accepted), vec![event]);
        // An event that changes no state leaves the audience as it is now: its notifications
        // are decided before the write and stored in the event's own row (no row of their own,
        // and the members' next /sync sees the event and its count together). A state event (a
        // membership changes who is notified) has them stored after the write, as below.
        let mut rules = Some(rules);
        let early_push = match (pdu.state_key(), rules.take()) {
            (None, Some(Ok(rows))) => {
                let audience = {
                    let engine = self.engine.borrow();
                    let engine = engine.as_ref().expect("loaded above");
                    crate::push::audience(
                        engine.state(),
                        engine.version(),
                        &pdu,
                        &config.server_name,
                    )
                };
                match crate::push::decide(&audience, &pdu, &rows).await {
                    Ok(decided) => Some(decided),
                    Err(e) => {
                        crate::log_warn!(
                            "push rules of {} not evaluated: {}",
                            pdu.event_id(),
                            e.message
                        );
                        None
                    }
                }
            }
            (_, other) => {
                rules = other;
                None
            }
        };
        let poke = early_push.map(|decided| {
            write.events[0].push = decided.push;
            decided.poke
        });
        if let Err(e) = stored::persist(&db, write).await {
            // D1 may or may not have it: forget the in-memory tip and rebuild from D1.
            *self.engine.borrow_mut() = None;
            return Err(e);
        }
        if let Some((user, device, txn)) = transaction {
            (self.transactions.borrow_mut()).record_sent(user, device, txn, &pdu);
        }
        let (audience, servers, push_audience) = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded above");
            engine.commit(&accepted);
            (
                local_audience(engine, &pdu, &config.server_name),
                remote_servers(engine, &pdu, &config.server_name),
                crate::push::audience(engine.state(), engine.version(), &pdu, &config.server_name),
            )
        };
        match poke {
            Some(poke) if !poke.is_empty() => self.platform.pushers.poke(poke).await,
            Some(_) => {}
            // The notification counts are stored before the members are woken, so their next
            // /sync shows the event and its count together.
            None => crate::push::after_event(&self.platform, &db, push_audience, &pdu, rules).await,
        }
        self.platform.wakeups.notify(audience).await;
        for server in servers {
            self.platform
                .queue
                .enqueue(&server, vec![into_json(pdu.json().clone())], vec![])
                .await;
        }
        Ok(serde_json::to_value(SendResult {
            event_id: pdu.event_id().to_owned(),
        })
        .unwrap_or_default())
    }

    /// Only the original sender, or someone with the room's redact level, may redact an event
    /// (the auth rules leave this to the server that applies the redaction). An event we do not
    /// hold (another server's, not yet or never sent to us) may be redacted by someone with the
    /// redact level: the redaction goes to the room's servers, and whoever holds the event
    /// applies it.
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
        let original = stored::event_sender(db, room_id.as_str(), target).await?;
        if original.as_deref() == Some(sender.as_str()) {
            return Ok(());
        }
        let engine = self.engine.borrow();
        let engine = engine.as_ref().expect("loaded by the caller");
        let levels = PowerLevels::from_state(engine.state(), engine.version());
        if levels.user_level(sender) >= levels.redact {
            Ok(())
        } else if original.is_none() {
            Err(MatrixError::forbidden(
                "The event is not known here: redacting it needs the room's redact level",
            ))
        } else {
            Err(MatrixError::forbidden(
                "You may only redact your own events",
            ))
        }
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
            if let Some(key) = crate::federation::key_server::public_key(
                &self.platform,
                db,
                server,
                &key_id,
                now_ms(),
            )
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
        let ours = signing_keys::server_keys(&self.platform).await?;
        let config = self.platform.config()?;
        let mut own = ruma::signatures::PublicKeySet::new();
        if let Ok(key) = ruma::serde::Base64::parse(ours.current.public_key_base64()) {
            own.insert(ours.current.key_id(), key);
        }
        map.insert(config.server_name.to_string(), own);
        // Event signatures cover the redacted form (content a redaction drops, such as an
        // invite's `is_direct`, is covered by the content hash instead, checked next).
        let bad = |e: String| {
            MatrixError::new(
                502,
                ErrorCode::Unknown,
                format!("the invitee's server did not sign the invite: {e}"),
            )
        };
        let rules = version.rules();
        let redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
            .map_err(|e| bad(e.to_string()))?;
        ruma::signatures::verify_json(&map, &redacted).map_err(|e| bad(e.to_string()))?;
        match ruma::signatures::verify_event(&map, &object, &rules) {
            Ok(ruma::signatures::Verified::All) => {}
            Ok(ruma::signatures::Verified::Signatures) => {
                return Err(bad("the content no longer matches its hash".into()))
            }
            Err(e) => return Err(bad(e.to_string())),
        }
        Ok(Arc::new(signed))
    }
}

/// The other servers with members in the room (and the server of a membership event's target),
/// which must receive a new local event.
pub(super) fn remote_servers(
    engine: &RoomEngine,
    pdu: &Pdu,
    us: &ServerName,
) -> Vec<OwnedServerName> {
    let mut servers: Vec<OwnedServerName> = joined_users(engine.state().events())
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
    if pdu.kind().to_string() != "m.room.member" || pdu.membership().as_deref() != Some("invite") {
        return None;
    }
    let target = UserId::parse(pdu.state_key()?).ok()?;
    (target.server_name() != us).then(|| target.server_name().to_owned())
}
