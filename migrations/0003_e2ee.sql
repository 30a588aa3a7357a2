-- End-to-end encryption: the keys clients publish for each other, the messages they send each
-- other's devices, and the server-side key backup. The server never sees a private key or a
-- plaintext room key; it stores and hands out what clients signed or encrypted.
--
-- Tables are keyed by full user id, not localpart, so keys of remote users fetched over
-- federation can later be cached in the same tables (with the same device-list stream).

-- A device's identity keys as uploaded (the signed `DeviceKeys` object, canonical JSON).
-- Signatures others make on it later live in e2e_signatures.
CREATE TABLE e2e_device_keys (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  key_json TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each is handed out once (claim deletes the row it returns).
CREATE TABLE e2e_one_time_keys (
  id INTEGER PRIMARY KEY AUTOINCREMENT,    -- claim order: oldest first
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  key_id TEXT NOT NULL,
  key_json TEXT NOT NULL,
  UNIQUE (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, id);

-- Fallback keys: one per device and algorithm, handed out (and marked used) when the one-time
-- keys run out, until the client uploads a new one.
CREATE TABLE e2e_fallback_keys (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  key_id TEXT NOT NULL,
  key_json TEXT NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: master, self_signing, user_signing (the signed `CrossSigningKey` object).
CREATE TABLE e2e_cross_signing_keys (
  user_id TEXT NOT NULL,
  key_type TEXT NOT NULL,                  -- master | self_signing | user_signing
  public_key TEXT NOT NULL,                -- the unpadded base64 ed25519 key, as signatures name it
  key_json TEXT NOT NULL,
  PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded with /keys/signatures/upload, merged into the signed object on query.
-- target_key_id is a device id or a cross-signing public key.
CREATE TABLE e2e_signatures (
  target_user_id TEXT NOT NULL,
  target_key_id TEXT NOT NULL,
  signer_user_id TEXT NOT NULL,
  signer_key_id TEXT NOT NULL,             -- "ed25519:<device id or public key>"
  signature TEXT NOT NULL,
  PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- To-device messages waiting for their device. A stream: the device's sync delivers rows above
-- its token and deletes rows at or below the token it comes back with (acknowledged).
CREATE TABLE e2e_to_device (
  stream_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  type TEXT NOT NULL,
  content TEXT NOT NULL
);
CREATE INDEX e2e_to_device_inbox ON e2e_to_device (user_id, device_id, stream_id);

-- Whose devices or keys changed, as a stream. INSERT OR REPLACE gives a user a new, higher
-- stream id on every change, so the table holds one row per user and never shrinks below
-- what a token has seen.
CREATE TABLE e2e_device_list_changes (
  stream_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL UNIQUE
);

-- Server-side key backup (room_keys). Versions are global AUTOINCREMENT ids, so a version
-- number is never reused, not even after its deletion.
CREATE TABLE e2e_backup_versions (
  version INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  auth_data TEXT NOT NULL,
  etag INTEGER NOT NULL DEFAULT 0,         -- bumped by every change to the version's keys
  deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX e2e_backup_versions_by_user ON e2e_backup_versions (user_id, deleted, version);

CREATE TABLE e2e_backup_keys (
  version INTEGER NOT NULL,
  room_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  first_message_index INTEGER NOT NULL,
  forwarded_count INTEGER NOT NULL,
  is_verified INTEGER NOT NULL,
  session_data TEXT NOT NULL,
  PRIMARY KEY (version, room_id, session_id)
);
