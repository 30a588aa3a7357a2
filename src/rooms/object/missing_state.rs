//! The state after predecessors of an incoming PDU that we still lack once `get_missing_events`
//! has had its try (a gap longer than it returns): asked of the sending server with `/state` at
//! each such predecessor (server-server spec, "PDU checks": the state before the event is the
//! resolution of the states after its prev_events, fetched from the remote if unknown). The
//! gap itself stays a gap; `/messages` backfill can fill it later.

use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{EventId, OwnedRoomId, ServerName};
use serde_json::Value;

use super::RoomObject;
use crate::federation::key_server::KeyMemo;
use crate::http::route::percent_encode;
use crate::platform::Method;
use crate::rooms::remote_join::check_state_and_auth_chain;
use crate::rooms::resolution::StateMap;
use crate::rooms::state_groups::GroupRef;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::rooms::{self as stored, EventWrite, RoomWrite};
use crate::storage::Db;
use crate::time::now_ms;

/// Predecessors per PDU whose state is asked for: each costs two requests to the sender.
pub(super) const MAX_UNKNOWN_PREVS: usize = 2;
/// A state with its auth chain longer than this is not checked within one request; the PDU is
/// then checked against the states we do hold.
const MAX_REMOTE_STATE: usize = 2000;

impl RoomObject {
    /// The state after `prev` (an event we do not hold), from `origin`: the event itself, then
    /// the state before it with its auth chain, each event checked (signatures and hash unless
    /// we hold it already, then against its own auth events) and stored as an outlier.
    pub(super) async fn remote_state_after(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        origin: &ServerName,
        prev: &EventId,
    ) -> Result<GroupRef, String> {
        let (version, create) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().ok_or("room not loaded")?;
            (
                engine.version(),
                engine.state().get(&StateEventType::RoomCreate, "").cloned(),
            )
        };
        let get = |path: String| async move {
            match crate::federation::outgoing::signed(
                &self.platform,
                origin,
                Method::Get,
                &path,
                None,
            )
            .await
            {
                Ok((200, answer)) => Ok(answer),
                Ok((status, _)) => Err(format!("{path}: HTTP {status}")),
                Err(e) => Err(format!("{path}: {}", e.message)),
            }
        };
        let event = get(format!(
            "/_matrix/federation/v1/event/{}",
            percent_encode(prev.as_str())
        ))
        .await?;
        let answer = get(format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            percent_encode(room_id.as_str()),
            percent_encode(prev.as_str())
        ))
        .await?;
        let list =
            |value: &Value, field: &str| value[field].as_array().cloned().unwrap_or_default();
        let (state, chain) = (list(&answer, "pdus"), list(&answer, "auth_chain"));
        if state.len() + chain.len() > MAX_REMOTE_STATE {
            return Err(format!(
                "the state at {prev} has {} events with its auth chain, more than {MAX_REMOTE_STATE}",
                state.len() + chain.len()
            ));
        }
        let mut memo = (now_ms(), KeyMemo::default());
        let prev_event = self
            .held_or_verified_all(db, room_id, version, list(&event, "pdus"), &mut memo)
            .await?
            .into_iter()
            .find(|p| p.event_id() == prev)
            .ok_or_else(|| format!("/event did not return {prev}"))?;
        let state = self
            .held_or_verified_all(db, room_id, version, state, &mut memo)
            .await?;
        let mut chain = self
            .held_or_verified_all(db, room_id, version, chain, &mut memo)
            .await?;
        // A room has one create event: another one (possible before v12, where the room id is
        // not its hash) would replace ours in the state it claims.
        let ours = create.as_ref().map(|c| c.event_id().to_owned());
        if let Some(other) = state
            .iter()
            .chain(&chain)
            .chain(std::iter::once(&prev_event))
            .find(|p| {
                p.kind().to_string() == "m.room.create" && Some(p.event_id()) != ours.as_deref()
            })
        {
            return Err(format!(
                "{} is a create event that is not this room's",
                other.event_id()
            ));
        }
        // The prev event is checked against its own auth events like the rest; from v12 the
        // create event is not cited, so the chain may lack it.
        chain.push(prev_event.clone());
        chain.extend(create);
        let ordered = check_state_and_auth_chain(state.clone(), chain)?;
        let fetched: Vec<Arc<Pdu>> = ordered.into_iter().map(|(p, _)| p).collect();
        stored::persist(
            db,
            RoomWrite {
                events: fetched
                    .iter()
                    .map(|pdu| EventWrite::outlier(pdu, room_id))
                    .collect(),
                ..RoomWrite::default()
            },
        )
        .await
        .map_err(|e| e.message)?;
        if let Some(engine) = self.engine.borrow_mut().as_mut() {
            engine.add_outliers(fetched);
        }
        let mut after: StateMap = state
            .iter()
            .filter_map(|p| {
                let key = p.state_key()?.to_owned();
                Some(((p.kind().to_string().into(), key), p.event_id().to_owned()))
            })
            .collect();
        if let Some(key) = prev_event.state_key() {
            after.insert(
                (prev_event.kind().to_string().into(), key.to_owned()),
                prev.to_owned(),
            );
        }
        crate::log_info!(
            "{room_id}: the state after {prev} ({} events) came from {origin}",
            after.len()
        );
        Ok(GroupRef::unstored(Arc::new(after)))
    }

    async fn held_or_verified_all(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        version: RoomVersion,
        raw: Vec<Value>,
        memo: &mut (u64, KeyMemo),
    ) -> Result<Vec<Arc<Pdu>>, String> {
        let mut out = Vec::with_capacity(raw.len());
        for event in raw {
            out.push(
                self.held_or_verified(db, room_id, version, event, memo)
                    .await?,
            );
        }
        Ok(out)
    }

    /// An event of a remote answer: our copy when the room's engine holds it (an event id is
    /// the hash of the event, so it is the same event), else checked for signatures and hash.
    async fn held_or_verified(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        version: RoomVersion,
        raw: Value,
        memo: &mut (u64, KeyMemo),
    ) -> Result<Arc<Pdu>, String> {
        let object = crate::signing::to_canonical_object(raw.clone()).map_err(|e| e.to_string())?;
        let unchecked = Pdu::from_json(object, version).map_err(|e| e.to_string())?;
        if unchecked.room_id() != *room_id {
            return Err(format!("{} belongs to another room", unchecked.event_id()));
        }
        let held = self
            .engine
            .borrow()
            .as_ref()
            .and_then(|e| e.known(unchecked.event_id()).cloned());
        match held {
            Some(pdu) => Ok(pdu),
            None => self.verified_remote_pdu(db, raw, version, memo).await,
        }
    }
}
