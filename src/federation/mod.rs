//! The server-server (federation) API: request signing, the requests we send to other servers
//! (`outgoing`), their keys and this server as a notary (`key_server`), and the endpoints they
//! call. All of it is pure: the network, D1 and the queues are the platform's ports.

pub mod acl;
pub mod version;
pub mod xmatrix;

pub(crate) mod e2ee_in;
pub(crate) mod e2ee_out;
pub(crate) mod endpoints;
pub(crate) mod handshake;
pub(crate) mod invites;
pub(crate) mod join;
pub(crate) mod key_server;
pub(crate) mod media;
pub(crate) mod outgoing;
