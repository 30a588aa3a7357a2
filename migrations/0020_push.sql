-- Push (src/push/, src/client/pushers.rs, src/client/notifications.rs, src/runtime/pusher.rs).
--
-- One row per event and local user whose push rules said `notify`: the notification counts of
-- /sync (rows after the user's read receipts), GET /notifications, and what the user's push
-- queue sends to push gateways. Events that notify nobody write nothing here.
CREATE TABLE event_push_actions (
  user_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL,        -- the event's, so receipts compare by position
  event_id TEXT NOT NULL,
  thread_id TEXT NOT NULL,                 -- 'main', or the thread root's event id
  highlight INTEGER NOT NULL,              -- 1 when the actions set the highlight tweak
  actions TEXT NOT NULL,                   -- the matching rule's actions, JSON
  ts INTEGER NOT NULL,                     -- when the server evaluated it
  PRIMARY KEY (user_id, room_id, stream_ordering)
) WITHOUT ROWID;
-- The clustered key serves the counts (a user's rooms, after a position); this index serves
-- /notifications and the push queue (a user's rows in stream order). Two rows written per
-- notified user and event, no more.
CREATE INDEX event_push_actions_by_user ON event_push_actions (user_id, stream_ordering);

-- Pushers (spec: "Push Notifications"). A pusher belongs to the device of the access token that
-- set it, so deleting the device (or a password change that logs other devices out) removes it.
CREATE TABLE pushers (
  user_id TEXT NOT NULL,
  app_id TEXT NOT NULL,
  pushkey TEXT NOT NULL,
  kind TEXT NOT NULL,                      -- 'http' (the only kind we deliver) or 'email'
  app_display_name TEXT NOT NULL,
  device_display_name TEXT NOT NULL,
  profile_tag TEXT,
  lang TEXT NOT NULL,
  data TEXT NOT NULL,                      -- the `data` object as given, JSON
  device_id TEXT,                          -- the setting access token's device
  pushkey_ts INTEGER NOT NULL,             -- when the pushkey was last set (ms)
  start_stream INTEGER NOT NULL,           -- notifications after this position are sent
  PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_by_key ON pushers (app_id, pushkey);
