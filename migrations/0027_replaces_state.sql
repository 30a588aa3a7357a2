-- The state event a state event replaced (the state before it held that event for its type and
-- state key): clients get its content and sender as `unsigned.prev_content` / `prev_sender`
-- (an invitee's join then shows the invite it answers, `is_direct` included). NULL for the first
-- event of a slot, for non-state events, and for events stored before this column.
ALTER TABLE events ADD COLUMN replaces_state TEXT;
