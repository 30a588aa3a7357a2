//! One Durable Object per application service: its transaction queue (docs/design.md,
//! "Application services"). Writers poke it (`poke_all`, from the wake-up port) and return at
//! once; its alarm reads the events after its cursor from D1 (src/appservice/push.rs), stores
//! the transaction before sending it, and re-sends that same transaction with backoff until the
//! service accepts it. The cursor and the pending transaction live in the object's storage, so
//! a restart resumes where it stopped. A service that is down only delays its own queue.

use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker::{durable_object, Env, Request, Response, State};

use crate::appservice::push::{
    add_device_fields, backoff_ms, device_step, ephemeral_step, next_step, transaction_body,
    PendingTransaction,
};
use crate::appservice::queries::call;
use crate::appservice::AppService;
use crate::platform::{Method, Platform};
use crate::storage::{appservices, Db};
use crate::time::now_ms;

/// How long the service may take to accept a transaction before it counts as a failure.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default, Serialize, Deserialize)]
struct QueueState {
    id: String,
    /// Events up to this stream position were delivered or did not concern the service.
    cursor: Option<i64>,
    /// The same for receipts and typing (MSC2409).
    #[serde(default)]
    receipts_cursor: i64,
    #[serde(default)]
    typing_cursor: i64,
    /// The same for to-device messages (services with `org.matrix.msc3202`).
    #[serde(default)]
    to_device_cursor: i64,
    #[serde(default)]
    device_lists_cursor: Option<i64>,
    pending: Option<PendingTransaction>,
    failures: u32,
    next_txn: u64,
}

#[derive(Serialize, Deserialize)]
struct Poke {
    id: String,
    /// Retry a backed-off transaction now (the service answered a ping).
    #[serde(default)]
    retry: bool,
}

#[durable_object]
pub struct AppServiceQueue {
    state: State,
    platform: Platform,
}

