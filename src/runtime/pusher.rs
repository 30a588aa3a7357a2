//! One Durable Object per user with a pusher: their push queue (src/push/deliver.rs). The room
//! writer pokes it after storing a notification for the user and returns at once; the alarm
//! sends the user's unread notifications after its cursor to their push gateways, one per
//! step, retrying a failed gateway with backoff. The cursor lives in the object's storage, so
//! an evicted queue resumes where it stopped; a queue with nothing to send costs nothing.

use serde::{Deserialize, Serialize};
use worker::{durable_object, Env, Request, Response, State};

use crate::platform::Platform;
use crate::push::deliver::{self, Next, QueueState};
use crate::storage::Db;

#[derive(Serialize, Deserialize)]
struct Poke {
    user_id: String,
}

#[durable_object]
pub struct PushQueue {
    state: State,
    platform: Platform,
}

impl worker::DurableObject for PushQueue {
    fn new(state: State, env: Env) -> Self {
        super::install_logging();
        Self {
            state,
            platform: super::platform(&env),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let poke: Poke = req.json().await?;
        let storage = self.state.storage();
        let mut queue: QueueState = storage.get("queue").await?.unwrap_or_default();
        if queue.user_id != poke.user_id {
            queue.user_id = poke.user_id;
            storage.put("queue", &queue).await?;
        }
        // A queue backing off keeps its later alarm; an idle one looks now.
        if storage.get_alarm().await?.is_none() {
            storage.set_alarm(0i64).await?;
        }
        Response::ok("poked")
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let storage = self.state.storage();
        let mut queue: QueueState = storage.get("queue").await?.unwrap_or_default();
        if queue.user_id.is_empty() {
            return Response::ok("no user");
        }
        let db = Db::new(&self.platform);
        let next = deliver::step(&self.platform, &db, &mut queue).await;
        storage.put("queue", &queue).await?;
        match next {
            Ok(Next::Idle) => {}
            Ok(Next::Now) => storage.set_alarm(0i64).await?,
            Ok(Next::After(ms)) => storage.set_alarm(ms as i64).await?,
            Err(e) => {
                crate::log_warn!("push queue of {}: {}", queue.user_id, e.message);
                storage
                    .set_alarm(crate::push::gateway::backoff_ms(4) as i64)
                    .await?;
            }
        }
        Response::ok("stepped")
    }
}

/// Pokes the queues of `users`, never waiting on their gateways.
pub(crate) async fn poke_all(env: &Env, users: Vec<String>) {
    let pokes = users.iter().map(|user| async move {
        if let Err(e) = poke(env, user).await {
            crate::log_warn!("could not poke the push queue of {user}: {e}");
        }
    });
    futures::future::join_all(pokes).await;
}

async fn poke(env: &Env, user_id: &str) -> worker::Result<()> {
    let body = serde_json::to_string(&Poke {
        user_id: user_id.to_owned(),
    })?;
    super::post_to_object(env, "PUSHERS", user_id, "https://pusher/poke", body).await
}
