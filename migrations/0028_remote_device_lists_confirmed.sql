-- A remote user's cached device list is answered locally only while it is known to be current:
-- `confirmed_at` is the events' stream position when the list was last fetched whole or
-- continued by an update; a shared room whose memberships (theirs or ours) are newer than that
-- means tracking lapsed in between (src/storage/e2ee_remote.rs, tracked_users). Lists cached
-- before this column say 0: each is fetched again once.
ALTER TABLE e2e_remote_device_lists ADD COLUMN confirmed_at INTEGER NOT NULL DEFAULT 0;