impl worker::DurableObject for AppServiceQueue {
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
        if queue.id != poke.id {
            queue.id = poke.id;
            storage.put("queue", &queue).await?;
        }
        // A queue backing off keeps its later alarm, unless the service just showed it is back;
        // an idle one looks now.
        if poke.retry || storage.get_alarm().await?.is_none() {
            storage.set_alarm(0i64).await?;
        }
        Response::ok("poked")
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let storage = self.state.storage();
        let mut queue: QueueState = storage.get("queue").await?.unwrap_or_default();
        let db = Db::new(&self.platform);
        let rust = |e: crate::http::MatrixError| worker::Error::RustError(e.message);
        let config = self.platform.config().map_err(rust)?;
        let Some(row) = appservices::by_id(&db, &queue.id).await.map_err(rust)? else {
            return Response::ok("no such service");
        };
        let service = Rc::new(
            AppService::from_json(&row.registration, config.server_name.as_str())
                .map_err(worker::Error::RustError)?,
        );
        if service.file.url.as_deref().is_none_or(str::is_empty) {
            return Response::ok("the service takes no transactions");
        }
        let pending = match queue.pending.clone() {
            Some(pending) => pending,
            None => {
                let after = queue.cursor.unwrap_or(row.start_stream);
                let server = config.server_name.as_str();
                let step = next_step(&self.platform, &db, &service, server, after)
                    .await
                    .map_err(rust)?;
                let ephemeral = if service.receives_ephemeral() {
                    let step = ephemeral_step(
                        &db,
                        &service,
                        row.updated_ts,
                        queue.receipts_cursor,
                        queue.typing_cursor,
                    )
                    .await
                    .map_err(rust)?;
                    Some(step)
                } else {
                    None
                };
                let edus = ephemeral.as_ref().map_or(0, |e| e.edus.len());
                let devices = if service.msc3202() {
                    let mut rooms: Vec<String> = step
                        .events
                        .iter()
                        .chain(ephemeral.iter().flat_map(|e| e.edus.iter()))
                        .filter_map(|v| v.get("room_id").and_then(|r| r.as_str()))
                        .map(str::to_owned)
                        .collect();
                    rooms.sort();
                    rooms.dedup();
                    let after = queue.to_device_cursor;
                    // Device-list changes from before the queue first looked are not news.
                    let lists_after = match queue.device_lists_cursor {
                        Some(cursor) => cursor,
                        None => appservices::device_list_position(&db).await.map_err(rust)?,
                    };
                    Some(
                        device_step(&db, &service, after, lists_after, &rooms)
                            .await
                            .map_err(rust)?,
                    )
                } else {
                    None
                };
                let to_device = devices
                    .as_ref()
                    .map_or(0, |d| d.to_device.len() + d.device_lists_changed.len());
                if step.events.is_empty() && edus == 0 && to_device == 0 {
                    queue.cursor = Some(step.through);
                    if let Some(e) = &ephemeral {
                        queue.receipts_cursor = e.receipts_through;
                        queue.typing_cursor = e.typing_through;
                    }
                    if let Some(d) = &devices {
                        queue.to_device_cursor = d.to_device_through;
                        queue.device_lists_cursor = Some(d.device_lists_through);
                    }
                    storage.put("queue", &queue).await?;
                    let more_devices = devices.as_ref().is_some_and(|d| d.more);
                    if step.more || more_devices || ephemeral.is_some_and(|e| e.more) {
                        storage.set_alarm(0i64).await?;
                    }
                    return Response::ok("nothing to send");
                }
                let (receipts_through, typing_through, edus) = match ephemeral {
                    Some(e) => (Some(e.receipts_through), Some(e.typing_through), e.edus),
                    None => (None, None, Vec::new()),
                };
                let mut body = transaction_body(&service, step.events, edus);
                if let Some(d) = &devices {
                    add_device_fields(&mut body, d);
                }
                let pending = PendingTransaction {
                    txn_id: format!("{}-{}", now_ms(), queue.next_txn),
                    body,
                    through: step.through,
                    receipts_through,
                    typing_through,
                    to_device_through: devices.as_ref().map(|d| d.to_device_through),
                    device_lists_through: devices.as_ref().map(|d| d.device_lists_through),
                    to_device_ids: devices.map(|d| d.to_device_ids).unwrap_or_default(),
                };
                queue.next_txn += 1;
                queue.pending = Some(pending.clone());
                // Stored before it is sent: a retry after a restart sends the same transaction.
                storage.put("queue", &queue).await?;
                pending
            }
        };
        let path = format!("/_matrix/app/v1/transactions/{}", pending.txn_id);
        let body = pending.body.to_string().into_bytes();
        match call(
            &self.platform,
            &service,
            Method::Put,
            &path,
            Some(body),
            SEND_TIMEOUT,
        )
        .await
        {
            Ok(response) if (200..300).contains(&response.status) => {
                queue.cursor = Some(pending.through);
                if let Some(through) = pending.receipts_through {
                    queue.receipts_cursor = through;
                }
                if let Some(through) = pending.typing_through {
                    queue.typing_cursor = through;
                }
                if let Some(through) = pending.to_device_through {
                    queue.to_device_cursor = through;
                }
                if let Some(through) = pending.device_lists_through {
                    queue.device_lists_cursor = Some(through);
                }
                // The service's devices never sync to acknowledge what it was given.
                if let Err(e) = appservices::delete_to_device(&db, &pending.to_device_ids).await {
                    crate::log_warn!("could not remove delivered to-device messages: {e}");
                }
                queue.pending = None;
                queue.failures = 0;
                storage.put("queue", &queue).await?;
                // More may have arrived meanwhile: look again at once.
                storage.set_alarm(0i64).await?;
                Response::ok("sent")
            }
            outcome => {
                queue.failures += 1;
                let backoff = backoff_ms(queue.failures);
                crate::log_warn!(
                    "transaction {} to application service {} failed ({}), retrying in {backoff} ms",
                    pending.txn_id,
                    service.id(),
                    match outcome {
                        Ok(response) => format!("status {}", response.status),
                        Err(e) => e,
                    }
                );
                storage.put("queue", &queue).await?;
                storage.set_alarm(backoff as i64).await?;
                Response::ok("retrying")
            }
        }
    }
}

/// Pokes the queue of every registered service: something was written that may concern it.
/// Costs nothing but a cached lookup when no service is registered.
pub(crate) async fn poke_all(env: &Env, platform: &Platform) {
    let Ok(config) = platform.config() else {
        return;
    };
    let db = Db::new(platform);
    let services = match crate::appservice::all(&db, config.server_name.as_str()).await {
        Ok(services) => services,
        Err(e) => {
            crate::log_warn!("could not read the application services: {e}");
            return;
        }
    };
    let pokes = services.iter().map(|service| async move {
        if let Err(e) = poke(env, service.id(), false).await {
            crate::log_warn!("could not poke the queue of {}: {e}", service.id());
        }
    });
    futures::future::join_all(pokes).await;
}

/// One poke to the queue of service `id`.
pub(crate) async fn poke(env: &Env, id: &str, retry: bool) -> worker::Result<()> {
    let body = serde_json::to_string(&Poke {
        id: id.to_owned(),
        retry,
    })?;
    super::post_to_object(env, "APPSERVICES", id, "https://appservice/poke", body).await
}
