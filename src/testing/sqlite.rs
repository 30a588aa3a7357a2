//! The SQL port on SQLite, with every migration applied: `storage/`'s statements run here as
//! they run on D1.

use std::cell::{Cell, RefCell};

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde_json::{Map, Value};

use crate::platform::{Fut, QueryResult, SqlExecutor, SqlValue, Statement};

pub(crate) struct Sqlite {
    connection: RefCell<Connection>,
    /// Queries and batches so far: each is one round trip to D1 on the platform.
    round_trips: Cell<u64>,
}

impl Sqlite {
    /// A fresh in-memory database with `migrations/` applied in order, as
    /// `wrangler d1 migrations apply` does.
    pub fn migrated() -> Self {
        let connection = Connection::open_in_memory().expect("in-memory SQLite");
        // D1 (workerd's SQLite) refuses a compound SELECT of more than five terms; plain SQLite
        // allows 500, so without this a statement only the Worker refuses would pass here.
        connection
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_COMPOUND_SELECT, 5)
            .expect("SQLite limit");
        apply_migrations(&connection, |_| true);
        Self {
            connection: RefCell::new(connection),
            round_trips: Cell::new(0),
        }
    }

    /// SQLite's plan for `sql` (`EXPLAIN QUERY PLAN`), one step a line: to check that a
    /// statement seeks by an index rather than scans a table (D1 bills every row read).
    pub fn plan(&self, sql: &str) -> String {
        let connection = self.connection.borrow();
        let mut prepared = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("a statement SQLite can plan");
        // Parameters left unbound are NULL, which is all a plan needs of them.
        let mut rows = prepared.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().expect("a plan") {
            steps.push(row.get::<_, String>(3).expect("a plan step's text"));
        }
        steps.join("\n")
    }

    /// How many round trips to D1 the statements so far would have been (a batch is one).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    fn run(connection: &Connection, statement: &Statement) -> Result<QueryResult, String> {
        let mut prepared = connection
            .prepare(&statement.sql)
            .map_err(|e| format!("{e} in {}", statement.sql))?;
        for (i, arg) in statement.args.iter().enumerate() {
            let index = i + 1;
            let bound = match arg {
                SqlValue::Text(s) => prepared.raw_bind_parameter(index, s),
                SqlValue::Int(n) => prepared.raw_bind_parameter(index, n),
                SqlValue::Null => prepared.raw_bind_parameter(index, rusqlite::types::Null),
            };
            bound.map_err(|e| format!("{e} binding ?{index} of {}", statement.sql))?;
        }
        let names: Vec<String> = prepared
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let before = connection.total_changes();
        let mut rows = Vec::new();
        let mut raw = prepared.raw_query();
        while let Some(row) = raw.next().map_err(|e| e.to_string())? {
            let mut object = Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i).map_err(|e| e.to_string())? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(f) => Value::from(f),
                    ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
                };
                object.insert(name.clone(), value);
            }
            rows.push(Value::Object(object));
        }
        // As D1's `changes`: rows this statement changed, not counting triggers'; 0 for a read
        // (SQLite's own count keeps the last write's number).
        drop(raw);
        let changes = if connection.total_changes() == before {
            0
        } else {
            connection.changes()
        };
        // SQLite has no billing meter: rows returned and rows changed stand in for D1's
        // rows read and written (nothing asserts on them).
        Ok(QueryResult {
            rows_read: rows.len() as u64,
            rows_written: changes,
            rows,
            changes,
        })
    }
}

