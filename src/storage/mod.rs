//! Everything that reads or writes D1. D1 is the only source of truth (see DESIGN.md); the
//! modules here keep the SQL in one place per concept.

pub mod accounts;
pub mod backfill;
pub mod destinations;
pub mod directory;
pub mod discovery;
pub mod e2ee;
pub mod e2ee_backup;
pub mod e2ee_remote;
pub mod events;
pub mod hierarchy;
pub mod presence;
pub mod remote_keys;
pub mod rooms;
pub mod signing_keys;
pub mod state_groups;
pub mod sync;
pub mod sync_rooms;
pub mod user_data;

use std::cell::Cell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use crate::http::MatrixError;

pub(crate) fn database(env: &Env) -> Result<D1Database, MatrixError> {
    env.d1("DB")
        .map_err(|e| MatrixError::internal(format!("D1 binding DB is missing: {e}")))
}

/// Storage failures are ours, never the client's: a 500 with the cause logged.
pub(crate) fn storage_error(e: worker::Error) -> MatrixError {
    MatrixError::internal(format!("storage error: {e}"))
}

/// A bound SQL parameter.
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
    fn js(&self) -> JsValue {
        match self {
            Arg::Text(s) => JsValue::from_str(s),
            // D1 numbers are JS numbers; our integers (timestamps, stream ids) stay below 2^53.
            Arg::Int(i) => JsValue::from_f64(*i as f64),
            Arg::Null => JsValue::NULL,
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
pub(crate) struct Db {
    db: D1Database,
    usage: Rc<Cell<Usage>>,
}

impl Db {
    pub fn new(env: &Env) -> Result<Self, MatrixError> {
        Self::counting(env, Rc::default())
    }

    /// A handle that adds its queries' cost to `usage`, shared by one request's handles.
    pub fn counting(env: &Env, usage: Rc<Cell<Usage>>) -> Result<Self, MatrixError> {
        Ok(Db {
            db: database(env)?,
            usage,
        })
    }

    fn count(&self, results: &[&D1Result]) {
        let mut usage = self.usage.get();
        for result in results {
            let meta = result.meta().ok().flatten();
            usage.queries += 1;
            usage.rows_read += meta.as_ref().and_then(|m| m.rows_read).unwrap_or(0) as u64;
            usage.rows_written += meta.as_ref().and_then(|m| m.rows_written).unwrap_or(0) as u64;
        }
        self.usage.set(usage);
    }

    pub fn stmt(&self, sql: &str, args: &[Arg<'_>]) -> Result<D1PreparedStatement, MatrixError> {
        let values: Vec<JsValue> = args.iter().map(Arg::js).collect();
        self.db.prepare(sql).bind(&values).map_err(storage_error)
    }

    pub async fn rows<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, MatrixError> {
        let result = self.stmt(sql, args)?.all().await.map_err(storage_error)?;
        self.count(&[&result]);
        result.results().map_err(storage_error)
    }

    pub async fn row<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, MatrixError> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn run(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, MatrixError> {
        let result = self.stmt(sql, args)?.run().await.map_err(storage_error)?;
        self.count(&[&result]);
        Ok(changes(&result))
    }

    /// Runs statements as one transaction: all of them or none.
    pub async fn batch(
        &self,
        statements: Vec<D1PreparedStatement>,
    ) -> Result<Vec<D1Result>, MatrixError> {
        let results = self.db.batch(statements).await.map_err(storage_error)?;
        self.count(&results.iter().collect::<Vec<_>>());
        Ok(results)
    }
}

pub(crate) fn changes(result: &D1Result) -> u64 {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|meta| meta.changes)
        .unwrap_or(0) as u64
}

/// A row with one integer column named `n`, for counts and maxima.
#[derive(serde::Deserialize)]
pub(crate) struct Count {
    pub n: Option<i64>,
}
