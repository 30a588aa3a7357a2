//! Every endpoint the server answers, one row each: method, path pattern (as the spec writes it,
//! `{name}` for a parameter) and handler. Adding an endpoint is adding a row here; the handler
//! reads its parameters by the names of the pattern (`ctx.param("roomId")`). See docs/design.md,
//! "Adding an endpoint".

use super::request::Ctx;
use super::Reply;
use crate::client::{
    self, account, account_data, capabilities, cross_signing, device_keys, devices, directory,
    ephemeral, filters, key_backup, media, membership, notifications, profile, push, pushers,
    register, room_read, send, session, to_device, upgrade,
};
use crate::federation::{self, endpoints as fed, media as fed_media};
use crate::http::route::{Method, Route};
use crate::http::{JsonResponse, MatrixError};
use crate::platform::Fut;
use crate::{admin, appservice, oauth, sync, wellknown};

/// What every handler is: a request in, an answer (JSON or media) or a Matrix error out.
pub(crate) type Handler = for<'a> fn(&'a Ctx) -> Fut<'a, Result<Reply, MatrixError>>;

/// A handler from a function of the request (`to!(module::function)`), or from an expression
/// of `ctx` that awaits (`to!(|ctx| module::function(ctx, "x").await)`).
macro_rules! to {
    (|$ctx:ident| $body:expr) => {{
        fn handler($ctx: &Ctx) -> Fut<'_, Result<Reply, MatrixError>> {
            Box::pin(async move { $body.map(Reply::from) })
        }
        handler as Handler
    }};
    ($function:path) => {
        to!(|ctx| $function(ctx).await)
    };
}

const fn get(pattern: &'static str, target: Handler) -> Route<Handler> {
    Route {
        method: Method::Get,
        pattern,
        target,
    }
}
const fn put(pattern: &'static str, target: Handler) -> Route<Handler> {
    Route {
        method: Method::Put,
        pattern,
        target,
    }
}
const fn post(pattern: &'static str, target: Handler) -> Route<Handler> {
    Route {
        method: Method::Post,
        pattern,
        target,
    }
}
const fn delete(pattern: &'static str, target: Handler) -> Route<Handler> {
    Route {
        method: Method::Delete,
        pattern,
        target,
    }
}

