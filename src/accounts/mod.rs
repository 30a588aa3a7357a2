//! Accounts: who may register under which name, how passwords and tokens are kept, and the
//! user-interactive authentication (UIA) flows that guard registration and dangerous changes.
//! Pure; the SQL lives in `storage::accounts` and the handlers in `client::accounts`.

pub mod localpart;
pub mod password;
pub mod tokens;
pub mod uia;
