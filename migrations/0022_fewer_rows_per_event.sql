-- Fewer rows written per event (each index entry is a row written on D1, and rows written are
-- what caps the free plan; docs/benchmarks.md, "Platform cost per operation").

-- Only relations need the relation index; most events are not one.
DROP INDEX events_by_relation;
CREATE INDEX events_by_relation ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;

-- Keyed by its primary key alone: one row per transaction instead of a row and an index entry.
CREATE TABLE client_transactions_by_key (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  result TEXT NOT NULL,
  created_ts INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id, scope, txn_id)
) WITHOUT ROWID;
INSERT INTO client_transactions_by_key SELECT user_id, device_id, scope, txn_id, result, created_ts
  FROM client_transactions;
DROP TABLE client_transactions;
ALTER TABLE client_transactions_by_key RENAME TO client_transactions;
