//! Rate limits on the endpoints that guess passwords or create accounts, per client IP and
//! per targeted user, counted in D1 so every isolate sees the same counts.

use crate::api::request::Ctx;
use crate::http::MatrixError;
use crate::storage::accounts::over_limit;

const WINDOW_MS: u64 = 60_000;

async fn check(ctx: &Ctx, key: String) -> Result<(), MatrixError> {
    match over_limit(
        &ctx.db(),
        &key,
        WINDOW_MS,
        ctx.config.auth_requests_per_minute,
    )
    .await?
    {
        Some(retry_after_ms) => Err(MatrixError::limit_exceeded(retry_after_ms)),
        None => Ok(()),
    }
}

pub(crate) async fn check_ip(ctx: &Ctx, action: &str) -> Result<(), MatrixError> {
    let ip = ctx.ip.as_deref().unwrap_or("unknown");
    check(ctx, format!("{action}:ip:{ip}")).await
}

pub(crate) async fn check_user(ctx: &Ctx, action: &str, user_id: &str) -> Result<(), MatrixError> {
    check(ctx, format!("{action}:user:{user_id}")).await
}