/// Applies the migrations whose file name `wanted` accepts, in order.
fn apply_migrations(connection: &Connection, wanted: impl Fn(&str) -> bool) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/")
        .map(|entry| entry.expect("a migration").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .filter(|path| wanted(&path.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    files.sort();
    for file in files {
        let sql = std::fs::read_to_string(&file).expect("a readable migration");
        connection
            .execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{} does not apply: {e}", file.display()));
    }
}

impl SqlExecutor for Sqlite {
    fn query(&self, statement: Statement) -> Fut<'_, Result<QueryResult, String>> {
        self.round_trips.set(self.round_trips.get() + 1);
        let result = Self::run(&self.connection.borrow(), &statement);
        Box::pin(async move { result })
    }

    fn batch(&self, statements: Vec<Statement>) -> Fut<'_, Result<Vec<QueryResult>, String>> {
        self.round_trips.set(self.round_trips.get() + 1);
        let mut connection = self.connection.borrow_mut();
        let result = (|| {
            let transaction = connection.transaction().map_err(|e| e.to_string())?;
            let results = statements
                .iter()
                .map(|s| Self::run(&transaction, s))
                .collect::<Result<Vec<_>, _>>()?;
            transaction.commit().map_err(|e| e.to_string())?;
            Ok(results)
        })();
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(connection: &Connection, sql: &str) -> i64 {
        connection.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    fn insert_event(connection: &Connection, event_id: &str) {
        connection
            .execute(
                "INSERT INTO events (event_id, room_id, type, sender, origin_server_ts, depth, pdu,
                    history_visibility) VALUES (?1, '!r:x', 'm.room.message', '@a:x', 0, 1, '{}',
                    'shared')",
                [event_id],
            )
            .unwrap();
    }

    /// Migration 0024 rebuilds `events` without AUTOINCREMENT: every row keeps its position,
    /// and AUTOINCREMENT's counter, when a moved top row left it above the largest position,
    /// stays the largest (a token may hold it), so no position is handed out twice.
    #[test]
    fn migration_0024_keeps_positions_and_the_stream_s_high_water() {
        let connection = Connection::open_in_memory().unwrap();
        apply_migrations(&connection, |name| name < "0024");
        for id in ["$1", "$2", "$3"] {
            insert_event(&connection, id);
        }
        // As backfill did before 0024: the top row (an outlier) moved below zero.
        connection
            .execute(
                "UPDATE events SET stream_ordering = -1 WHERE event_id = '$3'",
                [],
            )
            .unwrap();
        connection
            .execute(
                "INSERT INTO federation_transactions VALUES ('o.example', 't1', '{}', 5)",
                [],
            )
            .unwrap();
        apply_migrations(&connection, |name| name.starts_with("0024"));

        let position = |id: &str| {
            scalar(
                &connection,
                &format!("SELECT stream_ordering FROM events WHERE event_id = '{id}'"),
            )
        };
        assert_eq!((position("$1"), position("$2"), position("$3")), (1, 2, -1));
        assert_eq!(
            scalar(&connection, "SELECT MAX(stream_ordering) FROM events"),
            3
        );
        insert_event(&connection, "$4");
        assert_eq!(position("$4"), 4, "after every position handed out before");
        assert_eq!(
            scalar(
                &connection,
                "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'events'"
            ),
            0,
            "no counter row written per event any more"
        );
        assert_eq!(
            scalar(
                &connection,
                "SELECT COUNT(*) FROM federation_transactions WHERE txn_id = 't1'"
            ),
            1
        );
        // Every index of the table is back.
        let indexes = scalar(
            &connection,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'
               AND name LIKE 'events_%'",
        );
        assert_eq!(indexes, 4);
    }

    /// Migration 0029 moves notification rows into their events' `push` column (every user
    /// with highlight and actions, the evaluation time, nothing for events without any) and
    /// drops the transaction rows of room sends.
    #[test]
    fn migration_0029_keeps_every_notification_in_its_event_row() {
        let connection = Connection::open_in_memory().unwrap();
        apply_migrations(&connection, |name| name < "0029");
        for id in ["$1", "$2"] {
            insert_event(&connection, id);
        }
        connection
            .execute_batch(
                r#"INSERT INTO event_push_actions VALUES
                   ('@b:x', '!r:x', 1, '$1', 'main', 0, '["notify"]', 7),
                   ('@c:x', '!r:x', 1, '$1', 'main', 1,
                    '["notify",{"set_tweak":"highlight"}]', 7);
                   INSERT INTO client_transactions VALUES
                   ('@a:x', 'D', '!r:x', 't1', '$1', 0),
                   ('@a:x', 'D', 'sendToDevice/m.x', 't1', '{}', 0);"#,
            )
            .unwrap();
        apply_migrations(&connection, |name| name.starts_with("0029"));
        let push = |id: &str| -> Option<String> {
            connection
                .query_row("SELECT push FROM events WHERE event_id = ?1", [id], |row| {
                    row.get(0)
                })
                .unwrap()
        };
        let moved: Value = serde_json::from_str(&push("$1").unwrap()).unwrap();
        assert_eq!(
            moved,
            serde_json::json!({ "ts": 7, "u": {
                "@b:x": [0, ["notify"]],
                "@c:x": [1, ["notify", { "set_tweak": "highlight" }]],
            } })
        );
        assert_eq!(push("$2"), None);
        assert_eq!(
            scalar(
                &connection,
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'event_push_actions'"
            ),
            0
        );
        // Room sends' transaction rows go (their ids are in the event rows), to-device stay.
        assert_eq!(
            scalar(
                &connection,
                "SELECT COUNT(*) FROM client_transactions WHERE scope LIKE 'sendToDevice/%'"
            ),
            1
        );
        assert_eq!(
            scalar(&connection, "SELECT COUNT(*) FROM client_transactions"),
            1
        );
    }
}
