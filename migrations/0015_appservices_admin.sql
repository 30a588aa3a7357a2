-- Application services (bridges) and the Synapse-compatible admin API.

-- One row per registered application service. `registration` is the registration file as JSON
-- (scripts/appservice.py converts Synapse's YAML and checks it); the tokens are also columns so
-- that a request's token finds its service with one indexed lookup. The hs_token is kept in
-- clear: it is sent to the service with every transaction.
CREATE TABLE appservices (
  id TEXT PRIMARY KEY,
  as_token TEXT NOT NULL UNIQUE,
  registration TEXT NOT NULL,
  -- Events at or below this stream position predate the registration and are never pushed.
  start_stream INTEGER NOT NULL DEFAULT 0,
  updated_ts INTEGER NOT NULL
);

-- Users created by a service in its exclusive namespace (Synapse's `appservice_id`).
ALTER TABLE users ADD COLUMN appservice_id TEXT;
-- Shown by the admin API; NULL for accounts made before this column existed.
ALTER TABLE users ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;

-- Registration tokens (admin API `/_synapse/admin/v1/registration_tokens`), accepted by the
-- `m.login.registration_token` stage next to the REGISTRATION_TOKEN secret.
CREATE TABLE registration_tokens (
  token TEXT PRIMARY KEY,
  uses_allowed INTEGER,                    -- NULL: unlimited
  pending INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  expiry_time INTEGER                      -- ms since the epoch; NULL: never expires
);

-- Rooms an admin blocked (DELETE /_synapse/admin/v2/rooms/{roomId} with `block`): nobody on
-- this server may join them again.
CREATE TABLE blocked_rooms (
  room_id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL
);

-- Room deletions requested with the admin API and what they did (their delete_status).
CREATE TABLE room_deletions (
  delete_id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  status TEXT NOT NULL,                    -- shutting_down | purging | complete | failed
  result TEXT NOT NULL DEFAULT '{}',       -- the shutdown_room object, JSON
  error TEXT,
  -- 1 when the deletion asked for a purge: the admin API no longer shows the room. Its events
  -- stay in D1 (only the room's object may change them; docs/design.md, invariant 1).
  purged INTEGER NOT NULL DEFAULT 0,
  created_ts INTEGER NOT NULL
);
CREATE INDEX room_deletions_by_room ON room_deletions (room_id);
