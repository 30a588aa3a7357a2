//! One Durable Object per remote server: the outbound queue to it. Rooms and the Worker enqueue
//! PDUs and EDUs; an idle queue sends them at once as transactions (at most 50 PDUs and 100 EDUs
//! each), and an alarm retries with exponential backoff until the server answers, so a server
//! that was down is caught up when it comes back. The queue lives in the object's own storage
//! (DESIGN.md allows this one exception to "D1 is the truth").

use std::cell::Cell;
use std::rc::Rc;

use ruma::ServerName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, Env, Request, Response, State, Storage};

use crate::federation::outgoing::request;
use crate::platform::Method;
use crate::platform::Platform;
use crate::time::now_ms;

const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
/// Longest pause between retries of an unreachable server.
const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;

#[derive(Default, Serialize, Deserialize)]
struct Queue {
    server: String,
    pdus: Vec<Value>,
    edus: Vec<Value>,
    failures: u32,
    next_txn: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Enqueue {
    pub server: String,
    pub pdus: Vec<Value>,
    pub edus: Vec<Value>,
}

/// How long after an event is queued the alarm retries if the immediate send did not finish
/// (the object was evicted mid-request): longer than one request may take.
const WATCHDOG_MS: u64 = 30_000;

#[durable_object]
pub struct Destination {
    state: State,
    platform: Platform,
    /// A send started by `fetch` is in flight in this instance.
    sending: Rc<Cell<bool>>,
}

impl worker::DurableObject for Destination {
    fn new(state: State, env: Env) -> Self {
        super::install_logging();
        Self {
            state,
            platform: super::platform(&env),
            sending: Rc::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.path() == "/wake" {
            return self.wake().await;
        }
        let item: Enqueue = req.json().await?;
        let storage = self.state.storage();
        let mut queue: Queue = storage.get("queue").await?.unwrap_or_default();
        queue.server = item.server;
        queue.pdus.extend(item.pdus);
        queue.edus.extend(item.edus);
        storage.put("queue", &queue).await?;
        if queue.failures > 0 {
            // Backing off: the queue keeps its later alarm (one that is not sane, past the
            // longest backoff, is replaced). An integer alarm time is an offset from now in
            // workers-rs, not a timestamp.
            let latest_sane = (now_ms() + MAX_BACKOFF_MS) as i64;
            if storage.get_alarm().await?.is_none_or(|at| at > latest_sane) {
                storage.set_alarm(0i64).await?;
            }
        } else {
            // The alarm is the watchdog: it sends what is queued if no send here does (this
            // instance went away mid-request, or the send in flight finished just before
            // this item came).
            if storage.get_alarm().await?.is_none() {
                storage.set_alarm(WATCHDOG_MS as i64).await?;
            }
            // An idle queue sends now, from here rather than from an alarm: a "now" alarm
            // fires only some milliseconds later, on every event. A send in flight picks the
            // new items up when it re-reads the queue.
            if !self.sending.get() {
                self.sending.set(true);
                let (storage, platform, sending) = (
                    self.state.storage(),
                    self.platform.clone(),
                    self.sending.clone(),
                );
                self.state.wait_until(async move {
                    loop {
                        match deliver(&storage, &platform).await {
                            Ok(Delivered::More) => continue,
                            Ok(_) => break,
                            Err(e) => {
                                crate::log_warn!("sending to the queue's server failed: {e}");
                                break;
                            }
                        }
                    }
                    sending.set(false);
                });
            }
        }
        Response::ok("queued")
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let storage = self.state.storage();
        if self.sending.get() {
            // `fetch` is sending in this instance: look again later.
            storage.set_alarm(WATCHDOG_MS as i64).await?;
            return Response::ok("sending");
        }
        match deliver(&storage, &self.platform).await? {
            Delivered::More => storage.set_alarm(0i64).await?,
            Delivered::Idle | Delivered::Failed => {}
        }
        Response::ok("sent")
    }
}

/// What one transaction did to the queue.
enum Delivered {
    /// Nothing (left) to send.
    Idle,
    /// Sent; more is queued.
    More,
    /// Not sent: the alarm is set for the retry.
    Failed,
}

/// Sends the first transaction of the queue (at most 50 PDUs and 100 EDUs), and on success
/// drops what it sent; on failure counts it and sets the backoff alarm.
async fn deliver(storage: &Storage, platform: &Platform) -> worker::Result<Delivered> {
    let queue: Queue = match storage.get("queue").await? {
        Some(queue) => queue,
        None => return Ok(Delivered::Idle),
    };
    if queue.pdus.is_empty() && queue.edus.is_empty() {
        return Ok(Delivered::Idle);
    }
    let Ok(server) = ServerName::parse(&queue.server) else {
        storage.delete("queue").await?;
        return Ok(Delivered::Idle);
    };
    let pdus: Vec<Value> = queue.pdus.iter().take(MAX_PDUS).cloned().collect();
    let edus: Vec<Value> = queue.edus.iter().take(MAX_EDUS).cloned().collect();
    let config = platform
        .config()
        .map_err(|e| worker::Error::RustError(e.message))?;
    let txn = format!("{}-{}", now_ms(), queue.next_txn);
    let body = json!({
        "origin": config.server_name,
        "origin_server_ts": now_ms(),
        "pdus": pdus,
        "edus": edus,
    });
    let path = format!("/_matrix/federation/v1/send/{txn}");
    match request(platform, &server, Method::Put, &path, Some(&body), true).await {
        Ok((200, _)) => {
            // Re-read: `fetch` may have queued more while the request was out (a Durable
            // Object takes other events during a fetch); writing back the copy read before
            // would lose them. New items only ever go to the end, so the sent ones are first.
            let mut queue: Queue = storage.get("queue").await?.unwrap_or_default();
            if queue.failures > 0 {
                record_backoff(platform, &server, None).await;
            }
            queue.pdus.drain(..pdus.len().min(queue.pdus.len()));
            queue.edus.drain(..edus.len().min(queue.edus.len()));
            queue.failures = 0;
            queue.next_txn += 1;
            let more = !queue.pdus.is_empty() || !queue.edus.is_empty();
            storage.put("queue", &queue).await?;
            Ok(if more {
                Delivered::More
            } else {
                Delivered::Idle
            })
        }
        outcome => {
            let mut queue: Queue = storage.get("queue").await?.unwrap_or_default();
            queue.failures += 1;
            let backoff = (1000u64 << queue.failures.min(22)).min(MAX_BACKOFF_MS);
            crate::log_warn!(
                "sending to {server} failed ({}), retrying in {backoff} ms",
                match outcome {
                    Ok((status, body)) => format!("status {status}: {body}"),
                    Err(e) => e.to_string(),
                }
            );
            storage.put("queue", &queue).await?;
            storage.set_alarm(backoff as i64).await?;
            record_backoff(
                platform,
                &server,
                Some((queue.failures, now_ms() + backoff)),
            )
            .await;
            Ok(Delivered::Failed)
        }
    }
}

impl Destination {
    /// The server reached us, so it is likely up again: a queue waiting out a backoff tries
    /// now (as Synapse does when a server it gave up on contacts it).
    async fn wake(&self) -> worker::Result<Response> {
        let storage = self.state.storage();
        let queue: Option<Queue> = storage.get("queue").await?;
        let waiting = queue.is_some_and(|q| !q.pdus.is_empty() || !q.edus.is_empty());
        if waiting
            && storage
                .get_alarm()
                .await?
                .is_some_and(|at| at > now_ms() as i64)
        {
            worker::console_log!("woken: a server we were backing off from contacted us");
            storage.set_alarm(0i64).await?;
        }
        Response::ok("woken")
    }
}

/// Mirrors the backoff into D1 (`Some((failures, retry_ts))`), or clears it, for the Worker to
/// see when the server contacts us. A failure here only costs the early wake.
async fn record_backoff(platform: &Platform, server: &ServerName, backoff: Option<(u32, u64)>) {
    let db = crate::storage::Db::new(platform);
    let result = match backoff {
        Some((failures, retry_ts)) => {
            crate::storage::destinations::set_backoff(&db, server.as_str(), failures, retry_ts)
                .await
        }
        None => crate::storage::destinations::clear_backoff(&db, server.as_str()).await,
    };
    if let Err(e) = result {
        crate::log_warn!("could not record the backoff for {server}: {e}");
    }
}
