//! This server's identity: its ed25519 signing key and the key server document that publishes it.

pub mod server_keys;
pub mod signing_key;

pub use signing_key::{SigningKey, SigningKeyError};
