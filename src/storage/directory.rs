//! Aliases, the published-room list and the user directory.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Arg, Db};
use crate::args;
use crate::http::MatrixError;

/// False if the alias is taken.
pub async fn create_alias(
    db: &Db,
    alias: &str,
    room_id: &str,
    creator: &str,
    now: u64,
) -> Result<bool, MatrixError> {
    let changed = db
        .run(
            "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (alias) DO NOTHING",
            args![alias, room_id, creator, now],
        )
        .await?;
    Ok(changed == 1)
}

pub async fn alias_owner(db: &Db, alias: &str) -> Result<Option<(String, String)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
        creator: String,
    }
    Ok(db
        .row::<Row>(
            "SELECT room_id, creator FROM room_aliases WHERE alias = ?1",
            args![alias],
        )
        .await?
        .map(|r| (r.room_id, r.creator)))
}

pub async fn delete_alias(db: &Db, alias: &str) -> Result<(), MatrixError> {
    db.run("DELETE FROM room_aliases WHERE alias = ?1", args![alias])
        .await
        .map(|_| ())
}

pub async fn aliases_of(db: &Db, room_id: &str) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        alias: String,
    }
    Ok(db
        .rows::<Row>(
            "SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias",
            args![room_id],
        )
        .await?
        .into_iter()
        .map(|r| r.alias)
        .collect())
}

/// Points every alias of `from` at `to` (a room upgrade moves local aliases to the new room).
pub async fn move_aliases(db: &Db, from: &str, to: &str) -> Result<(), MatrixError> {
    db.run(
        "UPDATE room_aliases SET room_id = ?2 WHERE room_id = ?1",
        args![from, to],
    )
    .await
    .map(|_| ())
}

/// `None` for an unknown room.
pub async fn published(db: &Db, room_id: &str) -> Result<Option<bool>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        published: i64,
    }
    Ok(db
        .row::<Row>(
            "SELECT published FROM rooms WHERE room_id = ?1",
            args![room_id],
        )
        .await?
        .map(|r| r.published != 0))
}

pub async fn set_published(db: &Db, room_id: &str, published: bool) -> Result<(), MatrixError> {
    db.run(
        "UPDATE rooms SET published = ?2 WHERE room_id = ?1",
        args![room_id, published],
    )
    .await
    .map(|_| ())
}

/// One summary per published room, biggest first, as `/publicRooms` lists them.
pub async fn public_room_summaries(db: &Db) -> Result<Vec<Value>, MatrixError> {
    summaries(db, "r.published = 1", args![]).await
}

/// The summaries of the listed rooms this server holds (one query, whatever their number),
/// with the fields `/publicRooms` and `/hierarchy` list.
pub async fn room_summaries(db: &Db, rooms: &[&str]) -> Result<Vec<Value>, MatrixError> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let list = json!(rooms).to_string();
    summaries(
        db,
        "r.room_id IN (SELECT value FROM json_each(?1))",
        args![&list],
    )
    .await
}

async fn summaries(db: &Db, filter: &str, args: &[Arg<'_>]) -> Result<Vec<Value>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
        joined: i64,
        name: Option<String>,
        topic: Option<String>,
        alias: Option<String>,
        avatar: Option<String>,
        join_rule: Option<String>,
        history: Option<String>,
        guest: Option<String>,
        room_type: Option<String>,
        allow: Option<String>,
    }
    let state = |kind: &str, path: &str| {
        format!(
            "(SELECT json_extract(e.pdu, '$.content.{path}') FROM room_state s JOIN events e ON e.event_id = s.event_id
              WHERE s.room_id = r.room_id AND s.type = '{kind}' AND s.state_key = '')"
        )
    };
    let sql = format!(
        "SELECT r.room_id,
            (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined,
            {} AS name, {} AS topic, {} AS alias, {} AS avatar, {} AS join_rule, {} AS history, {} AS guest,
            {} AS room_type, {} AS allow
         FROM rooms r WHERE {filter} ORDER BY joined DESC, r.room_id",
        state("m.room.name", "name"),
        state("m.room.topic", "topic"),
        state("m.room.canonical_alias", "alias"),
        state("m.room.avatar", "url"),
        state("m.room.join_rules", "join_rule"),
        state("m.room.history_visibility", "history_visibility"),
        state("m.room.guest_access", "guest_access"),
        state("m.room.create", "type"),
        state("m.room.join_rules", "allow"),
    );
    let rows: Vec<Row> = db.rows(&sql, args).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut room = json!({
                "room_id": r.room_id,
                "num_joined_members": r.joined,
                "world_readable": r.history.as_deref() == Some("world_readable"),
                "guest_can_join": r.guest.as_deref() == Some("can_join"),
                "join_rule": r.join_rule.as_deref().unwrap_or("invite"),
            });
            // Restricted rooms name the rooms whose members may join (spec: room summaries
            // and the space hierarchy list them as `allowed_room_ids`).
            if matches!(
                r.join_rule.as_deref(),
                Some("restricted" | "knock_restricted")
            ) {
                let allow: Value = r
                    .allow
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or_default();
                let ids: Vec<&str> = allow
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["type"] == "m.room_membership")
                    .filter_map(|a| a["room_id"].as_str())
                    .collect();
                room["allowed_room_ids"] = json!(ids);
            }
            for (field, value) in [
                ("name", r.name),
                ("topic", r.topic),
                ("canonical_alias", r.alias),
                ("avatar_url", r.avatar),
                ("room_type", r.room_type),
            ] {
                if let Some(value) = value {
                    room[field] = json!(value);
                }
            }
            room
        })
        .collect())
}

/// Users matching `term` who share a room with the searcher or sit in a published room.
pub async fn search_users(
    db: &Db,
    searcher: &str,
    term: &str,
    limit: u64,
) -> Result<Vec<Value>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
        displayname: Option<String>,
        avatar_url: Option<String>,
    }
    let pattern = format!(
        "%{}%",
        term.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows: Vec<Row> = db
        .rows(
            "SELECT DISTINCT u.user_id, u.displayname, u.avatar_url FROM users u
             JOIN memberships m ON m.user_id = u.user_id AND m.membership = 'join'
             WHERE u.deactivated = 0
               AND (m.room_id IN (SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join')
                    OR m.room_id IN (SELECT room_id FROM rooms WHERE published = 1))
               AND (u.user_id LIKE ?2 ESCAPE '\\' OR u.displayname LIKE ?2 ESCAPE '\\')
             ORDER BY u.user_id LIMIT ?3",
            args![searcher, &pattern, limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| json!({ "user_id": r.user_id, "display_name": r.displayname, "avatar_url": r.avatar_url }))
        .collect())
}
