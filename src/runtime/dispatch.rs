//! Routes a request to its handler.

use worker::{Env, Request};

use super::request::Ctx;
use super::{config, Reply};
use crate::client::{
    account, account_data, capabilities, cross_signing, devices, directory, ephemeral, filters,
    key_backup, keys, profile, push, register, room_read, rooms, send, session, to_device,
};
use crate::federation::endpoints as fed;
use crate::http::route::{route, Endpoint, Routed};
use crate::http::{JsonResponse, MatrixError};
use crate::storage::Usage;
use crate::{client, federation, sync, wellknown};

/// The reply, and what the request cost in D1 when the deployment asks for it to be shown.
pub(crate) async fn dispatch(
    req: Request,
    env: &Env,
) -> (Result<Reply, MatrixError>, Option<Usage>) {
    let (endpoint, params) = match route(req.method().as_ref(), &req.path()) {
        Ok(Routed::Preflight) => return (Ok(Reply::Preflight), None),
        Ok(Routed::Endpoint { endpoint, params }) => (endpoint, params),
        Err(e) => return (Err(e), None),
    };
    let config = match config(env) {
        Ok(config) => config,
        Err(e) => return (Err(e), None),
    };
    let show_usage = config.expose_d1_usage;
    let ctx = match Ctx::new(req, env, config, endpoint, params).await {
        Ok(ctx) => ctx,
        Err(e) => return (Err(e), None),
    };
    let reply = handle(&ctx).await.map(Reply::Json);
    (reply, show_usage.then(|| ctx.usage.get()))
}

