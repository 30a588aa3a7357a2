//! "A join of this room is under way" (migrations/0030_remote_join_claims.sql): the Worker
//! claims a room before it asks another server to join it, so that two local users joining the
//! same unknown room at once run one handshake, not two (src/federation/join.rs). The room
//! object, the room's one writer, releases the claim when the join is over.

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;

/// How long a claim whose join was never handed to the room object stays in force: longer
/// than a join's `make_join` and `send_join` may take (20 s each), so that only the claim of a
/// Worker that died mid-handshake is taken over.
pub const CLAIM_TTL_MS: u64 = 60_000;

/// Who claimed a room, and when.
#[derive(Debug, Clone, Deserialize)]
pub struct Claim {
    pub user_id: String,
    pub claimed_ts: u64,
}

impl Claim {
    /// Whether the claim still stands at `now`.
    fn live(&self, now: u64) -> bool {
        now.saturating_sub(self.claimed_ts) < CLAIM_TTL_MS
    }
}

/// Claims the room for `user_id`'s join; `false` when a claim exists (live or not: the room
/// object decides what an old one means, under its lock).
pub async fn claim(db: &Db, room_id: &str, user_id: &str, now: u64) -> Result<bool, MatrixError> {
    let changed = db
        .run(
            "INSERT INTO remote_join_claims (room_id, user_id, claimed_ts) VALUES (?1, ?2, ?3)
             ON CONFLICT (room_id) DO NOTHING",
            args![room_id, user_id, now],
        )
        .await?;
    Ok(changed == 1)
}

/// Claims the room for `user_id`, replacing any claim (the room object taking over one whose
/// Worker died).
pub async fn take_over(db: &Db, room_id: &str, user_id: &str, now: u64) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO remote_join_claims (room_id, user_id, claimed_ts) VALUES (?1, ?2, ?3)
         ON CONFLICT (room_id) DO UPDATE SET user_id = excluded.user_id,
         claimed_ts = excluded.claimed_ts",
        args![room_id, user_id, now],
    )
    .await?;
    Ok(())
}

/// The room's claim, if one stands at `now` (a Worker's handshake not handed over yet).
pub async fn live(db: &Db, room_id: &str, now: u64) -> Result<Option<Claim>, MatrixError> {
    let claim: Option<Claim> = db
        .row(
            "SELECT user_id, claimed_ts FROM remote_join_claims WHERE room_id = ?1",
            args![room_id],
        )
        .await?;
    Ok(claim.filter(|c| c.live(now)))
}

/// The join is over (stored, or failed): the room is free to be joined again.
pub async fn release(db: &Db, room_id: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM remote_join_claims WHERE room_id = ?1",
        args![room_id],
    )
    .await?;
    Ok(())
}
