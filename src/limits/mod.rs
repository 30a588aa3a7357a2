//! Limits that hold under abuse: request rates per user, client IP and origin server
//! (`rate`), and request body sizes per route (`body`). docs/security.md lists them all.

pub mod body;
pub mod rate;

#[cfg(test)]
mod tests;
