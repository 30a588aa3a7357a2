//! Everything that reads or writes D1. D1 is the only source of truth (see DESIGN.md); the
//! modules here keep the SQL in one place per concept.

pub mod signing_keys;

use worker::{D1Database, Env};

use crate::http::MatrixError;

pub(crate) fn database(env: &Env) -> Result<D1Database, MatrixError> {
    env.d1("DB")
        .map_err(|e| MatrixError::internal(format!("D1 binding DB is missing: {e}")))
}

/// Storage failures are ours, never the client's: a 500 with the cause logged.
pub(crate) fn storage_error(e: worker::Error) -> MatrixError {
    MatrixError::internal(format!("storage error: {e}"))
}
