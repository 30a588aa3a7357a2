//! Push rule endpoints over `push_rules` (pure): load the user's stored changes, apply one
//! operation, store the result.

use serde_json::{json, Value};

use super::push_rules::{PushRuleError, RuleKind, StoredPushRules, UserPushRules};
use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::user_data;

fn push_error(e: PushRuleError) -> MatrixError {
    MatrixError::new(e.status(), ErrorCode::parse(e.errcode()), e.message())
}

async fn load(ctx: &Ctx, me: &Requester) -> Result<UserPushRules, MatrixError> {
    let stored = user_data::push_rules(&ctx.db(), me.user_id.as_str())
        .await?
        .and_then(|text| serde_json::from_str::<StoredPushRules>(&text).ok())
        .unwrap_or_default();
    Ok(UserPushRules::for_user(&me.user_id, stored))
}

async fn save(ctx: &Ctx, me: &Requester, rules: &UserPushRules) -> Result<(), MatrixError> {
    let text =
        serde_json::to_string(rules.stored()).map_err(|e| MatrixError::internal(e.to_string()))?;
    user_data::set_push_rules(&ctx.db(), me.user_id.as_str(), &text).await?;
    // Clients learn of rule changes through the m.push_rules account data in /sync.
    user_data::set_account_data(
        &ctx.db(),
        me.user_id.as_str(),
        "",
        "m.push_rules",
        &rules.get_all(),
    )
    .await?;
    ctx.platform
        .wakeups
        .notify(vec![me.user_id.to_string()])
        .await;
    Ok(())
}

fn kind(ctx: &Ctx) -> Result<RuleKind, MatrixError> {
    RuleKind::from_path(ctx.param("scope"), ctx.param("kind")).map_err(push_error)
}

pub(crate) async fn get_all(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let all = load(ctx, &me).await?.get_all();
    // The rows with a `{scope}` answer that scope alone (a parameter is never empty).
    match ctx.param("scope") {
        "" => Ok(JsonResponse::ok(all)),
        "global" => Ok(JsonResponse::ok(all["global"].clone())),
        _ => Err(MatrixError::new(
            404,
            ErrorCode::Unrecognized,
            "Unknown push rule scope",
        )),
    }
}

pub(crate) async fn get_rule(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let rules = load(ctx, &me).await?;
    rules
        .get(kind(ctx)?, ctx.param("ruleId"))
        .map(JsonResponse::ok)
        .map_err(push_error)
}

pub(crate) async fn put_rule(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let kind = kind(ctx)?;
    let body = Value::Object(ctx.json_object()?);
    let mut rules = load(ctx, &me).await?;
    rules
        .put(
            kind,
            ctx.param("ruleId"),
            &body,
            ctx.query("before"),
            ctx.query("after"),
        )
        .map_err(push_error)?;
    save(ctx, &me, &rules).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn delete_rule(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let kind = kind(ctx)?;
    let mut rules = load(ctx, &me).await?;
    rules
        .delete(kind, ctx.param("ruleId"))
        .map_err(push_error)?;
    save(ctx, &me, &rules).await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn get_attribute(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let kind = kind(ctx)?;
    let rules = load(ctx, &me).await?;
    let rule_id = ctx.param("ruleId");
    match ctx.param("attribute") {
        "enabled" => rules.enabled(kind, rule_id),
        "actions" => rules.actions(kind, rule_id),
        _ => return Err(MatrixError::unrecognized_path()),
    }
    .map(JsonResponse::ok)
    .map_err(push_error)
}

pub(crate) async fn put_attribute(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let kind = kind(ctx)?;
    let body = Value::Object(ctx.json_object()?);
    let mut rules = load(ctx, &me).await?;
    let rule_id = ctx.param("ruleId");
    match ctx.param("attribute") {
        "enabled" => rules.set_enabled(kind, rule_id, &body),
        "actions" => rules.set_actions(kind, rule_id, &body),
        _ => return Err(MatrixError::unrecognized_path()),
    }
    .map_err(push_error)?;
    save(ctx, &me, &rules).await?;
    Ok(JsonResponse::ok(json!({})))
}
