//! The server-server (federation) API: request signing (pure), and in the Worker the client
//! that talks to other servers, their keys, and the endpoints they call.

pub mod acl;
pub mod version;
pub mod xmatrix;

#[cfg(target_arch = "wasm32")]
pub(crate) mod client;
#[cfg(target_arch = "wasm32")]
pub(crate) mod e2ee_in;
#[cfg(target_arch = "wasm32")]
pub(crate) mod e2ee_out;
#[cfg(target_arch = "wasm32")]
pub(crate) mod endpoints;
#[cfg(target_arch = "wasm32")]
pub(crate) mod invites;
#[cfg(target_arch = "wasm32")]
pub(crate) mod keys;
