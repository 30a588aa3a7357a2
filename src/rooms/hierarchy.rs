//! Space hierarchies (spec: client-server "Spaces", `GET /hierarchy`; server-server
//! `GET /hierarchy`): the rooms a space links with `m.space.child` state, walked depth first
//! in the spec's order, as pages the caller fills batch by batch. Pure: the handlers load room
//! summaries and child events for the rooms `Walk::needed` names (from D1, or for rooms this
//! server does not hold from the servers a child link names, `RemoteSpace`), then let the walk
//! go on.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// An `order` longer than this, or with characters outside printable ASCII, is ignored.
const MAX_ORDER_LEN: usize = 50;
/// Servers of a child's `via` list asked about it at most (the rest are rarely better).
pub const MAX_VIA: usize = 3;
/// What one other server's answer may bring at most: child links of its space, child summaries.
const MAX_REMOTE_CHILDREN: usize = 100;

/// One valid `m.space.child` link of a space.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub room_id: String,
    pub suggested: bool,
    /// The first servers of the link's `via`: where to ask about a room this server lacks.
    pub via: Vec<String>,
    order: Option<String>,
    origin_server_ts: u64,
    /// The event as stripped state with its `origin_server_ts` (`children_state`).
    pub stripped: Value,
}

/// The valid children among a space's `m.space.child` events (full PDUs), in the spec's
/// order: by `order` (those with one first), then by the event's `origin_server_ts`, then by
/// room id. A child event without a non-empty `via` list has been removed.
pub fn children_of(events: &[Value]) -> Vec<Child> {
    let mut children: Vec<Child> = events
        .iter()
        .filter(|e| e["type"] == "m.space.child")
        .filter(|e| {
            e["content"]["via"]
                .as_array()
                .is_some_and(|v| !v.is_empty())
        })
        .filter_map(|e| {
            let room_id = e["state_key"].as_str().filter(|k| k.starts_with('!'))?;
            let order = e["content"]["order"]
                .as_str()
                .filter(|o| {
                    o.len() <= MAX_ORDER_LEN && o.bytes().all(|b| (0x20..=0x7e).contains(&b))
                })
                .map(str::to_owned);
            let origin_server_ts = e["origin_server_ts"].as_u64().unwrap_or(0);
            let via = e["content"]["via"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|s| ruma::ServerName::parse(s).is_ok())
                .take(MAX_VIA)
                .map(str::to_owned)
                .collect();
            Some(Child {
                room_id: room_id.to_owned(),
                suggested: e["content"]["suggested"].as_bool().unwrap_or(false),
                via,
                order,
                origin_server_ts,
                stripped: json!({
                    "type": "m.space.child",
                    "state_key": room_id,
                    "content": e["content"],
                    "sender": e["sender"],
                    "origin_server_ts": origin_server_ts,
                }),
            })
        })
        .collect();
    children.sort_by(|a, b| {
        let by_order = match (&a.order, &b.order) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_order
            .then(a.origin_server_ts.cmp(&b.origin_server_ts))
            .then(a.room_id.cmp(&b.room_id))
    });
    children
}

/// What the walk needs to know of a room this server holds.
#[derive(Clone, Debug)]
pub struct Room {
    /// The summary fields (`room_id`, `num_joined_members`, `join_rule`, `world_readable`, ...).
    pub summary: Value,
    /// Its valid children, in order; empty unless the room is a space.
    pub children: Vec<Child>,
    /// Whether the requester (a user, or a server for federation) is in the room or invited,
    /// or in a room whose members the room's restricted join rule lets in.
    pub member: bool,
}

impl Room {
    pub fn new(summary: Value, child_events: &[Value], member: bool) -> Self {
        let is_space = summary["room_type"] == "m.space";
        Self {
            children: if is_space {
                children_of(child_events)
            } else {
                Vec::new()
            },
            summary,
            member,
        }
    }

    /// Whether the requester may see the room: a member, or a room anyone may read, join or
    /// knock on. (A restricted room is open to members of the rooms it allows: `member`.)
    pub fn accessible(&self) -> bool {
        self.member
            || self.summary["world_readable"] == true
            || matches!(
                self.summary["join_rule"].as_str(),
                Some("public" | "knock" | "knock_restricted")
            )
    }

    /// The children the request follows: all, or only the suggested ones.
    pub fn followed(&self, suggested_only: bool) -> impl Iterator<Item = &Child> {
        self.children
            .iter()
            .filter(move |c| !suggested_only || c.suggested)
    }

