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
    /// Joins a local user to a room another server holds, when the Worker found the room
    /// claimed (src/federation/join.rs): carries on the join under way, answers
    /// `{"pending": true, "handshake": true}` while a Worker runs the claimant's handshake, or
    /// (the claimant gone) runs `make_join`/`send_join` against `servers` in turn itself. An
    /// answer of at most `JOIN_STEP_EVENTS` events is checked and stored in this same request,
    /// which then answers as the last `ContinueJoin` does; a bigger one answers
    /// `{"pending": true}` and is checked and stored in steps (`ContinueJoin`). With a join
    /// already under way, it answers `{"pending": true}`.
    JoinRemote {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        servers: Vec<String>,
        content: serde_json::Value,
    },
    /// A remote join whose `make_join` and `send_join` the Worker ran (src/federation/join.rs,
    /// under the room's claim, storage/join_claims.rs): `answer` is `server`'s `send_join`
    /// answer to our signed `join_event`, as the text it came as; it travels after the
    /// command's JSON, not in it (`to_body`): a big room's answer is megabytes that JSON would
    /// escape and unescape again. Checked and stored as `JoinRemote` checks and stores its own
    /// answer, and answered the same way; `fallback` are the servers to try, from this object,
    /// should the answer not do. `timing`: the handshake's phases, for the join's log.
    JoinAnswered {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        server: ruma::OwnedServerName,
        fallback: Vec<String>,
        content: serde_json::Value,
        room_version: String,
        join_event: serde_json::Value,
        #[serde(default, skip)]
        answer: String,
        answered_at: u64,
        timing: Vec<(String, u64)>,
    },
    /// The next step of the remote join under way in this room (`rooms::join_job`). Answers
    /// `{"pending": true}` while steps remain, and `{"room_id", "user_id"}` (whose join it
    /// was) once the room is stored. With `in_background`, no step now: the object's alarm
    /// runs the rest, one step after another.
    ContinueJoin {
        room_id: OwnedRoomId,
        #[serde(default)]
        in_background: bool,
    },
    /// History from before this server joined the room, asked of the room's other servers
    /// (`/backfill`) when a client pages back past the oldest event held: at most `limit`
    /// events, checked and stored below the oldest. Answers `{"fetched": n}`.
    Backfill { room_id: OwnedRoomId, limit: u64 },
    /// A local user's membership in a room no local user is in, through the servers that hold
    /// it (`make_{membership}`/`send_{membership}` against `servers` in turn): `leave` (leaving,
    /// rejecting an invite, withdrawing a knock) or `knock`.
    RemoteMembership {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        servers: Vec<String>,
        membership: String,
        content: serde_json::Value,
    },
    /// A local user's join of a restricted room this server holds but none of whose members
    /// may authorise it: `make_join`/`send_join` through `servers` in turn, one of which
    /// authorises it, and the join accepted here as if that server had sent it.
    JoinThrough {
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
    /// PDUs another server sent (a transaction, or the event of `send_join`/`send_leave`/
    /// `send_knock`). With `membership_reply`, the one PDU must be a membership event, and the
    /// answer is what that endpoint returns.
    Remote {
        room_id: OwnedRoomId,
        origin: String,
        pdus: Vec<serde_json::Value>,
        membership_reply: Option<MembershipReply>,
    },
}

impl RoomCommand {
    /// The command as a request body: its JSON, then the text it carries (`JoinAnswered`'s
    /// answer), if any, after a newline (which compact JSON never holds).
    pub fn to_body(&self) -> serde_json::Result<String> {
        let mut body = serde_json::to_string(self)?;
        if let RoomCommand::JoinAnswered { answer, .. } = self {
            body.reserve(answer.len() + 1);
            body.push('\n');
            body.push_str(answer);
        }
        Ok(body)
    }

    /// The command `to_body` wrote.
    pub fn from_body(mut body: String) -> serde_json::Result<Self> {
        let carried = match body.find('\n') {
            Some(at) => {
                let carried = body.split_off(at + 1);
                body.pop();
                Some(carried)
            }
            None => None,
        };
        let mut command: RoomCommand = serde_json::from_str(&body)?;
        if let (RoomCommand::JoinAnswered { answer, .. }, Some(carried)) = (&mut command, carried) {
            *answer = carried;
        }
        Ok(command)
    }
}

/// What a `send_*` membership endpoint answers about the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipReply {
    /// `send_join`: the state before the event and its full auth chain.
    StateAndAuthChain,
    /// `send_knock`: stripped state that lets the knocking user recognise the room.
    StrippedState,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SendResult {
    pub event_id: OwnedEventId,
}

/// Creates one event in a room as `sender`; returns its event id.
pub(crate) async fn send_event(
    platform: &crate::platform::Platform,
    room_id: &ruma::RoomId,
    sender: &ruma::UserId,
    event: EventTemplate,
    transaction: Option<(String, String)>,
) -> Result<String, crate::http::MatrixError> {
    let command = RoomCommand::Send {
        room_id: room_id.to_owned(),
        sender: sender.to_owned(),
        event,
        transaction,
    };
    let answer = platform.rooms.command(room_id.as_str(), &command).await?;
    answer["event_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            crate::http::MatrixError::internal("room object answered without an event id")
        })
}
