//! The client-server API. Pure modules (push rules, versions) are tested natively; the
//! handlers bind them to D1 and the room objects and build only for the Worker.

pub mod push_rules;
pub mod versions;

#[cfg(target_arch = "wasm32")]
pub(crate) mod account;
#[cfg(target_arch = "wasm32")]
pub(crate) mod account_data;
#[cfg(target_arch = "wasm32")]
pub(crate) mod capabilities;
#[cfg(target_arch = "wasm32")]
pub(crate) mod devices;
#[cfg(target_arch = "wasm32")]
pub(crate) mod directory;
#[cfg(target_arch = "wasm32")]
pub(crate) mod ephemeral;
#[cfg(target_arch = "wasm32")]
pub(crate) mod filters;
#[cfg(target_arch = "wasm32")]
pub(crate) mod ids;
#[cfg(target_arch = "wasm32")]
pub(crate) mod password;
#[cfg(target_arch = "wasm32")]
pub(crate) mod profile;
#[cfg(target_arch = "wasm32")]
pub(crate) mod push;
#[cfg(target_arch = "wasm32")]
pub(crate) mod rate_limit;
#[cfg(target_arch = "wasm32")]
pub(crate) mod register;
#[cfg(target_arch = "wasm32")]
pub(crate) mod room_read;
#[cfg(target_arch = "wasm32")]
pub(crate) mod rooms;
#[cfg(target_arch = "wasm32")]
pub(crate) mod send;
#[cfg(target_arch = "wasm32")]
pub(crate) mod session;
#[cfg(target_arch = "wasm32")]
pub(crate) mod uia;
