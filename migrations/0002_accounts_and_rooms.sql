-- Accounts, devices and tokens; rooms, their events and state; the per-user streams /sync reads.
-- Every stream table has an AUTOINCREMENT key: D1 serialises writes, so a reader that saw
-- position N has seen everything below N, and positions never go backwards.

CREATE TABLE users (
  user_id TEXT PRIMARY KEY,
  password_hash TEXT,                      -- NULL: no password login
  created_ts INTEGER NOT NULL,
  deactivated INTEGER NOT NULL DEFAULT 0,
  admin INTEGER NOT NULL DEFAULT 0,
  displayname TEXT,
  avatar_url TEXT
);

CREATE TABLE devices (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  display_name TEXT,
  created_ts INTEGER NOT NULL,
  last_seen_ts INTEGER,
  last_seen_ip TEXT,
  PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 hex digests: a leaked table does not log anyone in.
CREATE TABLE access_tokens (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  created_ts INTEGER NOT NULL,
  expires_ts INTEGER                       -- NULL: does not expire (client asked for no refresh token)
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  created_ts INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens (user_id, device_id);

-- User-interactive authentication sessions: which stages are done, for which request.
CREATE TABLE uia_sessions (
  session_id TEXT PRIMARY KEY,
  purpose TEXT NOT NULL,                   -- register, password, deactivate, delete_devices, ...
  user_id TEXT,                            -- NULL for registration
  completed TEXT NOT NULL DEFAULT '[]',    -- JSON array of stage types
  created_ts INTEGER NOT NULL
);

-- Nonces of Synapse-compatible shared-secret registration; each is good for one use.
CREATE TABLE registration_nonces (
  nonce TEXT PRIMARY KEY,
  created_ts INTEGER NOT NULL
);

CREATE TABLE rooms (
  room_id TEXT PRIMARY KEY,
  room_version TEXT NOT NULL,
  creator TEXT NOT NULL,
  created_ts INTEGER NOT NULL,
  published INTEGER NOT NULL DEFAULT 0     -- listed in the public room directory
);

-- Every accepted event, in the order the room's Durable Object accepted it.
CREATE TABLE events (
  stream_ordering INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  room_id TEXT NOT NULL,
  type TEXT NOT NULL,
  state_key TEXT,
  sender TEXT NOT NULL,
  origin_server_ts INTEGER NOT NULL,
  depth INTEGER NOT NULL,
  pdu TEXT NOT NULL,                       -- the signed PDU, canonical JSON
  history_visibility TEXT NOT NULL,        -- in force for this event (spec: visibility at the event)
  membership TEXT,                         -- content.membership of m.room.member events
  relates_to TEXT,                         -- content.m.relates_to.event_id
  rel_type TEXT,
  redacted_by TEXT,
  txn_user TEXT,                           -- who sent it with which transaction id, for
  txn_device TEXT,                         -- unsigned.transaction_id in the sender's sync
  txn_id TEXT
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX events_by_relation ON events (relates_to, rel_type);
CREATE INDEX events_member_history ON events (room_id, state_key, stream_ordering) WHERE type = 'm.room.member';

CREATE TABLE room_state (
  room_id TEXT NOT NULL,
  type TEXT NOT NULL,
  state_key TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (room_id, type, state_key)
);

-- Current membership per room and user (a view of room_state that sync and joined_rooms read).
CREATE TABLE memberships (
  room_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  membership TEXT NOT NULL,
  event_id TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL,
  forgotten INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, membership);

-- Client transaction ids: a retried PUT returns the event it created the first time.
CREATE TABLE client_transactions (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  scope TEXT NOT NULL,                     -- the room id (send, redact, state), or the endpoint
  txn_id TEXT NOT NULL,
  result TEXT NOT NULL,                    -- the event id, or the JSON answered
  created_ts INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id, scope, txn_id)
);

CREATE TABLE room_aliases (
  alias TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  creator TEXT NOT NULL,
  created_ts INTEGER NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);

-- Streams read by /sync. INSERT OR REPLACE gives a changed row a new, higher stream id.
CREATE TABLE account_data (
  stream_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  room_id TEXT NOT NULL DEFAULT '',        -- '' for global account data
  type TEXT NOT NULL,
  content TEXT NOT NULL,
  UNIQUE (user_id, room_id, type)
);

CREATE TABLE receipts (
  stream_id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  receipt_type TEXT NOT NULL,
  thread_id TEXT NOT NULL DEFAULT '',      -- '' for an unthreaded receipt
  event_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  UNIQUE (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_by_room ON receipts (room_id, stream_id);

CREATE TABLE typing (
  stream_id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  expires_ts INTEGER NOT NULL,             -- 0 once the user stopped typing
  UNIQUE (room_id, user_id)
);
CREATE INDEX typing_by_room ON typing (room_id, stream_id);

CREATE TABLE filters (
  filter_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  filter TEXT NOT NULL
);

-- The user's own push rules and their changes to default rules (see client/push_rules).
CREATE TABLE push_rules (
  user_id TEXT PRIMARY KEY,
  rules TEXT NOT NULL
);

-- Requests per key and window, for rate limiting login and registration.
CREATE TABLE rate_limits (
  key TEXT NOT NULL,
  window_start INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (key, window_start)
);