/// Client paths are written with `v3`; `r0` requests are served by the same rows.
pub(crate) const ROUTES: &[Route<Handler>] = &[
    get(
        "/.well-known/matrix/server",
        to!(|ctx| Ok(JsonResponse::ok(wellknown::server(&ctx.config)))),
    ),
    get(
        "/.well-known/matrix/client",
        to!(|ctx| Ok(JsonResponse::ok(wellknown::client(&ctx.config)))),
    ),
    get(
        "/.well-known/matrix/support",
        to!(|ctx| wellknown::support(&ctx.config)
            .map(JsonResponse::ok)
            .ok_or_else(|| MatrixError::not_found("No support contact is configured"))),
    ),
    get(
        "/_matrix/client/versions",
        to!(|_ctx| Ok(JsonResponse::ok(client::versions::versions()))),
    ),
    get(
        "/_matrix/federation/v1/version",
        to!(|_ctx| Ok(JsonResponse::ok(federation::version::version()))),
    ),
    get(
        "/_matrix/key/v2/server",
        to!(
            |ctx| federation::key_server::own_document(&ctx.platform, &ctx.config.server_name)
                .await
                .map(JsonResponse::ok)
        ),
    ),
    get(
        "/_matrix/key/v2/query/{serverName}",
        to!(federation::key_server::query_server),
    ),
    post(
        "/_matrix/key/v2/query",
        to!(federation::key_server::query_servers),
    ),
    post("/_matrix/client/v3/register", to!(register::register)),
    get(
        "/_matrix/client/v3/register/available",
        to!(register::available),
    ),
    get(
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        to!(register::token_validity),
    ),
    get("/_synapse/admin/v1/register", to!(register::admin_nonce)),
    post("/_synapse/admin/v1/register", to!(register::admin_register)),
    get(
        "/_matrix/client/v3/login",
        to!(|_ctx| Ok(session::login_flows())),
    ),
    post("/_matrix/client/v3/login", to!(session::login)),
    post("/_matrix/client/v3/refresh", to!(session::refresh)),
    post("/_matrix/client/v3/logout", to!(session::logout)),
    post("/_matrix/client/v3/logout/all", to!(session::logout_all)),
    get("/_matrix/client/v3/account/whoami", to!(session::whoami)),
    // OAuth 2.0 (src/oauth/): discovery, the endpoints clients call, and the pages people see.
    get(
        "/_matrix/client/v1/auth_metadata",
        to!(oauth::metadata::auth_metadata),
    ),
    get(
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
        to!(oauth::metadata::auth_metadata),
    ),
    post(oauth::REGISTRATION_PATH, to!(oauth::registration::register)),
    get(oauth::AUTHORIZE_PATH, to!(oauth::authorize::authorize)),
    post(oauth::TOKEN_PATH, to!(oauth::token::token)),
    post(oauth::REVOCATION_PATH, to!(oauth::revoke::revoke)),
    post(
        oauth::DEVICE_AUTHORIZATION_PATH,
        to!(oauth::device_grant::device_authorization),
    ),
    get(
        oauth::DEVICE_PAGE_PATH,
        to!(oauth::device_grant::device_page),
    ),
    post(
        oauth::DEVICE_PAGE_PATH,
        to!(oauth::device_grant::device_submit),
    ),
    get(oauth::LOGIN_PATH, to!(oauth::login::login_page)),
    post(oauth::LOGIN_PATH, to!(oauth::login::login_submit)),
    get(oauth::REGISTER_PATH, to!(oauth::login::register_page)),
    post(oauth::REGISTER_PATH, to!(oauth::login::register_submit)),
    post(oauth::LOGOUT_PATH, to!(oauth::login::logout_submit)),
    get(oauth::CONSENT_PATH, to!(oauth::authorize::consent_page)),
    post(oauth::CONSENT_PATH, to!(oauth::authorize::consent_submit)),
    get(oauth::ACCOUNT_PATH, to!(oauth::account::page)),
    post(
        "/account/devices/delete",
        to!(oauth::account::delete_device),
    ),
    post("/account/password", to!(oauth::account::change_password)),
    post(
        "/account/sign_out_everywhere",
        to!(oauth::account::sign_out_everywhere),
    ),
    post(
        "/account/cross_signing_reset",
        to!(oauth::account::allow_cross_signing_reset),
    ),
    post(
        "/_matrix/client/v3/account/password",
        to!(account::change_password),
    ),
    post(
        "/_matrix/client/v3/account/deactivate",
        to!(account::deactivate),
    ),
    get("/_matrix/client/v3/devices", to!(devices::list)),
    get("/_matrix/client/v3/devices/{deviceId}", to!(devices::get)),
    put(
        "/_matrix/client/v3/devices/{deviceId}",
        to!(devices::update),
    ),
    delete(
        "/_matrix/client/v3/devices/{deviceId}",
        to!(devices::delete_one),
    ),
    post(
        "/_matrix/client/v3/delete_devices",
        to!(devices::delete_many),
    ),
    get(
        "/_matrix/client/v3/capabilities",
        to!(capabilities::capabilities),
    ),
    get(
        "/_matrix/client/v3/profile/{userId}",
        to!(profile::get_profile),
    ),
    get(
        "/_matrix/client/v3/presence/{userId}/status",
        to!(crate::client::presence::get_status),
    ),
    put(
        "/_matrix/client/v3/presence/{userId}/status",
        to!(crate::client::presence::set_status),
    ),
    get(
        "/_matrix/client/v3/profile/{userId}/{keyName}",
        to!(profile::get_field),
    ),
    put(
        "/_matrix/client/v3/profile/{userId}/{keyName}",
        to!(profile::set_field),
    ),
    get("/_matrix/client/v3/notifications", to!(notifications::list)),
    get("/_matrix/client/v3/pushers", to!(pushers::list)),
    post("/_matrix/client/v3/pushers/set", to!(pushers::set)),
    get("/_matrix/client/v3/pushrules/", to!(push::get_all)),
    get("/_matrix/client/v3/pushrules", to!(push::get_all)),
    get("/_matrix/client/v3/pushrules/{scope}/", to!(push::get_all)),
    get("/_matrix/client/v3/pushrules/{scope}", to!(push::get_all)),
    get(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
        to!(push::get_rule),
    ),
    put(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
        to!(push::put_rule),
    ),
    delete(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
        to!(push::delete_rule),
    ),
    get(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/{attribute}",
        to!(push::get_attribute),
    ),
    put(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/{attribute}",
        to!(push::put_attribute),
    ),
    post(
        "/_matrix/client/v3/user/{userId}/filter",
        to!(filters::create),
    ),
    get(
        "/_matrix/client/v3/user/{userId}/filter/{filterId}",
        to!(filters::get),
    ),
    get(
        "/_matrix/client/v3/user/{userId}/account_data/{type}",
        to!(|ctx| account_data::get(ctx, false).await),
    ),
    put(
        "/_matrix/client/v3/user/{userId}/account_data/{type}",
        to!(|ctx| account_data::put(ctx, false).await),
    ),
    get(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        to!(|ctx| account_data::get(ctx, true).await),
    ),
    put(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        to!(|ctx| account_data::put(ctx, true).await),
    ),
    get(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags",
        to!(account_data::get_tags),
    ),
    put(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
        to!(account_data::put_tag),
    ),
    delete(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
        to!(account_data::delete_tag),
    ),
    get(
        "/_matrix/client/v3/joined_rooms",
        to!(room_read::joined_rooms),
    ),
    post(
        "/_matrix/client/v3/createRoom",
        to!(membership::create_room),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/upgrade",
        to!(upgrade::upgrade),
    ),
    post(
        "/_matrix/client/v3/join/{roomIdOrAlias}",
        to!(|ctx| membership::join(ctx, ctx.param("roomIdOrAlias")).await),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/join",
        to!(|ctx| membership::join(ctx, ctx.param("roomId")).await),
    ),
    post(
        "/_matrix/client/v3/knock/{roomIdOrAlias}",
        to!(membership::knock),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/leave",
        to!(membership::leave),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/forget",
        to!(membership::forget),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/invite",
        to!(|ctx| membership::act_on_member(ctx, membership::MemberAction::Invite).await),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/kick",
        to!(|ctx| membership::act_on_member(ctx, membership::MemberAction::Kick).await),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/ban",
        to!(|ctx| membership::act_on_member(ctx, membership::MemberAction::Ban).await),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/unban",
        to!(|ctx| membership::act_on_member(ctx, membership::MemberAction::Unban).await),
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
        to!(send::send_message),
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
        to!(|ctx| send::put_state(ctx, ctx.param("stateKey")).await),
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
        to!(|ctx| send::put_state(ctx, "").await),
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
        to!(|ctx| send::put_state(ctx, "").await),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state",
        to!(room_read::state),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
        to!(|ctx| room_read::state_event(ctx, ctx.param("stateKey")).await),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
        to!(|ctx| room_read::state_event(ctx, "").await),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
        to!(|ctx| room_read::state_event(ctx, "").await),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/members",
        to!(room_read::members),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/joined_members",
        to!(room_read::joined_members),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/messages",
        to!(room_read::messages),
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/hierarchy",
        to!(crate::client::hierarchy::hierarchy),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/context/{eventId}",
        to!(room_read::context),
    ),
    post("/_matrix/client/v3/search", to!(client::search::search)),
    post(
        "/_matrix/client/v3/rooms/{roomId}/report/{eventId}",
        to!(client::report::event),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/report",
        to!(client::report::room),
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/threads",
        to!(client::threads::list),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/event/{eventId}",
        to!(room_read::event),
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}",
        to!(send::redact),
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}",
        to!(|ctx| room_read::relations(ctx, None, None).await),
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}",
        to!(|ctx| room_read::relations(ctx, Some(ctx.param("relType")), None).await),
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
        to!(|ctx| room_read::relations(
            ctx,
            Some(ctx.param("relType")),
            Some(ctx.param("eventType"))
        )
        .await),
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/typing/{userId}",
        to!(ephemeral::typing),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}",
        to!(ephemeral::receipt),
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/read_markers",
        to!(ephemeral::read_markers),
    ),
    put(
        "/_matrix/client/v3/directory/room/{roomAlias}",
        to!(directory::put_alias),
    ),
    get(
        "/_matrix/client/v3/directory/room/{roomAlias}",
        to!(directory::get_alias),
    ),
    delete(
        "/_matrix/client/v3/directory/room/{roomAlias}",
        to!(directory::delete_alias),
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/aliases",
        to!(directory::room_aliases),
    ),
    get(
        "/_matrix/client/v3/directory/list/room/{roomId}",
        to!(directory::get_visibility),
    ),
    put(
        "/_matrix/client/v3/directory/list/room/{roomId}",
        to!(directory::set_visibility),
    ),
    get(
        "/_matrix/client/v3/publicRooms",
        to!(|ctx| directory::public_rooms(ctx, false).await),
    ),
    post(
        "/_matrix/client/v3/publicRooms",
        to!(|ctx| directory::public_rooms(ctx, true).await),
    ),
    post(
        "/_matrix/client/v3/user_directory/search",
        to!(directory::search_users),
    ),
    get("/_matrix/client/v3/sync", to!(sync::handler::sync)),
    // The content repository (client/media.rs, federation/media.rs).
    post("/_matrix/media/v3/upload", to!(media::upload)),
    post("/_matrix/media/r0/upload", to!(media::upload)),
    put(
        "/_matrix/media/v3/upload/{serverName}/{mediaId}",
        to!(media::upload_to),
    ),
    post("/_matrix/media/v1/create", to!(media::create)),
    get("/_matrix/client/v1/media/config", to!(media::config)),
    get("/_matrix/media/v3/config", to!(media::config)),
    get(
        "/_matrix/client/v1/media/download/{serverName}/{mediaId}",
        to!(media::download),
    ),
    get(
        "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}",
        to!(media::download),
    ),
    get(
        "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}",
        to!(media::thumbnail),
    ),
    get(
        "/_matrix/client/v1/media/preview_url",
        to!(media::preview_url),
    ),
    get("/_matrix/media/v3/preview_url", to!(media::preview_url)),
    get(
        "/_matrix/media/v3/download/{serverName}/{mediaId}",
        to!(media::download_unauthenticated),
    ),
    get(
        "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}",
        to!(media::download_unauthenticated),
    ),
    get(
        "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}",
        to!(media::thumbnail_unauthenticated),
    ),
    get(
        "/_matrix/federation/v1/media/download/{mediaId}",
        to!(fed_media::download),
    ),
    get(
        "/_matrix/federation/v1/media/thumbnail/{mediaId}",
        to!(fed_media::thumbnail),
    ),
    get(
        "/_matrix/client/v1/room_summary/{roomIdOrAlias}",
        to!(client::room_summary::room_summary),
    ),
    post(
        "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
        to!(sync::sliding::handler::sync),
    ),
    get(
        "/_matrix/federation/v1/make_join/{roomId}/{userId}",
        to!(|ctx| fed::make_membership(ctx, "join").await),
    ),
    put(
        "/_matrix/federation/v1/send_join/{roomId}/{eventId}",
        to!(|ctx| fed::send_membership(ctx, true, "join").await),
    ),
    put(
        "/_matrix/federation/v2/send_join/{roomId}/{eventId}",
        to!(|ctx| fed::send_membership(ctx, false, "join").await),
    ),
    get(
        "/_matrix/federation/v1/make_leave/{roomId}/{userId}",
        to!(|ctx| fed::make_membership(ctx, "leave").await),
    ),
    put(
        "/_matrix/federation/v1/send_leave/{roomId}/{eventId}",
        to!(|ctx| fed::send_membership(ctx, true, "leave").await),
    ),
    put(
        "/_matrix/federation/v2/send_leave/{roomId}/{eventId}",
        to!(|ctx| fed::send_membership(ctx, false, "leave").await),
    ),
    get(
        "/_matrix/federation/v1/make_knock/{roomId}/{userId}",
        to!(|ctx| fed::make_membership(ctx, "knock").await),
    ),
    put(
        "/_matrix/federation/v1/send_knock/{roomId}/{eventId}",
        to!(|ctx| fed::send_membership(ctx, false, "knock").await),
    ),
    get(
        "/_matrix/federation/v1/hierarchy/{roomId}",
        to!(fed::hierarchy),
    ),
    put(
        "/_matrix/federation/v1/send/{txnId}",
        to!(fed::send_transaction),
    ),
    get(
        "/_matrix/federation/v1/query/profile",
        to!(fed::query_profile),
    ),
    get(
        "/_matrix/federation/v1/query/directory",
        to!(fed::query_directory),
    ),
    get("/_matrix/federation/v1/event/{eventId}", to!(fed::event)),
    get(
        "/_matrix/federation/v1/state/{roomId}",
        to!(|ctx| fed::state(ctx, false).await),
    ),
    get(
        "/_matrix/federation/v1/state_ids/{roomId}",
        to!(|ctx| fed::state(ctx, true).await),
    ),
    post(
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        to!(fed::get_missing_events),
    ),
    get(
        "/_matrix/federation/v1/backfill/{roomId}",
        to!(fed::backfill),
    ),
    get(
        "/_matrix/federation/v1/event_auth/{roomId}/{eventId}",
        to!(fed::event_auth),
    ),
    put(
        "/_matrix/federation/v2/invite/{roomId}/{eventId}",
        to!(crate::federation::invites::invite),
    ),
    put(
        "/_matrix/federation/v1/invite/{roomId}/{eventId}",
        to!(crate::federation::invites::invite_v1),
    ),
    post(
        "/_matrix/federation/v1/user/keys/query",
        to!(federation::e2ee_in::user_keys_query),
    ),
    post(
        "/_matrix/federation/v1/user/keys/claim",
        to!(federation::e2ee_in::user_keys_claim),
    ),
    get(
        "/_matrix/federation/v1/user/devices/{userId}",
        to!(federation::e2ee_in::user_devices),
    ),
    get(
        "/_matrix/federation/v1/publicRooms",
        to!(|ctx| fed::public_rooms(ctx, false).await),
    ),
    post(
        "/_matrix/federation/v1/publicRooms",
        to!(|ctx| fed::public_rooms(ctx, true).await),
    ),
    get(
        "/_matrix/federation/v1/timestamp_to_event/{roomId}",
        to!(fed::timestamp_to_event),
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event",
        to!(room_read::timestamp_to_event),
    ),
    post("/_matrix/client/v3/keys/upload", to!(device_keys::upload)),
    post("/_matrix/client/v3/keys/query", to!(device_keys::query)),
    post("/_matrix/client/v3/keys/claim", to!(device_keys::claim)),
    get("/_matrix/client/v3/keys/changes", to!(device_keys::changes)),
    post(
        "/_matrix/client/v3/keys/device_signing/upload",
        to!(cross_signing::upload_device_signing),
    ),
    post(
        "/_matrix/client/v3/keys/signatures/upload",
        to!(cross_signing::upload_signatures),
    ),
    put(
        "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}",
        to!(to_device::send),
    ),
    post(
        "/_matrix/client/v3/room_keys/version",
        to!(key_backup::create_version),
    ),
    get(
        "/_matrix/client/v3/room_keys/version",
        to!(|ctx| key_backup::get_version(ctx, None).await),
    ),
    get(
        "/_matrix/client/v3/room_keys/version/{version}",
        to!(|ctx| key_backup::get_version(ctx, Some(ctx.param("version"))).await),
    ),
    put(
        "/_matrix/client/v3/room_keys/version/{version}",
        to!(key_backup::update_version),
    ),
    delete(
        "/_matrix/client/v3/room_keys/version/{version}",
        to!(key_backup::delete_version),
    ),
    get(
        "/_matrix/client/v3/room_keys/keys",
        to!(key_backup::get_keys),
    ),
    put(
        "/_matrix/client/v3/room_keys/keys",
        to!(key_backup::put_keys),
    ),
    delete(
        "/_matrix/client/v3/room_keys/keys",
        to!(key_backup::delete_keys),
    ),
    get(
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        to!(key_backup::get_keys),
    ),
    put(
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        to!(key_backup::put_keys),
    ),
    delete(
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        to!(key_backup::delete_keys),
    ),
    get(
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        to!(key_backup::get_keys),
    ),
    put(
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        to!(key_backup::put_keys),
    ),
    delete(
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        to!(key_backup::delete_keys),
    ),
    // Application services (src/appservice/) and the Synapse-compatible admin API (src/admin/).
    post(
        "/_matrix/client/v1/appservice/{appserviceId}/ping",
        to!(appservice::endpoints::ping),
    ),
    get(
        "/_synapse/admin/v1/server_version",
        to!(admin::server_version),
    ),
    get("/_synapse/admin/v2/users", to!(admin::users::list)),
    get(
        "/_synapse/admin/v1/event_reports",
        to!(admin::reports::list),
    ),
    get("/_synapse/admin/v2/users/{userId}", to!(admin::users::get)),
    put("/_synapse/admin/v2/users/{userId}", to!(admin::users::put)),
    post(
        "/_synapse/admin/v1/reset_password/{userId}",
        to!(admin::users::reset_password),
    ),
    post(
        "/_synapse/admin/v1/deactivate/{userId}",
        to!(admin::users::deactivate),
    ),
    get(
        "/_synapse/admin/v1/whois/{userId}",
        to!(admin::users::whois),
    ),
    get(
        "/_matrix/client/v3/admin/whois/{userId}",
        to!(admin::users::whois),
    ),
    get(
        "/_synapse/admin/v1/users/{userId}/joined_rooms",
        to!(admin::users::joined_rooms),
    ),
    get("/_synapse/admin/v1/rooms", to!(admin::rooms::list)),
    get("/_synapse/admin/v1/rooms/{roomId}", to!(admin::rooms::get)),
    delete(
        "/_synapse/admin/v1/rooms/{roomId}",
        to!(|ctx| admin::rooms::delete(ctx, false).await),
    ),
    delete(
        "/_synapse/admin/v2/rooms/{roomId}",
        to!(|ctx| admin::rooms::delete(ctx, true).await),
    ),
    get(
        "/_synapse/admin/v2/rooms/{roomId}/delete_status",
        to!(admin::rooms::delete_status_by_room),
    ),
    get(
        "/_synapse/admin/v2/rooms/delete_status/{deleteId}",
        to!(admin::rooms::delete_status),
    ),
    get(
        "/_synapse/admin/v1/rooms/{roomId}/members",
        to!(admin::rooms::members),
    ),
    get(
        "/_synapse/admin/v1/rooms/{roomId}/state",
        to!(admin::rooms::state),
    ),
    get(
        "/_synapse/admin/v1/registration_tokens",
        to!(admin::tokens::list),
    ),
    post(
        "/_synapse/admin/v1/registration_tokens/new",
        to!(admin::tokens::create),
    ),
    get(
        "/_synapse/admin/v1/registration_tokens/{token}",
        to!(admin::tokens::get),
    ),
    put(
        "/_synapse/admin/v1/registration_tokens/{token}",
        to!(admin::tokens::update),
    ),
    delete(
        "/_synapse/admin/v1/registration_tokens/{token}",
        to!(admin::tokens::delete),
    ),
    get(
        "/_synapse/admin/v1/users/{userId}/media",
        to!(admin::media::list_of_user),
    ),
    get(
        "/_synapse/admin/v1/media/{serverName}/{mediaId}",
        to!(admin::media::info),
    ),
    delete(
        "/_synapse/admin/v1/media/{serverName}/{mediaId}",
        to!(admin::media::delete),
    ),
    post(
        "/_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}",
        to!(|ctx| admin::media::quarantine(ctx, true).await),
    ),
    post(
        "/_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}",
        to!(|ctx| admin::media::quarantine(ctx, false).await),
    ),
    post(
        "/_synapse/admin/v1/media/protect/{mediaId}",
        to!(|ctx| admin::media::protect(ctx, true).await),
    ),
    post(
        "/_synapse/admin/v1/media/unprotect/{mediaId}",
        to!(|ctx| admin::media::protect(ctx, false).await),
    ),
];
