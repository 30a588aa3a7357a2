//! The server's room list for one user, and the windows of it that lists ask for: which rooms
//! are in it (MSC4186 "Lists"), their order (most recent activity first), the filters, and the
//! ranges. Pure: the rows come from `storage::sliding_sync::room_entries`.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;

use super::connection::ListSeen;
use super::request::{Filters, ListConfig, Request};
use crate::storage::sliding_sync::RoomEntryRow;

/// The user's membership in a room, as the list sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Join,
    Invite,
    Knock,
    Leave,
    Ban,
}

impl Membership {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "join" => Self::Join,
            "invite" => Self::Invite,
            "knock" => Self::Knock,
            "leave" => Self::Leave,
            "ban" => Self::Ban,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Invite => "invite",
            Self::Knock => "knock",
            Self::Leave => "leave",
            Self::Ban => "ban",
        }
    }

    /// Invited or knocking: the user sees stripped state only.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Invite | Self::Knock)
    }
}

/// One room of the user's list.
#[derive(Clone, Debug)]
pub struct Entry {
    pub room_id: String,
    pub membership: Membership,
    /// Position of the user's membership event.
    pub membership_at: u64,
    pub room_version: String,
    /// The order key: for joined rooms the newest "proper" activity, otherwise the membership.
    pub bump_stamp: u64,
    /// The newest event of the room (of any type).
    pub latest: u64,
    pub room_type: Option<String>,
    pub encrypted: bool,
    pub is_dm: bool,
    /// What arrived after the answer's `pos`, when the list was read partially.
    pub news: Option<StateNews>,
}

/// What arrived in a room after a `pos`: state events, member events among them, and events
/// sent by or about another user than the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateNews {
    pub state: bool,
    pub members: bool,
    pub others: bool,
}

impl Entry {
    /// The last position the user may see events up to: their leave or ban, else everything.
    pub fn visible_up_to(&self, now: u64) -> u64 {
        match self.membership {
            Membership::Leave | Membership::Ban => self.membership_at.min(now),
            _ => now,
        }
    }
}

/// The user's rooms in list order. A room left by the user themselves is listed only when this
/// connection already sent it (the client knows it left); a kick or ban always is (MSC4186).
pub fn build(
    rows: Vec<RoomEntryRow>,
    user_id: &str,
    direct: &HashSet<String>,
    sent_before: impl Fn(&str) -> bool,
) -> Vec<Entry> {
    let mut entries: Vec<Entry> = rows
        .into_iter()
        .filter_map(|r| {
            let membership = Membership::parse(&r.membership)?;
            // Rooms of versions this server cannot read are left out, as `/v3/sync` does.
            crate::rooms::RoomVersion::parse(&r.room_version)?;
            let own_leave =
                membership == Membership::Leave && r.membership_sender.as_deref() == Some(user_id);
            if own_leave && !sent_before(&r.room_id) {
                return None;
            }
            let membership_at = r.membership_at.max(0) as u64;
            let bump_stamp = match membership {
                Membership::Join => r.bump.map_or(membership_at, |b| b.max(0) as u64),
                _ => membership_at,
            };
            Some(Entry {
                is_dm: direct.contains(&r.room_id),
                room_id: r.room_id,
                membership,
                membership_at,
                room_version: r.room_version,
                bump_stamp,
                latest: r.latest.unwrap_or(0).max(0) as u64,
                room_type: r.room_type,
                encrypted: r.encrypted != 0,
                news: (r.state_news >= 0).then_some(StateNews {
                    state: r.state_news & 1 != 0,
                    members: r.state_news & 2 != 0,
                    others: r.state_news & 4 != 0,
                }),
            })
        })
        .collect();
    // Most recent first; equal stamps (rare: positions are unique per event) by room id, so the
    // order is the same on every request.
    entries.sort_by(|a, b| {
        b.bump_stamp
            .cmp(&a.bump_stamp)
            .then_with(|| a.room_id.cmp(&b.room_id))
    });
    entries
}

