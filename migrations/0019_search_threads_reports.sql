-- Full-text search over room events (POST /search, src/client/search.rs). One row per indexed
-- event, its rowid the event's stream_ordering: text messages (content.body), room names
-- (content.name) and topics (content.topic) of the timeline. Encrypted and other events are
-- not indexed. A redaction deletes the event's row, so redacted text is no longer searchable.
-- unicode61 with diacritics folded: "café" finds "cafe" and the other way round.
CREATE VIRTUAL TABLE event_search USING fts5(
  body, name, topic,
  tokenize = 'unicode61 remove_diacritics 2'
);

-- Thread replies of a room by position: GET /rooms/{roomId}/threads lists threads by their
-- latest reply. Partial, so other events write nothing to it.
CREATE INDEX events_thread_replies ON events (room_id, stream_ordering) WHERE rel_type = 'm.thread';

-- Reports of events and rooms by users (POST /rooms/{roomId}/report[/{eventId}]), kept for
-- the server's admins.
CREATE TABLE content_reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  room_id TEXT NOT NULL,
  event_id TEXT,                 -- NULL: the room itself is reported
  user_id TEXT NOT NULL,         -- who reported
  reason TEXT,
  score INTEGER,
  received_ts INTEGER NOT NULL
);
CREATE INDEX content_reports_by_room ON content_reports (room_id, id);
