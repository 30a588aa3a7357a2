//! Maps a method and a path to an endpoint. Pure, so the 404-versus-405 rules and the path
//! parameter decoding are unit-tested without a runtime.
//!
//! Patterns are written as the spec writes them, with `{name}` for a path parameter that matches
//! exactly one segment. Parameters arrive percent-decoded (room ids, event ids and aliases carry
//! `!`, `$`, `#` and `:` that clients encode).

use super::MatrixError;

/// Every endpoint the server answers. Adding one means adding a row to `ROUTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    WellKnownServer,
    WellKnownClient,
    WellKnownSupport,
    ClientVersions,
    FederationVersion,
    ServerKeys,
    KeyQueryServer,
    KeyQuery,
    // Accounts
    Register,
    RegisterAvailable,
    RegistrationTokenValidity,
    AdminRegisterNonce,
    AdminRegister,
    LoginFlows,
    Login,
    Refresh,
    Logout,
    LogoutAll,
    WhoAmI,
    ChangePassword,
    Deactivate,
    Devices,
    GetDevice,
    UpdateDevice,
    DeleteDevice,
    DeleteDevices,
    // Per-user settings
    Capabilities,
    GetProfile,
    GetProfileField,
    GetPresence,
    SetPresence,
    SetProfileField,
    PushRules,
    PushRulesScope,
    GetPushRule,
    PutPushRule,
    DeletePushRule,
    GetPushRuleAttribute,
    PutPushRuleAttribute,
    CreateFilter,
    GetFilter,
    GetAccountData,
    PutAccountData,
    GetRoomAccountData,
    PutRoomAccountData,
    GetTags,
    PutTag,
    DeleteTag,
    JoinedRooms,
    // Rooms
    CreateRoom,
    JoinByIdOrAlias,
    JoinRoom,
    Knock,
    LeaveRoom,
    ForgetRoom,
    Invite,
    Kick,
    Ban,
    Unban,
    SendMessage,
    PutState,
    PutStateEmptyKey,
    GetState,
    GetStateEvent,
    GetStateEventEmptyKey,
    Members,
    JoinedMembers,
    Messages,
    Hierarchy,
    Context,
    GetEvent,
    Redact,
    Relations,
    RelationsOfType,
    RelationsOfTypeAndEventType,
    Typing,
    Receipt,
    ReadMarkers,
    PutAlias,
    GetAlias,
    DeleteAlias,
    RoomAliases,
    GetDirectoryVisibility,
    SetDirectoryVisibility,
    PublicRooms,
    PublicRoomsFiltered,
    UserDirectorySearch,
    Sync,
    // Federation
    FederationMakeJoin,
    FederationSendJoinV1,
    FederationSendJoinV2,
    FederationMakeLeave,
    FederationSendLeaveV1,
    FederationSendLeaveV2,
    FederationMakeKnock,
    FederationSendKnock,
    FederationHierarchy,
    FederationSend,
    FederationQueryProfile,
    FederationQueryDirectory,
    FederationEvent,
    FederationState,
    FederationStateIds,
    FederationGetMissingEvents,
    FederationBackfill,
    FederationEventAuth,
    FederationInvite,
    FederationInviteV1,
    FederationUserKeysQuery,
    FederationUserKeysClaim,
    FederationUserDevices,
    FederationPublicRooms,
    FederationTimestampToEvent,
    TimestampToEvent,
    FederationPublicRoomsFiltered,
    // End-to-end encryption
    KeysUpload,
    KeysQuery,
    KeysClaim,
    KeysChanges,
    DeviceSigningUpload,
    SignaturesUpload,
    SendToDevice,
    CreateBackupVersion,
    GetLatestBackupVersion,
    GetBackupVersion,
    UpdateBackupVersion,
    DeleteBackupVersion,
    GetBackupKeys,
    PutBackupKeys,
    DeleteBackupKeys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

struct Route {
    method: Method,
    pattern: &'static str,
    endpoint: Endpoint,
}

const fn get(pattern: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method: Method::Get,
        pattern,
        endpoint,
    }
}

const fn put(pattern: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method: Method::Put,
        pattern,
        endpoint,
    }
}

const fn post(pattern: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method: Method::Post,
        pattern,
        endpoint,
    }
}

