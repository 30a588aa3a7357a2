-- State at every event, so that forks can be resolved (state resolution v2) and /state_ids can
-- answer for any event, not only the latest.
--
-- A state group is a room state. Most are stored as the slots that differ from a parent group;
-- every few generations one is stored in full, so reading one costs a bounded walk.
-- Invariants the room's Durable Object keeps:
-- - events.state_group is the state *after* the event (a message shares its predecessor's group);
-- - the group of a state event has that event's id, and its parent is the state *before* it;
-- - a merge (an event with several prev_events) first gets a group 'before:' || event id holding
--   the resolved state before it.
CREATE TABLE state_groups (
  id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  parent TEXT,                         -- the state before, for a state event's group
  full INTEGER NOT NULL,               -- 1: entries is the whole state; 0: only the slots changed from parent
  entries TEXT NOT NULL,               -- JSON [[type, state_key, event_id], ...]
  chain INTEGER NOT NULL               -- how many parents a read walks before a full group
);

ALTER TABLE events ADD COLUMN state_group TEXT;

-- The room's forward extremities: events with no successor yet, the prev_events of the next
-- local event. More than one means the room is forked until an event merges them.
CREATE TABLE forward_extremities (
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (room_id, event_id)
);

-- events.outlier now also marks soft-failed events: 0 in the timeline; 1 an outlier (state or
-- auth chain of a room joined over federation, an invite); 2 soft-failed (authorised by the state
-- before it but not by the current state: kept for the graph, never shown to clients).
