//! Routes a request to its handler.

use worker::{Env, Request};

use super::{config, Reply};
use crate::http::route::{route, Endpoint, Routed};
use crate::http::{JsonResponse, MatrixError};
use crate::keys::server_keys::server_keys_document;
use crate::{client, federation, storage, time, wellknown};

pub(crate) async fn dispatch(req: Request, env: &Env) -> Result<Reply, MatrixError> {
    let (endpoint, _params) = match route(req.method().as_ref(), &req.path())? {
        Routed::Preflight => return Ok(Reply::Preflight),
        Routed::Endpoint { endpoint, params } => (endpoint, params),
    };
    let config = config(env)?;
    let body = match endpoint {
        Endpoint::WellKnownServer => wellknown::server(&config),
        Endpoint::WellKnownClient => wellknown::client(&config),
        Endpoint::WellKnownSupport => wellknown::support(&config)
            .ok_or_else(|| MatrixError::not_found("No support contact is configured"))?,
        Endpoint::ClientVersions => client::versions::versions(),
        Endpoint::FederationVersion => federation::version::version(),
        Endpoint::ServerKeys => {
            let keys = storage::signing_keys::server_keys(env).await?;
            server_keys_document(
                config.server_name.as_str(),
                &keys.current,
                &keys.old,
                time::now_ms(),
            )
            .map_err(|e| MatrixError::internal(e.to_string()))?
        }
    };
    Ok(Reply::Json(JsonResponse::ok(body)))
}