async fn handle(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    use Endpoint as E;
    let config = &ctx.config;
    let ok = |body| Ok(JsonResponse::ok(body));
    match ctx.endpoint {
        E::WellKnownServer => ok(wellknown::server(config)),
        E::WellKnownClient => ok(wellknown::client(config)),
        E::WellKnownSupport => wellknown::support(config)
            .map(JsonResponse::ok)
            .ok_or_else(|| MatrixError::not_found("No support contact is configured")),
        E::ClientVersions => ok(client::versions::versions()),
        E::FederationVersion => ok(federation::version::version()),
        E::ServerKeys => federation::keys::own_document(&ctx.env, &config.server_name)
            .await
            .map(JsonResponse::ok),
        E::KeyQueryServer => federation::keys::query_server(ctx).await,
        E::KeyQuery => federation::keys::query_servers(ctx).await,
        // Accounts
        E::Register => register::register(ctx).await,
        E::RegisterAvailable => register::available(ctx).await,
        E::RegistrationTokenValidity => register::token_validity(ctx).await,
        E::AdminRegisterNonce => register::admin_nonce(ctx).await,
        E::AdminRegister => register::admin_register(ctx).await,
        E::LoginFlows => Ok(session::login_flows()),
        E::Login => session::login(ctx).await,
        E::Refresh => session::refresh(ctx).await,
        E::Logout => session::logout(ctx).await,
        E::LogoutAll => session::logout_all(ctx).await,
        E::WhoAmI => session::whoami(ctx).await,
        E::ChangePassword => account::change_password(ctx).await,
        E::Deactivate => account::deactivate(ctx).await,
        E::Devices => devices::list(ctx).await,
        E::GetDevice => devices::get(ctx).await,
        E::UpdateDevice => devices::update(ctx).await,
        E::DeleteDevice => devices::delete_one(ctx).await,
        E::DeleteDevices => devices::delete_many(ctx).await,
        // Per-user settings
        E::Capabilities => capabilities::capabilities(ctx).await,
        E::GetProfile => profile::get_profile(ctx).await,
        E::GetProfileField => profile::get_field(ctx).await,
        E::GetPresence => crate::client::presence::get_status(ctx).await,
        E::SetPresence => crate::client::presence::set_status(ctx).await,
        E::SetProfileField => profile::set_field(ctx).await,
        E::PushRules | E::PushRulesScope => push::get_all(ctx).await,
        E::GetPushRule => push::get_rule(ctx).await,
        E::PutPushRule => push::put_rule(ctx).await,
        E::DeletePushRule => push::delete_rule(ctx).await,
        E::GetPushRuleAttribute => push::get_attribute(ctx).await,
        E::PutPushRuleAttribute => push::put_attribute(ctx).await,
        E::CreateFilter => filters::create(ctx).await,
        E::GetFilter => filters::get(ctx).await,
        E::GetAccountData => account_data::get(ctx, false).await,
        E::PutAccountData => account_data::put(ctx, false).await,
        E::GetRoomAccountData => account_data::get(ctx, true).await,
        E::PutRoomAccountData => account_data::put(ctx, true).await,
        E::GetTags => account_data::get_tags(ctx).await,
        E::PutTag => account_data::put_tag(ctx).await,
        E::DeleteTag => account_data::delete_tag(ctx).await,
        E::JoinedRooms => room_read::joined_rooms(ctx).await,
        // Rooms
        E::CreateRoom => rooms::create_room(ctx).await,
        E::JoinByIdOrAlias => rooms::join_by_id_or_alias(ctx).await,
        E::JoinRoom => rooms::join_room(ctx).await,
        E::Knock => rooms::knock(ctx).await,
        E::LeaveRoom => rooms::leave(ctx).await,
        E::ForgetRoom => rooms::forget(ctx).await,
        E::Invite => rooms::act_on_member(ctx, "invite").await,
        E::Kick | E::Unban => rooms::act_on_member(ctx, "leave").await,
        E::Ban => rooms::act_on_member(ctx, "ban").await,
        E::SendMessage => send::send_message(ctx).await,
        E::PutState => send::put_state(ctx, ctx.param(2)).await,
        E::PutStateEmptyKey => send::put_state(ctx, "").await,
        E::GetState => room_read::state(ctx).await,
        E::GetStateEvent => room_read::state_event(ctx, ctx.param(2)).await,
        E::GetStateEventEmptyKey => room_read::state_event(ctx, "").await,
        E::Members => room_read::members(ctx).await,
        E::JoinedMembers => room_read::joined_members(ctx).await,
        E::Messages => room_read::messages(ctx).await,
        E::Hierarchy => crate::client::hierarchy::hierarchy(ctx).await,
        E::Context => room_read::context(ctx).await,
        E::GetEvent => room_read::event(ctx).await,
        E::Redact => send::redact(ctx).await,
        E::Relations => room_read::relations(ctx, None, None).await,
        E::RelationsOfType => room_read::relations(ctx, Some(ctx.param(2)), None).await,
        E::RelationsOfTypeAndEventType => {
            room_read::relations(ctx, Some(ctx.param(2)), Some(ctx.param(3))).await
        }
        E::Typing => ephemeral::typing(ctx).await,
        E::Receipt => ephemeral::receipt(ctx).await,
        E::ReadMarkers => ephemeral::read_markers(ctx).await,
        E::PutAlias => directory::put_alias(ctx).await,
        E::GetAlias => directory::get_alias(ctx).await,
        E::DeleteAlias => directory::delete_alias(ctx).await,
        E::RoomAliases => directory::room_aliases(ctx).await,
        E::GetDirectoryVisibility => directory::get_visibility(ctx).await,
        E::SetDirectoryVisibility => directory::set_visibility(ctx).await,
        E::PublicRooms | E::PublicRoomsFiltered => directory::public_rooms(ctx).await,
        E::UserDirectorySearch => directory::search_users(ctx).await,
        E::Sync => sync::handler::sync(ctx).await,
        // Federation
        E::FederationMakeJoin => fed::make_membership(ctx, "join").await,
        E::FederationSendJoinV1 => fed::send_membership(ctx, true, "join").await,
        E::FederationSendJoinV2 => fed::send_membership(ctx, false, "join").await,
        E::FederationMakeLeave => fed::make_membership(ctx, "leave").await,
        E::FederationSendLeaveV1 => fed::send_membership(ctx, true, "leave").await,
        E::FederationSendLeaveV2 => fed::send_membership(ctx, false, "leave").await,
        E::FederationMakeKnock => fed::make_membership(ctx, "knock").await,
        E::FederationSendKnock => fed::send_membership(ctx, false, "knock").await,
        E::FederationHierarchy => fed::hierarchy(ctx).await,
        E::FederationSend => fed::send_transaction(ctx).await,
        E::FederationQueryProfile => fed::query_profile(ctx).await,
        E::FederationQueryDirectory => fed::query_directory(ctx).await,
        E::FederationEvent => fed::event(ctx).await,
        E::FederationState => fed::state(ctx, false).await,
        E::FederationStateIds => fed::state(ctx, true).await,
        E::FederationGetMissingEvents => fed::get_missing_events(ctx).await,
        E::FederationBackfill => fed::backfill(ctx).await,
        E::FederationEventAuth => fed::event_auth(ctx).await,
        E::FederationInvite => crate::federation::invites::invite(ctx).await,
        E::FederationInviteV1 => crate::federation::invites::invite_v1(ctx).await,
        E::FederationUserKeysQuery => federation::e2ee_in::user_keys_query(ctx).await,
        E::FederationUserKeysClaim => federation::e2ee_in::user_keys_claim(ctx).await,
        E::FederationUserDevices => federation::e2ee_in::user_devices(ctx).await,
        E::FederationTimestampToEvent => fed::timestamp_to_event(ctx).await,
        E::TimestampToEvent => room_read::timestamp_to_event(ctx).await,
        E::FederationPublicRooms => fed::public_rooms(ctx, false).await,
        E::FederationPublicRoomsFiltered => fed::public_rooms(ctx, true).await,
        // End-to-end encryption
        E::KeysUpload => keys::upload(ctx).await,
        E::KeysQuery => keys::query(ctx).await,
        E::KeysClaim => keys::claim(ctx).await,
        E::KeysChanges => keys::changes(ctx).await,
        E::DeviceSigningUpload => cross_signing::upload_device_signing(ctx).await,
        E::SignaturesUpload => cross_signing::upload_signatures(ctx).await,
        E::SendToDevice => to_device::send(ctx).await,
        E::CreateBackupVersion => key_backup::create_version(ctx).await,
        E::GetLatestBackupVersion => key_backup::get_version(ctx, None).await,
        E::GetBackupVersion => key_backup::get_version(ctx, Some(ctx.param(0))).await,
        E::UpdateBackupVersion => key_backup::update_version(ctx).await,
        E::DeleteBackupVersion => key_backup::delete_version(ctx).await,
        E::GetBackupKeys => key_backup::get_keys(ctx).await,
        E::PutBackupKeys => key_backup::put_keys(ctx).await,
        E::DeleteBackupKeys => key_backup::delete_keys(ctx).await,
    }
}
