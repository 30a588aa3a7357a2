-- A remote join under way (src/storage/join_claims.rs): the Worker runs a join's make_join and
-- send_join itself, before the room's Durable Object exists, so "a join of this room is under
-- way" is kept here rather than in the object's storage. One row per room; the row of a
-- claimant that died is taken over after a while (CLAIM_TTL_MS). The room object deletes the
-- row when the join is over (stored or given up).
CREATE TABLE remote_join_claims (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    claimed_ts INTEGER NOT NULL
) WITHOUT ROWID;