    /// The room as a hierarchy lists it: its summary and `children_state`.
    pub fn entry(&self, suggested_only: bool) -> Value {
        let mut entry = self.summary.clone();
        entry["children_state"] = Value::Array(
            self.followed(suggested_only)
                .map(|c| c.stripped.clone())
                .collect(),
        );
        entry
    }
}

/// A depth-first walk of a space, resumable from a `next_batch` token: the rooms still to
/// visit (top of the stack last) and the rooms already listed (each is listed once, so loops
/// end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Walk {
    #[serde(rename = "s")]
    stack: Vec<(String, u64)>,
    #[serde(rename = "v")]
    seen: BTreeSet<String>,
    #[serde(rename = "o")]
    pub suggested_only: bool,
    #[serde(rename = "d")]
    pub max_depth: Option<u64>,
    /// The `via` servers of the links to rooms still to visit, for those this server lacks.
    #[serde(rename = "w", default, skip_serializing_if = "BTreeMap::is_empty")]
    via: BTreeMap<String, Vec<String>>,
}

/// Why a walk stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// These rooms must be loaded (`None` for those this server does not hold) before it goes on.
    Need(Vec<String>),
    /// The page is full, or the visit budget is spent: the walk continues in the next page.
    Paused,
    /// Every reachable room has been listed.
    Done,
}

impl Walk {
    pub fn new(root: &str, suggested_only: bool, max_depth: Option<u64>) -> Self {
        Self {
            stack: vec![(root.to_owned(), 0)],
            seen: BTreeSet::new(),
            suggested_only,
            max_depth,
            via: BTreeMap::new(),
        }
    }

    /// The servers the link to a room still to visit names (empty for the root).
    pub fn via(&self, room_id: &str) -> &[String] {
        self.via.get(room_id).map(Vec::as_slice).unwrap_or_default()
    }

    /// How deep in the space a room still to visit is.
    pub fn depth(&self, room_id: &str) -> Option<u64> {
        self.stack
            .iter()
            .rev()
            .find(|(id, _)| id == room_id)
            .map(|(_, depth)| *depth)
    }

    /// Whether the walk descends into the children of a room at `depth`.
    pub fn descends_from(&self, depth: u64) -> bool {
        self.max_depth.is_none_or(|max| depth < max)
    }

    /// Goes on from where it stands, appending what the requester may see to `page` until
    /// `page` holds `limit` rooms, `budget` rooms have been visited, or a room on top of the
    /// stack has not been loaded yet (then up to `batch` of the next rooms to visit are
    /// named, so that one read loads them all).
    pub fn advance(
        &mut self,
        loaded: &HashMap<String, Option<Room>>,
        page: &mut Vec<Value>,
        limit: usize,
        budget: &mut usize,
        batch: usize,
    ) -> Step {
        loop {
            let Some((room_id, depth)) = self.stack.last().cloned() else {
                return Step::Done;
            };
            if self.seen.contains(&room_id) {
                self.stack.pop();
                continue;
            }
            if page.len() >= limit || *budget == 0 {
                return Step::Paused;
            }
            let Some(known) = loaded.get(&room_id) else {
                let need: Vec<String> = self
                    .stack
                    .iter()
                    .rev()
                    .map(|(id, _)| id)
                    .filter(|id| !loaded.contains_key(*id) && !self.seen.contains(*id))
                    .take(batch.max(1))
                    .cloned()
                    .collect();
                return Step::Need(need);
            };
            self.stack.pop();
            self.via.remove(&room_id);
            self.seen.insert(room_id);
            *budget -= 1;
            let Some(room) = known.as_ref().filter(|r| r.accessible()) else {
                continue;
            };
            page.push(room.entry(self.suggested_only));
            if self.descends_from(depth) {
                let children: Vec<&Child> = room.followed(self.suggested_only).collect();
                // The first child ends on top of the stack: visited next.
                for child in children.into_iter().rev() {
                    if !self.seen.contains(&child.room_id) {
                        self.stack.push((child.room_id.clone(), depth + 1));
                        if !child.via.is_empty() {
                            self.via
                                .entry(child.room_id.clone())
                                .or_insert_with(|| child.via.clone());
                        }
                    }
                }
            }
        }
    }

    /// Whether anything is left to visit.
    pub fn finished(&self) -> bool {
        self.stack.iter().all(|(id, _)| self.seen.contains(id))
    }
}

