-- Simplified sliding sync (MSC4186): what each connection's client holds. One row per `pos` the
-- server handed out that changed it (which rooms were sent, up to where, with which
-- required_state); a `pos` that changed nothing reuses its predecessor's row, so a quiet or
-- steady connection writes nothing. When a client comes back with a `pos`, the other rows of its
-- connection are deleted: the client can only retry that one (see src/sync/sliding/connection.rs).
CREATE TABLE sliding_sync_positions (
  pos_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  conn_id TEXT NOT NULL,                   -- '' when the client named none
  rooms TEXT NOT NULL,                     -- JSON, see connection.rs
  created_ts INTEGER NOT NULL
);
CREATE INDEX sliding_sync_positions_by_connection
  ON sliding_sync_positions (user_id, device_id, conn_id, pos_id);