const fn delete(pattern: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method: Method::Delete,
        pattern,
        endpoint,
    }
}

use Endpoint as E;

/// Client paths are written with `v3`; `r0` requests are served by the same rows (see `route`).
const ROUTES: &[Route] = &[
    get("/.well-known/matrix/server", E::WellKnownServer),
    get("/.well-known/matrix/client", E::WellKnownClient),
    get("/.well-known/matrix/support", E::WellKnownSupport),
    get("/_matrix/client/versions", E::ClientVersions),
    get("/_matrix/federation/v1/version", E::FederationVersion),
    get("/_matrix/key/v2/server", E::ServerKeys),
    get("/_matrix/key/v2/query/{serverName}", E::KeyQueryServer),
    post("/_matrix/key/v2/query", E::KeyQuery),
    // Accounts
    post("/_matrix/client/v3/register", E::Register),
    get(
        "/_matrix/client/v3/register/available",
        E::RegisterAvailable,
    ),
    get(
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        E::RegistrationTokenValidity,
    ),
    get("/_synapse/admin/v1/register", E::AdminRegisterNonce),
    post("/_synapse/admin/v1/register", E::AdminRegister),
    get("/_matrix/client/v3/login", E::LoginFlows),
    post("/_matrix/client/v3/login", E::Login),
    post("/_matrix/client/v3/refresh", E::Refresh),
    post("/_matrix/client/v3/logout", E::Logout),
    post("/_matrix/client/v3/logout/all", E::LogoutAll),
    get("/_matrix/client/v3/account/whoami", E::WhoAmI),
    post("/_matrix/client/v3/account/password", E::ChangePassword),
    post("/_matrix/client/v3/account/deactivate", E::Deactivate),
    get("/_matrix/client/v3/devices", E::Devices),
    get("/_matrix/client/v3/devices/{deviceId}", E::GetDevice),
    put("/_matrix/client/v3/devices/{deviceId}", E::UpdateDevice),
    delete("/_matrix/client/v3/devices/{deviceId}", E::DeleteDevice),
    post("/_matrix/client/v3/delete_devices", E::DeleteDevices),
    // Per-user settings
    get("/_matrix/client/v3/capabilities", E::Capabilities),
    get("/_matrix/client/v3/profile/{userId}", E::GetProfile),
    get(
        "/_matrix/client/v3/presence/{userId}/status",
        E::GetPresence,
    ),
    put(
        "/_matrix/client/v3/presence/{userId}/status",
        E::SetPresence,
    ),
    get(
        "/_matrix/client/v3/profile/{userId}/{keyName}",
        E::GetProfileField,
    ),
    put(
        "/_matrix/client/v3/profile/{userId}/{keyName}",
        E::SetProfileField,
    ),
    get("/_matrix/client/v3/pushrules/", E::PushRules),
    get("/_matrix/client/v3/pushrules", E::PushRules),
    get("/_matrix/client/v3/pushrules/{scope}/", E::PushRulesScope),
    get("/_matrix/client/v3/pushrules/{scope}", E::PushRulesScope),
    get(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
        E::GetPushRule,
    ),
    put(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
        E::PutPushRule,
    ),
    delete(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
        E::DeletePushRule,
    ),
    get(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/{attribute}",
        E::GetPushRuleAttribute,
    ),
    put(
        "/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/{attribute}",
        E::PutPushRuleAttribute,
    ),
    post("/_matrix/client/v3/user/{userId}/filter", E::CreateFilter),
    get(
        "/_matrix/client/v3/user/{userId}/filter/{filterId}",
        E::GetFilter,
    ),
    get(
        "/_matrix/client/v3/user/{userId}/account_data/{type}",
        E::GetAccountData,
    ),
    put(
        "/_matrix/client/v3/user/{userId}/account_data/{type}",
        E::PutAccountData,
    ),
    get(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        E::GetRoomAccountData,
    ),
    put(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        E::PutRoomAccountData,
    ),
    get(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags",
        E::GetTags,
    ),
    put(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
        E::PutTag,
    ),
    delete(
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
        E::DeleteTag,
    ),
    get("/_matrix/client/v3/joined_rooms", E::JoinedRooms),
    // Rooms
    post("/_matrix/client/v3/createRoom", E::CreateRoom),
    post(
        "/_matrix/client/v3/join/{roomIdOrAlias}",
        E::JoinByIdOrAlias,
    ),
    post("/_matrix/client/v3/rooms/{roomId}/join", E::JoinRoom),
    post("/_matrix/client/v3/knock/{roomIdOrAlias}", E::Knock),
    post("/_matrix/client/v3/rooms/{roomId}/leave", E::LeaveRoom),
    post("/_matrix/client/v3/rooms/{roomId}/forget", E::ForgetRoom),
    post("/_matrix/client/v3/rooms/{roomId}/invite", E::Invite),
    post("/_matrix/client/v3/rooms/{roomId}/kick", E::Kick),
    post("/_matrix/client/v3/rooms/{roomId}/ban", E::Ban),
    post("/_matrix/client/v3/rooms/{roomId}/unban", E::Unban),
    put(
        "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
        E::SendMessage,
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
        E::PutState,
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
        E::PutStateEmptyKey,
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
        E::PutStateEmptyKey,
    ),
    get("/_matrix/client/v3/rooms/{roomId}/state", E::GetState),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
        E::GetStateEvent,
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
        E::GetStateEventEmptyKey,
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
        E::GetStateEventEmptyKey,
    ),
    get("/_matrix/client/v3/rooms/{roomId}/members", E::Members),
    get(
        "/_matrix/client/v3/rooms/{roomId}/joined_members",
        E::JoinedMembers,
    ),
    get("/_matrix/client/v3/rooms/{roomId}/messages", E::Messages),
    get("/_matrix/client/v1/rooms/{roomId}/hierarchy", E::Hierarchy),
    get(
        "/_matrix/client/v3/rooms/{roomId}/context/{eventId}",
        E::Context,
    ),
    get(
        "/_matrix/client/v3/rooms/{roomId}/event/{eventId}",
        E::GetEvent,
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}",
        E::Redact,
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}",
        E::Relations,
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}",
        E::RelationsOfType,
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
        E::RelationsOfTypeAndEventType,
    ),
    put(
        "/_matrix/client/v3/rooms/{roomId}/typing/{userId}",
        E::Typing,
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}",
        E::Receipt,
    ),
    post(
        "/_matrix/client/v3/rooms/{roomId}/read_markers",
        E::ReadMarkers,
    ),
    put("/_matrix/client/v3/directory/room/{roomAlias}", E::PutAlias),
    get("/_matrix/client/v3/directory/room/{roomAlias}", E::GetAlias),
    delete(
        "/_matrix/client/v3/directory/room/{roomAlias}",
        E::DeleteAlias,
    ),
    get("/_matrix/client/v3/rooms/{roomId}/aliases", E::RoomAliases),
    get(
        "/_matrix/client/v3/directory/list/room/{roomId}",
        E::GetDirectoryVisibility,
    ),
    put(
        "/_matrix/client/v3/directory/list/room/{roomId}",
        E::SetDirectoryVisibility,
    ),
    get("/_matrix/client/v3/publicRooms", E::PublicRooms),
    post("/_matrix/client/v3/publicRooms", E::PublicRoomsFiltered),
    post(
        "/_matrix/client/v3/user_directory/search",
        E::UserDirectorySearch,
    ),
    get("/_matrix/client/v3/sync", E::Sync),
    // Federation
    get(
        "/_matrix/federation/v1/make_join/{roomId}/{userId}",
        E::FederationMakeJoin,
    ),
    put(
        "/_matrix/federation/v1/send_join/{roomId}/{eventId}",
        E::FederationSendJoinV1,
    ),
    put(
        "/_matrix/federation/v2/send_join/{roomId}/{eventId}",
        E::FederationSendJoinV2,
    ),
    get(
        "/_matrix/federation/v1/make_leave/{roomId}/{userId}",
        E::FederationMakeLeave,
    ),
    put(
        "/_matrix/federation/v1/send_leave/{roomId}/{eventId}",
        E::FederationSendLeaveV1,
    ),
    put(
        "/_matrix/federation/v2/send_leave/{roomId}/{eventId}",
        E::FederationSendLeaveV2,
    ),
    get(
        "/_matrix/federation/v1/make_knock/{roomId}/{userId}",
        E::FederationMakeKnock,
    ),
    put(
        "/_matrix/federation/v1/send_knock/{roomId}/{eventId}",
        E::FederationSendKnock,
    ),
    get(
        "/_matrix/federation/v1/hierarchy/{roomId}",
        E::FederationHierarchy,
    ),
    put("/_matrix/federation/v1/send/{txnId}", E::FederationSend),
    get(
        "/_matrix/federation/v1/query/profile",
        E::FederationQueryProfile,
    ),
    get(
        "/_matrix/federation/v1/query/directory",
        E::FederationQueryDirectory,
    ),
    get("/_matrix/federation/v1/event/{eventId}", E::FederationEvent),
    get("/_matrix/federation/v1/state/{roomId}", E::FederationState),
    get(
        "/_matrix/federation/v1/state_ids/{roomId}",
        E::FederationStateIds,
    ),
    post(
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        E::FederationGetMissingEvents,
    ),
    get(
        "/_matrix/federation/v1/backfill/{roomId}",
        E::FederationBackfill,
    ),
    get(
        "/_matrix/federation/v1/event_auth/{roomId}/{eventId}",
        E::FederationEventAuth,
    ),
    put(
        "/_matrix/federation/v2/invite/{roomId}/{eventId}",
        E::FederationInvite,
    ),
    put(
        "/_matrix/federation/v1/invite/{roomId}/{eventId}",
        E::FederationInviteV1,
    ),
    post(
        "/_matrix/federation/v1/user/keys/query",
        E::FederationUserKeysQuery,
    ),
    post(
        "/_matrix/federation/v1/user/keys/claim",
        E::FederationUserKeysClaim,
    ),
    get(
        "/_matrix/federation/v1/user/devices/{userId}",
        E::FederationUserDevices,
    ),
    get(
        "/_matrix/federation/v1/publicRooms",
        E::FederationPublicRooms,
    ),
    post(
        "/_matrix/federation/v1/publicRooms",
        E::FederationPublicRoomsFiltered,
    ),
    get(
        "/_matrix/federation/v1/timestamp_to_event/{roomId}",
        E::FederationTimestampToEvent,
    ),
    get(
        "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event",
        E::TimestampToEvent,
    ),
    // End-to-end encryption
    post("/_matrix/client/v3/keys/upload", E::KeysUpload),
    post("/_matrix/client/v3/keys/query", E::KeysQuery),
    post("/_matrix/client/v3/keys/claim", E::KeysClaim),
    get("/_matrix/client/v3/keys/changes", E::KeysChanges),
    post(
        "/_matrix/client/v3/keys/device_signing/upload",
        E::DeviceSigningUpload,
    ),
    post(
        "/_matrix/client/v3/keys/signatures/upload",
        E::SignaturesUpload,
    ),
    put(
        "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}",
        E::SendToDevice,
    ),
    post(
        "/_matrix/client/v3/room_keys/version",
        E::CreateBackupVersion,
    ),
    get(
        "/_matrix/client/v3/room_keys/version",
        E::GetLatestBackupVersion,
    ),
    get(
        "/_matrix/client/v3/room_keys/version/{version}",
        E::GetBackupVersion,
    ),
    put(
        "/_matrix/client/v3/room_keys/version/{version}",
        E::UpdateBackupVersion,
    ),
    delete(
        "/_matrix/client/v3/room_keys/version/{version}",
        E::DeleteBackupVersion,
    ),
    get("/_matrix/client/v3/room_keys/keys", E::GetBackupKeys),
    put("/_matrix/client/v3/room_keys/keys", E::PutBackupKeys),
    delete("/_matrix/client/v3/room_keys/keys", E::DeleteBackupKeys),
    get(
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        E::GetBackupKeys,
    ),
    put(
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        E::PutBackupKeys,
    ),
    delete(
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        E::DeleteBackupKeys,
    ),
    get(
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        E::GetBackupKeys,
    ),
    put(
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        E::PutBackupKeys,
    ),
    delete(
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        E::DeleteBackupKeys,
    ),
];

