//! The first read of every `/sync` and sliding sync, and of every look after a wake-up: who the
//! access token belongs to, where every stream is, when the next typing notification runs out,
//! the device's key counts, the stored filter, and (when something moved) the memberships, in
//! one D1 statement (`storage::sync::sync_start`), so one round trip.
//!
//! Authentication rides in that statement: the token's row is read by this request, in the same
//! snapshot as the positions, and checked by `Ctx::requester_from` like any other request's. No
//! token is remembered between requests, so nothing can serve a revoked token: a logout, a
//! deleted device, a deactivation, a password change or an OAuth revocation is seen by the very
//! next sync (docs/security.md, "Access tokens").

use std::collections::BTreeMap;

use crate::accounts::tokens::token_hash;
use crate::api::request::{Ctx, Requester};
use crate::http::MatrixError;
use crate::presence::Presence;
use crate::storage::sync::{
    self as stored, FirstRound, Fold, Inbox, MembershipRow, Memberships, RoomList, StartQuery,
};
use crate::storage::sync_fold::Prefetched;
use crate::storage::{e2ee, user_data, Db};
use crate::sync::token::StreamPosition;
use crate::time::now_ms;

/// The device's one-time key counts by algorithm, and its unused fallback key algorithms.
pub(crate) type KeyCounts = (BTreeMap<String, u64>, Vec<String>);

/// What the first read found.
pub(crate) struct Start {
    pub me: Requester,
    /// When the next typing notification in the user's rooms runs out.
    pub typing_ends: Option<u64>,
    pub now: StreamPosition,
    /// The device's one-time key counts and unused fallback key algorithms.
    pub key_counts: KeyCounts,
    /// The stored filter's JSON text, when `filter_id` was asked for and is the user's.
    pub filter: Option<String>,
    /// The user's memberships, when some stream moved (else `None`: read them if needed).
    pub memberships: Option<Vec<MembershipRow>>,
    /// With the memberships: the rooms that changed, account data and presence since `since`.
    pub first_round: Option<FirstRound>,
    /// The user's own presence as stored (`None`: not read here).
    pub own_presence: Option<Option<Presence>>,
    /// What the device's to-device inbox holds (`None`: not read here).
    pub inbox: Option<Inbox>,
    /// The sliding sync connection state asked for: `Some(None)` when this device has no such
    /// `pos` (unknown or no longer kept), `None` when not read here.
    pub connection: Option<Option<String>>,
    /// The sliding sync's room list, in the same snapshot as `now`, when asked for with the
    /// connection (`None`: not read here).
    pub room_list: Option<RoomList>,
    /// The rooms' first round of an incremental `/sync`, when asked for (`start_folding`) and
    /// some stream moved.
    pub prefetched: Option<Prefetched>,
    /// An incremental sliding sync answer's rooms with new events, when read with the room list.
    pub sliding_fold: Option<crate::storage::sliding_sync::Fold>,
}

/// The first read; `memberships` says when to read them, `connection` (a sliding sync's `pos`
/// row and `conn_id`, and the room list columns when it wants its room list) which connection
/// state to read. An application service's token has no
/// row in `access_tokens`: it takes the usual way (`Ctx::requester`, then the reads one by
/// one).
pub(crate) async fn start(
    ctx: &Ctx,
    db: &Db,
    since: Option<StreamPosition>,
    memberships: Memberships,
    filter_id: Option<i64>,
    connection: Option<(
        u64,
        &str,
        Option<crate::storage::sliding_sync::ListRead<'_>>,
    )>,
) -> Result<Start, MatrixError> {
    let query = StartQuery {
        connection,
        ..plain_query(since, memberships, filter_id)
    };
    start_with(ctx, db, query).await
}

/// The first read's query without a connection or a fold (the token hash is set later).
fn plain_query<'a>(
    since: Option<StreamPosition>,
    memberships: Memberships,
    filter_id: Option<i64>,
) -> StartQuery<'a> {
    StartQuery {
        token_hash: "",
        since,
        memberships,
        filter_id,
        connection: None,
        fold: None,
    }
}

/// `start` for an incremental `/sync`, which also reads its rooms' first round when some
/// stream moved (`storage::sync_fold`), with the timeline limit `fold` says.
pub(crate) async fn start_folding(
    ctx: &Ctx,
    db: &Db,
    since: Option<StreamPosition>,
    memberships: Memberships,
    filter_id: Option<i64>,
    fold: Fold,
) -> Result<Start, MatrixError> {
    let query = StartQuery {
        fold: (since.is_some() && !folding_off()).then_some(fold),
        ..plain_query(since, memberships, filter_id)
    };
    start_with(ctx, db, query).await
}

// Tests compare a folded sync with the same sync read the separate way.
#[cfg(test)]
thread_local! {
    pub(crate) static NO_FOLD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn folding_off() -> bool {
    #[cfg(test)]
    return NO_FOLD.with(|off| off.get());
    #[cfg(not(test))]
    false
}

/// The first read for `query` (its token hash is the request's).
async fn start_with(ctx: &Ctx, db: &Db, query: StartQuery<'_>) -> Result<Start, MatrixError> {
    let (since, filter_id, connection) = (query.since, query.filter_id, query.connection);
    let token = ctx.bearer()?;
    let hash = token_hash(token);
    let query = StartQuery {
        token_hash: &hash,
        ..query
    };
    let mut expired = false;
    loop {
        let Some(row) = stored::sync_start(db, &query).await? else {
            return start_slowly(ctx, db, token, since, filter_id).await;
        };
        let now = row.position(since);
        let key_counts = row.key_counts();
        let memberships = row.memberships()?;
        let first_round = row.first_round()?;
        let own_presence = Some(row.own_presence()?);
        let typing_ends = row.typing_next.map(|t| t as u64);
        let filter = row.filter.clone();
        let inbox = Some(row.inbox());
        let connection = connection.map(|_| row.connection.clone());
        let room_list = row.room_list()?;
        let prefetched = row.prefetched()?;
        let sliding_fold = match folding_off() {
            true => None,
            false => row.sliding_fold()?,
        };
        let me = ctx.requester_from(token, Some(row.owner)).await?;
        // A typing notification that ran out is ended (which moves the typing stream) and
        // everything read again, once: nobody else ends it (`user_data::expire_typing`).
        if !expired && typing_ends.is_some_and(|t| t <= now_ms()) {
            user_data::expire_typing(db, now_ms()).await?;
            expired = true;
            continue;
        }
        return Ok(Start {
            me,
            typing_ends,
            now,
            key_counts,
            filter,
            memberships,
            first_round,
            own_presence,
            inbox,
            connection,
            room_list,
            prefetched,
            sliding_fold,
        });
    }
}

/// The same reads one after the other, for a token `sync_start` does not know.
async fn start_slowly(
    ctx: &Ctx,
    db: &Db,
    token: &str,
    since: Option<StreamPosition>,
    filter_id: Option<i64>,
) -> Result<Start, MatrixError> {
    let me = ctx.requester_from(token, None).await?;
    let user = me.user_id.as_str();
    let (typing_ends, now) = super::handler::typing_and_position(db, &me, since).await?;
    let key_counts = e2ee::key_counts(db, user, &me.device_id).await?;
    let filter = match filter_id {
        Some(id) => user_data::filter(db, user, id)
            .await?
            .map(|f| f.to_string()),
        None => None,
    };
    Ok(Start {
        me,
        typing_ends,
        now,
        key_counts,
        filter,
        memberships: None,
        first_round: None,
        own_presence: None,
        inbox: None,
        connection: None,
        room_list: None,
        prefetched: None,
        sliding_fold: None,
    })
}
