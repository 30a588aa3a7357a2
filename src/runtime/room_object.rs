//! The room Durable Object: one per room id, the only writer of its room (docs/design.md,
//! invariant 1). All of its logic is `rooms::object::RoomObject`; this class only turns requests
//! into commands and answers into responses, and lends the object its own storage and alarm.

use std::rc::Rc;

use worker::{durable_object, Env, Request, Response, State};

use crate::platform::{Fut, ObjectStorage};
use crate::rooms::command::RoomCommand;
use crate::rooms::object::RoomObject as Writer;

#[durable_object]
pub struct RoomObject {
    writer: Writer,
}

impl worker::DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        super::install_logging();
        Self {
            writer: Writer::new(super::platform(&env), Rc::new(Storage(state))),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command = match req.text().await.and_then(|body| {
            RoomCommand::from_body(body).map_err(|e| worker::Error::RustError(e.to_string()))
        }) {
            Ok(command) => command,
            Err(e) => {
                let error = crate::http::MatrixError::internal(format!("bad room command: {e}"));
                return error_response(error);
            }
        };
        match self.writer.handle(command).await {
            Ok(value) => Response::from_json(&value),
            Err(error) => error_response(error),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.writer
            .alarm()
            .await
            .map_err(|e| worker::Error::RustError(e.message))?;
        Response::ok("")
    }
}

fn error_response(error: crate::http::MatrixError) -> worker::Result<Response> {
    let status = error.status;
    Ok(Response::from_json(&error.into_response().body)?.with_status(status))
}

/// The object's own storage, through the port the room object uses.
struct Storage(State);

fn text(e: worker::Error) -> String {
    e.to_string()
}

impl ObjectStorage for Storage {
    fn get(&self, key: &str) -> Fut<'_, Result<Option<String>, String>> {
        let key = key.to_owned();
        Box::pin(async move { self.0.storage().get(&key).await.map_err(text) })
    }

    fn put(&self, key: &str, value: String) -> Fut<'_, Result<(), String>> {
        let key = key.to_owned();
        Box::pin(async move { self.0.storage().put(&key, value).await.map_err(text) })
    }

    fn delete(&self, keys: Vec<String>) -> Fut<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .storage()
                .delete_multiple(keys)
                .await
                .map(|_| ())
                .map_err(text)
        })
    }

    fn set_alarm(&self, in_ms: u64) -> Fut<'_, Result<(), String>> {
        // An integer alarm time is an offset from now in workers-rs, not a timestamp.
        Box::pin(async move { self.0.storage().set_alarm(in_ms as i64).await.map_err(text) })
    }

    fn delete_alarm(&self) -> Fut<'_, Result<(), String>> {
        Box::pin(async move { self.0.storage().delete_alarm().await.map_err(text) })
    }
}
