//! Messages of our users that arrive while the room's writer is busy are written together
//! (group commit): the writer takes every message queued so far, looks up their transaction
//! ids and the members' push rules in one D1 round trip, builds each event on the one before
//! it in memory, and writes them all, with their notifications, in one D1 batch. Each client
//! still gets the answer for its own message, in the room's order.
//!
//! Only plain messages (events without a state key, redactions left out) are queued: they
//! change no state, so the room's members, power levels and push audience are the same for
//! every message of a group, and the server makes no checks of its own on them. Everything
//! else takes the one-event path (`local::send`).

use futures::channel::oneshot;
use futures::future::{select, Either};
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{json, Value};

use super::{engine_error, event_write, history_visibility, local::remote_servers, room_write};
use super::{local_audience, RoomObject};
use crate::http::MatrixError;
use crate::rooms::builder::EventTemplate;
use crate::rooms::engine::{Accepted, LocalServer};
use crate::signing::event::into_json;
use crate::storage::rooms as stored;
use crate::storage::{signing_keys, Db};
use crate::time::now_ms;

/// At most this many messages go in one batch: each is about five queries (its transaction
/// lookup; its event, search, transaction and notification rows), and D1 counts every
/// statement of a batch against the invocation's query limit (50 on the free plan): a group
/// is at most 42.
const GROUP_MAX: usize = 8;

/// A message waiting for the writer, and where its answer goes.
pub(super) struct QueuedMessage {
    sender: OwnedUserId,
    event: EventTemplate,
    transaction: Option<(String, String)>,
    answer: oneshot::Sender<Result<Value, MatrixError>>,
}

/// Whether an event may wait in the queue (see the module's comment).
pub(super) fn queueable(event: &EventTemplate) -> bool {
    event.state_key.is_none() && event.kind != "m.room.redaction" && event.kind != "m.room.create"
}

impl RoomObject {
    /// Queues a message, then writes whatever is queued once it is this command's turn (an
    /// earlier command may have written this message already); answers this message's result.
    pub(super) async fn send_queued(
        &self,
        room_id: OwnedRoomId,
        sender: OwnedUserId,
        event: EventTemplate,
        transaction: Option<(String, String)>,
    ) -> Result<Value, MatrixError> {
        let (answer, mut answered) = oneshot::channel();
        self.queued.borrow_mut().push(QueuedMessage {
            sender,
            event,
            transaction,
            answer,
        });
        // Either an earlier turn writes this message (then the answer comes without a turn of
        // its own), or this command's turn comes first and writes a group from the front of the
        // queue, one group per turn. Every queued message has a command waiting like this, so
        // none is left behind. A command whose message was not in the group it wrote (more than
        // GROUP_MAX were queued before it) waits again and may write a second group: twice the
        // queries in one invocation.
        loop {
            let turn = self.writer.lock();
            futures::pin_mut!(turn);
            match select(&mut answered, turn).await {
                Either::Left((answer, _)) => {
                    return answer.unwrap_or_else(|_| {
                        Err(MatrixError::internal("a queued message was dropped"))
                    })
                }
                Either::Right((_turn, _)) => {
                    let group: Vec<QueuedMessage> = {
                        let mut queued = self.queued.borrow_mut();
                        let n = queued.len().min(GROUP_MAX);
                        queued.drain(..n).collect()
                    };
                    if !group.is_empty() {
                        self.write_group(&room_id, group).await;
                    }
                }
            }
        }
    }

    /// Writes a group and answers each of its messages.
    async fn write_group(&self, room_id: &OwnedRoomId, group: Vec<QueuedMessage>) {
        let mut answers = match self.write_messages(room_id, &group).await {
            Ok(answers) => answers,
            Err(e) => vec![Err(e); group.len()],
        };
        for (message, answer) in group.into_iter().zip(answers.drain(..)) {
            let _ = message.answer.send(answer);
        }
    }

