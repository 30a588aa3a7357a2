-- Where a room's timeline has a hole: a timeline event received over federation whose
-- predecessors we could not fetch (get_missing_events stopped short). An incremental /sync whose
-- window holds one starts its timeline there and says `limited`, so the client knows to page
-- back over the hole instead of taking what came before it as contiguous.
CREATE TABLE timeline_gaps (
  room_id TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL,
  PRIMARY KEY (room_id, stream_ordering)
) WITHOUT ROWID;