/// What a request is, once routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// A CORS preflight: answered with the CORS headers and no body, whatever the path.
    Preflight,
    Endpoint {
        endpoint: Endpoint,
        params: Vec<String>,
    },
}

/// Routes `method` (as sent, any case) and `path` (the URL path, still percent-encoded).
pub fn route(method: &str, path: &str) -> Result<Routed, MatrixError> {
    let method = match method.to_ascii_uppercase().as_str() {
        "OPTIONS" => return Ok(Routed::Preflight),
        // HEAD is GET without a body; the runtime drops the body.
        "GET" | "HEAD" => Some(Method::Get),
        "PUT" => Some(Method::Put),
        "POST" => Some(Method::Post),
        "DELETE" => Some(Method::Delete),
        _ => None,
    };
    // Older clients still call the r0 paths; they are the v3 endpoints under another name.
    let aliased;
    let path = match path.strip_prefix("/_matrix/client/r0/") {
        Some(rest) => {
            aliased = format!("/_matrix/client/v3/{rest}");
            aliased.as_str()
        }
        None => path,
    };
    let mut path_known = false;
    for route in ROUTES {
        let Some(params) = match_pattern(route.pattern, path) else {
            continue;
        };
        path_known = true;
        if Some(route.method) == method {
            return Ok(Routed::Endpoint {
                endpoint: route.endpoint,
                params,
            });
        }
    }
    Err(if path_known {
        MatrixError::method_not_allowed()
    } else {
        MatrixError::unrecognized_path()
    })
}