    /// The answers of the group's messages, in order: an event id, or the message's own error.
    /// An `Err` of the whole is an error of every message (nothing was written).
    async fn write_messages(
        &self,
        room_id: &OwnedRoomId,
        group: &[QueuedMessage],
    ) -> Result<Vec<Result<Value, MatrixError>>, MatrixError> {
        let db = Db::new(&self.platform);
        self.ensure_engine(&db, room_id).await?;
        let config = self.platform.config()?;
        let keys = signing_keys::server_keys(&self.platform).await?;
        let server = LocalServer {
            name: &config.server_name,
            key: &keys.current,
        };
        // The transaction ids and the push rules of the room's local members: reads started
        // together share one D1 batch.
        let mut members: Vec<String> = {
            let engine = self.engine.borrow();
            let state = engine.as_ref().expect("loaded above").state();
            group
                .iter()
                .flat_map(|m| {
                    crate::push::candidates_of(
                        state,
                        &m.sender,
                        &m.event.kind,
                        None,
                        &config.server_name,
                    )
                })
                .collect()
        };
        members.sort();
        members.dedup();
        let earlier: Vec<Option<String>> = {
            let sent = self.transactions.borrow();
            group
                .iter()
                .map(|m| {
                    let txn = m.transaction.as_ref();
                    txn.and_then(|(device, txn)| sent.find(m.sender.as_str(), device, txn))
                })
                .collect()
        };
        let rules = crate::push::prefetch(&db, &members).await;

        // Each new event is built on the one before it: the engine takes it as its tip in
        // memory now, and is dropped (to be rebuilt from D1) if the batch fails.
        let mut answers: Vec<Option<Result<Value, MatrixError>>> = Vec::with_capacity(group.len());
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut written: Vec<usize> = Vec::new();
        for (i, (message, earlier)) in group.iter().zip(earlier).enumerate() {
            let same_transaction = |j: &usize| {
                message.transaction.is_some()
                    && group[*j].transaction == message.transaction
                    && group[*j].sender == message.sender
            };
            match earlier {
                Some(event_id) => answers.push(Some(Ok(json!({ "event_id": event_id })))),
                // A retry that arrived while the first was still queued: the same event.
                None if written.iter().any(same_transaction) => answers.push(None),
                None => {
                    let mut engine = self.engine.borrow_mut();
                    let engine = engine.as_mut().expect("loaded above");
                    match engine.prepare_local(
                        &message.sender,
                        message.event.clone(),
                        now_ms(),
                        &server,
                    ) {
                        Ok(pdu) => {
                            let one = engine.accept_local(pdu);
                            engine.commit(&one);
                            accepted.push(one);
                            written.push(i);
                            answers.push(None);
                        }
                        Err(e) => answers.push(Some(Err(engine_error(e)))),
                    }
                }
            }
        }
        if accepted.is_empty() {
            return Ok(answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err(MatrixError::internal("unanswered message"))))
                .collect());
        }

        let (visibility, audience) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded above");
            let audience = accepted
                .iter()
                .map(|a| {
                    crate::push::audience(
                        engine.state(),
                        engine.version(),
                        &a.pdu,
                        &config.server_name,
                    )
                })
                .collect::<Vec<_>>();
            (history_visibility(engine), audience)
        };
        // Each event's notifications go into its own row.
        let mut pushes = vec![None; accepted.len()];
        let mut poke = Vec::new();
        if let Ok(rows) = &rules {
            for ((one, audience), push) in accepted.iter().zip(&audience).zip(&mut pushes) {
                match crate::push::decide(audience, &one.pdu, rows).await {
                    Ok(decided) => {
                        *push = decided.push;
                        poke.extend(decided.poke);
                    }
                    Err(e) => crate::log_warn!(
                        "push rules of {} not evaluated: {}",
                        one.pdu.event_id(),
                        e.message
                    ),
                }
            }
        }
        let events = accepted
            .iter()
            .zip(&written)
            .zip(pushes)
            .map(|((one, &i), push)| {
                let transaction = group[i]
                    .transaction
                    .as_ref()
                    .map(|(device, txn)| (group[i].sender.as_str(), device.as_str(), txn.as_str()));
                let mut event = event_write(one, room_id, &visibility, transaction);
                event.push = push;
                event
            })
            .collect();
        let write = room_write(&accepted, events);
        if let Err(e) = stored::persist(&db, write).await {
            // D1 may or may not have them: forget the in-memory tip and rebuild from D1.
            *self.engine.borrow_mut() = None;
            return Ok(answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err(e.clone())))
                .collect());
        }

        // Written: the answers of the new events, and of retries queued with them.
        for (&i, one) in written.iter().zip(&accepted) {
            answers[i] = Some(Ok(json!({ "event_id": one.pdu.event_id() })));
            if let Some((device, txn)) = &group[i].transaction {
                let sender = group[i].sender.as_str();
                (self.transactions.borrow_mut()).record_sent(sender, device, txn, &one.pdu);
            }
        }
        for i in 0..answers.len() {
            if answers[i].is_none() {
                let first = written
                    .iter()
                    .zip(&accepted)
                    .find(|(&j, _)| {
                        group[j].sender == group[i].sender
                            && group[j].transaction == group[i].transaction
                    })
                    .map(|(_, one)| json!({ "event_id": one.pdu.event_id() }));
                answers[i] = Some(
                    first.ok_or_else(|| MatrixError::internal("a retried message lost its event")),
                );
            }
        }

        let (wake, servers) = {
            let engine = self.engine.borrow();
            let engine = engine.as_ref().expect("loaded above");
            let mut wake: Vec<String> = accepted
                .iter()
                .flat_map(|a| local_audience(engine, &a.pdu, &config.server_name))
                .collect();
            wake.sort();
            wake.dedup();
            let last = &accepted.last().expect("not empty").pdu;
            (wake, remote_servers(engine, last, &config.server_name))
        };
        match rules {
            Ok(_) => {
                poke.sort();
                poke.dedup();
                if !poke.is_empty() {
                    self.platform.pushers.poke(poke).await;
                }
            }
            // The rules could not be read with the transaction ids: read them again, after the
            // write, one event at a time.
            Err(_) => {
                for (one, audience) in accepted.iter().zip(audience) {
                    crate::push::after_event(&self.platform, &db, audience, &one.pdu, None).await;
                }
            }
        }
        self.platform.wakeups.notify(wake).await;
        let pdus: Vec<Value> = accepted
            .iter()
            .map(|a| into_json(a.pdu.json().clone()))
            .collect();
        for server in servers {
            self.platform
                .queue
                .enqueue(&server, pdus.clone(), vec![])
                .await;
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(MatrixError::internal("unanswered message"))))
            .collect())
    }
}
