//! An application service's `as_token` as a client credential. The bare token acts as the
//! service's bot (`sender_localpart`); `?user_id=` masquerades as a user of its namespace, and
//! `?device_id=` as one of that user's devices.
//! The answers for a user outside the namespace or not registered are Synapse's.

use std::rc::Rc;

use ruma::UserId;

use super::AppService;
use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, MatrixError};
use crate::storage::{accounts, appservices};

/// The requester for an `as_token`; `None` when no service has this token.
pub(crate) async fn requester(ctx: &Ctx, token: &str) -> Result<Option<Requester>, MatrixError> {
    let db = ctx.db();
    let Some(row) = appservices::by_as_token(&db, token).await? else {
        return Ok(None);
    };
    let service = AppService::from_json(&row.registration, ctx.config.server_name.as_str())
        .map_err(|e| MatrixError::internal(format!("application service registration: {e}")))?;
    let user_id = match ctx.query("user_id") {
        Some(user_id) if user_id != service.sender => {
            if !service.is_interested_in_user(user_id) {
                return Err(MatrixError::forbidden(format!(
                    "Application service cannot masquerade as this user ({user_id})."
                )));
            }
            if !accounts::user_exists(&db, user_id).await? {
                return Err(MatrixError::forbidden(format!(
                    "Application service has not registered this user ({user_id})"
                )));
            }
            user_id.to_owned()
        }
        _ => service.sender.clone(),
    };
    let device_id = match ctx.query("device_id") {
        Some(device) => {
            if !appservices::device_exists(&db, &user_id, device).await? {
                return Err(MatrixError::new(
                    400,
                    ErrorCode::UnknownDevice,
                    format!(
                        "Application service trying to use a device that doesn't exist ('{device}' for {user_id})"
                    ),
                ));
            }
            device.to_owned()
        }
        // A service acting without a device: transaction ids are scoped to the user alone.
        None => String::new(),
    };
    Ok(Some(Requester {
        user_id: UserId::parse(&user_id).map_err(|_| MatrixError::invalid_param("bad user_id"))?,
        device_id,
        admin: false,
        appservice: Some(Rc::new(service)),
    }))
}
