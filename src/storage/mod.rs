//! Everything that reads or writes D1. D1 is the only source of truth (docs/design.md); the
//! modules here keep the SQL in one place per concept, as statements any SQLite runs: D1 in
//! the Worker, SQLite with `migrations/` applied in `cargo test` (`storage/tests/`).

pub mod accounts;
pub mod admin;
// Most of it is read by the `AppServiceQueue` Durable Object (runtime/, wasm32 only).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub mod appservices;
pub mod backfill;
pub mod destinations;
pub mod directory;
pub mod discovery;
pub mod e2ee;
pub mod e2ee_backup;
pub mod e2ee_remote;
pub mod events;
pub mod hierarchy;
pub mod join_claims;
pub mod media;
pub mod oauth;
pub mod presence;
pub mod push;
pub mod rate_limits;
pub mod remote_keys;
pub mod reports;
pub mod rooms;
pub mod search;
pub mod signing_keys;
pub mod sliding_sync;
pub mod state_groups;
pub mod sync;
pub mod sync_fold;
pub mod sync_rooms;
pub mod threads;
pub mod user_data;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::channel::oneshot;

use serde::de::DeserializeOwned;

use crate::http::MatrixError;
use crate::platform::{Platform, QueryResult, SqlExecutor, SqlValue, Statement};

/// Storage failures are ours, never the client's: a 500 with the cause logged.
pub(crate) fn storage_error(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::internal(format!("storage error: {e}"))
}

/// A bound SQL parameter, borrowed while a statement is built.
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    Null,
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Arg::Null, Arg::Text)
    }
}
impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<u64> for Arg<'_> {
    /// Saturates: callers pass `u64::MAX` for "no upper bound", which `as i64` would turn into
    /// -1 and so into an empty range.
    fn from(v: u64) -> Self {
        Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(v as i64)
    }
}

impl Arg<'_> {
    fn value(&self) -> SqlValue {
        match self {
            Arg::Text(s) => SqlValue::Text((*s).to_owned()),
            Arg::Int(i) => SqlValue::Int(*i),
            Arg::Null => SqlValue::Null,
        }
    }
}

/// `args![a, b]`: SQL parameters from values of mixed types.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => { &[$($crate::storage::Arg::from($value)),*] };
}

/// What one request cost in D1, from D1's own result metadata (the platform bills rows read
/// and written, and limits queries per invocation).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub queries: u64,
    pub rows_read: u64,
    pub rows_written: u64,
}

/// The database with the few operations the storage modules need, errors already mapped, and
/// a running count of what the queries cost.
///
/// Reads issued together go to D1 together: every D1 query is a round trip (a network one on the
/// platform), and the handlers start independent reads at once (`futures::join!`). A read-only
/// statement is queued; once every future polled in the same pass has queued its own (one
/// yield), the first to run again sends the whole queue as one D1 batch, one round trip, and
/// hands each its result. A batch is one transaction, so the reads also see one snapshot. Writes
/// (and anything not plainly a read) go alone, so their failures stay their own.
pub(crate) struct Db {
    sql: Rc<dyn SqlExecutor>,
    usage: Rc<Cell<Usage>>,
    queued: Rc<RefCell<Vec<Queued>>>,
}

type Queued = (Statement, oneshot::Sender<Result<QueryResult, String>>);

