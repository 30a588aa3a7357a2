//! Client endpoints and checks that concern application services: `m.login.application_service`
//! registration, the `M_EXCLUSIVE` refusals for others' users and aliases, and the ping.

use std::time::Duration;

use serde_json::{json, Value};

use super::queries::call;
use super::AppService;
use crate::api::request::Ctx;
use crate::client::register::create_account;
use crate::client::session::SessionRequest;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::platform::Method;
use crate::storage::appservices;
use crate::time::now_ms;

/// The registration type a service uses to create its users (`/register` body `type`).
pub(crate) const LOGIN_TYPE: &str = "m.login.application_service";

/// How long the ping waits for the service.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

fn exclusive(message: &str) -> MatrixError {
    MatrixError::new(400, ErrorCode::Exclusive, message)
}

/// `POST /register` with `type: m.login.application_service`: the service creates a user of
/// its namespace, without UIA and without a password (Synapse's answers).
pub(crate) async fn register(ctx: &Ctx, body: &Value) -> Result<JsonResponse, MatrixError> {
    if ctx.access_token().is_none() {
        return Err(MatrixError::new(
            400,
            ErrorCode::Unknown,
            "Appservice token must be provided when using a type of m.login.application_service",
        ));
    }
    // The service itself, whatever `user_id` says: the user it names may not exist yet.
    let token = ctx.access_token().unwrap_or_default();
    let Some(row) = appservices::by_as_token(&ctx.db(), token).await? else {
        return Err(MatrixError::new(
            401,
            ErrorCode::UnknownToken,
            "Invalid application service token",
        ));
    };
    let service = AppService::from_json(&row.registration, ctx.config.server_name.as_str())
        .map_err(|e| MatrixError::internal(format!("application service registration: {e}")))?;
    // The application service API names it `user`; `username` as for everyone else.
    let localpart = body
        .get("username")
        .or_else(|| body.get("user"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrorCode::Unknown,
                "Desired Username is missing or not a string",
            )
        })?;
    // Synapse gives services any localpart the user id grammar allows (bridges rely on it),
    // not only what ordinary registration accepts.
    let user_id =
        ruma::UserId::parse(format!("@{localpart}:{}", ctx.config.server_name)).map_err(|_| {
            MatrixError::new(
                400,
                ErrorCode::InvalidUsername,
                "User ID can only contain characters a-z, 0-9, or '=_-./+'",
            )
        })?;
    if !service.is_interested_in_user(user_id.as_str()) {
        return Err(exclusive(
            "Invalid user localpart for this application service.",
        ));
    }
    let services = super::all(&ctx.db(), ctx.config.server_name.as_str()).await?;
    if services
        .iter()
        .any(|other| other.id() != service.id() && other.is_exclusive_user(user_id.as_str()))
    {
        return Err(exclusive(
            "This user ID is reserved by an application service.",
        ));
    }
    let session: SessionRequest = serde_json::from_value(body.clone()).unwrap_or_default();
    let inhibit = body
        .get("inhibit_login")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut response = create_account(
        ctx,
        user_id.as_str(),
        None,
        false,
        (!inhibit).then_some(&session),
    )
    .await?;
    response.body["home_server"] = json!(ctx.config.server_name.as_str());
    if service.is_exclusive_user(user_id.as_str()) {
        appservices::set_user_appservice(&ctx.db(), user_id.as_str(), service.id()).await?;
    }
    Ok(response)
}

/// `POST /login` with `type: m.login.application_service`: a service logs in as one of its
/// users (a device and token of their own, e.g. for encryption). Synapse's checks and answers.
pub(crate) async fn login_user(
    ctx: &Ctx,
    identifier: Option<&Value>,
) -> Result<String, MatrixError> {
    let me = ctx.requester().await?;
    let Some(service) = me.appservice else {
        return Err(MatrixError::new(
            401,
            ErrorCode::UnknownToken,
            "This login method is only valid for application services",
        ));
    };
    let identifier = identifier
        .filter(|i| i.is_object())
        .ok_or_else(|| MatrixError::invalid_param("Invalid identifier in login submission"))?;
    if identifier.get("type").and_then(Value::as_str) != Some("m.id.user") {
        return Err(MatrixError::invalid_param("Unknown login identifier type"));
    }
    let user = identifier
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::invalid_param("Invalid user in identifier"))?;
    let user_id = if user.starts_with('@') {
        user.to_owned()
    } else {
        format!("@{user}:{}", ctx.config.server_name)
    };
    if !service.is_interested_in_user(&user_id) {
        return Err(MatrixError::forbidden("Invalid access_token"));
    }
    match crate::storage::accounts::credentials(&ctx.db(), &user_id).await? {
        None => Err(MatrixError::forbidden("Invalid access_token")),
        Some(c) if c.deactivated != 0 && user_id != service.sender => Err(MatrixError::new(
            403,
            ErrorCode::UserDeactivated,
            "This account has been deactivated",
        )),
        Some(_) => Ok(user_id),
    }
}

