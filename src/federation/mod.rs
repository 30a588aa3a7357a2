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

use ruma::{OwnedServerName, RoomId, ServerName};

use crate::http::MatrixError;

/// Tries `attempt` with each server in turn (unparsable names skipped) until one succeeds; the
/// last failure otherwise. `attempt` gets the server and its place in `servers`; `what` names
/// the attempt in the log.
pub(crate) async fn through_servers<T, F, Fut>(
    servers: &[String],
    what: &str,
    room_id: &RoomId,
    mut attempt: F,
) -> Result<T, MatrixError>
where
    F: FnMut(usize, OwnedServerName) -> Fut,
    Fut: std::future::Future<Output = Result<T, MatrixError>>,
{
    let mut last_error = MatrixError::not_found(format!("No server to {what} the room through"));
    for (at, server) in servers.iter().enumerate() {
        let Ok(server) = ServerName::parse(server) else {
            continue;
        };
        match attempt(at, server.clone()).await {
            Ok(done) => return Ok(done),
            Err(e) => {
                crate::log_warn!("{what} of {room_id} through {server} failed: {e}");
                last_error = e;
            }
        }
    }
    Err(last_error)
}
