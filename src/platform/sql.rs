//! SQL as values: a statement is its text and its bound parameters, built by `storage/` and run
//! by whichever executor the platform provides (D1 in the Worker, SQLite in native tests). D1 is
//! SQLite, so the same text runs on both.

use serde_json::Value;

use super::Fut;

/// A bound SQL parameter, owned so a statement can be handed to an executor as a value.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Null,
}

/// One statement: SQL text with `?1`-style placeholders and their values.
#[derive(Clone, Debug)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<SqlValue>,
}

/// What one statement returned: its rows as JSON objects (column name to value), how many rows
/// it changed, and what it cost as the platform bills it.
#[derive(Debug, Default)]
pub struct QueryResult {
    pub rows: Vec<Value>,
    pub changes: u64,
    pub rows_read: u64,
    pub rows_written: u64,
}

/// Runs statements. Failures are text: they are always the server's fault, never the client's.
pub trait SqlExecutor {
    fn query(&self, statement: Statement) -> Fut<'_, Result<QueryResult, String>>;
    /// Runs the statements as one transaction: all of them or none (D1's `batch()`).
    fn batch(&self, statements: Vec<Statement>) -> Fut<'_, Result<Vec<QueryResult>, String>>;
}
