//! Simplified sliding sync (MSC4186), served at the unstable path Synapse and matrix-rust-sdk
//! (Element X) use. A client keeps a connection (`conn_id`) going with `pos` tokens; each answer
//! carries the rooms of its list windows and subscriptions that the client does not have yet or
//! that changed since, plus the extensions it enabled.
//!
//! - `request`: the body and its checks
//! - `required_state`: which state a room config asks for (`*`, `$ME`, `$LAZY`)
//! - `list`: the user's rooms in activity order, filters, ranges
//! - `connection`: what the client of a connection holds, and the `pos` token
//! - `room`: the room results, read in batches
//! - `extensions`: to_device, e2ee, account_data, receipts, typing
//! - `handler`: one answer, waiting for news when asked to

pub(crate) mod connection;
mod extensions;
pub(crate) mod handler;
mod list;
mod request;
mod required_state;
mod room;

#[cfg(test)]
mod tests;
