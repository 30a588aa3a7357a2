-- Invites of local users to rooms other servers hold: the stripped state the inviting server sent
-- (what the invitee sees of the room before joining).
CREATE TABLE remote_invite_state (
  room_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  events TEXT NOT NULL,                    -- JSON array of stripped state events
  PRIMARY KEY (room_id, user_id)
);
