//! One Durable Object per remote server: the outbound queue to it. Rooms and the Worker enqueue
//! PDUs and EDUs; an alarm sends them as transactions (at most 50 PDUs and 100 EDUs each),
//! retrying with exponential backoff until the server answers, so a server that was down is
//! caught up when it comes back. The queue lives in the object's own storage (DESIGN.md allows
//! this one exception to "D1 is the truth").

use ruma::ServerName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, Env, Request, Response, State};

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

#[durable_object]
pub struct Destination {
    state: State,
    platform: Platform,
}

impl worker::DurableObject for Destination {
    fn new(state: State, env: Env) -> Self {
        super::install_logging();
        Self {
            state,
            platform: super::platform(&env),
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
        // A backing-off queue keeps its later alarm; an idle one sends now. (An integer alarm
        // time is an offset from now in workers-rs, not a timestamp.)
        let latest_sane = (now_ms() + MAX_BACKOFF_MS) as i64;
        if storage.get_alarm().await?.is_none_or(|at| at > latest_sane) {
            storage.set_alarm(0i64).await?;
        }
        Response::ok("queued")
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let storage = self.state.storage();
        let queue: Queue = match storage.get("queue").await? {
            Some(queue) => queue,
            None => return Response::ok("empty"),
        };
        if queue.pdus.is_empty() && queue.edus.is_empty() {
            return Response::ok("empty");
        }
        let Ok(server) = ServerName::parse(&queue.server) else {
            storage.delete("queue").await?;
            return Response::ok("bad server name");
        };
        let pdus: Vec<Value> = queue.pdus.iter().take(MAX_PDUS).cloned().collect();
        let edus: Vec<Value> = queue.edus.iter().take(MAX_EDUS).cloned().collect();
        let platform = &self.platform;
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
                    self.record_backoff(&server, None).await;
                }
                queue.pdus.drain(..pdus.len().min(queue.pdus.len()));
                queue.edus.drain(..edus.len().min(queue.edus.len()));
                queue.failures = 0;
                queue.next_txn += 1;
                let more = !queue.pdus.is_empty() || !queue.edus.is_empty();
                storage.put("queue", &queue).await?;
                if more {
                    storage.set_alarm(0i64).await?;
                }
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
                self.record_backoff(&server, Some((queue.failures, now_ms() + backoff)))
                    .await;
            }
        }
        Response::ok("sent")
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

    /// Mirrors the backoff into D1 (`Some((failures, retry_ts))`), or clears it, for the
    /// Worker to see when the server contacts us. A failure here only costs the early wake.
    async fn record_backoff(&self, server: &ServerName, backoff: Option<(u32, u64)>) {
        let db = crate::storage::Db::new(&self.platform);
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
}
