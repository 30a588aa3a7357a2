//! PDUs of other servers (a `/send` transaction, or the event of `send_join`/`send_leave`/
//! `send_knock`), entering through `remote`. Each is checked as the server-server spec requires
//! ("Checks performed on receipt of a PDU"), then written to D1 in one batch with its state
//! change, as a local event is:
//!
//! 1. Is a valid event, else dropped: `accept_remote` parses it for the room's version
//!    (`Pdu::from_json`, which also derives its event id) and checks that it is of this room.
//! 2. Passes signature checks, else dropped: `accept_remote`, through `key_server::verify_pdu`,
//!    with the keys of every server that must have signed it, valid when it was sent.
//! 3. Passes hash checks, else redacted before further processing: the same
//!    `key_server::verify_pdu`, which answers the redacted form when only the hash fails.
//! 4. Passes authorization rules based on the event's auth events, else rejected: auth events
//!    we lack are fetched first (`fetch_missing_auth_events`, which puts each of them through
//!    steps 1 to 4 itself); then `RoomEngine::accept_remote` checks the event against them.
//! 5. Passes authorization rules based on the state before the event, else rejected: that
//!    state is the resolution of the states after its `prev_events` (`prev_states`: earlier
//!    events we lack are fetched by `missing_before` and go through this same pipeline first;
//!    the state after a predecessor still missing is asked of the sender, `missing_state`);
//!    `RoomEngine::accept_remote` checks the event against it.
//! 6. Passes authorization rules based on the current state of the room, else soft-failed:
//!    `RoomEngine::accept_remote` again; `accept_remote` stores a soft-failed event out of the
//!    timeline and wakes nobody for it.
//!
//! A PDU dropped or rejected at steps 1 to 5 is logged and recorded (`refused`), never stored as
//! part of the room nor served.
//!
//! Before all this: a room none of our users is joined to is not followed, and its PDUs are
//! dropped, except an inviter's withdrawal of our user's invite (`out_of_band`,
//! rooms/object/membership.rs).

use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{OwnedRoomId, RoomId, ServerName};
use serde_json::{json, Value};

use super::{
    event_write, history_visibility, joined_users, local_audience, room_write, stripped_room_state,
    RoomObject,
};
use crate::federation::key_server::{verify_pdu_with, KeyMemo};
use crate::http::route::percent_encode;
use crate::http::{ErrorCode, MatrixError};
use crate::platform::Method;
use crate::rooms::command::MembershipReply;
use crate::rooms::state_groups::GroupRef;
use crate::rooms::{Pdu, RoomVersion};
use crate::signing::event::into_json;
use crate::storage::rooms::{self as stored, EventWrite, RoomWrite};
use crate::storage::state_groups::{self, At};
use crate::storage::Db;
use crate::time::now_ms;

