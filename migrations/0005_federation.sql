-- Federation: other servers' signing keys, the transactions they sent us, and events we refused.

-- Verify keys of remote servers, cached until `valid_until_ts` (spec: never used after it for
-- new events; old keys keep verifying events signed before they expired).
CREATE TABLE remote_server_keys (
  server_name TEXT NOT NULL,
  key_id TEXT NOT NULL,
  public_key TEXT NOT NULL,
  valid_until_ts INTEGER NOT NULL,
  expired_ts INTEGER,                      -- set for keys listed in old_verify_keys
  fetched_ts INTEGER NOT NULL,
  PRIMARY KEY (server_name, key_id)
);

-- Inbound /send transactions: a retried transaction id gets the first answer.
CREATE TABLE federation_transactions (
  origin TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  response TEXT NOT NULL,
  received_ts INTEGER NOT NULL,
  PRIMARY KEY (origin, txn_id)
);

-- PDUs we refused (bad signature, failed auth...), kept for diagnosis, never served.
CREATE TABLE rejected_events (
  event_id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  origin TEXT NOT NULL,
  reason TEXT NOT NULL,
  pdu TEXT NOT NULL,
  received_ts INTEGER NOT NULL
);

-- Events we hold only as state or auth chain of a room we joined over federation: they are part
-- of the room's state and auth, never of its timeline.
ALTER TABLE events ADD COLUMN outlier INTEGER NOT NULL DEFAULT 0;
