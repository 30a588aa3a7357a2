//! Fakes of the platform's ports for native tests (docs/design.md, "Testing"): SQLite with
//! `migrations/` applied in place of D1 (D1 is SQLite), room objects run in-process (the same
//! `rooms::object::RoomObject` the Durable Object wraps), and recording fakes for wake-ups, the
//! federation queue and the network. A test builds a `TestServer`, drives handlers through
//! `api::respond` with real requests, and reads the database or the recordings.

mod fakes;
mod remote;
mod sqlite;

pub(crate) use fakes::{call, create_room, ok_call, TestServer, SERVER_NAME};
pub(crate) use remote::{body_of, json_response, message, path_of, RemoteServer};
pub(crate) use sqlite::Sqlite;