/// Ordinary registration of a user id another service holds exclusively is refused (also the
/// availability check). A service registering for itself goes through `register` above.
pub(crate) async fn refuse_exclusive_user(ctx: &Ctx, user_id: &str) -> Result<(), MatrixError> {
    let services = super::all(&ctx.db(), ctx.config.server_name.as_str()).await?;
    if super::exclusive_owner_of_user(&services, user_id).is_some() {
        return Err(exclusive(
            "This user ID is reserved by an application service.",
        ));
    }
    Ok(())
}

/// Creating or deleting an alias: a service may only touch aliases of its namespace, and
/// nobody else may touch an alias a service holds exclusively.
pub(crate) async fn check_alias(
    ctx: &Ctx,
    me: &crate::api::request::Requester,
    alias: &str,
    creating: bool,
) -> Result<(), MatrixError> {
    if let Some(service) = &me.appservice {
        if creating && !service.is_interested_in_alias(alias) {
            return Err(exclusive(
                "This application service has not reserved this kind of alias.",
            ));
        }
        if service.is_interested_in_alias(alias) {
            return Ok(());
        }
    }
    let services = super::all(&ctx.db(), ctx.config.server_name.as_str()).await?;
    if super::exclusive_owner_of_alias(&services, alias).is_some() {
        return Err(exclusive(
            "This alias is reserved by an application service.",
        ));
    }
    Ok(())
}

/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: the service asks us to call its
/// `/_matrix/app/v1/ping`, and learns how long that took (or why it failed).
pub(crate) async fn ping(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let id = ctx.param("appserviceId");
    let service = match &me.appservice {
        None => {
            return Err(MatrixError::forbidden(
                "Only application services can use the /appservice/ping endpoint",
            ))
        }
        Some(service) if service.id() != id => {
            return Err(MatrixError::forbidden(
                "Mismatching application service ID in path",
            ))
        }
        Some(service) => service.clone(),
    };
    let body = ctx.json_object()?;
    let mut outgoing = json!({});
    if let Some(txn) = body.get("transaction_id") {
        if !txn.is_string() {
            return Err(MatrixError::bad_json("transaction_id must be a string"));
        }
        outgoing["transaction_id"] = txn.clone();
    }
    if service.file.url.as_deref().is_none_or(str::is_empty) {
        return Err(MatrixError::new(
            400,
            ErrorCode::UrlNotSet,
            "The application service does not have a URL set",
        ));
    }
    let started = now_ms();
    let answer = call(
        &ctx.platform,
        &service,
        Method::Post,
        "/_matrix/app/v1/ping",
        Some(outgoing.to_string().into_bytes()),
        PING_TIMEOUT,
    )
    .await;
    let duration_ms = now_ms().saturating_sub(started);
    match answer {
        Ok(response) if (200..300).contains(&response.status) => {
            // The service is up: a transaction waiting out a backoff goes now (as Synapse does).
            ctx.platform.appservices.retry_now(service.id()).await;
            Ok(JsonResponse::ok(json!({ "duration_ms": duration_ms })))
        }
        Ok(response) => Err(MatrixError::new(
            502,
            ErrorCode::BadStatus,
            format!("HTTP {}", response.status),
        )
        .with("status", json!(response.status))
        .with("body", json!(response.text()))),
        Err(e) if e.starts_with("no answer within") => Err(MatrixError::new(
            504,
            ErrorCode::ConnectionTimeout,
            "Timed out connecting to the application service",
        )),
        Err(e) => Err(MatrixError::new(
            502,
            ErrorCode::ConnectionFailed,
            format!("Failed to connect to the application service: {e}"),
        )),
    }
}
