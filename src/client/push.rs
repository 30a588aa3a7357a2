//! Push rule endpoints over `push_rules` (pure): load the user's stored changes, apply one
//! operation, store the result.

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::push_rules::{PushRuleError, RuleKind, StoredPushRules, UserPushRules};
use crate::api::request::{Ctx, Requester};
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::storage::user_data;

fn push_error(e: PushRuleError) -> MatrixError {
    MatrixError::new(e.status(), ErrorCode::parse(e.errcode()), e.message())
}

async fn load(ctx: &Ctx, me: &Requester) -> Result<UserPushRules, MatrixError> {
    load_for(ctx, &me.user_id).await
}

async fn load_for(ctx: &Ctx, user_id: &UserId) -> Result<UserPushRules, MatrixError> {
    let stored = user_data::push_rules(&ctx.db(), user_id.as_str())
        .await?
        .and_then(|text| serde_json::from_str::<StoredPushRules>(&text).ok())
        .unwrap_or_default();
    Ok(UserPushRules::for_user(user_id, stored))
}

async fn save(ctx: &Ctx, me: &Requester, rules: &UserPushRules) -> Result<(), MatrixError> {
    save_for(ctx, &me.user_id, rules).await
}

async fn save_for(ctx: &Ctx, user_id: &UserId, rules: &UserPushRules) -> Result<(), MatrixError> {
    let text =
        serde_json::to_string(rules.stored()).map_err(|e| MatrixError::internal(e.to_string()))?;
    user_data::set_push_rules(&ctx.db(), user_id.as_str(), &text).await?;
    // Clients learn of rule changes through the m.push_rules account data in /sync.
    user_data::set_account_data(
        &ctx.db(),
        user_id.as_str(),
        "",
        "m.push_rules",
        &rules.get_all(),
    )
    .await?;
    ctx.platform.wakeups.notify(vec![user_id.to_string()]).await;
    Ok(())
}

/// A user of ours has just joined `room_id` (or created it): when it replaces an upgraded room
/// (its create event names a `predecessor`), the user's rules for the old room are carried over
/// (`UserPushRules::copy_room_rules`), so a muted room stays muted after an upgrade. The spec
/// leaves this to servers; Synapse does the same on joining the successor. A failure is logged
/// and does not undo the join.
pub(crate) async fn carry_over_on_join(ctx: &Ctx, user_id: &UserId, room_id: &RoomId) {
    let carried = async {
        let Some(old) = crate::storage::rooms::predecessor(&ctx.db(), room_id.as_str()).await?
        else {
            return Ok(());
        };
        let Ok(old) = RoomId::parse(&old) else {
            return Ok(());
        };
        let mut rules = load_for(ctx, user_id).await?;
        if rules.copy_room_rules(&old, room_id) {
            save_for(ctx, user_id, &rules).await?;
        }
        Ok::<(), MatrixError>(())
    };
    if let Err(e) = carried.await {
        crate::log_warn!("push rules of {user_id} for the upgraded {room_id}: {e}");
    }
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