/// Matches one pattern; returns the decoded parameters in order.
fn match_pattern(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
                let decoded = percent_decode(s)?;
                if decoded.is_empty() {
                    return None;
                }
                params.push(decoded);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Encodes everything but RFC 3986's unreserved characters, for ids in paths and query values
/// of requests we send.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ErrorCode;

    #[test]
    fn known_paths_route_to_their_endpoint() {
        assert_eq!(
            route("GET", "/_matrix/key/v2/server").unwrap(),
            Routed::Endpoint {
                endpoint: Endpoint::ServerKeys,
                params: vec![]
            }
        );
        assert_eq!(
            route("head", "/.well-known/matrix/client").unwrap(),
            Routed::Endpoint {
                endpoint: Endpoint::WellKnownClient,
                params: vec![]
            }
        );
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405() {
        let unknown = route("GET", "/_matrix/client/v3/nothing").unwrap_err();
        assert_eq!(
            (unknown.status, unknown.code),
            (404, ErrorCode::Unrecognized)
        );
        let wrong = route("POST", "/_matrix/client/versions").unwrap_err();
        assert_eq!((wrong.status, wrong.code), (405, ErrorCode::Unrecognized));
        let odd = route("BREW", "/_matrix/client/versions").unwrap_err();
        assert_eq!(odd.status, 405);
        assert_eq!(
            route("GET", "/_matrix/client/versions/")
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn r0_paths_are_the_v3_endpoints() {
        assert_eq!(
            route("POST", "/_matrix/client/r0/login").unwrap(),
            route("POST", "/_matrix/client/v3/login").unwrap()
        );
    }

    #[test]
    fn an_empty_state_key_matches_with_and_without_the_trailing_slash() {
        for path in [
            "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.name/",
            "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.name",
        ] {
            let Routed::Endpoint { endpoint, params } = route("GET", path).unwrap() else {
                panic!("not an endpoint")
            };
            assert_eq!(endpoint, Endpoint::GetStateEventEmptyKey);
            assert_eq!(params, vec!["!r:x", "m.room.name"]);
        }
    }

    #[test]
    fn preflight_is_answered_for_any_path() {
        assert_eq!(
            route("OPTIONS", "/_matrix/client/v3/anything").unwrap(),
            Routed::Preflight
        );
    }

    #[test]
    fn encoding_round_trips_through_decoding() {
        let id = "!r:example.org/$x y";
        assert_eq!(percent_encode(id), "%21r%3Aexample.org%2F%24x%20y");
        assert_eq!(percent_decode(&percent_encode(id)).unwrap(), id);
    }

    #[test]
    fn parameters_are_percent_decoded() {
        assert_eq!(
            match_pattern("/rooms/{roomId}/x", "/rooms/%21abc%3Aexample.org/x").unwrap(),
            vec!["!abc:example.org"]
        );
        assert!(match_pattern("/rooms/{roomId}/x", "/rooms//x").is_none());
        assert!(match_pattern("/rooms/{roomId}", "/rooms/%zz").is_none());
        assert!(match_pattern("/rooms/{roomId}", "/rooms/%ff").is_none());
    }
}