/// Whether a room passes a list's filters. `space_children` holds the children of the
/// filter's spaces (read only when a list names spaces).
pub fn passes(entry: &Entry, filters: &Filters, space_children: &HashSet<String>) -> bool {
    let room_type = entry.room_type.clone();
    filters.is_dm.is_none_or(|dm| dm == entry.is_dm)
        && filters.is_encrypted.is_none_or(|e| e == entry.encrypted)
        && filters
            .is_invite
            .is_none_or(|i| i == (entry.membership == Membership::Invite))
        && filters
            .room_types
            .as_ref()
            .is_none_or(|types| types.contains(&room_type))
        && filters
            .not_room_types
            .as_ref()
            .is_none_or(|types| !types.contains(&room_type))
        && filters
            .spaces
            .as_ref()
            .is_none_or(|_| space_children.contains(&entry.room_id))
}

/// A list's answer: how many rooms pass its filters, and the indexes (into `entries`) of those
/// within its ranges.
pub fn window(
    entries: &[Entry],
    list: &ListConfig,
    space_children: &HashSet<String>,
) -> (usize, Vec<usize>) {
    let filtered: Vec<usize> = (0..entries.len())
        .filter(|&i| passes(&entries[i], &list.filters, space_children))
        .collect();
    let count = filtered.len();
    let selected = match &list.ranges {
        None => filtered,
        Some(ranges) => filtered
            .iter()
            .enumerate()
            .filter(|(at, _)| {
                ranges
                    .iter()
                    .any(|&(start, end)| (*at as u64) >= start && (*at as u64) <= end)
            })
            .map(|(_, &i)| i)
            .collect(),
    };
    (count, selected)
}

/// The last position of a list's window when its ranges cover `0..=end` without a gap: the
/// only windows an incremental answer finds without ranking every room (`window_from`).
fn prefix_end(list: &ListConfig) -> Option<u64> {
    let mut ranges = list.ranges.clone()?;
    ranges.sort_unstable();
    let mut end: Option<u64> = None;
    for (start, stop) in ranges {
        let next = end.map_or(0, |e| e + 1);
        if start > next {
            return None;
        }
        end = Some(end.map_or(stop, |e| e.max(stop)));
    }
    end
}

/// What a list's window depends on besides the rooms, when `window_from` can find it: the end
/// of its ranges and the filters a room's list position cannot change without an event in the
/// room or a change of the user's membership (`None`: rank every room). An encryption filter
/// changes with state not in view, and spaces with other rooms' state.
pub fn window_key(list: &ListConfig) -> Option<String> {
    let f = &list.filters;
    if f.is_encrypted.is_some() || f.spaces.is_some() {
        return None;
    }
    let end = prefix_end(list)?;
    Some(json!([end, f.is_dm, f.is_invite, f.room_types, f.not_room_types]).to_string())
}

/// Whether an incremental answer to `request` may rank only some rooms (`storage::
/// sliding_sync::partial_room_list_sql`): every list has a `window_key`.
pub fn partial_allowed(request: &Request) -> bool {
    request.pos.is_some() && request.lists.values().all(|l| window_key(l).is_some())
}

/// Whether `entries`, read partially (the windows the connection kept, the rooms with events
/// since `pos`, the subscriptions), hold every list's window: the user's membership changed
/// in none of them since `since` (the `pos`'s events position), each list's stored window is
/// for the same `window_key` and all its rooms are still there and pass its filters, and DMs
/// did not change under a list filtering on them (`direct_moved`: account data moved). Then no
/// room outside `entries` changed its position, and each had a lower one than every room of
/// the stored windows (`window_from`).
pub fn partial_holds(
    entries: &[Entry],
    since: u64,
    lists: &BTreeMap<String, ListConfig>,
    seen: &BTreeMap<String, ListSeen>,
    direct_moved: bool,
) -> bool {
    if entries.iter().any(|e| e.membership_at > since) {
        return false;
    }
    let none = HashSet::new();
    lists.iter().all(|(name, list)| {
        let Some(seen) = seen.get(name) else {
            return false;
        };
        if window_key(list).as_deref() != Some(seen.key.as_str())
            || (direct_moved && list.filters.is_dm.is_some())
        {
            return false;
        }
        let passing: HashSet<&str> = entries
            .iter()
            .filter(|e| passes(e, &list.filters, &none))
            .map(|e| e.room_id.as_str())
            .collect();
        seen.rooms.iter().all(|r| passing.contains(r.as_str()))
    })
}