impl RoomObject {
    /// The federation pipeline for each PDU: format and event id, signatures and content hash
    /// (redacted on mismatch), auth events and auth rules; then the same atomic persistence as
    /// local events. Refused PDUs are recorded and logged, never served.
    pub(super) async fn remote(
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
        let db = Db::new(&self.platform);
        self.ensure_engine(&db, &room_id).await?;
        let config = self.platform.config()?;
        if membership_reply.is_none() && !self.resident(&config.server_name) {
            return self.out_of_band(&db, &room_id, origin, pdus).await;
        }
        let mut results = serde_json::Map::new();
        let mut reply = Value::Null;
        // send_join's event as we accepted it: with our signature when we authorised it.
        let mut reply_event: Option<Value> = None;
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
            let raw = if matches!(membership_reply, Some(MembershipReply::StateAndAuthChain)) {
                let signed = self.co_sign_restricted_join(&db, raw).await?;
                reply_event = Some(signed.clone());
                signed
            } else {
                raw
            };
            let text = raw.to_string();
            let relay = membership_reply.is_some().then(|| raw.clone());
            let outcome = self
                .accept_remote(&db, &room_id, raw, membership_reply.is_some(), origin)
                .await;
            match outcome {
                Ok((event_id, state_before)) => {
                    if let Some(relay) = relay {
                        self.relay_membership(&room_id, origin, &event_id, relay)
                            .await;
                    }
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
            if let (Some(event), Value::Object(map)) = (reply_event, &mut reply) {
                map.insert("event".into(), event);
            }
            return Ok(reply);
        }
        Ok(json!({ "pdus": results }))
    }

    /// An event another server handed us through `send_join`/`send_leave`/`send_knock` only
    /// reached us: the room's other servers get it from us (the joining server may know no one
    /// else in the room yet).
    async fn relay_membership(&self, room_id: &RoomId, origin: &str, event_id: &str, raw: Value) {
        let servers = {
            let engine = self.engine.borrow();
            let Some(engine) = engine.as_ref() else {
                return;
            };
            let Some(pdu) = ruma::EventId::parse(event_id)
                .ok()
                .and_then(|id| engine.known(&id).cloned())
            else {
                return;
            };
            let Ok(config) = self.platform.config() else {
                return;
            };
            super::local::remote_servers(engine, &pdu, &config.server_name)
        };
        for server in servers.iter().filter(|s| s.as_str() != origin) {
            crate::log_info!("relaying {event_id} in {room_id} from {origin} to {server}");
            self.platform
                .queue
                .enqueue(server, vec![raw.clone()], vec![])
                .await;
        }
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
        crate::log_warn!("refused PDU {event_id} from {origin} in {room_id}: {reason}");
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
            crate::rooms::pdu::ref_ids(raw, "prev_events")
                .into_iter()
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
        let answer = crate::federation::outgoing::signed(
            &self.platform,
            &server,
            Method::Post,
            &path,
            Some(&body),
        )
        .await;
        let mut events = match answer {
            Ok((200, answer)) => answer["events"].as_array().cloned().unwrap_or_default(),
            Ok((status, _)) => {
                crate::log_warn!("get_missing_events from {origin}: HTTP {status}");
                return Vec::new();
            }
            Err(e) => {
                crate::log_warn!("get_missing_events from {origin}: {e}");
                return Vec::new();
            }
        };
        events.truncate(MISSING_EVENTS_LIMIT);
        events.retain(|e| {
            e["room_id"].as_str() == Some(room_id.as_str()) || e.get("room_id").is_none()
        });
        events.sort_by_key(|e| e["depth"].as_u64().unwrap_or(0));
        crate::log_info!(
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
        // Already accepted (a retried transaction, the same event from two servers): nothing
        // to do. An event whose predecessors are all forward extremities cannot be in the
        // timeline (it would have replaced them), so the common, linear case skips this read;
        // a copy held out of the timeline (an outlier, a soft-failed event) is then caught by
        // the write's unique event id instead (`stored_already`).
        let current_state = || {
            self.engine
                .borrow()
                .as_ref()
                .map(|e| e.state().events().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let extends_tips = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            pdu.prev_events()
                .iter()
                .all(|prev| engine.tip_state(prev).is_some())
        };
        if !extends_tips
            && crate::storage::events::event(db, &event_id)
                .await
                .map_err(|e| fail(e.message))?
                .is_some()
        {
            return Ok((event_id, current_state()));
        }
        // Signatures of every server that must have signed it, with keys valid at the time.
        let ts = u64::from(ruma::state_res::Event::origin_server_ts(&pdu).get());
        let object =
            crate::federation::key_server::verify_pdu(&self.platform, db, object, version, ts)
                .await
                .map_err(fail)?;
        let pdu = Arc::new(Pdu::from_json(object, version).map_err(|e| fail(e.to_string()))?);
        self.fetch_missing_auth_events(db, room_id, origin, &pdu)
            .await
            .map_err(fail)?;
        let (prevs, gap) = self
            .prev_states(db, room_id, origin, &pdu)
            .await
            .map_err(|e| fail(e.message))?;
        if prevs.is_empty() && !pdu.prev_events().is_empty() {
            // Step 5 needs the state before the event, and nothing gives it: refused, not
            // stored, so the same event is judged afresh once its predecessors reach us.
            return Err(fail(
                "the state before the event is unknown: none of its prev_events could be had"
                    .into(),
            ));
        }
        let (visibility, accepted) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            let accepted = engine
                .accept_remote(pdu.clone(), prevs)
                .map_err(|e| fail(format!("{e:?}")))?;
            (history_visibility(engine), accepted)
        };
        if accepted.soft_failed {
            crate::log_warn!(
                "soft-failed PDU {event_id} in {room_id}: not allowed by the current state"
            );
        }
        let event = event_write(&accepted, room_id, &visibility, None);
        let mut write = room_write(std::slice::from_ref(&accepted), vec![event]);
        // A predecessor we do not hold in the timeline: clients must learn that the timeline
        // does not run on contiguously before this event (/sync says `limited`).
        write.gap_before = gap.then_some(event_id.as_str());
        let config = self.platform.config().map_err(|e| fail(e.message))?;
        // The push rules of the room's local members are read by the last statement of the
        // event's own write batch: one D1 round trip for both (src/push/).
        let members = if accepted.soft_failed {
            Vec::new()
        } else {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded by the caller");
            crate::push::candidates(engine.state(), &pdu, &config.server_name)
        };
        // A message leaves the audience as it is: its rules are read before the write, and its
        // notifications go into its own row (the read is the round trip an update of the row
        // after the write would be, and the update's row written is saved). A state event has
        // its members' rules read by the last statement of its write batch, and its
        // notifications stored after it.
        let mut early_poke = None;
        if !members.is_empty() && pdu.state_key().is_none() {
            if let Ok(rows) = crate::push::prefetch(db, &members).await {
                let audience = {
                    let engine = self.engine.borrow();
                    let engine = engine.as_ref().expect("loaded by the caller");
                    let server = &config.server_name;
                    crate::push::audience(engine.state(), engine.version(), &pdu, server)
                };
                if let Ok(decided) = crate::push::decide(&audience, &pdu, &rows).await {
                    write.events[0].push = decided.push;
                    early_poke = Some(decided.poke);
                }
            }
        }
        let names: Vec<&str> = match early_poke {
            Some(_) => Vec::new(),
            None => members.iter().map(String::as_str).collect(),
        };
        let persisted = match crate::storage::push::recipients_statement(db, &names) {
            Some(read) => stored::persist_and_read(db, write, read)
                .await
                .and_then(|read| read.rows()),
            None => stored::persist(db, write).await.map(|()| Vec::new()),
        };
        let rules = match persisted {
            Ok(rules) => rules,
            Err(e) => {
                if stored_already(&e) {
                    // Nothing was written (the batch is one transaction), and the engine has
                    // not taken the event yet.
                    return Ok((event_id, current_state()));
                }
                *self.engine.borrow_mut() = None;
                return Err(fail(e.message));
            }
        };
        let (audience, state_before, push_audience) = {
            let mut engine = self.engine.borrow_mut();
            let engine = engine.as_mut().expect("loaded by the caller");
            engine.commit(&accepted);
            let (audience, push_audience) = if accepted.soft_failed {
                (Vec::new(), None)
            } else {
                (
                    local_audience(engine, &pdu, &config.server_name),
                    Some(crate::push::audience(
                        engine.state(),
                        engine.version(),
                        &pdu,
                        &config.server_name,
                    )),
                )
            };
            (
                audience,
                engine.events_of(&accepted.state_before),
                push_audience,
            )
        };
        match (early_poke, push_audience) {
            (Some(poke), _) if !poke.is_empty() => self.platform.pushers.poke(poke).await,
            (Some(_), _) => {}
            (None, Some(push_audience)) => {
                crate::push::after_event(&self.platform, db, push_audience, &pdu, Some(Ok(rules)))
                    .await
            }
            (None, None) => {}
        }
        if !audience.is_empty() {
            self.platform.wakeups.notify(audience).await;
        }
        Ok((event_id, state_before))
    }

    /// When the event cites auth events we do not hold, fetches its auth chain from the sending
    /// server (`event_auth`), checks every event of it (signatures, hashes, each against its
    /// own auth events) and stores them as outliers, so that the event can be authorised.
    pub(super) async fn fetch_missing_auth_events(
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
            crate::federation::outgoing::signed(&self.platform, &server, Method::Get, &path, None)
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
        crate::log_info!(
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
    /// sending server (`missing_state`). Predecessors whose state cannot be had are left out;
    /// when none is left, `accept_remote` refuses the event. With whether any predecessor was
    /// missing from our timeline (a gap before the event).
    async fn prev_states(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        origin: &str,
        pdu: &Pdu,
    ) -> Result<(Vec<GroupRef>, bool), MatrixError> {
        let mut states = Vec::new();
        let mut asked = 0;
        let mut gap = false;
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
            gap |= state.is_none();
            let state = match (state, ServerName::parse(origin)) {
                (Some(state), _) => Some(state),
                (None, Ok(origin)) if asked < super::missing_state::MAX_UNKNOWN_PREVS => {
                    asked += 1;
                    self.remote_state_after(db, room_id, &origin, prev)
                        .await
                        .inspect_err(|why| {
                            crate::log_warn!(
                                "{room_id}: no state after {prev} from {origin}: {why}"
                            )
                        })
                        .ok()
                }
                (None, _) => None,
            };
            states.extend(state);
        }
        Ok((states, gap))
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
        let mut servers: Vec<String> = joined_users(&state)
            .map(|u| u.server_name().to_string())
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

    /// A PDU of a join answer or a fetched auth chain with its signatures and hash checked,
    /// with keys valid now (`memo` holds the time and the keys already looked up).
    pub(super) async fn verified_remote_pdu(
        &self,
        db: &Db,
        raw: Value,
        version: RoomVersion,
        memo: &mut (u64, KeyMemo),
    ) -> Result<Arc<Pdu>, String> {
        let object = crate::signing::to_canonical_object(raw).map_err(|e| e.to_string())?;
        let object =
            verify_pdu_with(&self.platform, db, object, version, memo.0, &mut memo.1).await?;
        Pdu::from_json(object, version)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// Whether a write failed because the event is stored already (its id is unique).
fn stored_already(error: &MatrixError) -> bool {
    error
        .message
        .contains("UNIQUE constraint failed: events.event_id")
}
