//! The rooms of a space this server does not hold, for the client `/hierarchy` (spec: "Spaces",
//! server behaviour): asked of the servers the child link's `via` names with the server-server
//! `GET /hierarchy/{roomId}`, then of the server a pre-v12 room id names. One answer describes
//! a space and summarises its children, so a child that is not a space needs no request of its
//! own. A page sends a bounded number of
//! requests, at once; a room the budget does not reach waits for the next page.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use ruma::ServerName;
use serde_json::Value;

use crate::api::request::Ctx;
use crate::federation::outgoing::{request_raw, Limits};
use crate::http::route::percent_encode;
use crate::http::MatrixError;
use crate::platform::Method;
use crate::rooms::hierarchy::{RemoteSpace, Room, Walk};
use crate::storage::{hierarchy as stored, Db};

/// Rooms one page asks other servers about at most, servers asked per room at most, and how
/// long each request may take: a page sends at most 18 federation requests (docs/security.md).
const REQUEST_BUDGET: usize = 6;
const SERVERS_PER_ROOM: usize = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

/// What other servers told this request so far.
pub(crate) struct RemoteRooms {
    suggested_only: bool,
    budget: usize,
    /// Summaries of children that came with their space's answer, by room id.
    summaries: HashMap<String, Value>,
    /// Children their space's server said we may not see.
    inaccessible: HashSet<String>,
}

/// How one missing room will be known.
enum Plan {
    /// Not at all: nobody to ask, or hidden from us.
    Unknown,
    /// From the summary its space's answer carried.
    Summary(Value),
    /// From an answer of one of these servers.
    Ask(Vec<String>),
}

impl RemoteRooms {
    pub(crate) fn new(suggested_only: bool) -> Self {
        Self {
            suggested_only,
            budget: REQUEST_BUDGET,
            summaries: HashMap::new(),
            inaccessible: HashSet::new(),
        }
    }

    /// The rooms of `missing` (none held here), as `user` may see them: `None` for those
    /// nobody could describe. A room left out of the answer could not be asked about within
    /// this page's budget.
    pub(crate) async fn load(
        &mut self,
        ctx: &Ctx,
        walk: &Walk,
        missing: &[String],
        user: &str,
    ) -> Result<HashMap<String, Option<Room>>, MatrixError> {
        let ours = ctx.config.server_name.as_str();
        let mut out: HashMap<String, Option<Room>> = HashMap::new();
        let mut found: Vec<(String, Value, Vec<Value>)> = Vec::new();
        let (mut asked, mut asks) = (Vec::new(), Vec::new());
        for room_id in missing {
            match self.plan(walk, room_id, ours) {
                Plan::Unknown => {
                    out.insert(room_id.clone(), None);
                }
                Plan::Summary(summary) => found.push((room_id.clone(), summary, Vec::new())),
                Plan::Ask(_) if self.budget == 0 => {}
                Plan::Ask(servers) => {
                    self.budget -= 1;
                    asked.push(room_id.clone());
                    asks.push(ask(ctx, room_id, servers, self.suggested_only));
                }
            }
        }
        for (room_id, answer) in asked.into_iter().zip(join_all(asks).await) {
            match answer {
                Some(space) => {
                    self.inaccessible.extend(space.inaccessible);
                    for child in space.children {
                        if let Some(id) = child["room_id"].as_str() {
                            self.summaries.insert(id.to_owned(), child);
                        }
                    }
                    found.push((room_id, space.summary, space.child_events));
                }
                None => {
                    out.insert(room_id, None);
                }
            }
        }
        let present = members_of(&ctx.db(), &found, user).await?;
        for (room_id, summary, child_events) in found {
            let member = present.contains(&room_id)
                || allowed(&summary).iter().any(|a| present.contains(*a));
            out.insert(room_id, Some(Room::new(summary, &child_events, member)));
        }
        Ok(out)
    }

    fn plan(&self, walk: &Walk, room_id: &str, ours: &str) -> Plan {
        if self.inaccessible.contains(room_id) {
            return Plan::Unknown;
        }
        if let Some(summary) = self.summaries.get(room_id) {
            // A space the walk goes into needs its own child links: those are asked for.
            let descends = walk.depth(room_id).is_some_and(|d| walk.descends_from(d));
            if summary["room_type"] != "m.space" || !descends {
                return Plan::Summary(summary.clone());
            }
        }
        let mut servers: Vec<String> = walk.via(room_id).to_vec();
        // A pre-v12 room id names the server that created the room, often still in it: the
        // last one to ask when the link's own servers cannot answer.
        if let Some(creator) = ruma::RoomId::parse(room_id)
            .ok()
            .and_then(|id| id.server_name().map(|s| s.to_string()))
        {
            if !servers.contains(&creator) {
                servers.push(creator);
            }
        }
        servers.retain(|s| s != ours);
        servers.truncate(SERVERS_PER_ROOM);
        if servers.is_empty() {
            Plan::Unknown
        } else {
            Plan::Ask(servers)
        }
    }
}

fn allowed(summary: &Value) -> Vec<&str> {
    summary["allowed_room_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Which of the rooms, or of the rooms their restricted join rules allow, `user` is in (or
/// invited to): one query.
async fn members_of(
    db: &Db,
    found: &[(String, Value, Vec<Value>)],
    user: &str,
) -> Result<HashSet<String>, MatrixError> {
    if found.is_empty() {
        return Ok(HashSet::new());
    }
    let mut asked: Vec<&str> = Vec::new();
    for (room_id, summary, _) in found {
        asked.push(room_id);
        asked.extend(allowed(summary));
    }
    stored::rooms_with_presence(db, &asked, user, "").await
}

/// The first good answer about the room from the servers, in order (`None` if none gave one).
async fn ask(
    ctx: &Ctx,
    room_id: &str,
    servers: Vec<String>,
    suggested_only: bool,
) -> Option<RemoteSpace> {
    let path = format!(
        "/_matrix/federation/v1/hierarchy/{}?suggested_only={suggested_only}",
        percent_encode(room_id)
    );
    let limits = Limits {
        timeout: REQUEST_TIMEOUT,
        max_body: Some(1 << 20),
    };
    for server in servers {
        let Ok(server) = ServerName::parse(&server) else {
            continue;
        };
        match request_raw(
            &ctx.platform,
            &server,
            Method::Get,
            &path,
            None,
            true,
            limits,
        )
        .await
        {
            Ok(response) if response.status == 200 => {
                let answer = serde_json::from_str(&response.text()).unwrap_or(Value::Null);
                match RemoteSpace::parse(room_id, &answer) {
                    Some(space) => return Some(space),
                    None => crate::log_warn!("{server}: a bad hierarchy answer for {room_id}"),
                }
            }
            Ok(response) => {
                crate::log_info!("{server}: hierarchy of {room_id}: {}", response.status)
            }
            Err(e) => crate::log_info!("{server}: hierarchy of {room_id}: {e}"),
        }
    }
    None
}
