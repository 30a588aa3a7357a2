//! Parsing ids from paths and bodies into ruma's types, with the spec's errors.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};

use crate::http::MatrixError;

pub(crate) fn room_id(raw: &str) -> Result<OwnedRoomId, MatrixError> {
    RoomId::parse(raw).map_err(|_| MatrixError::invalid_param(format!("{raw} is not a room id")))
}

pub(crate) fn user_id(raw: &str) -> Result<OwnedUserId, MatrixError> {
    UserId::parse(raw).map_err(|_| MatrixError::invalid_param(format!("{raw} is not a user id")))
}

pub(crate) fn alias(raw: &str) -> Result<OwnedRoomAliasId, MatrixError> {
    RoomAliasId::parse(raw)
        .map_err(|_| MatrixError::invalid_param(format!("{raw} is not a room alias")))
}
