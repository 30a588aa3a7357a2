-- Other servers' key documents exactly as their origin signed them (spec: "Querying keys through
-- another server"): what this server, as a notary, serves again with its own signature added,
-- and keeps serving when the origin stops answering. One document per server: the newest that
-- verified. `remote_server_keys` keeps the keys parsed from it for verifying signatures.
CREATE TABLE remote_server_key_documents (
  server_name TEXT PRIMARY KEY,
  document TEXT NOT NULL,                  -- the signed JSON, with the origin's signature
  valid_until_ts INTEGER NOT NULL,
  fetched_ts INTEGER NOT NULL
);
