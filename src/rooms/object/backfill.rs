//! History from before this server joined a room, fetched from the room's other servers with
//! `/backfill` when a client pages back past the oldest event we hold (server-server spec,
//! "Backfilling and retrieving missing events"). Every event is checked as any PDU is
//! (signatures, hash, its own auth events) before it is stored below the oldest; none of them
//! changes the room's current state.
//!
//! A room we left and join again has a gap of its own: what happened while we were away. That
//! is asked for the same way as part of the join (`missed_while_away`), so that those events
//! are stored in the timeline before our new join, where `/messages` pages back through them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, ServerName};
use serde_json::{json, Value};

use super::{history_visibility, joined_users, RoomObject};
use crate::federation::key_server::{verify_pdu_with, KeyMemo};
use crate::federation::through_servers;
use crate::http::route::percent_encode;
use crate::http::MatrixError;
use crate::platform::Method;
use crate::rooms::remote_join::check_by_own_auth_events;
use crate::rooms::{Pdu, RoomVersion};
use crate::storage::backfill as stored;
use crate::storage::Db;

/// Events asked for per backfill: one bounded request, whatever the client's page size.
const MAX_BACKFILL: u64 = 100;
/// Auth chains fetched (`event_auth`) per backfill for events citing auth events we lack.
const MAX_AUTH_FETCHES: usize = 5;
/// Events of a room's gap asked for when we join it again: the newest of what we missed.
const MAX_GAP: u64 = 100;

