-- Rate limits (src/client/rate_limit.rs): one counter per key (action, and the user, client IP
-- or origin server it limits), holding the current window only. A new window resets the row,
-- so the table grows with the number of keys, not with time; rows idle for a day are deleted
-- now and then by the counting statement's caller. Replaces `rate_limits` (one row per key and
-- window, never deleted).
CREATE TABLE rate_counters (
  key TEXT PRIMARY KEY,
  window_start INTEGER NOT NULL,
  count INTEGER NOT NULL
) WITHOUT ROWID;

DROP TABLE rate_limits;
