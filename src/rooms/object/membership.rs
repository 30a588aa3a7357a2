//! Membership handshakes with other servers: the template we offer a user of another server
//! (`make_join`/`make_leave`/`make_knock`), the ones we ask of another server for our users
//! (`make_*` then `send_*`, for a leave or a knock in a room we do not hold; `remote_join`
//! uses the same handshake for joins), and invites of our users from other servers.

use ruma::events::StateEventType;
use ruma::{OwnedRoomId, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::{engine_error, joined_users, RoomObject};
use crate::federation::handshake;
use crate::federation::through_servers;
use crate::http::{ErrorCode, MatrixError};
use crate::rooms::builder::EventTemplate;
use crate::rooms::state_groups::SlotChange;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::rooms::{self as stored, EventWrite, NewRoom, RoomWrite};
use crate::storage::Db;
use crate::time::now_ms;

impl RoomObject {
    pub(super) async fn make_membership(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        membership: &str,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.platform);
        self.ensure_engine(&db, &room_id).await?;
        let authoriser = if membership == "join" {
            let config = self.platform.config()?;
            self.join_authoriser(&db, user, &config.server_name).await?
        } else {
            None
        };
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
            .and_then(|p| p.membership());
        let refusal = match (membership, current.as_deref()) {
            ("join" | "knock", Some("ban")) => Some("You are banned from this room"),
            ("join", Some("join" | "invite")) => None,
            ("join", _) if join_rule != "public" && authoriser.is_none() => {
                Some("You are not invited to this room")
            }
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
        let mut content = json!({ "membership": membership });
        if let Some(authoriser) = authoriser {
            content["join_authorised_via_users_server"] = json!(authoriser);
        }
        let template = EventTemplate::state("m.room.member", user.as_str(), content);
        let event = engine
            .template_for(user, template, now_ms())
            .map_err(engine_error)?;
        Ok(json!({ "event": event, "room_version": engine.version().as_str() }))
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
        let text =
            handshake::send_membership_text(&self.platform, room_id, server, membership, pdu)
                .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A signed `PUT` of one of our events to another server; a refusal is a 403 naming it.
    pub(super) async fn put_to(
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
        handshake::put_text(&self.platform, server, path, body, what).await
    }

    /// A membership of a local user in a room no user of ours is in, through the servers that
    /// hold it: `make_{membership}`, sign, `send_{membership}`. `leave` rejects an invite,
    /// withdraws a knock or leaves; `knock` asks to be let in, and keeps the stripped state the
    /// server answers for the user's sync. Our copy of the event is kept as an outlier with the
    /// user's membership, as an invite is.
    pub(super) async fn remote_membership(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        servers: Vec<String>,
        membership: &str,
        content: Value,
    ) -> Result<Value, MatrixError> {
        let db = Db::new(&self.platform);
        let room_id = &room_id;
        let (version, event, answer) =
            through_servers(&servers, membership, room_id, |_, server| {
                let content = content.clone();
                async move {
                    let (version, event) = handshake::make_membership(
                        &self.platform,
                        room_id,
                        user,
                        &server,
                        membership,
                        content,
                    )
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
        self.platform.wakeups.notify(vec![user.to_string()]).await;
        Ok(json!({ "event_id": event.event_id() }))
    }

    /// Stores an invite for a room we may not hold: the event as an outlier (never in a
    /// timeline), the invitee's membership, and the stripped state for their sync.
    pub(super) async fn receive_invite(
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
        let db = Db::new(&self.platform);
        let object = crate::signing::to_canonical_object(event)
            .map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let pdu =
            Pdu::from_json(object, version).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let invitee = pdu.state_key().unwrap_or_default().to_owned();
        let config = self.platform.config()?;
        if stored::room_version(&db, room_id.as_str()).await?.is_some() {
            self.ensure_engine(&db, &room_id).await?;
            if self.resident(&config.server_name) {
                // A room we are in: the invite reaches us again as a PDU of the room, and
                // enters its graph then. Kept as an outlier now, it would be taken for already
                // accepted and never join the graph, and our next event would cite the state
                // before it (so the invitee's join would be refused as uninvited).
                return Ok(json!({}));
            }
        }
        persist_outlier_membership(&db, &room_id, &pdu, version).await?;
        let state = serde_json::to_string(&invite_state).unwrap_or_else(|_| "[]".into());
        stored::save_invite_state(&db, room_id.as_str(), &invitee, &state).await?;
        *self.engine.borrow_mut() = None;
        self.platform.wakeups.notify(vec![invitee]).await;
        Ok(json!({}))
    }
}

impl RoomObject {
    /// Whether a user of ours is joined to the room: only then does this server follow the
    /// room's graph (the engine must be loaded).
    pub(super) fn resident(&self, us: &ServerName) -> bool {
        let engine = self.engine.borrow();
        engine.as_ref().is_some_and(|engine| {
            joined_users(engine.state().events()).any(|u| u.server_name() == us)
        })
    }

    /// PDUs of a room none of our users is in. We do not follow its graph, so they are
    /// dropped, except the one event the invitee's server needs: the inviter withdrawing a
    /// pending invite of our user (a leave from the inviter's server, sent by the inviter, citing
    /// the invite among its auth events). The protocol gives no way to authorise a kick by
    /// anyone else, so only the inviter's own rescission is taken.
    pub(super) async fn out_of_band(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        origin: &str,
        pdus: Vec<Value>,
    ) -> Result<Value, MatrixError> {
        let version = stored::room_version(db, room_id.as_str())
            .await?
            .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let mut results = serde_json::Map::new();
        for raw in pdus {
            let Ok(object) = crate::signing::to_canonical_object(raw) else {
                continue;
            };
            let Ok(pdu) = Pdu::from_json(object.clone(), version) else {
                continue;
            };
            let outcome = match self
                .rescission(db, room_id, origin, &pdu, object, version)
                .await
            {
                Ok(()) => json!({}),
                Err(why) => {
                    crate::log_info!(
                        "PDU {} from {origin} in {room_id} ignored: {why}",
                        pdu.event_id()
                    );
                    json!({ "error": why })
                }
            };
            results.insert(pdu.event_id().to_string(), outcome);
        }
        Ok(json!({ "pdus": results }))
    }

    /// Takes `pdu` if it rescinds a pending invite of one of our users (see `out_of_band`).
    async fn rescission(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        origin: &str,
        pdu: &Pdu,
        object: ruma::CanonicalJsonObject,
        version: RoomVersion,
    ) -> Result<(), String> {
        const NOT_IN_ROOM: &str = "this server is not in the room";
        let config = self.platform.config().map_err(|e| e.message)?;
        let target = pdu.state_key().and_then(|k| UserId::parse(k).ok());
        let (Some(target), true) = (
            target,
            pdu.kind().to_string() == "m.room.member"
                && pdu.membership().as_deref() == Some("leave"),
        ) else {
            return Err(NOT_IN_ROOM.into());
        };
        if target.server_name() != config.server_name
            || pdu.sender() == target
            || pdu.sender().server_name().as_str() != origin
        {
            return Err(NOT_IN_ROOM.into());
        }
        let Some((invite_id, inviter)) =
            stored::pending_invite(db, room_id.as_str(), target.as_str())
                .await
                .map_err(|e| e.message)?
        else {
            return Err(NOT_IN_ROOM.into());
        };
        let cites_invite = pdu.auth_events().iter().any(|id| id.as_str() == invite_id);
        if inviter != pdu.sender().as_str() || !cites_invite {
            return Err("only the inviter can withdraw an invite over federation".into());
        }
        let ts = u64::from(ruma::state_res::Event::origin_server_ts(pdu).get());
        let object =
            crate::federation::key_server::verify_pdu(&self.platform, db, object, version, ts)
                .await?;
        let pdu = Pdu::from_json(object, version).map_err(|e| e.to_string())?;
        persist_outlier_membership(db, room_id, &pdu, version)
            .await
            .map_err(|e| e.message)?;
        *self.engine.borrow_mut() = None;
        self.platform.wakeups.notify(vec![target.to_string()]).await;
        Ok(())
    }
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