impl RoomObject {
    pub(super) async fn backfill(
        &self,
        room_id: OwnedRoomId,
        limit: u64,
    ) -> Result<Value, MatrixError> {
        let none = || Ok(json!({ "fetched": 0 }));
        let db = Db::new(&self.platform);
        self.ensure_engine(&db, &room_id).await?;
        let Some(oldest) = stored::oldest_timeline_event(&db, room_id.as_str()).await? else {
            return none();
        };
        let oldest: Value = serde_json::from_str(&oldest.pdu).unwrap_or(Value::Null);
        let prevs: Vec<&str> = crate::rooms::pdu::ref_ids(&oldest, "prev_events");
        let held = stored::in_timeline(&db, room_id.as_str(), &prevs).await?;
        let missing: Vec<&str> = prevs
            .into_iter()
            .filter(|id| !held.iter().any(|h| h == id))
            .collect();
        if missing.is_empty() {
            return none();
        }
        let config = self.platform.config()?;
        let (version, servers, visibility) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded above");
            (
                engine.version(),
                joined_servers(engine.state().events(), &config.server_name),
                history_visibility(engine),
            )
        };
        let query: Vec<String> = missing
            .iter()
            .map(|id| format!("v={}", percent_encode(id)))
            .collect();
        let limit = limit.clamp(1, MAX_BACKFILL);
        let path = format!(
            "/_matrix/federation/v1/backfill/{}?{}&limit={limit}",
            percent_encode(room_id.as_str()),
            query.join("&")
        );
        let servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        let answer = through_servers(&servers, "backfill", &room_id, |_, server| {
            let path = path.clone();
            async move {
                let (status, answer) = crate::federation::outgoing::signed(
                    &self.platform,
                    &server,
                    Method::Get,
                    &path,
                    None,
                )
                .await?;
                if status != 200 {
                    return Err(MatrixError::internal(format!("HTTP {status}")));
                }
                Ok((server, answer))
            }
        })
        .await;
        let (server, answer) = match answer {
            Ok(done) => done,
            // The history stays out of reach for now; the page the client gets ends here.
            Err(_) => return none(),
        };
        let raw = answer["pdus"].as_array().cloned().unwrap_or_default();
        let checked = self
            .checked_history(&db, &room_id, &server, version, raw, limit as usize)
            .await?;
        let newest_first: Vec<&Pdu> = checked.iter().map(|p| p.as_ref()).collect();
        stored::store(&db, room_id.as_str(), &newest_first, &visibility).await?;
        crate::log_info!(
            "{room_id}: backfilled {} events from {server}",
            newest_first.len()
        );
        Ok(json!({ "fetched": newest_first.len() }))
    }

    /// What a room we join again had while we were away, oldest first: the events before our
    /// join (`join`'s prev events and back) that `server`, which let us in, gives and that pass
    /// every check, up to the first events we hold. The engine must hold the state we join
    /// with (it checks their auth events). Best effort: without an answer, the gap stays.
    pub(super) async fn missed_while_away(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        server: &ServerName,
        version: RoomVersion,
        join: &Pdu,
    ) -> Vec<Arc<Pdu>> {
        let prevs: Vec<&str> = join.prev_events().iter().map(|id| id.as_str()).collect();
        let held = match stored::in_timeline(db, room_id.as_str(), &prevs).await {
            Ok(held) => held,
            Err(e) => {
                crate::log_warn!("gap of {room_id}: {e}");
                return Vec::new();
            }
        };
        let missing: Vec<&str> = prevs
            .iter()
            .copied()
            .filter(|id| !held.iter().any(|h| h == id))
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        let query: Vec<String> = missing
            .iter()
            .map(|id| format!("v={}", percent_encode(id)))
            .collect();
        let path = format!(
            "/_matrix/federation/v1/backfill/{}?{}&limit={MAX_GAP}",
            percent_encode(room_id.as_str()),
            query.join("&")
        );
        let answer =
            crate::federation::outgoing::signed(&self.platform, server, Method::Get, &path, None)
                .await;
        let raw = match answer {
            Ok((200, answer)) => answer["pdus"].as_array().cloned().unwrap_or_default(),
            Ok((status, _)) => {
                crate::log_warn!("gap of {room_id}: {server} answered backfill with {status}");
                return Vec::new();
            }
            Err(e) => {
                crate::log_warn!("gap of {room_id}: {e}");
                return Vec::new();
            }
        };
        let checked = match self
            .checked_history(db, room_id, server, version, raw, MAX_GAP as usize)
            .await
        {
            Ok(checked) => checked,
            Err(e) => {
                crate::log_warn!("gap of {room_id}: {e}");
                return Vec::new();
            }
        };
        let mut gap = within_gap(&missing, checked);
        // One held as an outlier already (part of a state we were sent) stays as it is: the
        // join's own write must not insert it twice.
        let ids: Vec<&str> = gap.iter().map(|p| p.event_id().as_str()).collect();
        match stored::held(db, room_id.as_str(), &ids).await {
            Ok(held) => gap.retain(|p| !held.iter().any(|h| h == p.event_id().as_str())),
            Err(e) => {
                crate::log_warn!("gap of {room_id}: {e}");
                return Vec::new();
            }
        }
        crate::log_info!(
            "{room_id}: {} events missed while away, from {server}",
            gap.len()
        );
        gap
    }

    /// The events of a `/backfill` answer that pass every check and are not yet in the
    /// timeline, newest first. Refused ones are logged and left out, and so is any event that
    /// relies on one of them.
    async fn checked_history(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        server: &ServerName,
        version: RoomVersion,
        raw: Vec<Value>,
        limit: usize,
    ) -> Result<Vec<Arc<Pdu>>, MatrixError> {
        let mut memo = KeyMemo::default();
        let mut verified: Vec<Arc<Pdu>> = Vec::new();
        for event in raw.into_iter().take(limit) {
            match self
                .verified_history_event(db, room_id, version, event, &mut memo)
                .await
            {
                Ok(pdu) => verified.push(pdu),
                Err(why) => crate::log_warn!("backfill of {room_id} from {server}: {why}"),
            }
        }
        let ids: Vec<&str> = verified.iter().map(|p| p.event_id().as_str()).collect();
        let held = stored::in_timeline(db, room_id.as_str(), &ids).await?;
        verified.retain(|p| !held.iter().any(|h| h == p.event_id().as_str()));
        verified.sort_by_key(|p| p.depth());

        let mut by_id: HashMap<OwnedEventId, Arc<Pdu>> = verified
            .iter()
            .map(|p| (p.event_id().to_owned(), p.clone()))
            .collect();
        let mut fetches = 0;
        let mut accepted = Vec::new();
        for pdu in verified {
            if !self.gather_auth_events(&pdu, &mut by_id) && fetches < MAX_AUTH_FETCHES {
                fetches += 1;
                if let Err(why) = self
                    .fetch_missing_auth_events(db, room_id, server.as_str(), &pdu)
                    .await
                {
                    crate::log_warn!("backfill of {room_id}: {why}");
                }
                self.gather_auth_events(&pdu, &mut by_id);
            }
            match check_by_own_auth_events(&pdu, &by_id) {
                Ok(()) => accepted.push(pdu),
                Err(why) => {
                    crate::log_warn!("backfill of {room_id} from {server}: refused {why}");
                    // Nothing that cites it passes either.
                    by_id.remove(pdu.event_id());
                }
            }
        }
        accepted.reverse();
        Ok(accepted)
    }

    /// Signatures and hash of one event of the answer, with keys valid when it was sent.
    async fn verified_history_event(
        &self,
        db: &Db,
        room_id: &OwnedRoomId,
        version: RoomVersion,
        event: Value,
        memo: &mut KeyMemo,
    ) -> Result<Arc<Pdu>, String> {
        let object = crate::signing::to_canonical_object(event).map_err(|e| e.to_string())?;
        let unchecked = Pdu::from_json(object.clone(), version).map_err(|e| e.to_string())?;
        if unchecked.room_id() != *room_id {
            return Err(format!("{} belongs to another room", unchecked.event_id()));
        }
        let ts = u64::from(ruma::state_res::Event::origin_server_ts(&unchecked).get());
        let object = verify_pdu_with(&self.platform, db, object, version, ts, memo).await?;
        Pdu::from_json(object, version)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    /// Adds the event's auth events (and the create event) that the room's engine holds to
    /// `by_id`; whether every one it cites is there.
    fn gather_auth_events(&self, pdu: &Pdu, by_id: &mut HashMap<OwnedEventId, Arc<Pdu>>) -> bool {
        let engine = self.engine.borrow();
        let Some(engine) = engine.as_ref() else {
            return false;
        };
        if let Some(create) = engine.state().get(&StateEventType::RoomCreate, "") {
            by_id
                .entry(create.event_id().to_owned())
                .or_insert_with(|| create.clone());
        }
        let mut all = true;
        for id in pdu.auth_events() {
            if by_id.contains_key(id) {
                continue;
            }
            match engine.known(id) {
                Some(known) => {
                    by_id.insert(id.clone(), known.clone());
                }
                None => all = false,
            }
        }
        all
    }
}

