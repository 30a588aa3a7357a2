//! `POST /oauth2/revoke` (RFC 7009). Revoking either token of an OAuth session ends the whole
//! session, as a logout does: the device, its tokens and its keys go, and the user's other
//! devices hear of it. An unknown token is answered 200, as the RFC says (the client's goal,
//! a token that no longer works, is met).

use serde_json::json;

use super::token::end_session;
use super::*;
use crate::accounts::tokens::token_hash;
use crate::http::MatrixError;
use crate::storage::{accounts, oauth as store};

pub(crate) async fn revoke(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    let form = Form::parse(ctx);
    let (Some(token), Some(client_id)) = (form.get("token"), form.get("client_id")) else {
        return Ok(oauth_error(
            400,
            "invalid_request",
            "token and client_id are required",
        ));
    };
    let db = ctx.db();
    let hash = token_hash(token);
    // The hint only orders the lookups (RFC 7009 section 2.1); both kinds are tried.
    let as_access = || async {
        Ok::<_, MatrixError>(
            accounts::token_owner(&db, &hash)
                .await?
                .map(|owner| (owner.user_id, owner.device_id)),
        )
    };
    let owner = if form.get("token_type_hint") == Some("refresh_token") {
        match store::refresh_token_owner(&db, &hash).await? {
            Some(owner) => Some(owner),
            None => as_access().await?,
        }
    } else {
        match as_access().await? {
            Some(owner) => Some(owner),
            None => store::refresh_token_owner(&db, &hash).await?,
        }
    };
    let Some((user_id, device_id)) = owner else {
        return Ok(oauth_json(200, &json!({})));
    };
    let issued_to_client = store::session(&db, &user_id, &device_id)
        .await?
        .is_some_and(|s| s.client_id == client_id);
    if !issued_to_client {
        return Ok(oauth_error(
            400,
            "unauthorized_client",
            "that token was not issued to this client",
        ));
    }
    end_session(ctx, &user_id, &device_id).await?;
    Ok(oauth_json(200, &json!({})))
}