/// The server-server answer for a space: the room, its children the requesting server may
/// see (summaries without their own children), and the ids of those it may not. Children this
/// server does not hold are left out.
pub fn federation_answer(
    root: &Room,
    children: &HashMap<String, Option<Room>>,
    suggested_only: bool,
) -> Value {
    let mut visible = Vec::new();
    let mut inaccessible = Vec::new();
    for child in root.followed(suggested_only) {
        match children.get(&child.room_id) {
            Some(Some(room)) if room.accessible() => visible.push(room.summary.clone()),
            Some(Some(_)) => inaccessible.push(child.room_id.clone()),
            _ => {}
        }
    }
    json!({
        "room": root.entry(suggested_only),
        "children": visible,
        "inaccessible_children": inaccessible,
    })
}

/// A room summary from another server, keeping only the fields of the spec's summary with the
/// types it gives them (`None` without a room id). What a client is shown of a room this
/// server does not hold comes from here, so nothing else of a stranger's answer passes.
pub fn remote_summary(value: &Value) -> Option<Value> {
    let room_id = value["room_id"]
        .as_str()
        .filter(|id| ruma::RoomId::parse(*id).is_ok())?;
    let mut out = json!({
        "room_id": room_id,
        "num_joined_members": value["num_joined_members"].as_u64().unwrap_or(0),
        "world_readable": value["world_readable"].as_bool().unwrap_or(false),
        "guest_can_join": value["guest_can_join"].as_bool().unwrap_or(false),
        "join_rule": value["join_rule"].as_str().unwrap_or("public"),
    });
    for field in [
        "name",
        "topic",
        "canonical_alias",
        "avatar_url",
        "room_type",
        "room_version",
        "encryption",
    ] {
        if let Some(text) = value[field].as_str() {
            out[field] = json!(text);
        }
    }
    if let Some(allowed) = value["allowed_room_ids"].as_array() {
        let ids: Vec<&str> = allowed
            .iter()
            .filter_map(Value::as_str)
            .filter(|id| ruma::RoomId::parse(*id).is_ok())
            .take(MAX_REMOTE_CHILDREN)
            .collect();
        out["allowed_room_ids"] = json!(ids);
    }
    Some(out)
}

/// Another server's answer about a room of a space (server-server `GET /hierarchy`), checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSpace {
    /// The room itself.
    pub summary: Value,
    /// Its child links (`children_state`: stripped `m.space.child` events).
    pub child_events: Vec<Value>,
    /// Summaries of those children the answering server holds and lets us see.
    pub children: Vec<Value>,
    /// Those children it says we may not see.
    pub inaccessible: Vec<String>,
}

