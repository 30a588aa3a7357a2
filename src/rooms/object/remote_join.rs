//! Joining a room another server holds, in resumable steps (`rooms::join_job` has the plan):
//! `make_join`/`send_join` and the stash of the answer; then one step per chunk of events to
//! check; then the step that stores the room. Every step leaves the job in this object's
//! storage, so a step lost with an evicted object is simply asked for again.

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::{event_write, history_visibility, room_write, RoomObject};
use crate::federation::handshake;
use crate::federation::key_server::KeyMemo;
use crate::federation::through_servers;
use crate::http::{ErrorCode, MatrixError};
use crate::rooms::engine::RoomEngine;
use crate::rooms::join_job::{
    chunk_events, JoinJob, SendJoinAnswer, Step, JOB_KEY, MAX_CHUNK_BYTES, MAX_STEP_FAILURES,
    WATCHDOG_MS,
};
use crate::rooms::remote_join::authorised_part;
use crate::rooms::resolution::StateMap;
use crate::rooms::state_groups::{changed_slots, GroupRef};
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::rooms::{self as stored, EventWrite, NewRoom};
use crate::storage::{join_claims, Db};
use crate::time::now_ms;

/// Why a step failed: a verdict on the answer (try the next server, or give up), or trouble
/// here (keep the job; the step is asked for again).
enum StepError {
    Verdict(MatrixError),
    Trouble(MatrixError),
}

impl From<String> for StepError {
    /// A failure of the object's storage.
    fn from(e: String) -> Self {
        StepError::Trouble(storage_error(e))
    }
}

/// The answer while steps remain: whose join it is, for a `/join` that finds another user's.
fn pending(job: &JoinJob) -> Value {
    json!({ "pending": true, "user_id": job.user_id })
}

/// The answer while a Worker runs the handshake of a claimed join (federation/join.rs): no
/// step to run here yet.
fn claimed(claim: &join_claims::Claim) -> Value {
    json!({ "pending": true, "user_id": claim.user_id, "handshake": true })
}

/// A join the resident server accepted, before its answer is stashed.
struct Asked<'a> {
    user: &'a UserId,
    /// The server that accepted our join, the room's version, and our join as it accepted it.
    accepted: (OwnedServerName, RoomVersion, Arc<Pdu>),
    fallback: Vec<String>,
    content: Value,
    /// When the answer came: the time keys must be valid at.
    answered_at: u64,
    phases: Vec<(String, u64)>,
}

fn storage_error(e: String) -> MatrixError {
    MatrixError::internal(format!("room object storage: {e}"))
}

impl RoomObject {
    /// `JoinRemote`, for a room the Worker found claimed (federation/join.rs): carries on the
    /// join under way (a retried `/join`, or a second user's: their `/join` finishes the first
    /// one's, then joins locally), says that a Worker runs one, or starts one here when the
    /// claim is of a Worker that died.
    pub(super) async fn join_remote(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        servers: Vec<String>,
        content: Value,
    ) -> Result<Value, MatrixError> {
        if let Some(job) = self.join_job().await? {
            return Ok(pending(&job));
        }
        let db = Db::new(&self.platform);
        let config = self.platform.config()?;
        let us = config.server_name.as_str();
        // The Worker's way in is `federation/join.rs`; this one is taken when the room was
        // claimed: a join may be under way, so no template is asked for before that is known.
        let (members, claim) = futures::join!(
            crate::storage::sync::members_of_server(&db, room_id.as_str(), us),
            join_claims::live(&db, room_id.as_str(), now_ms())
        );
        if members? > 0 {
            return Err(joined_here());
        }
        // A Worker runs a claimed join's handshake (federation/join.rs) and hands its answer
        // here; until then this object has no job, and a second join must not run another.
        if let Some(claim) = claim? {
            return Ok(claimed(&claim));
        }
        // No claim, or one whose Worker died before handing its answer over: this join is
        // the one under way now.
        join_claims::take_over(&db, room_id.as_str(), user.as_str(), now_ms()).await?;
        let job = self.start_join(&room_id, user, servers, content).await?;
        self.finish_small_join(room_id, job).await
    }

