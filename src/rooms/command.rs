//! What the Worker asks of a room's Durable Object, and what it answers. Plain data, so the
//! request crosses the Worker/DO boundary as JSON and the protocol is readable in one place.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::builder::EventTemplate;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum RoomCommand {
    /// Creates the room with these events, in order, in one atomic write.
    Create {
        room_version: String,
        room_id: OwnedRoomId,
        creator: OwnedUserId,
        origin_server_ts: u64,
        events: Vec<EventTemplate>,
        alias: Option<String>,
        publish: bool,
    },
    /// Creates one local event at the tip of the room.
    Send {
        room_id: OwnedRoomId,
        sender: OwnedUserId,
        event: EventTemplate,
        /// `(device id, transaction id)`: a retry returns the first event id.
        transaction: Option<(String, String)>,
    },

    /// A membership event template for a user of another server (`make_join`, `make_leave`):
    /// placed at the tip of the room, not signed; the user's server signs and sends it back.
    MakeMembership {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        membership: String,
    },
    /// Joins a local user to a room another server holds (`make_join`/`send_join` against
    /// `servers` in turn), storing the room's state and auth chain once every event checks out.
    JoinRemote {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        servers: Vec<String>,
        content: serde_json::Value,
    },
    /// A local user leaves a room no local user is in, or rejects an invite from another
    /// server (`make_leave`/`send_leave` against `servers` in turn).
    LeaveRemote {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        servers: Vec<String>,
        content: serde_json::Value,
    },
    /// An invite of a local user from another server (`PUT /v2/invite`), already checked and
    /// co-signed: stored with the stripped state the inviting server sent.
    ReceiveInvite {
        room_id: OwnedRoomId,
        room_version: String,
        event: serde_json::Value,
        invite_state: Vec<serde_json::Value>,
    },
    /// PDUs another server sent (a transaction, or the event of `send_join`/`send_leave`).
    /// With `membership_reply`, answers with the room state and auth chain before the event.
    Remote {
        room_id: OwnedRoomId,
        origin: String,
        pdus: Vec<serde_json::Value>,
        membership_reply: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SendResult {
    pub event_id: OwnedEventId,
}
