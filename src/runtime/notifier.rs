//! The notifier: one Durable Object for the whole server where `/sync` long-polls park until
//! something for their user happens. Writers (room objects, receipts, typing, account data) tell
//! it which users to wake. Wake-ups are pushed, never polled.
//!
//! Closing the race between "sync found nothing" and "sync parked": the waiter sends the stream
//! positions its sync read up to; after registering, the notifier compares them with D1's
//! current positions and answers at once if anything was written meanwhile.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::channel::oneshot;
use futures::future::{select, Either};
use serde::{Deserialize, Serialize};
use worker::{durable_object, Delay, Env, Method, Request, RequestInit, Response, State};

use crate::storage::Db;
use crate::sync::token::StreamPosition;

#[durable_object]
pub struct Notifier {
    env: Env,
    waiters: RefCell<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WaitRequest {
    pub user_id: String,
    pub seen: String,
    pub timeout_ms: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct NotifyRequest {
    pub users: Vec<String>,
}

impl worker::DurableObject for Notifier {
    fn new(_state: State, env: Env) -> Self {
        Self {
            env,
            waiters: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        match req.path().as_str() {
            "/notify" => {
                let body: NotifyRequest = req.json().await?;
                let mut waiters = self.waiters.borrow_mut();
                for user in body.users {
                    for waiter in waiters.remove(&user).unwrap_or_default() {
                        let _ = waiter.send(());
                    }
                }
                Response::ok("")
            }
            "/wait" => {
                let body: WaitRequest = req.json().await?;
                let (sender, receiver) = oneshot::channel();
                self.waiters
                    .borrow_mut()
                    .entry(body.user_id.clone())
                    .or_default()
                    .push(sender);
                let seen = StreamPosition::parse(&body.seen).unwrap_or_default();
                let current = match Db::new(&self.env) {
                    Ok(db) => crate::storage::sync::current_position(&db).await.ok(),
                    Err(_) => None,
                };
                if current.is_some_and(|now| now.is_after(&seen)) {
                    self.drop_closed(&body.user_id);
                    return Response::ok("changed");
                }
                let timeout = Delay::from(std::time::Duration::from_millis(body.timeout_ms));
                let woken = match select(receiver, timeout).await {
                    Either::Left(_) => "woken",
                    Either::Right(_) => "timeout",
                };
                self.drop_closed(&body.user_id);
                Response::ok(woken)
            }
            _ => Response::error("not found", 404),
        }
    }
}

impl Notifier {
    /// Forgets waiters whose request is gone (woken, timed out or cancelled).
    fn drop_closed(&self, user_id: &str) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(list) = waiters.get_mut(user_id) {
            list.retain(|w| !w.is_canceled());
            if list.is_empty() {
                waiters.remove(user_id);
            }
        }
    }
}

fn stub(env: &Env) -> worker::Result<worker::Stub> {
    let namespace = env.durable_object("NOTIFIER")?;
    let stub = namespace.id_from_name("server")?.get_stub();
    stub
}

fn post(path: &str, body: String) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    Request::new_with_init(&format!("https://notifier{path}"), &init)
}

/// Wakes these users' parked syncs. Failures are logged, not raised: the write they follow has
/// already succeeded, and a sync that is not woken still returns at its timeout.
pub(crate) async fn notify(env: &Env, users: Vec<String>) {
    if users.is_empty() {
        return;
    }
    let body = serde_json::to_string(&NotifyRequest { users }).unwrap_or_default();
    let result = match (stub(env), post("/notify", body)) {
        (Ok(stub), Ok(req)) => stub.fetch_with_request(req).await.map(|_| ()),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    if let Err(e) = result {
        worker::console_error!("notify failed: {e}");
    }
}

/// Parks until one of the user's streams moves past `seen`, or the timeout.
pub(crate) async fn wait(env: &Env, user_id: &str, seen: &StreamPosition, timeout_ms: u64) {
    let body = serde_json::to_string(&WaitRequest {
        user_id: user_id.to_owned(),
        seen: seen.to_string(),
        timeout_ms,
    })
    .unwrap_or_default();
    let result = match (stub(env), post("/wait", body)) {
        (Ok(stub), Ok(req)) => stub.fetch_with_request(req).await.map(|_| ()),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    if let Err(e) = result {
        // Evicted or unreachable: the client retries its sync, which is what it does anyway.
        worker::console_error!("sync wait failed: {e}");
    }
}
