//! The client-server API. Pure modules (push rules, versions) are unit-tested; the handlers
//! bind them to D1 and the room objects through the platform's ports, so they build natively
//! too.

pub mod public_rooms;
pub mod push_rules;
pub mod versions;

pub(crate) mod account;
pub(crate) mod account_data;
pub(crate) mod backfill;
pub(crate) mod capabilities;
pub(crate) mod cross_signing;
pub(crate) mod device_keys;
pub(crate) mod devices;
pub(crate) mod directory;
pub(crate) mod ephemeral;
pub(crate) mod filters;
pub(crate) mod hierarchy;
pub(crate) mod hierarchy_remote;
pub(crate) mod ids;
pub(crate) mod key_backup;
pub(crate) mod media;
pub(crate) mod membership;
pub(crate) mod notifications;
pub(crate) mod password;
pub(crate) mod presence;
pub(crate) mod profile;
pub(crate) mod push;
pub(crate) mod pushers;
pub(crate) mod register;
pub(crate) mod report;
pub(crate) mod room_read;
pub(crate) mod room_summary;
pub(crate) mod search;
pub(crate) mod send;
pub(crate) mod session;
pub(crate) mod threads;
pub(crate) mod to_device;
pub(crate) mod uia;
pub(crate) mod upgrade;

#[cfg(test)]
mod tests;
