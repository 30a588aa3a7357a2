//! The SQL port on D1: statements as values become prepared, bound D1 statements; rows come back
//! as JSON objects for `storage/` to type.

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use crate::platform::{Fut, QueryResult, SqlExecutor, SqlValue, Statement};

pub(crate) struct D1 {
    db: Result<D1Database, String>,
}

impl D1 {
    pub fn new(env: &Env) -> Self {
        Self {
            db: env
                .d1("DB")
                .map_err(|e| format!("D1 binding DB is missing: {e}")),
        }
    }

    fn db(&self) -> Result<&D1Database, String> {
        self.db.as_ref().map_err(Clone::clone)
    }

    fn prepare(&self, statement: &Statement) -> Result<D1PreparedStatement, String> {
        let values: Vec<JsValue> = statement.args.iter().map(js).collect();
        self.db()?
            .prepare(&statement.sql)
            .bind(&values)
            .map_err(|e| e.to_string())
    }
}

fn js(value: &SqlValue) -> JsValue {
    match value {
        SqlValue::Text(s) => JsValue::from_str(s),
        // D1 numbers are JS numbers; our integers (timestamps, stream ids) stay below 2^53.
        SqlValue::Int(i) => JsValue::from_f64(*i as f64),
        SqlValue::Null => JsValue::NULL,
    }
}

/// Rows, changes and cost of one D1 result. Safe integers arrive as JSON integers.
fn result(result: &D1Result) -> Result<QueryResult, String> {
    let meta = result.meta().ok().flatten();
    Ok(QueryResult {
        rows: result.results().map_err(|e| e.to_string())?,
        changes: meta.as_ref().and_then(|m| m.changes).unwrap_or(0) as u64,
        rows_read: meta.as_ref().and_then(|m| m.rows_read).unwrap_or(0) as u64,
        rows_written: meta.as_ref().and_then(|m| m.rows_written).unwrap_or(0) as u64,
    })
}

impl SqlExecutor for D1 {
    fn query(&self, statement: Statement) -> Fut<'_, Result<QueryResult, String>> {
        Box::pin(async move {
            let prepared = self.prepare(&statement)?;
            let answer = prepared.all().await.map_err(|e| e.to_string())?;
            result(&answer)
        })
    }

    fn batch(&self, statements: Vec<Statement>) -> Fut<'_, Result<Vec<QueryResult>, String>> {
        Box::pin(async move {
            let prepared = statements
                .iter()
                .map(|s| self.prepare(s))
                .collect::<Result<Vec<_>, _>>()?;
            let answers = self
                .db()?
                .batch(prepared)
                .await
                .map_err(|e| e.to_string())?;
            answers.iter().map(result).collect()
        })
    }
}
