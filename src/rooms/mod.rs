//! The room engine's pure core: which room versions we speak, what a PDU is, how a local event
//! is built (hashes, signature, reference-hash event id) and how any event, local or federated,
//! is authorised against a state. The room's Durable Object drives these functions; nothing here
//! touches storage, so the same checks serve `PUT /send` and a remote server's `/send/{txnId}`.

pub mod auth;
pub mod builder;
pub mod client_event;
pub mod command;
pub mod create;
pub mod engine;
pub mod hierarchy;
pub mod join_job;
pub(crate) mod object;
pub mod pdu;
pub mod power;
pub mod remote_join;
pub mod resolution;
pub mod resolution_v1;
pub mod state;
pub mod state_groups;
pub mod upgrade;
pub mod verify;
pub mod version;
pub mod visibility;

pub use pdu::Pdu;
pub use version::RoomVersion;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod tests;
