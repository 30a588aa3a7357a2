-- Fewer rows written per event (each table row and each index entry is a row written on D1, and
-- rows written are what caps the free plan; docs/benchmarks.md, "Platform cost per operation").
--
-- Whom an event notifies moves from `event_push_actions` (one row and one index entry per
-- notified local user: a message in a room of 50 local members wrote 98 rows for it) into a
-- column of the event's own row: `{"ts": evaluated at, "u": {user id: [highlight, actions]}}`,
-- NULL when nobody is notified. A local message is written with it (no row of its own); an
-- event evaluated after it is stored (an incoming PDU, a state event) costs one update of its
-- row. The thread of a notification is the event's own (`rel_type`/`relates_to`), and unread
-- counts read a room's events after the user's read position through `events_by_room`
-- (src/storage/push.rs).
ALTER TABLE events ADD COLUMN push TEXT;
UPDATE events SET push = (
    SELECT json_object('ts', MAX(p.ts),
                       'u', json_group_object(p.user_id, json_array(p.highlight, json(p.actions))))
    FROM event_push_actions p WHERE p.event_id = events.event_id)
  WHERE event_id IN (SELECT event_id FROM event_push_actions);
DROP TABLE event_push_actions;

-- A send's transaction id is kept in its event row only (`txn_user`, `txn_device`, `txn_id`,
-- written with every local event already): the room object checks a retried send against the
-- ids of the last day, rebuilt from those columns (src/rooms/object/transactions.rs). The rows
-- room sends wrote here (their scope is the room id) are read by nobody any more. To-device
-- sends keep theirs (scope `sendToDevice/...`).
DELETE FROM client_transactions WHERE scope LIKE '!%';