    /// `JoinAnswered`: a join whose handshake the Worker ran under the room's claim
    /// (federation/join.rs). The answer is checked and stored as `join_remote` checks and
    /// stores its own.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn join_answered(
        &self,
        room_id: OwnedRoomId,
        user: &UserId,
        server: OwnedServerName,
        fallback: Vec<String>,
        content: Value,
        room_version: &str,
        join_event: Value,
        answer: String,
        answered_at: u64,
        timing: Vec<(String, u64)>,
    ) -> Result<Value, MatrixError> {
        // Another join got here first (one this object ran after the claim expired): that one
        // is carried on, and the user then joins here.
        if let Some(job) = self.join_job().await? {
            return Ok(pending(&job));
        }
        let db = Db::new(&self.platform);
        let us = self.platform.config()?.server_name;
        if crate::storage::sync::members_of_server(&db, room_id.as_str(), us.as_str()).await? > 0 {
            join_claims::release(&db, room_id.as_str()).await?;
            return Err(joined_here());
        }
        let ours = RoomVersion::parse(room_version)
            .ok_or_else(|| format!("a join of unknown room version {room_version}"))
            .and_then(|version| {
                let object =
                    crate::signing::to_canonical_object(join_event).map_err(|e| e.to_string())?;
                let join = Pdu::from_json(object, version).map_err(|e| e.to_string())?;
                Ok((version, join))
            });
        let (version, join) = match ours {
            Ok(ours) => ours,
            Err(why) => {
                // Nothing was stored: the join is over.
                join_claims::release(&db, room_id.as_str()).await?;
                return Err(MatrixError::internal(format!(
                    "our join does not parse: {why}"
                )));
            }
        };
        let answer = match send_join_answer(&server, &answer) {
            Ok(answer) => answer,
            Err(e) => {
                crate::log_warn!("join of {room_id} through {server}: {e}");
                if fallback.is_empty() {
                    join_claims::release(&db, room_id.as_str()).await?;
                    return Err(e);
                }
                // The claim stays: the join goes on from here, through the servers left.
                let job = self.start_join(&room_id, user, fallback, content).await?;
                return Ok(pending(&job));
            }
        };
        let join = co_signed(Arc::new(join), answer.event.as_deref(), version);
        let asked = Asked {
            user,
            accepted: (server, version, join),
            fallback,
            content,
            answered_at,
            phases: timing,
        };
        let job = match self.stash_answer(asked, answer).await {
            Ok(job) => job,
            Err(e) => {
                // No job was saved (its chunks are overwritten by the next one's).
                join_claims::release(&db, room_id.as_str()).await?;
                return Err(e);
            }
        };
        self.finish_small_join(room_id, job).await
    }

    /// A small answer (a room of a few members: the common case) is checked and stored in the
    /// request that fetched it: all its steps together cost no more than one step of a big
    /// answer, and each Durable Object request saved is a round trip the client waits for. The
    /// steps still run one by one through the stored job, so the room is stored exactly as
    /// the stepped path stores it, and a request cut off midway leaves a job to carry on.
    /// A bigger answer (or a fallback server's, after a verdict) stays in steps.
    async fn finish_small_join(
        &self,
        room_id: OwnedRoomId,
        mut job: JoinJob,
    ) -> Result<Value, MatrixError> {
        let step_events = self.platform.config()?.join_step_events;
        while job.fits_one_step(step_events) {
            let answer = self.continue_join(room_id.clone()).await?;
            if answer["pending"] != json!(true) {
                return Ok(answer);
            }
            match self.join_job().await? {
                Some(next) => job = next,
                None => return Ok(answer),
            }
        }
        Ok(pending(&job))
    }

    /// `ContinueJoin`, and the alarm: runs the next step of the join under way.
    pub(super) async fn continue_join(&self, room_id: OwnedRoomId) -> Result<Value, MatrixError> {
        let db = Db::new(&self.platform);
        let Some(mut job) = self.join_job().await? else {
            // Finished by the other driver (the alarm, or another user's request) since the
            // caller last asked: done, whose join it was no longer known.
            let us = self.platform.config()?.server_name;
            let (members, claim) = futures::join!(
                crate::storage::sync::members_of_server(&db, room_id.as_str(), us.as_str()),
                join_claims::live(&db, room_id.as_str(), now_ms())
            );
            if members? > 0 {
                return Ok(json!({ "room_id": room_id, "user_id": Value::Null }));
            }
            // A Worker's handshake, not handed over yet (federation/join.rs).
            if let Some(claim) = claim? {
                return Ok(claimed(&claim));
            }
            return Err(MatrixError::not_found("No join of this room is under way"));
        };
        let outcome = match job.next_step() {
            Step::Verify(index) => self.verify_chunk(&db, &mut job, index).await,
            Step::Finish => self.finish_join(&db, &room_id, &mut job).await,
        };
        match outcome {
            Ok(Some(done)) => {
                self.clear_job(&job, true).await.map_err(storage_error)?;
                Ok(done)
            }
            Ok(None) => {
                job.failures = 0;
                self.save_job(&job).await.map_err(storage_error)?;
                Ok(pending(&job))
            }
            Err(StepError::Trouble(e)) => {
                job.failures += 1;
                crate::log_warn!(
                    "join of {room_id}: step failed ({} of {MAX_STEP_FAILURES}): {e}",
                    job.failures
                );
                if job.failures >= MAX_STEP_FAILURES {
                    self.clear_job(&job, true).await.map_err(storage_error)?;
                } else {
                    self.save_job(&job).await.map_err(storage_error)?;
                }
                Err(e)
            }
            Err(StepError::Verdict(e)) => {
                crate::log_warn!("join of {room_id} through {}: {e}", job.server);
                // With servers left to try the claim stays: the join goes on from here.
                let over = job.fallback.is_empty();
                self.clear_job(&job, over).await.map_err(storage_error)?;
                if over {
                    return Err(e);
                }
                let user = job.user_id.clone();
                let job = self
                    .start_join(&room_id, &user, job.fallback, job.content)
                    .await?;
                Ok(pending(&job))
            }
        }
    }

    /// Leaves the rest of the join to the alarm, which starts at once.
    pub(super) async fn join_in_background(&self, room_id: &RoomId) -> Result<Value, MatrixError> {
        let Some(job) = self.join_job().await? else {
            // A Worker's handshake, not handed over yet: nothing to run here.
            let db = Db::new(&self.platform);
            if let Some(claim) = join_claims::live(&db, room_id.as_str(), now_ms()).await? {
                return Ok(claimed(&claim));
            }
            return Err(MatrixError::not_found("No join of this room is under way"));
        };
        self.storage.set_alarm(0).await.map_err(storage_error)?;
        Ok(pending(&job))
    }

    /// Carries a join on when nobody has asked for its next step for `WATCHDOG_MS`: the client
    /// gave up waiting, or the Worker's request ended. Steps then follow one another here.
    pub(super) async fn join_alarm(&self) -> Result<(), MatrixError> {
        let Some(job) = self.join_job().await? else {
            return Ok(());
        };
        let room_id = job.join_event["room_id"]
            .as_str()
            .and_then(|r| RoomId::parse(r).ok());
        let Some(room_id) = room_id else {
            self.clear_job(&job, false).await.map_err(storage_error)?;
            return Ok(());
        };
        match self.continue_join(room_id).await {
            Ok(answer) if answer["pending"] == json!(true) => {
                self.storage.set_alarm(0).await.map_err(storage_error)
            }
            Ok(_) => Ok(()),
            // Kept jobs are tried again after a pause; dropped ones have nothing left to do.
            Err(_) if self.join_job().await.ok().flatten().is_some() => self
                .storage
                .set_alarm(WATCHDOG_MS)
                .await
                .map_err(storage_error),
            Err(_) => Ok(()),
        }
    }

    /// Whether a join of this room is under way.
    pub(super) async fn joining(&self) -> Result<bool, MatrixError> {
        Ok(self.join_job().await?.is_some())
    }

    async fn join_job(&self) -> Result<Option<JoinJob>, MatrixError> {
        let stored = self.storage.get(JOB_KEY).await.map_err(storage_error)?;
        Ok(stored.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Saves the job and pushes the watchdog back: the next step is expected soon.
    async fn save_job(&self, job: &JoinJob) -> Result<(), String> {
        let text = serde_json::to_string(job).map_err(|e| e.to_string())?;
        self.storage.put(JOB_KEY, text).await?;
        self.storage.set_alarm(WATCHDOG_MS).await
    }

    /// Drops the job; with `over`, the join is over (stored or given up), and its claim
    /// (storage/join_claims.rs) is released too.
    async fn clear_job(&self, job: &JoinJob, over: bool) -> Result<(), String> {
        let mut keys = job.chunk_keys();
        keys.push(JOB_KEY.to_owned());
        let release = async {
            let room_id = job.join_event["room_id"].as_str().unwrap_or_default();
            if over {
                let db = Db::new(&self.platform);
                if let Err(e) = join_claims::release(&db, room_id).await {
                    // It expires (CLAIM_TTL_MS); the room object then finds the room stored.
                    crate::log_warn!("join of {room_id}: the claim stays until it expires: {e}");
                }
            }
        };
        let storage = async {
            self.storage.delete(keys).await?;
            self.storage.delete_alarm().await
        };
        futures::join!(release, storage).1
    }

    /// `make_join` and `send_join` against each server in turn; the first answer is stashed
    /// in chunks, unchecked, as a new job. The join holds the room's claim: a join that finds
    /// no server to accept it is over, and releases it.
    async fn start_join(
        &self,
        room_id: &OwnedRoomId,
        user: &UserId,
        servers: Vec<String>,
        content: Value,
    ) -> Result<JoinJob, MatrixError> {
        let started = now_ms();
        let accepted = through_servers(&servers, "join", room_id, |at, server| {
            let content = content.clone();
            async move {
                let (version, join) = handshake::make_membership(
                    &self.platform,
                    room_id,
                    user,
                    &server,
                    "join",
                    content,
                )
                .await?;
                let made = now_ms();
                let answer = handshake::send_membership_text(
                    &self.platform,
                    room_id,
                    &server,
                    "join",
                    &join,
                )
                .await?;
                let answer = send_join_answer(&server, &answer)?;
                let join = co_signed(join, answer.event.as_deref(), version);
                Ok((at, server, version, join, answer, made))
            }
        })
        .await;
        let (at, server, version, join, answer, made) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                join_claims::release(&Db::new(&self.platform), room_id.as_str()).await?;
                return Err(e);
            }
        };
        let sent = now_ms();
        let asked = Asked {
            user,
            accepted: (server, version, join),
            fallback: servers[at + 1..].to_vec(),
            content,
            answered_at: sent,
            phases: vec![
                ("make_join".to_owned(), made - started),
                ("send_join".to_owned(), sent - made),
            ],
        };
        self.stash_answer(asked, answer).await
    }

    /// Stashes a `send_join` answer in chunks, unchecked, as a new job.
    async fn stash_answer(
        &self,
        asked: Asked<'_>,
        answer: SendJoinAnswer,
    ) -> Result<JoinJob, MatrixError> {
        let sent = asked.answered_at;
        let config = self.platform.config()?;
        let (state, chain) = (&answer.state, &answer.auth_chain);
        let chunks = |events: &[Box<serde_json::value::RawValue>]| {
            chunk_events(
                events.iter().map(|e| e.get()),
                config.join_step_events,
                MAX_CHUNK_BYTES,
            )
        };
        let (state_chunks, chain_chunks) = (chunks(state), chunks(chain));
        let (server, version, join) = asked.accepted;
        let mut job = JoinJob {
            user_id: asked.user.to_owned(),
            server,
            fallback: asked.fallback,
            content: asked.content,
            room_version: version.as_str().to_owned(),
            join_event: crate::signing::event::into_json(join.json().clone()),
            state_chunks: state_chunks.len() as u32,
            chunks: (state_chunks.len() + chain_chunks.len()) as u32,
            verified: 0,
            at_ts: sent,
            counts: (state.len(), chain.len()),
            phases: asked.phases,
            failures: 0,
        };
        for (index, chunk) in state_chunks.into_iter().chain(chain_chunks).enumerate() {
            self.storage
                .put(&JoinJob::chunk_key(index as u32), chunk)
                .await
                .map_err(storage_error)?;
        }
        job.add_phase("stash", now_ms() - sent);
        self.save_job(&job).await.map_err(storage_error)?;
        Ok(job)
    }

    /// Checks the signatures and hash of every event of one chunk, and stores the chunk back
    /// in the form to accept (redacted where only the hash failed).
    async fn verify_chunk(
        &self,
        db: &Db,
        job: &mut JoinJob,
        index: u32,
    ) -> Result<Option<Value>, StepError> {
        let started = now_ms();
        let version = job_version(job)?;
        let raw = self.chunk(index).await?;
        let room_id = job.join_event["room_id"].as_str().unwrap_or_default();
        let mut memo = (job.at_ts, KeyMemo::default());
        let mut checked = Vec::with_capacity(raw.len());
        for event in raw {
            // Spec ("Checks performed on receipt of a PDU"): an event that is not a valid PDU
            // or fails its signature checks is dropped, and only it. Whether the rest is enough
            // to join is for `finish_join` to say.
            let claimed = event["event_id"].as_str().map(str::to_owned);
            let pdu = match self
                .verified_remote_pdu(db, event, version, &mut memo)
                .await
            {
                Ok(pdu) if pdu.room_id().as_str() == room_id => pdu,
                Ok(pdu) => {
                    crate::log_warn!(
                        "join of {room_id}: dropped {} from {}'s answer: of another room",
                        pdu.event_id(),
                        job.server
                    );
                    continue;
                }
                Err(why) => {
                    crate::log_warn!(
                        "join of {room_id}: dropped an event{} from {}'s answer: {why}",
                        claimed.map(|id| format!(" ({id})")).unwrap_or_default(),
                        job.server
                    );
                    continue;
                }
            };
            checked.push(crate::signing::event::into_json(pdu.json().clone()));
        }
        let text = Value::Array(checked).to_string();
        self.storage.put(&JoinJob::chunk_key(index), text).await?;
        job.verified = index + 1;
        job.add_phase("verify", now_ms() - started);
        Ok(None)
    }

    /// Checks every event against its own auth events, and our join against the state the
    /// resident server gave; then stores the room in one D1 batch.
    async fn finish_join(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        job: &mut JoinJob,
    ) -> Result<Option<Value>, StepError> {
        let started = now_ms();
        let version = job_version(job)?;
        let parse = |event: Value| {
            let object = crate::signing::to_canonical_object(event).map_err(|e| e.to_string())?;
            Pdu::from_json(object, version)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        };
        let (mut state, mut chain) = (Vec::new(), Vec::new());
        for index in 0..job.chunks {
            for event in self.chunk(index).await? {
                let pdu =
                    parse(event).map_err(|why| StepError::Verdict(bad_answer(&job.server, why)))?;
                if job.is_state_chunk(index) {
                    state.push(pdu);
                } else {
                    chain.push(pdu);
                }
            }
        }
        let join = parse(job.join_event.clone())
            .map_err(|why| StepError::Trouble(MatrixError::internal(why)))?;
        let done = json!({ "room_id": room_id, "user_id": job.user_id });
        let (stored_before, known) =
            stored::event_and_room_known(db, room_id.as_str(), join.event_id().as_str())
                .await
                .map_err(StepError::Trouble)?;
        // This step stored the room once already and was cut off before it could say so.
        if stored_before {
            return Ok(Some(done));
        }
        let checked = authorised_part(state, chain)
            .map_err(|why| StepError::Verdict(bad_answer(&job.server, why)))?;
        for (id, why) in &checked.dropped {
            crate::log_warn!(
                "join of {room_id}: rejected {id} of {}'s answer: {why}",
                job.server
            );
        }
        let ordered = checked.ordered;
        // The state the resident server gave us is the state before our join, less what failed
        // the checks (our join is then checked against the rest).
        let before: StateMap = ordered
            .iter()
            .filter(|(_, current)| *current)
            .filter_map(|(p, _)| {
                let key = p.state_key()?.to_owned();
                Some(((p.kind().to_string().into(), key), p.event_id().to_owned()))
            })
            .collect();
        let before = Arc::new(before);
        let engine = RoomEngine::restore(
            version,
            room_id.clone(),
            ordered.iter().map(|(p, _)| p.clone()).collect(),
            (*before).clone(),
            Vec::new(),
            join.depth() - 1,
        );
        let accepted = engine
            .accept_remote(join.clone(), vec![GroupRef::unstored(before)])
            .map_err(|e| {
                StepError::Verdict(MatrixError::forbidden(format!(
                    "our join does not pass the room's rules: {e:?}"
                )))
            })?;
        let visibility = history_visibility(&engine);
        let creator = ordered
            .iter()
            .find(|(p, _)| p.kind().to_string() == "m.room.create")
            .map(|(p, _)| p.sender().to_string())
            .unwrap_or_default();
        // A room we left and join again: what it had while we were away goes in the timeline
        // just before our join (rooms/object/backfill.rs), checked against the state we join
        // with. The engine is dropped again below: the next command rebuilds it from D1.
        *self.engine.borrow_mut() = Some(engine);
        let gap = if known {
            self.missed_while_away(db, room_id, &job.server, version, &join)
                .await
        } else {
            Vec::new()
        };
        *self.engine.borrow_mut() = None;
        let in_gap: std::collections::HashSet<&ruma::EventId> =
            gap.iter().map(|p| p.event_id()).collect();
        let mut events: Vec<EventWrite<'_>> = ordered
            .iter()
            .filter(|(pdu, _)| !in_gap.contains(pdu.event_id()))
            .map(|(pdu, _)| EventWrite::outlier(pdu, room_id))
            .collect();
        events.extend(
            gap.iter()
                .map(|pdu| EventWrite::history(pdu, room_id, &visibility)),
        );
        events.push(event_write(&accepted, room_id, &visibility, None));
        // The whole state is new to us (or replaces what we knew before we left).
        let all_slots = changed_slots(&StateMap::new(), &accepted.placement.after.state);
        let mut write = room_write(std::slice::from_ref(&accepted), events);
        write.state_changes = all_slots.iter().collect();
        write.new_room = (!known).then_some(NewRoom {
            version,
            creator: &creator,
            alias: None,
            publish: false,
        });
        let checked = now_ms();
        job.add_phase("auth_checks", checked - started);
        stored::persist(db, write)
            .await
            .map_err(StepError::Trouble)?;
        job.add_phase("d1_write", now_ms() - checked);
        self.log_join_timing(room_id, job)?;
        // Rebuilt from D1 on the next command, with the state just stored.
        *self.engine.borrow_mut() = None;
        self.platform
            .wakeups
            .notify(vec![job.user_id.to_string()])
            .await;
        Ok(Some(done))
    }

    /// Phase timings for the bench (bench/big_join.py), logged when EXPOSE_D1_USAGE is on.
    fn log_join_timing(&self, room_id: &RoomId, job: &JoinJob) -> Result<(), StepError> {
        let config = self.platform.config().map_err(StepError::Trouble)?;
        if config.expose_d1_usage {
            let phases: Vec<String> = job
                .phases
                .iter()
                .map(|(n, ms)| format!("{n}={ms}"))
                .collect();
            crate::log_info!(
                "remote join timing: {room_id} via {} state={} auth_chain={} steps={} {}",
                job.server,
                job.counts.0,
                job.counts.1,
                job.chunks + 2,
                phases.join(" ")
            );
        }
        Ok(())
    }

    async fn chunk(&self, index: u32) -> Result<Vec<Value>, StepError> {
        let text = self.storage.get(&JoinJob::chunk_key(index)).await?;
        let text = text.ok_or_else(|| {
            StepError::Trouble(MatrixError::internal(format!(
                "join chunk {index} is missing"
            )))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| StepError::Trouble(MatrixError::internal(e.to_string())))
    }
}

