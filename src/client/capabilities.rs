//! `GET /capabilities`: what this server lets clients change, and its room versions.

use serde_json::{json, Map, Value};

use crate::api::request::Ctx;
use crate::http::{JsonResponse, MatrixError};
use crate::rooms::RoomVersion;

pub(crate) async fn capabilities(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    ctx.requester().await?;
    let available: Map<String, Value> = RoomVersion::ALL
        .iter()
        .map(|v| (v.as_str().to_owned(), json!("stable")))
        .collect();
    Ok(JsonResponse::ok(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": {
                "default": ctx.config.default_room_version.as_str(),
                "available": available,
            },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false },
        }
    })))
}
