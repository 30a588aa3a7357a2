-- Remote servers our outbound queue (one Durable Object per server) cannot reach right now.
-- The queue writes a row when a send fails and deletes it once one succeeds; an inbound request
-- from such a server shows it is back, and wakes its queue at once instead of waiting out the
-- backoff (up to an hour).
CREATE TABLE destination_backoff (
  server_name TEXT PRIMARY KEY,
  failures INTEGER NOT NULL,
  retry_ts INTEGER NOT NULL        -- when the queue's alarm tries next (ms since the epoch)
);
