-- End-to-end encryption over federation: which remote users' device lists we keep up to date,
-- and what we last told other servers about our users' device lists.

-- Remote users whose devices (in e2e_device_keys) and cross-signing keys (in
-- e2e_cross_signing_keys) we cache: `stream_id` is the last m.device_list_update of theirs we
-- applied; an update whose prev_id we do not know means we missed one, and we resync.
CREATE TABLE e2e_remote_device_lists (
  user_id TEXT PRIMARY KEY,
  stream_id INTEGER NOT NULL
);

-- Our users' device-list position (e2e_device_list_changes.stream_id) last sent to other
-- servers in an m.device_list_update: the next update's prev_id.
CREATE TABLE e2e_device_list_sent (
  user_id TEXT PRIMARY KEY,
  stream_id INTEGER NOT NULL
);