/// Whether a statement only reads, so it may share a batch: conservative, anything that names
/// a write keyword as a word anywhere (even a column alias) goes alone. Words, not substrings:
/// the events columns `replaces_state` and `redacted_by` hold no keyword, and a substring test
/// had sent every read of event rows alone, one round trip each.
fn plainly_a_read(sql: &str) -> bool {
    let head = sql.trim_start();
    let starts = |word: &str| {
        head.get(..word.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(word))
    };
    if !(starts("SELECT") || starts("WITH")) {
        return false;
    }
    // Bytes, not chars, and only words of a keyword's length: a sync's first statement is
    // several kilobytes, and this runs for every read.
    const WRITES: [&[u8]; 6] = [
        b"INSERT",
        b"UPDATE",
        b"DELETE",
        b"REPLACE",
        b"RETURNING",
        b"UPSERT",
    ];
    !sql.as_bytes()
        .split(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .filter(|word| matches!(word.len(), 6 | 7 | 9))
        .any(|word| WRITES.iter().any(|w| word.eq_ignore_ascii_case(w)))
}

/// Pending once, then ready: lets the other futures of the same poll pass queue their reads.
/// The first row of a result, typed.
fn first_row<T: DeserializeOwned>(result: QueryResult) -> Result<Option<T>, MatrixError> {
    result
        .rows
        .first()
        .map(|row| T::deserialize(row).map_err(storage_error))
        .transpose()
}

struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Db {
    pub fn new(platform: &Platform) -> Self {
        Self::counting(platform, Rc::default())
    }

    /// A handle that adds its queries' cost to `usage`, shared by one request's handles.
    pub fn counting(platform: &Platform, usage: Rc<Cell<Usage>>) -> Self {
        Db {
            sql: platform.sql.clone(),
            usage,
            queued: Rc::default(),
        }
    }

    fn count(&self, results: &[QueryResult]) {
        let mut usage = self.usage.get();
        for result in results {
            usage.queries += 1;
            usage.rows_read += result.rows_read;
            usage.rows_written += result.rows_written;
        }
        self.usage.set(usage);
    }

    /// A read that shares a round trip with the reads queued in the same poll pass.
    async fn read_together(&self, statement: Statement) -> Result<QueryResult, String> {
        let (sender, receiver) = oneshot::channel();
        self.queued.borrow_mut().push((statement, sender));
        YieldOnce(false).await;
        // The first of the pass to run again sends them all (an empty queue: another did).
        let queued = std::mem::take(&mut *self.queued.borrow_mut());
        match queued.len() {
            0 => {}
            1 => {
                let (statement, sender) = queued.into_iter().next().expect("one");
                let _ = sender.send(self.sql.query(statement).await);
            }
            _ => {
                let (statements, senders): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
                match self.sql.batch(statements).await {
                    Ok(results) if results.len() == senders.len() => {
                        for (sender, result) in senders.into_iter().zip(results) {
                            let _ = sender.send(Ok(result));
                        }
                    }
                    Ok(_) => {
                        for sender in senders {
                            let _ = sender
                                .send(Err("a batch answered the wrong number of results".into()));
                        }
                    }
                    Err(e) => {
                        for sender in senders {
                            let _ = sender.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
        // A sender dropped unanswered: the future that took the queue was dropped mid-way.
        receiver
            .await
            .unwrap_or_else(|_| Err("a shared read was abandoned".to_owned()))
    }

    /// A statement as a value, to run now or in a batch.
    pub fn stmt(&self, sql: &str, args: &[Arg<'_>]) -> Statement {
        Statement {
            sql: sql.to_owned(),
            args: args.iter().map(Arg::value).collect(),
        }
    }

    async fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<QueryResult, MatrixError> {
        let statement = self.stmt(sql, args);
        let result = if plainly_a_read(sql) {
            self.read_together(statement).await
        } else {
            self.sql.query(statement).await
        }
        .map_err(storage_error)?;
        self.count(std::slice::from_ref(&result));
        Ok(result)
    }

    pub async fn rows<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, MatrixError> {
        self.query(sql, args).await?.rows()
    }

    pub async fn row<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, MatrixError> {
        first_row(self.query(sql, args).await?)
    }

    /// `row` for a read that nothing can join, such as a request's first: it goes out at once,
    /// without the yield that lets reads started together share a batch (a wake-up and a
    /// microtask of the runtime less).
    pub async fn row_alone<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, MatrixError> {
        let result = self
            .sql
            .query(self.stmt(sql, args))
            .await
            .map_err(storage_error)?;
        self.count(std::slice::from_ref(&result));
        first_row(result)
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn run(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, MatrixError> {
        Ok(self.query(sql, args).await?.changes)
    }

    /// Runs statements as one transaction: all of them or none.
    pub async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<QueryResult>, MatrixError> {
        let results = self.sql.batch(statements).await.map_err(storage_error)?;
        self.count(&results);
        Ok(results)
    }
}

impl QueryResult {
    /// The rows as typed values; a row of the wrong shape is a storage error.
    pub(crate) fn rows<T: DeserializeOwned>(&self) -> Result<Vec<T>, MatrixError> {
        self.rows
            .iter()
            .map(|row| T::deserialize(row).map_err(storage_error))
            .collect()
    }
}

/// A row with one integer column named `n`, for counts and maxima.
#[derive(serde::Deserialize)]
pub(crate) struct Count {
    pub n: Option<i64>,
}

/// A boolean SQL column (SQLite has none: it answers 0 or 1) as a `bool`.
pub(crate) fn sql_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(<i64 as serde::Deserialize>::deserialize(d)? != 0)
}