fn job_version(job: &JoinJob) -> Result<RoomVersion, StepError> {
    RoomVersion::parse(&job.room_version).ok_or_else(|| {
        StepError::Trouble(MatrixError::internal(format!(
            "a join job of unknown room version {}",
            job.room_version
        )))
    })
}

/// A remote join of a room a user of ours is in already.
fn joined_here() -> MatrixError {
    MatrixError::new(
        409,
        ErrorCode::Unknown,
        "This server is in the room: join it locally",
    )
}

/// The resident's `send_join` answer, parsed (its state and chain stay unparsed JSON text).
fn send_join_answer(server: &ServerName, text: &str) -> Result<SendJoinAnswer, MatrixError> {
    serde_json::from_str(text)
        .map_err(|e| bad_answer(server, format!("not a send_join answer: {e}")))
}

fn bad_answer(server: &ServerName, why: String) -> MatrixError {
    MatrixError::new(
        502,
        ErrorCode::Unknown,
        format!("{server} sent a bad join answer: {why}"),
    )
}

/// The resident's copy of our join, when it is the same event (same id: the reference hash
/// ignores signatures; v1/v2 ids name us) with more signatures (the authorising server's, in a
/// restricted room); ours otherwise.
pub(super) fn co_signed(
    join: Arc<Pdu>,
    theirs: Option<&serde_json::value::RawValue>,
    version: RoomVersion,
) -> Arc<Pdu> {
    let Some(theirs) = theirs
        .and_then(|raw| serde_json::from_str::<ruma::CanonicalJsonObject>(raw.get()).ok())
        .and_then(|object| Pdu::from_json(object, version).ok())
    else {
        return join;
    };
    let same = theirs.event_id() == join.event_id()
        && theirs.json().get("content") == join.json().get("content");
    if same {
        Arc::new(theirs)
    } else {
        join
    }
}
