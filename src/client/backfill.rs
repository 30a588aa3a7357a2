//! When a client pages back past the oldest event we hold of a room joined over federation,
//! the room's object fetches the history before it from the room's other servers.

use crate::platform::Platform;
use ruma::RoomId;

use crate::http::MatrixError;
use crate::rooms::command::RoomCommand;
use crate::storage::backfill::oldest_timeline_event;
use crate::storage::Db;

/// How many events were added before the oldest one. A room whose timeline starts with its
/// create event has no history to fetch and costs one query; a failed fetch is logged and
/// counts as none, since the page the client asked for can still be answered.
pub(crate) async fn fill(
    platform: &Platform,
    db: &Db,
    room_id: &RoomId,
    limit: u64,
) -> Result<usize, MatrixError> {
    let Some(oldest) = oldest_timeline_event(db, room_id.as_str()).await? else {
        return Ok(0);
    };
    if oldest.kind == "m.room.create" {
        return Ok(0);
    }
    let command = RoomCommand::Backfill {
        room_id: room_id.to_owned(),
        limit,
    };
    match platform.rooms.command(room_id.as_str(), &command).await {
        Ok(answer) => Ok(answer["fetched"].as_u64().unwrap_or(0) as usize),
        Err(e) => {
            crate::log_warn!("backfill of {room_id}: {e}");
            Ok(0)
        }
    }
}
