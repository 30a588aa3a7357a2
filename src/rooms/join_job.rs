//! A join of a room another server holds, as resumable steps (DESIGN.md invariant 5).
//!
//! The `send_join` answer of a big room carries thousands of events, and each needs a signature
//! and hash check. Done in one Durable Object request, the join would depend on that one request
//! surviving; yet by then the resident server already counts us as joined. So the room object
//! stashes the answer in its own storage, in chunks, and every later request checks one chunk;
//! the last step stores the room. Whoever asks next carries on where the last step ended: the
//! client's `/join` loop, a retried `/join`, or the object's alarm if nobody asks. An answer
//! no bigger than one step runs all its steps in the request that fetched it.
//!
//! This module is the plan only: what a job records and in which order its steps run.

use ruma::{OwnedServerName, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Events checked per step unless `JOIN_STEP_EVENTS` says otherwise: about 200 ms of CPU in
/// local workerd (0.4 ms per event), far inside a Durable Object request's 30 s.
pub const DEFAULT_STEP_EVENTS: usize = 500;

/// A stored chunk stays below this size: a SQLite-backed Durable Object takes values up to
/// 2 MB (key and value together). One event is at most 64 KiB, so a chunk always holds one.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// Storage key of the job record; at most one join of a room is under way at a time.
pub const JOB_KEY: &str = "join:job";

/// A failing step that is not a verdict on the answer (storage unavailable) is retried this
/// many times before the join is given up.
pub const MAX_STEP_FAILURES: u32 = 3;

/// How long the room object waits for the next step to be asked for before its alarm carries
/// the join on by itself.
pub const WATCHDOG_MS: u64 = 30_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinJob {
    pub user_id: OwnedUserId,
    /// The resident server whose `send_join` answer this is.
    pub server: OwnedServerName,
    /// Servers still to try, in order, if this answer fails the checks.
    pub fallback: Vec<String>,
    /// The membership content, to sign a new join with a fallback server.
    pub content: Value,
    pub room_version: String,
    /// Our join event, signed, as the resident server accepted it.
    pub join_event: Value,
    /// Chunks `0..state_chunks` hold the state; the rest, the auth chain.
    pub state_chunks: u32,
    pub chunks: u32,
    /// Chunks checked so far; each is stored back in its accepted (maybe redacted) form.
    pub verified: u32,
    /// Keys must be valid at this time: when the answer arrived, not when a step runs.
    pub at_ts: u64,
    /// Events of the state and of the auth chain, for the log.
    pub counts: (usize, usize),
    /// Milliseconds spent per phase, summed over steps, for the timing log.
    pub phases: Vec<(String, u64)>,
    /// Consecutive failed steps (see `MAX_STEP_FAILURES`).
    pub failures: u32,
}

/// What the next request for this job does.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Check the signatures and hash of every event in this chunk.
    Verify(u32),
    /// Check every event against its auth events, then store the room with our join.
    Finish,
}

impl JoinJob {
    pub fn next_step(&self) -> Step {
        if self.verified < self.chunks {
            Step::Verify(self.verified)
        } else {
            Step::Finish
        }
    }

    /// Whether the whole answer is no more events than one step checks, so that every step
    /// of it may run in one request (`finish_small_join` in the room object).
    pub fn fits_one_step(&self, step_events: usize) -> bool {
        self.counts.0 + self.counts.1 <= step_events
    }

    pub fn chunk_key(index: u32) -> String {
        format!("join:chunk:{index}")
    }

    /// Every chunk key the job may have written.
    pub fn chunk_keys(&self) -> Vec<String> {
        (0..self.chunks).map(Self::chunk_key).collect()
    }

    pub fn is_state_chunk(&self, index: u32) -> bool {
        index < self.state_chunks
    }

    pub fn add_phase(&mut self, name: &str, ms: u64) {
        match self.phases.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += ms,
            None => self.phases.push((name.to_owned(), ms)),
        }
    }
}

