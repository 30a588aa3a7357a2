//! The Worker's side of the room objects: sends a command to the room's Durable Object and
//! turns its answer back into a value or a Matrix error.

use ruma::{RoomId, UserId};
use serde_json::Value;
use worker::{Env, Method, Request, RequestInit};

use crate::http::{ErrorCode, MatrixError};
use crate::rooms::builder::EventTemplate;
use crate::rooms::command::RoomCommand;

fn unreachable_room(e: worker::Error) -> MatrixError {
    MatrixError::internal(format!("room object unreachable: {e}"))
}

pub(crate) async fn run(
    env: &Env,
    room_id: &str,
    command: &RoomCommand,
) -> Result<Value, MatrixError> {
    let namespace = env.durable_object("ROOMS").map_err(unreachable_room)?;
    let stub = namespace
        .id_from_name(room_id)
        .and_then(|id| id.get_stub())
        .map_err(unreachable_room)?;
    let body = serde_json::to_string(command).map_err(|e| MatrixError::internal(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request =
        Request::new_with_init("https://room/command", &init).map_err(unreachable_room)?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(unreachable_room)?;
    let status = response.status_code();
    let body: Value = response.json().await.map_err(unreachable_room)?;
    if status >= 400 {
        let code = ErrorCode::parse(body["errcode"].as_str().unwrap_or_default());
        let message = body["error"].as_str().unwrap_or_default();
        return Err(MatrixError::new(status, code, message));
    }
    Ok(body)
}

/// Creates one event in a room as `sender`; returns its event id.
pub(crate) async fn send(
    env: &Env,
    room_id: &RoomId,
    sender: &UserId,
    event: EventTemplate,
    transaction: Option<(String, String)>,
) -> Result<String, MatrixError> {
    let command = RoomCommand::Send {
        room_id: room_id.to_owned(),
        sender: sender.to_owned(),
        event,
        transaction,
    };
    let answer = run(env, room_id.as_str(), &command).await?;
    answer["event_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| MatrixError::internal("room object answered without an event id"))
}
