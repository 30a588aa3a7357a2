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
    let stored = user_data::push_rules(&ctx.db(), me.user_id.as_str()).await?;
    Ok(parse(&me.user_id, stored.as_deref()))
}

fn parse(user_id: &UserId, stored: Option<&str>) -> UserPushRules {
    let stored = stored
        .and_then(|text| serde_json::from_str::<StoredPushRules>(text).ok())
        .unwrap_or_default();
    UserPushRules::for_user(user_id, stored)
}

/// Tries of a change that lost the race with another change of the same user's rules.
const UPDATE_TRIES: usize = 8;

/// Applies `change` to the user's rules and stores the result, if it changed anything
/// (`Ok(true)`). Two requests may change one user's rules at once (two clients, or a join
/// carrying rules over): the row is replaced only if it still holds what `change` was applied to
/// (`user_data::replace_push_rules`), else the change is applied again to what is there now, so
/// neither is lost. Clients learn of the rules through the m.push_rules account data in /sync.
async fn update(
    ctx: &Ctx,
    user_id: &UserId,
    change: impl Fn(&mut UserPushRules) -> Result<bool, MatrixError>,
) -> Result<(), MatrixError> {
    let db = ctx.db();
    for _ in 0..UPDATE_TRIES {
        let before = user_data::push_rules(&db, user_id.as_str()).await?;
        let mut rules = parse(user_id, before.as_deref());
        if !change(&mut rules)? {
            return Ok(());
        }
        let text = serde_json::to_string(rules.stored())
            .map_err(|e| MatrixError::internal(e.to_string()))?;
        let replaced = user_data::replace_push_rules(
            &db,
            user_id.as_str(),
            before.as_deref(),
            &text,
            &rules.get_all(),
        )
        .await?;
        if replaced {
            ctx.platform.wakeups.notify(vec![user_id.to_string()]).await;
            return Ok(());
        }
    }
    Err(MatrixError::new(
        409,
        ErrorCode::Unknown,
        "The push rules kept changing under this request; try again",
    ))
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
        update(ctx, user_id, |rules| {
            Ok(rules.copy_room_rules(&old, room_id))
        })
        .await
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
    update(ctx, &me.user_id, |rules| {
        rules
            .put(
                kind,
                ctx.param("ruleId"),
                &body,
                ctx.query("before"),
                ctx.query("after"),
            )
            .map_err(push_error)?;
        Ok(true)
    })
    .await?;
    Ok(JsonResponse::ok(json!({})))
}

pub(crate) async fn delete_rule(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    let kind = kind(ctx)?;
    update(ctx, &me.user_id, |rules| {
        rules
            .delete(kind, ctx.param("ruleId"))
            .map_err(push_error)?;
        Ok(true)
    })
    .await?;
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
    let rule_id = ctx.param("ruleId");
    let attribute = ctx.param("attribute");
    if !matches!(attribute, "enabled" | "actions") {
        return Err(MatrixError::unrecognized_path());
    }
    update(ctx, &me.user_id, |rules| {
        match attribute {
            "enabled" => rules.set_enabled(kind, rule_id, &body),
            _ => rules.set_actions(kind, rule_id, &body),
        }
        .map_err(push_error)?;
        Ok(true)
    })
    .await?;
    Ok(JsonResponse::ok(json!({})))
}
