-- The ed25519 keys this server signs with, current and retired (published as old_verify_keys).
CREATE TABLE server_signing_keys (
    key_id      TEXT PRIMARY KEY,      -- "ed25519:<version>"
    public_key  TEXT NOT NULL,         -- unpadded standard base64
    seed        TEXT,                  -- only for the key this server generated itself
    generated   INTEGER NOT NULL,      -- 1 for the generated key, 0 for one from SIGNING_KEY
    created_ts  INTEGER NOT NULL,
    expired_ts  INTEGER                -- NULL while in use; when it stopped being used otherwise
);

-- At most one generated key may ever exist: concurrent first uses cannot create two.
CREATE UNIQUE INDEX server_signing_keys_one_generated ON server_signing_keys (generated) WHERE generated = 1;
