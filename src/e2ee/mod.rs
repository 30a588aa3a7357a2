//! End-to-end encryption support, the server's side of it: checking the keys clients publish,
//! verifying the signatures they make on each other's keys, and the key-backup replacement rule.
//! Pure: no `worker` type, unit-tested natively. The handlers are in `client::device_keys`,
//! `client::cross_signing`, `client::to_device` and `client::key_backup`; the SQL in `storage::e2ee`.

pub mod backup;
pub mod cross_signing;
pub mod device_keys;
pub mod signatures;
