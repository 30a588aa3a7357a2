//! Drives user-interactive authentication for one request: checks the stage the client sent,
//! remembers progress in D1, and answers 401 with what is left.

use serde_json::Value;

use super::password::verify_password;
use crate::accounts::localpart::login_user_id;
use crate::accounts::tokens::new_opaque_id;
use crate::accounts::uia::{challenge, flows, is_complete, Purpose, Stage};
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::accounts;

/// `Ok(None)`: authenticated, go on. `Ok(Some(response))`: answer with this 401.
pub(crate) async fn authenticate(
    ctx: &Ctx,
    body: &Value,
    purpose: Purpose,
    user_id: Option<&str>,
) -> Result<Option<JsonResponse>, MatrixError> {
    let oauth_device = match (purpose, user_id) {
        (Purpose::CrossSigning, Some(user_id)) => {
            let device = ctx.requester().await?.device_id;
            crate::storage::oauth::session(&ctx.db(), user_id, &device)
                .await?
                .is_some()
        }
        _ => false,
    };
    let flows = flows(purpose, ctx.config.registration, oauth_device);
    if flows.is_empty() {
        return Err(MatrixError::forbidden(
            "Registration is disabled on this server",
        ));
    }
    let db = ctx.db();
    // A cross-signing reset approved on the account page passes while the approval lasts, with
    // or without an `auth` object: clients signed in with OAuth (matrix-rust-sdk) retry the
    // upload without one until it succeeds.
    if let (Purpose::CrossSigning, Some(user_id)) = (purpose, user_id) {
        if crate::storage::oauth::cross_signing_reset_allowed(&db, user_id).await? {
            return Ok(None);
        }
    }
    let params = stage_params(ctx, &flows);
    let Some(auth) = body.get("auth").filter(|a| a.is_object()) else {
        let session = new_opaque_id();
        accounts::save_uia_session(&db, &session, purpose.as_str(), user_id, "[]").await?;
        return Ok(Some(JsonResponse::new(
            401,
            challenge(&flows, params, &session, &[], None),
        )));
    };
    let (session, mut completed) = match auth.get("session").and_then(Value::as_str) {
        Some(session) => {
            let row = accounts::uia_session(&db, session)
                .await?
                .filter(|row| row.purpose == purpose.as_str() && row.user_id.as_deref() == user_id)
                .ok_or_else(|| MatrixError::new(400, ErrorCode::Unknown, "Unknown UIA session"))?;
            let done: Vec<String> = serde_json::from_str(&row.completed).unwrap_or_default();
            (
                session.to_owned(),
                done.iter()
                    .filter_map(|s| Stage::parse(s))
                    .collect::<Vec<_>>(),
            )
        }
        // matrix-nio sends its dummy stage without ever having asked for a session.
        None => (new_opaque_id(), Vec::new()),
    };
    let stage = auth
        .get("type")
        .and_then(Value::as_str)
        .and_then(Stage::parse);
    let offered = |stage: Stage| flows.iter().any(|flow| flow.contains(&stage));
    let failure = match stage {
        Some(stage) if offered(stage) => match check_stage(ctx, stage, auth, user_id).await? {
            None => {
                if !completed.contains(&stage) {
                    completed.push(stage);
                }
                None
            }
            Some(failure) => Some(failure),
        },
        _ => Some((
            ErrorCode::Unrecognized,
            "That authentication stage is not offered",
        )),
    };
    if failure.is_none() && is_complete(&flows, &completed) {
        accounts::delete_uia_session(&db, &session).await?;
        return Ok(None);
    }
    let done: Vec<&str> = completed.iter().map(|s| s.as_str()).collect();
    accounts::save_uia_session(
        &db,
        &session,
        purpose.as_str(),
        user_id,
        &serde_json::to_string(&done).unwrap_or_default(),
    )
    .await?;
    let failure = failure.map(|(code, message)| (code.as_str(), message));
    Ok(Some(JsonResponse::new(
        401,
        challenge(&flows, params, &session, &completed, failure),
    )))
}

/// What the offered stages need to tell the client: where the person approves an `m.oauth`
/// stage (the account page, src/oauth/account.rs).
fn stage_params(ctx: &Ctx, flows: &[Vec<Stage>]) -> Value {
    let mut params = serde_json::Map::new();
    let url = crate::oauth::account::action_url(ctx, "org.matrix.cross_signing_reset");
    for stage in [Stage::OAuth, Stage::UnstableCrossSigningReset] {
        if flows.iter().any(|flow| flow.contains(&stage)) {
            params.insert(stage.as_str().into(), serde_json::json!({ "url": url }));
        }
    }
    Value::Object(params)
}

/// `None` if the stage passed, else the error to show in the 401.
async fn check_stage(
    ctx: &Ctx,
    stage: Stage,
    auth: &Value,
    user_id: Option<&str>,
) -> Result<Option<(ErrorCode, &'static str)>, MatrixError> {
    Ok(match stage {
        Stage::Dummy => None,
        Stage::RegistrationToken => {
            let given = auth.get("token").and_then(Value::as_str);
            let secret = ctx.platform.secret("REGISTRATION_TOKEN");
            let accepted = match given {
                Some(given) if secret.as_deref() == Some(given) => true,
                // Tokens made with the admin API count one use each (src/admin/tokens.rs).
                Some(given) => {
                    crate::storage::admin::use_token(&ctx.db(), given, crate::time::now_ms())
                        .await?
                }
                None => false,
            };
            if accepted {
                None
            } else {
                Some((ErrorCode::Unauthorized, "Invalid registration token"))
            }
        }
        Stage::Password => {
            let claimed = auth
                .pointer("/identifier/user")
                .or_else(|| auth.get("user"))
                .and_then(Value::as_str)
                .and_then(|id| login_user_id(id, &ctx.config.server_name));
            let password = auth
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Proving to be someone else is not a retry of this user's stage: the request itself
            // is refused (as sytest and every server expect of device deletion).
            if let (Some(claimed), Some(user_id)) = (&claimed, user_id) {
                if claimed.as_str() != user_id {
                    return Err(MatrixError::new(
                        403,
                        ErrorCode::Forbidden,
                        "The authentication is for another user than the request's",
                    ));
                }
            }
            let ok = match (claimed, user_id) {
                (Some(claimed), Some(user_id)) if claimed.as_str() == user_id => {
                    verify_password(
                        &ctx.platform,
                        &ctx.db(),
                        user_id,
                        password,
                        ctx.config.password_iterations,
                    )
                    .await?
                }
                _ => false,
            };
            (!ok).then_some((ErrorCode::Forbidden, "Invalid password"))
        }
        Stage::OAuth | Stage::UnstableCrossSigningReset => {
            let approved = match user_id {
                Some(user_id) => {
                    crate::storage::oauth::cross_signing_reset_allowed(&ctx.db(), user_id).await?
                }
                None => false,
            };
            (!approved).then_some((
                ErrorCode::Forbidden,
                "Approve the reset on the account page first",
            ))
        }
    })
}
