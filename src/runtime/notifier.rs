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
use worker::{durable_object, Delay, Env, Request, Response, State};

use crate::storage::Db;
use crate::sync::token::StreamPosition;

#[durable_object]
pub struct Notifier {
    /// For the race check against D1's positions (`/wait`).
    db: Db,
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
        super::install_logging();
        Self {
            db: Db::new(&super::platform(&env)),
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
                let current = crate::storage::sync::current_position(&self.db).await.ok();
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