impl RemoteSpace {
    /// The answer about `room_id`, or `None` if it is about another room or has no room.
    /// Summaries of rooms the space does not link to are dropped.
    pub fn parse(room_id: &str, answer: &Value) -> Option<Self> {
        let room = &answer["room"];
        let summary = remote_summary(room).filter(|s| s["room_id"] == room_id)?;
        let child_events: Vec<Value> = room["children_state"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.space.child" && e["content"].is_object())
            .take(MAX_REMOTE_CHILDREN)
            .cloned()
            .collect();
        let linked: BTreeSet<String> = children_of(&child_events)
            .into_iter()
            .map(|c| c.room_id)
            .collect();
        let children = answer["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(remote_summary)
            .filter(|c| c["room_id"].as_str().is_some_and(|id| linked.contains(id)))
            .take(MAX_REMOTE_CHILDREN)
            .collect();
        let inaccessible = answer["inaccessible_children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|id| linked.contains(*id))
            .map(str::to_owned)
            .collect();
        Some(Self {
            summary,
            child_events,
            children,
            inaccessible,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(room: &str, content: Value, ts: u64) -> Value {
        json!({ "type": "m.space.child", "state_key": room, "sender": "@a:x", "content": content,
                "origin_server_ts": ts })
    }

    fn space(id: &str, children: &[(&str, bool)], join_rule: &str) -> Room {
        let events: Vec<Value> = children
            .iter()
            .enumerate()
            .map(|(i, (c, suggested))| {
                child(c, json!({ "via": ["x"], "suggested": suggested }), i as u64)
            })
            .collect();
        Room::new(
            json!({ "room_id": id, "room_type": "m.space", "join_rule": join_rule,
                    "world_readable": false }),
            &events,
            false,
        )
    }

    fn room(id: &str, join_rule: &str) -> Room {
        Room::new(
            json!({ "room_id": id, "join_rule": join_rule, "world_readable": false }),
            &[],
            false,
        )
    }

    fn ids(page: &[Value]) -> Vec<&str> {
        page.iter()
            .map(|r| r["room_id"].as_str().unwrap())
            .collect()
    }

    /// Runs a walk to the end of one page, loading from `rooms`; returns the page and the
    /// number of loads it asked for.
    fn page(
        walk: &mut Walk,
        rooms: &HashMap<&str, Room>,
        limit: usize,
        budget: usize,
    ) -> (Vec<Value>, usize) {
        let mut loaded = HashMap::new();
        let mut out = Vec::new();
        let mut budget = budget;
        let mut loads = 0;
        while let Step::Need(ids) = walk.advance(&loaded, &mut out, limit, &mut budget, 10) {
            loads += 1;
            for id in ids {
                loaded.insert(id.clone(), rooms.get(id.as_str()).cloned());
            }
        }
        (out, loads)
    }

    fn tree() -> HashMap<&'static str, Room> {
        HashMap::from([
            (
                "!root",
                space(
                    "!root",
                    &[("!a", true), ("!sub", false), ("!gone", true)],
                    "public",
                ),
            ),
            ("!a", room("!a", "public")),
            (
                "!sub",
                space(
                    "!sub",
                    &[("!b", true), ("!private", true), ("!root", true)],
                    "public",
                ),
            ),
            ("!b", room("!b", "knock")),
            ("!private", room("!private", "invite")),
        ])
    }

    #[test]
    fn children_follow_the_spec_order_and_skip_removed_links() {
        let events = vec![
            child("!late", json!({ "via": ["x"] }), 5),
            child("!early", json!({ "via": ["x"] }), 1),
            child("!ordered-b", json!({ "via": ["x"], "order": "b" }), 9),
            child("!ordered-a", json!({ "via": ["x"], "order": "a" }), 9),
            child("!bad-order", json!({ "via": ["x"], "order": "\u{1}" }), 0),
            child("!removed", json!({}), 0),
            child("!empty-via", json!({ "via": [] }), 0),
            child("not-a-room", json!({ "via": ["x"] }), 0),
        ];
        let order: Vec<String> = children_of(&events)
            .into_iter()
            .map(|c| c.room_id)
            .collect();
        assert_eq!(
            order,
            ["!ordered-a", "!ordered-b", "!bad-order", "!early", "!late"]
        );
        assert_eq!(children_of(&events)[0].stripped["origin_server_ts"], 9);
    }

    #[test]
    fn a_walk_is_depth_first_lists_each_room_once_and_skips_what_the_requester_may_not_see() {
        let mut walk = Walk::new("!root", false, None);
        let (out, loads) = page(&mut walk, &tree(), 100, 100);
        assert_eq!(ids(&out), ["!root", "!a", "!sub", "!b"]);
        assert!(walk.finished());
        // One load per level of the tree, not one per room.
        assert_eq!(loads, 3);
        assert_eq!(out[2]["children_state"].as_array().unwrap().len(), 3);
        assert_eq!(out[1]["children_state"], json!([]));
    }

    #[test]
    fn suggested_only_follows_and_lists_only_suggested_children() {
        let mut walk = Walk::new("!root", true, None);
        let (out, _) = page(&mut walk, &tree(), 100, 100);
        assert_eq!(ids(&out), ["!root", "!a"]);
        assert_eq!(out[0]["children_state"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn max_depth_stops_the_descent() {
        let (out, _) = page(&mut Walk::new("!root", false, Some(1)), &tree(), 100, 100);
        assert_eq!(ids(&out), ["!root", "!a", "!sub"]);
        let (out, _) = page(&mut Walk::new("!root", false, Some(0)), &tree(), 100, 100);
        assert_eq!(ids(&out), ["!root"]);
    }

    #[test]
    fn pages_resume_from_the_token_and_the_budget_bounds_each_page() {
        let rooms = tree();
        let mut walk = Walk::new("!root", false, None);
        let (first, _) = page(&mut walk, &rooms, 2, 100);
        assert_eq!(ids(&first), ["!root", "!a"]);
        assert!(!walk.finished());
        let token = serde_json::to_string(&walk).unwrap();
        let mut walk: Walk = serde_json::from_str(&token).unwrap();
        let (second, _) = page(&mut walk, &rooms, 2, 100);
        assert_eq!(ids(&second), ["!sub", "!b"]);
        let (third, _) = page(&mut walk, &rooms, 2, 100);
        assert!(third.is_empty());
        assert!(walk.finished());
        // A budget of two visits: the unknown and the private room count too.
        let mut walk = Walk::new("!root", false, None);
        let (out, _) = page(&mut walk, &rooms, 100, 2);
        assert_eq!(ids(&out), ["!root", "!a"]);
        assert!(!walk.finished());
    }

    #[test]
    fn the_federation_answer_splits_children_by_access() {
        let rooms = tree();
        let root = &rooms["!sub"];
        let loaded: HashMap<String, Option<Room>> = ["!b", "!private", "!root"]
            .iter()
            .map(|id| (id.to_string(), rooms.get(id).cloned()))
            .collect();
        let answer = federation_answer(root, &loaded, false);
        assert_eq!(answer["room"]["room_id"], "!sub");
        let children: Vec<&str> = answer["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["room_id"].as_str().unwrap())
            .collect();
        assert_eq!(children, ["!b", "!root"]);
        assert!(answer["children"][0].get("children_state").is_none());
        assert_eq!(answer["inaccessible_children"], json!(["!private"]));
    }

    #[test]
    fn members_and_world_readable_rooms_are_accessible() {
        let mut private = room("!p", "invite");
        assert!(!private.accessible());
        private.member = true;
        assert!(private.accessible());
        let readable = Room::new(
            json!({ "join_rule": "invite", "world_readable": true }),
            &[],
            false,
        );
        assert!(readable.accessible());
    }

    #[test]
    fn a_walk_remembers_where_to_ask_about_rooms_still_to_visit() {
        let space = Room::new(
            json!({ "room_id": "!s", "room_type": "m.space", "join_rule": "public" }),
            &[
                child(
                    "!far",
                    json!({ "via": ["a.test", "b.test", "not a name", "c.test", "d.test"] }),
                    1,
                ),
                child("!near", json!({ "via": ["x"] }), 2),
            ],
            false,
        );
        assert_eq!(space.children[0].via, ["a.test", "b.test", "c.test"]);
        let mut walk = Walk::new("!s", false, Some(1));
        let loaded = HashMap::from([("!s".to_owned(), Some(space))]);
        let mut page = Vec::new();
        let step = walk.advance(&loaded, &mut page, 10, &mut 10, 10);
        assert_eq!(step, Step::Need(vec!["!far".into(), "!near".into()]));
        assert_eq!(walk.via("!far"), ["a.test", "b.test", "c.test"]);
        assert_eq!(walk.depth("!far"), Some(1));
        assert!(!walk.descends_from(1) && walk.descends_from(0));
        // The servers travel in the token, and are forgotten once the room is visited.
        let mut walk: Walk = serde_json::from_str(&serde_json::to_string(&walk).unwrap()).unwrap();
        assert_eq!(walk.via("!near"), ["x"]);
        let mut loaded = loaded;
        loaded.insert("!far".into(), Some(room("!far", "public")));
        loaded.insert("!near".into(), None);
        assert_eq!(
            walk.advance(&loaded, &mut page, 10, &mut 10, 10),
            Step::Done
        );
        assert!(walk.via("!far").is_empty() && walk.via("!near").is_empty());
        assert_eq!(ids(&page), ["!s", "!far"]);
    }

    #[test]
    fn a_remote_answer_keeps_only_what_its_space_links_and_the_spec_fields() {
        let answer = json!({
            "room": {
                "room_id": "!s:r", "room_type": "m.space", "num_joined_members": 3,
                "world_readable": true, "join_rule": "public", "name": "S", "evil": "x",
                "children_state": [
                    child("!a:r", json!({ "via": ["r"] }), 1),
                    child("!b:r", json!({ "via": ["r"] }), 2),
                    child("!c:r", json!({ "via": ["r"] }), 3),
                    { "type": "m.room.name", "state_key": "", "content": {} },
                ],
            },
            "children": [
                { "room_id": "!a:r", "num_joined_members": "many", "name": 7, "topic": "t",
                  "join_rule": "restricted", "allowed_room_ids": ["!s:r", "bad"] },
                { "room_id": "!unlinked:r", "num_joined_members": 1 },
                { "num_joined_members": 1 },
            ],
            "inaccessible_children": ["!b:r", "!unlinked2:r"],
        });
        let space = RemoteSpace::parse("!s:r", &answer).unwrap();
        assert_eq!(space.summary["name"], "S");
        assert!(space.summary.get("evil").is_none());
        assert_eq!(space.child_events.len(), 3);
        assert_eq!(
            space.children,
            [
                json!({ "room_id": "!a:r", "num_joined_members": 0, "world_readable": false,
                     "guest_can_join": false, "join_rule": "restricted", "topic": "t",
                     "allowed_room_ids": ["!s:r"] })
            ]
        );
        assert_eq!(space.inaccessible, ["!b:r"]);
        // An answer about another room, or without a room, is no answer.
        assert!(RemoteSpace::parse("!other:r", &answer).is_none());
        assert!(RemoteSpace::parse("!s:r", &json!({ "children": [] })).is_none());
    }
}
