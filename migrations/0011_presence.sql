-- Presence of our users and of the remote users we hear about (m.presence EDUs). One row per
-- user; `stream_id` moves only when what others see changes (state, status message, currently
-- active), never for a refreshed last_active_ts, so a client's periodic sync wakes nobody.
CREATE TABLE presence (
  user_id TEXT PRIMARY KEY,
  presence TEXT NOT NULL,               -- online | unavailable | offline
  status_msg TEXT,
  last_active_ts INTEGER NOT NULL,      -- ms since the epoch
  currently_active INTEGER NOT NULL DEFAULT 0,
  stream_id INTEGER NOT NULL
);
CREATE INDEX presence_by_stream ON presence (stream_id);