/// A list's answer from partially read `entries` (`partial_holds`): the count it had, and the
/// first rooms passing its filters, as many as its window held.
pub fn window_from(entries: &[Entry], list: &ListConfig, seen: &ListSeen) -> (usize, Vec<usize>) {
    let none = HashSet::new();
    let size = prefix_end(list).map_or(0, |end| end.saturating_add(1).min(seen.count));
    let picked = (0..entries.len())
        .filter(|&i| passes(&entries[i], &list.filters, &none))
        .take(size as usize)
        .collect();
    (seen.count as usize, picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::sliding::request::RoomConfig;

    fn row(id: &str, membership: &str, at: i64, bump: Option<i64>) -> RoomEntryRow {
        RoomEntryRow {
            room_id: id.into(),
            membership: membership.into(),
            membership_at: at,
            membership_sender: Some("@me:x".into()),
            room_version: "12".into(),
            bump,
            latest: bump,
            room_type: None,
            encrypted: 0,
            state_news: -1,
        }
    }

    fn list(ranges: Option<Vec<(u64, u64)>>, filters: Filters) -> ListConfig {
        ListConfig {
            ranges,
            room: RoomConfig::default(),
            filters,
        }
    }

    #[test]
    fn ordered_by_activity_with_own_leaves_hidden() {
        let mut space = row("!space:x", "join", 1, Some(2));
        space.room_type = Some("m.space".into());
        let rows = vec![
            row("!old:x", "join", 3, Some(10)),
            row("!new:x", "join", 4, Some(50)),
            row("!invite:x", "invite", 30, None),
            row("!left:x", "leave", 40, None),
            space,
        ];
        let direct = HashSet::from(["!new:x".to_owned()]);
        let entries = build(rows.clone(), "@me:x", &direct, |_| false);
        let ids: Vec<&str> = entries.iter().map(|e| e.room_id.as_str()).collect();
        assert_eq!(ids, ["!new:x", "!invite:x", "!old:x", "!space:x"]);
        let with_left = build(rows, "@me:x", &direct, |r| r == "!left:x");
        assert_eq!(with_left[0].room_id, "!new:x");
        assert_eq!(with_left[1].room_id, "!left:x", "bumped by its leave");
        assert_eq!(with_left[1].visible_up_to(100), 40);

        let none = HashSet::new();
        let all = list(Some(vec![(0, 1)]), Filters::default());
        let (count, picked) = window(&entries, &all, &none);
        assert_eq!((count, picked), (4, vec![0, 1]));
        let later = list(Some(vec![(2, 2), (3, 9)]), Filters::default());
        assert_eq!(window(&entries, &later, &none).1, vec![2, 3]);
        let unbounded = list(None, Filters::default());
        assert_eq!(window(&entries, &unbounded, &none).1.len(), 4);
        let dms = list(
            None,
            Filters {
                is_dm: Some(true),
                ..Filters::default()
            },
        );
        assert_eq!(window(&entries, &dms, &none), (1, vec![0]));
        let invites = list(
            None,
            Filters {
                is_invite: Some(true),
                ..Filters::default()
            },
        );
        assert_eq!(window(&entries, &invites, &none), (1, vec![1]));
        let no_spaces = list(
            None,
            Filters {
                not_room_types: Some(vec![Some("m.space".into())]),
                ..Filters::default()
            },
        );
        assert_eq!(window(&entries, &no_spaces, &none).0, 3);
        let only_plain = list(
            None,
            Filters {
                room_types: Some(vec![None]),
                ..Filters::default()
            },
        );
        assert_eq!(window(&entries, &only_plain, &none).0, 3);
        let in_space = list(
            None,
            Filters {
                spaces: Some(vec!["!space:x".into()]),
                ..Filters::default()
            },
        );
        let children = HashSet::from(["!old:x".to_owned()]);
        assert_eq!(window(&entries, &in_space, &children), (1, vec![2]));
    }
}
