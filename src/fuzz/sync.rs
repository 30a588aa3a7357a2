//! Sync input: `since` tokens, sliding sync `pos` and its stored connection state, filters,
//! and the glob patterns filters and server ACLs carry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{json_value, run};
use crate::glob;
use crate::sync::filter::{EventFilter, Filter};
use crate::sync::sliding::connection::{Connection, Held, Pos, SentRoom};
use crate::sync::token::StreamPosition;

fn stream_position() -> impl Strategy<Value = StreamPosition> {
    prop::array::uniform7(any::<u64>()).prop_map(|n| StreamPosition {
        events: n[0],
        account_data: n[1],
        receipts: n[2],
        typing: n[3],
        to_device: n[4],
        device_lists: n[5],
        presence: n[6],
    })
}

/// Text shaped like a token, with the ways it can be wrong.
fn token_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "s?[0-9_]{0,40}",
        "[0-9]{0,6}s[0-9_-]{0,30}",
        "s([0-9]{1,25}_){0,9}[0-9]{0,25}",
        ".{0,40}",
    ]
}

#[test]
fn sync_tokens_round_trip_and_garbage_is_refused() {
    run(
        "sync_token",
        (stream_position(), token_text()),
        |(position, text)| {
            prop_assert_eq!(StreamPosition::parse(&position.to_string()), Some(position));
            if let Some(parsed) = StreamPosition::parse(&text) {
                // Accepted text is a token we could have written (older tokens have fewer
                // parts, so it reads back as the same position).
                prop_assert_eq!(StreamPosition::parse(&parsed.to_string()), Some(parsed));
            }
            Ok(())
        },
    );
}

#[test]
fn sliding_sync_pos_round_trips_and_garbage_is_refused() {
    run(
        "sliding_sync_pos",
        (any::<u64>(), stream_position(), token_text()),
        |(row, stream, text)| {
            let written = Pos::format(row, &stream);
            prop_assert_eq!(Pos::parse(&written), Some(Pos { row, stream }));
            if let Some(pos) = Pos::parse(&text) {
                prop_assert_eq!(Pos::parse(&Pos::format(pos.row, &pos.stream)), Some(pos));
            }
            Ok(())
        },
    );
}

#[test]
fn stored_connection_state_round_trips_and_garbage_expires() {
    let room = (".{1,12}", prop::option::of(any::<u64>()), ".{0,8}").prop_map(|(id, until, fp)| {
        let held = until.map_or(Held::Live, Held::Until);
        (
            id,
            SentRoom {
                held,
                required_state: fp,
            },
        )
    });
    run(
        "sliding_sync_connection_state",
        (
            prop::collection::btree_map(".{1,12}", room.prop_map(|(_, r)| r), 0..8),
            json_value(),
        ),
        |(rooms, garbage)| {
            let connection = Connection {
                rooms: rooms.into_iter().collect::<BTreeMap<_, _>>(),
                ..Connection::default()
            };
            let stored = connection.to_json();
            prop_assert_eq!(Connection::from_json(&stored).ok(), Some(connection));
            // Whatever else is in the row is an expired pos or some state, never a panic.
            let _ = Connection::from_json(&garbage.to_string());
            Ok(())
        },
    );
}

/// The spec's glob semantics by dynamic programming over (pattern, value) positions: slow
/// to write out, easy to trust; the reference `glob::matches` is compared with.
fn glob_reference(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // row[j]: does pattern[..i] match value[..j]?
    let mut row = vec![false; v.len() + 1];
    row[0] = true;
    for &c in &p {
        let mut next = vec![false; v.len() + 1];
        if c == '*' {
            next[0] = row[0];
        }
        for j in 1..=v.len() {
            next[j] = match c {
                '*' => next[j - 1] || row[j],
                '?' => row[j - 1],
                c => row[j - 1] && v[j - 1] == c,
            };
        }
        row = next;
    }
    row[v.len()]
}

#[test]
fn glob_matching_agrees_with_the_reference_and_stays_fast() {
    let alphabet = "[ab*?.]{0,24}";
    run(
        "glob",
        (
            prop_oneof![alphabet, ".{0,12}"],
            prop_oneof!["[ab.]{0,40}", ".{0,20}"],
        ),
        |(pattern, value)| {
            let started = Instant::now();
            let matched = glob::matches(&pattern, &value);
            prop_assert!(
                started.elapsed() < Duration::from_millis(250),
                "slow: {:?}",
                started.elapsed()
            );
            prop_assert_eq!(matched, glob_reference(&pattern, &value));
            Ok(())
        },
    );
}

/// A filter, mostly of the right shape, some fields of any type.
fn filter_json() -> impl Strategy<Value = serde_json::Value> {
    let list = prop::collection::vec("[a-z.*?!@:]{0,10}", 0..4);
    let event_filter = || {
        (
            prop::option::of(any::<i64>()),
            prop::option::of(list.clone()),
            list.clone(),
            prop::option::of(json_value()),
        )
            .prop_map(|(limit, types, not_types, extra)| {
                let mut filter = serde_json::json!({"not_types": not_types});
                if let Some(limit) = limit {
                    filter["limit"] = limit.into();
                }
                if let Some(types) = types {
                    filter["types"] = types.into();
                }
                if let Some(extra) = extra {
                    filter["senders"] = extra;
                }
                filter
            })
    };
    prop_oneof![
        (event_filter(), event_filter(), any::<bool>()).prop_map(
            |(timeline, state, leave)| serde_json::json!({
                "room": {"timeline": timeline, "state": state, "include_leave": leave}
            })
        ),
        json_value(),
    ]
}

#[test]
fn filters_parse_or_are_bad_json_and_limits_stay_in_range() {
    run(
        "sync_filter",
        (filter_json(), "[a-z.]{0,12}", "[a-z@:.]{0,12}"),
        |(json, kind, sender)| {
            let Ok(filter) = serde_json::from_value::<Filter>(json) else {
                return Ok(());
            };
            for events in [&filter.room.timeline, &filter.room.state, &filter.presence] {
                let limit = events.limit_or(10, 100);
                prop_assert!((1..=100).contains(&limit));
                let _ = events.allows(&kind, &sender);
            }
            let _ = filter.room.allows_room(&kind);
            Ok(())
        },
    );
    assert!(serde_json::from_value::<EventFilter>(serde_json::json!({"limit": -1})).is_err());
}
