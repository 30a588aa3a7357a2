//! Stored sync filters: `POST /user/{userId}/filter` and `GET .../filter/{filterId}`.

use serde_json::{json, Value};

use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::storage::user_data;
use crate::sync::filter::Filter;

pub(crate) async fn create(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let body = Value::Object(ctx.json_object()?);
    serde_json::from_value::<Filter>(body.clone())
        .map_err(|e| MatrixError::bad_json(format!("invalid filter: {e}")))?
        .check_ids()
        .map_err(MatrixError::invalid_param)?;
    let id = user_data::create_filter(&ctx.db(), me.user_id.as_str(), &body).await?;
    Ok(JsonResponse::ok(json!({ "filter_id": id.to_string() })))
}

pub(crate) async fn get(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let me = ctx.requester().await?;
    ctx.own_user_param("userId", &me)?;
    let not_found = || MatrixError::not_found("No such filter");
    let id: i64 = ctx.param("filterId").parse().map_err(|_| not_found())?;
    user_data::filter(&ctx.db(), me.user_id.as_str(), id)
        .await?
        .map(JsonResponse::ok)
        .ok_or_else(not_found)
}
