//! This server's identity: its ed25519 signing key and the key server document that publishes it;
//! and the checks of other servers' key documents, fetched directly or through a notary.

pub mod notary;
pub mod remote_cache;
pub mod server_keys;
pub mod signing_key;

pub use signing_key::{SigningKey, SigningKeyError};
