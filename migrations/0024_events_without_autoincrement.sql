-- Fewer rows written per event and per inbound federation transaction (each table row and each
-- index entry is a row written on D1; rows written are what caps the free plan).

-- `events` without AUTOINCREMENT: SQLite then gives a new event the largest stream_ordering
-- plus one, as AUTOINCREMENT did, but without writing `sqlite_sequence` on every insert (one row
-- written per event saved: 4 rows per local message become 3).
--
-- What AUTOINCREMENT guaranteed on top: a position is never handed out twice, even after the
-- top row is deleted or moved. Positions are what /sync tokens hold (storage/sync.rs reads the
-- stream's end as MAX(stream_ordering)), so a reused position would hide an event from a client
-- whose token holds it. Without AUTOINCREMENT that stays true as long as the largest position
-- never goes down:
-- - nothing deletes from `events` (redactions mark the row, an admin purge marks the room);
--   a future purge must keep the top row;
-- - backfill moves an outlier into the timeline by giving it a position below all others
--   (storage/backfill.rs); it leaves the top row where it is, so the largest never goes down.
--
-- Cost: the table is rebuilt once (every event row and its index entries written again, on D1
-- counted as rows written of that day).
CREATE TABLE events_rebuilt (
  stream_ordering INTEGER PRIMARY KEY,
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
  txn_id TEXT,
  outlier INTEGER NOT NULL DEFAULT 0,      -- 0 timeline, 1 outlier, 2 soft-failed (0010)
  state_group TEXT                         -- the state after the event (0010)
);
INSERT INTO events_rebuilt (stream_ordering, event_id, room_id, type, state_key, sender,
    origin_server_ts, depth, pdu, history_visibility, membership, relates_to, rel_type, redacted_by,
    txn_user, txn_device, txn_id, outlier, state_group)
  SELECT stream_ordering, event_id, room_id, type, state_key, sender, origin_server_ts, depth, pdu,
    history_visibility, membership, relates_to, rel_type, redacted_by, txn_user, txn_device, txn_id,
    outlier, state_group
  FROM events;
-- Before this migration the top row could move (backfill took any outlier below all others), so
-- AUTOINCREMENT's counter may be above the largest position left, and a client's token may hold
-- that counter. Then a placeholder keeps it as the largest position: an outlier of no room
-- (never in a timeline, a state or a search), so the next event comes after every token.
INSERT INTO events_rebuilt (stream_ordering, event_id, room_id, type, sender, origin_server_ts,
    depth, pdu, history_visibility, outlier)
  SELECT seq, '$0024-stream-high-water', '', '', '', 0, 0, '{}', 'joined', 1 FROM sqlite_sequence
  WHERE name = 'events' AND seq > (SELECT COALESCE(MAX(stream_ordering), 0) FROM events);
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX events_member_history ON events (room_id, state_key, stream_ordering) WHERE type = 'm.room.member';
CREATE INDEX events_thread_replies ON events (room_id, stream_ordering) WHERE rel_type = 'm.thread';
CREATE INDEX events_by_relation ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;

-- Inbound /send transactions keyed by their primary key alone: one b-tree entry per transaction
-- instead of a row and its primary-key index (2 rows written per transaction become 1).
CREATE TABLE federation_transactions_by_key (
  origin TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  response TEXT NOT NULL,
  received_ts INTEGER NOT NULL,
  PRIMARY KEY (origin, txn_id)
) WITHOUT ROWID;
INSERT INTO federation_transactions_by_key SELECT origin, txn_id, response, received_ts
  FROM federation_transactions;
DROP TABLE federation_transactions;
ALTER TABLE federation_transactions_by_key RENAME TO federation_transactions;