/// The events of `newest_first` (checked, none of them held) reached from `missing` by
/// following prev events, oldest first (by depth). Those only reached through an event we hold
/// are older than our copy's newest and do not belong in the gap: history from before we
/// first joined goes below the oldest event, by `/messages` backfill.
fn within_gap(missing: &[&str], newest_first: Vec<Arc<Pdu>>) -> Vec<Arc<Pdu>> {
    let by_id: HashMap<&str, &Arc<Pdu>> = newest_first
        .iter()
        .map(|p| (p.event_id().as_str(), p))
        .collect();
    let mut reached: HashSet<&str> = HashSet::new();
    let mut next: Vec<&str> = missing.to_vec();
    while let Some(id) = next.pop() {
        let Some(pdu) = by_id.get(id) else {
            continue;
        };
        if reached.insert(id) {
            next.extend(pdu.prev_events().iter().map(|p| p.as_str()));
        }
    }
    let mut gap: Vec<Arc<Pdu>> = newest_first
        .iter()
        .filter(|p| reached.contains(p.event_id().as_str()))
        .cloned()
        .collect();
    gap.sort_by_key(|p| p.depth());
    gap
}

/// The servers of the room's joined members, other than us.
fn joined_servers<'a>(
    state: impl Iterator<Item = &'a Arc<Pdu>>,
    us: &ServerName,
) -> Vec<OwnedServerName> {
    let mut servers: Vec<OwnedServerName> = joined_users(state)
        .map(|u| u.server_name().to_owned())
        .filter(|s| s != us)
        .collect();
    servers.sort();
    servers.dedup();
    servers
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::within_gap;
    use crate::rooms::{Pdu, RoomVersion};
    use crate::testing::{message, RemoteServer};

    #[test]
    fn the_gap_is_what_is_reached_from_the_join_before_an_event_we_hold() {
        let remote = RemoteServer::new("remote.test");
        let version = RoomVersion::V12;
        let room = "!r:remote.test";
        let pdu = |prev: &[&str], depth: u64| {
            let (id, json) = remote.sign(
                message(room, "@a:remote.test", "m", prev, &[], depth),
                version,
            );
            let object = crate::signing::to_canonical_object(json).unwrap();
            (id, Arc::new(Pdu::from_json(object, version).unwrap()))
        };
        // `held` is ours already (so not in the answer); `old` hangs off an event older still.
        let (old, old_pdu) = pdu(&["$older"], 3);
        let (first, first_pdu) = pdu(&["$held"], 10);
        let (second, second_pdu) = pdu(&[&first], 11);
        let (third, third_pdu) = pdu(&[&second, &old], 12);
        let answer = vec![third_pdu, second_pdu, first_pdu, old_pdu];
        let gap = within_gap(&[third.as_str()], answer.clone());
        let ids: Vec<&str> = gap.iter().map(|p| p.event_id().as_str()).collect();
        // `old` is cited by the gap's newest event: a fork from before we left, part of it.
        assert_eq!(
            ids,
            [
                old.as_str(),
                first.as_str(),
                second.as_str(),
                third.as_str()
            ]
        );
        // From the middle, what is newer is not reached.
        let gap = within_gap(&[second.as_str()], answer);
        let ids: Vec<&str> = gap.iter().map(|p| p.event_id().as_str()).collect();
        assert_eq!(ids, [first.as_str(), second.as_str()]);
    }
}