/// The two lists of a `send_join` answer, each event kept as the text it arrived as: a big
/// room's answer is tens of megabytes, several times that as a JSON tree, and a Durable Object
/// has 128 MB.
#[derive(Deserialize)]
pub struct SendJoinAnswer {
    #[serde(default)]
    pub state: Vec<Box<RawValue>>,
    #[serde(default)]
    pub auth_chain: Vec<Box<RawValue>>,
    /// Our join as the resident server accepted it: in a restricted room, with the signature
    /// of the server that authorised it (the auth rules need it from every server).
    #[serde(default)]
    pub event: Option<Box<RawValue>>,
}

/// Splits events (JSON texts) into JSON arrays of at most `max_events` events and `max_bytes`
/// bytes (an event bigger than that alone still gets its own chunk).
pub fn chunk_events<'a>(
    events: impl IntoIterator<Item = &'a str>,
    max_events: usize,
    max_bytes: usize,
) -> Vec<String> {
    let max_events = max_events.max(1);
    let mut chunks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    // The length of `[a,b,c]` so far.
    let mut bytes = 2;
    for text in events {
        let full = current.len() >= max_events || bytes + 1 + text.len() > max_bytes;
        if full && !current.is_empty() {
            chunks.push(format!("[{}]", current.join(",")));
            current.clear();
            bytes = 2;
        }
        bytes += text.len() + usize::from(!current.is_empty());
        current.push(text);
    }
    if !current.is_empty() {
        chunks.push(format!("[{}]", current.join(",")));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(n: usize, body: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"n": i, "body": "x".repeat(body)}))
            .collect()
    }

    fn texts(events: &[Value]) -> Vec<String> {
        events.iter().map(Value::to_string).collect()
    }

    fn chunk(events: &[Value], max_events: usize, max_bytes: usize) -> Vec<String> {
        chunk_events(
            texts(events).iter().map(String::as_str),
            max_events,
            max_bytes,
        )
    }

    fn unchunk(chunks: &[String]) -> Vec<Value> {
        chunks
            .iter()
            .flat_map(|c| serde_json::from_str::<Vec<Value>>(c).unwrap())
            .collect()
    }

    #[test]
    fn chunks_keep_every_event_in_order_within_both_bounds() {
        let all = events(23, 10);
        let chunks = chunk(&all, 5, MAX_CHUNK_BYTES);
        assert_eq!(chunks.len(), 5);
        assert_eq!(unchunk(&chunks), all);

        let one = json!({"n": 0, "body": "x".repeat(100)}).to_string().len();
        let bound = 3 * one + 4;
        let chunks = chunk(&events(10, 100), 100, bound);
        assert_eq!(chunks.len(), 4, "three events fit per chunk by size");
        assert!(chunks.iter().all(|c| c.len() <= bound));
        assert_eq!(unchunk(&chunks), events(10, 100));
    }

    #[test]
    fn an_event_bigger_than_the_bound_still_gets_a_chunk_and_nothing_is_empty() {
        let all = events(3, 500);
        let chunks = chunk(&all, 10, 100);
        assert_eq!(chunks.len(), 3);
        assert_eq!(unchunk(&chunks), all);
        assert!(chunk(&[], 10, 100).is_empty());
    }

    #[test]
    fn steps_verify_every_chunk_in_order_then_finish() {
        let mut job = JoinJob {
            user_id: ruma::UserId::parse("@a:ours.example").unwrap(),
            server: ruma::ServerName::parse("theirs.example").unwrap(),
            fallback: vec![],
            content: json!({}),
            room_version: "12".into(),
            join_event: json!({}),
            state_chunks: 2,
            chunks: 3,
            verified: 0,
            at_ts: 0,
            counts: (0, 0),
            phases: vec![],
            failures: 0,
        };
        let mut seen = Vec::new();
        while let Step::Verify(i) = job.next_step() {
            seen.push((i, job.is_state_chunk(i)));
            job.verified += 1;
        }
        assert_eq!(seen, vec![(0, true), (1, true), (2, false)]);
        assert_eq!(job.next_step(), Step::Finish);
        job.add_phase("verify", 5);
        job.add_phase("verify", 7);
        assert_eq!(job.phases, vec![("verify".to_owned(), 12)]);
        let back: JoinJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }
}
