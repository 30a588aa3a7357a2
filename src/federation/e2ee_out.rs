//! End-to-end encryption towards other servers: asking them for their users' keys
//! (`user/keys/query`, `user/keys/claim`), and telling them about ours (`m.device_list_update`,
//! `m.signing_key_update`) and sending to-device messages (`m.direct_to_device`) through each
//! server's outbound queue.

use std::collections::BTreeMap;

use futures::future::join_all;
use ruma::ServerName;
use serde_json::{json, Map, Value};

use super::outgoing::request;
use crate::api::request::Ctx;
use crate::client::device_keys::{server_of, stored_keys};
use crate::platform::{Method, Platform};
use crate::storage::{accounts, e2ee_remote, Db};

fn failure(status: u16, message: impl Into<String>) -> Value {
    json!({ "status": status, "message": message.into() })
}

/// Posts `{field: users}` to every server at once; a server that cannot be reached or refuses
/// gets a `failures` entry, as the client API reports it.
async fn ask_servers(
    platform: &Platform,
    path: &str,
    field: &str,
    ask: BTreeMap<&str, Map<String, Value>>,
) -> Vec<(String, Vec<String>, Result<Value, Value>)> {
    let calls = ask.into_iter().map(|(server, users)| async move {
        let names: Vec<String> = users.keys().cloned().collect();
        let mut body = Map::new();
        body.insert(field.to_owned(), Value::Object(users));
        let body = Value::Object(body);
        let result = match ServerName::parse(server) {
            Err(_) => Err(failure(400, "Not a valid server name")),
            Ok(name) => {
                let sent = request(platform, &name, Method::Post, path, Some(&body), true).await;
                match sent {
                    Ok((200, answer)) if answer.is_object() => Ok(answer),
                    Ok((status, answer)) => Err(failure(
                        status,
                        answer["error"]
                            .as_str()
                            .unwrap_or("The server refused the request"),
                    )),
                    Err(e) => {
                        crate::log_warn!("{path} to {server} failed: {e}");
                        Err(failure(503, e.to_string()))
                    }
                }
            }
        };
        (server.to_owned(), names, result)
    });
    join_all(calls).await
}

/// Copies `answer[field][user]` for the users asked of `server` into `into[field]`: a server
/// speaks only for its own users, and only for those it was asked about.
fn merge_users(into: &mut Value, answer: &Value, field: &str, server: &str, asked: &[String]) {
    let Some(entries) = answer[field].as_object() else {
        return;
    };
    for (user, value) in entries {
        if server_of(user) != Some(server) || !asked.contains(user) || !value.is_object() {
            continue;
        }
        if !into[field].is_object() {
            into[field] = json!({});
        }
        into[field][user.as_str()] = value.clone();
    }
}

/// Remote users' keys for a client's `/keys/query`, merged into its answer; returns `failures`.
pub(crate) async fn query_servers(
    platform: &Platform,
    ask: BTreeMap<&str, Map<String, Value>>,
    answer: &mut Value,
) -> Map<String, Value> {
    let mut failures = Map::new();
    let path = "/_matrix/federation/v1/user/keys/query";
    for (server, asked, result) in ask_servers(platform, path, "device_keys", ask).await {
        match result {
            Ok(reply) => {
                for field in ["device_keys", "master_keys", "self_signing_keys"] {
                    merge_users(answer, &reply, field, &server, &asked);
                }
            }
            Err(why) => {
                failures.insert(server, why);
            }
        }
    }
    failures
}

/// Remote users' one-time keys for a client's `/keys/claim`, merged into `keys` (the answer's
/// `one_time_keys`); returns `failures`.
pub(crate) async fn claim_servers(
    platform: &Platform,
    ask: BTreeMap<&str, Map<String, Value>>,
    keys: &mut Value,
) -> Map<String, Value> {
    let mut failures = Map::new();
    let path = "/_matrix/federation/v1/user/keys/claim";
    let mut wrapped = json!({ "one_time_keys": keys.take() });
    for (server, asked, result) in ask_servers(platform, path, "one_time_keys", ask).await {
        match result {
            Ok(reply) => merge_users(&mut wrapped, &reply, "one_time_keys", &server, &asked),
            Err(why) => {
                failures.insert(server, why);
            }
        }
    }
    *keys = wrapped["one_time_keys"].take();
    failures
}

async fn enqueue_everywhere(platform: &Platform, servers: &[String], edu: Value) {
    for server in servers {
        match ServerName::parse(server) {
            Ok(name) => {
                platform
                    .queue
                    .enqueue(&name, Vec::new(), vec![edu.clone()])
                    .await
            }
            Err(_) => crate::log_warn!("not announcing to bad server name {server}"),
        }
    }
}

/// Tells every server sharing a room with our `user` that its device list changed. With the
/// `device` that changed, the update carries its keys (or `deleted`) and a `prev_id` naming the
/// update we sent before, so the receiver can apply it; without one (several devices changed,
/// signatures, deletions) it names no prev_id, and the receiver resyncs with `user/devices`.
pub(crate) async fn announce_device_list(ctx: &Ctx, db: &Db, user: &str, device: Option<&str>) {
    if let Err(e) = try_announce_device_list(ctx, db, user, device).await {
        crate::log_error!("device list update for {user} not sent: {e}");
    }
}

async fn try_announce_device_list(
    ctx: &Ctx,
    db: &Db,
    user: &str,
    device: Option<&str>,
) -> Result<(), crate::http::MatrixError> {
    let us = ctx.config.server_name.as_str();
    if server_of(user) != Some(us) {
        return Ok(());
    }
    let servers = e2ee_remote::servers_sharing_rooms(db, user, us).await?;
    if servers.is_empty() {
        return Ok(());
    }
    let (Some(stream_id), sent) = e2ee_remote::take_sent_position(db, user).await? else {
        return Ok(());
    };
    let mut content = json!({ "user_id": user, "stream_id": stream_id, "prev_id": [] });
    match device {
        Some(device) => {
            let answer = stored_keys(db, &[(user, device)], &[user], "").await?;
            let keys = &answer["device_keys"][user][device];
            let row = accounts::devices(db, user)
                .await?
                .into_iter()
                .find(|d| d.device_id == device);
            content["device_id"] = json!(device);
            // A device without keys yet still exists: only a removed one is `deleted`.
            content["deleted"] = json!(row.is_none());
            if let Some(name) = row.and_then(|d| d.display_name) {
                content["device_display_name"] = json!(name);
            }
            if keys.is_object() {
                content["keys"] = keys.clone();
            }
            if let Some(sent) = sent.filter(|s| *s < stream_id) {
                content["prev_id"] = json!([sent]);
            }
        }
        None => {
            // Any device id will do: with no prev_id the receiver fetches the whole list.
            let any = accounts::devices(db, user).await?.into_iter().next();
            content["device_id"] = json!(any.map(|d| d.device_id).unwrap_or_default());
            content["deleted"] = json!(false);
        }
    }
    let edu = json!({ "edu_type": "m.device_list_update", "content": content });
    enqueue_everywhere(&ctx.platform, &servers, edu).await;
    Ok(())
}

/// Our `user` just joined `room_id`: its other servers may not have heard of the user's devices
/// (spec: device list updates are due "when that user joins a room which contains servers which
/// are not already receiving updates"). Each gets one update about the joining device, with no
/// `prev_id`: a server new to the user fetches the whole list with `user/devices`, and one that
/// already follows it has seen this position and ignores it.
pub(crate) async fn announce_on_join(ctx: &Ctx, db: &Db, user: &str, device: &str, room_id: &str) {
    let result = async {
        let us = ctx.config.server_name.as_str();
        let servers = crate::storage::sync::remote_servers(db, room_id, us).await?;
        if servers.is_empty() {
            return Ok::<_, crate::http::MatrixError>(());
        }
        let stream_id = e2ee_remote::local_stream_id(db, user).await?;
        let answer = stored_keys(db, &[(user, device)], &[user], "").await?;
        let keys = &answer["device_keys"][user][device];
        let mut content = json!({
            "user_id": user,
            "device_id": device,
            "stream_id": stream_id,
            "prev_id": [],
            "deleted": false,
        });
        if keys.is_object() {
            content["keys"] = keys.clone();
        }
        let edu = json!({ "edu_type": "m.device_list_update", "content": content });
        enqueue_everywhere(&ctx.platform, &servers, edu).await;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        crate::log_error!("device list update for {user} joining {room_id} not sent: {e}");
    }
}

/// Tells every server sharing a room with our `user` about its new master and self-signing keys.
pub(crate) async fn announce_signing_keys(ctx: &Ctx, db: &Db, user: &str) {
    let result = async {
        let us = ctx.config.server_name.as_str();
        let servers = e2ee_remote::servers_sharing_rooms(db, user, us).await?;
        if servers.is_empty() {
            return Ok::<_, crate::http::MatrixError>(());
        }
        let answer = stored_keys(db, &[], &[user], "").await?;
        let mut content = json!({ "user_id": user });
        for (field, from) in [
            ("master_key", "master_keys"),
            ("self_signing_key", "self_signing_keys"),
        ] {
            if answer[from][user].is_object() {
                content[field] = answer[from][user].clone();
            }
        }
        let edu = json!({ "edu_type": "m.signing_key_update", "content": content });
        enqueue_everywhere(&ctx.platform, &servers, edu).await;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        crate::log_error!("signing key update for {user} not sent: {e}");
    }
}

/// To-device messages for other servers' users: one `m.direct_to_device` EDU per server.
/// `by_server` maps a server to `{user: {device: content}}`.
pub(crate) async fn send_to_device(
    platform: &Platform,
    sender: &str,
    event_type: &str,
    message_id: &str,
    by_server: BTreeMap<String, Map<String, Value>>,
) {
    for (server, messages) in by_server {
        let edu = json!({
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": sender,
                "type": event_type,
                "message_id": message_id,
                "messages": messages,
            },
        });
        enqueue_everywhere(platform, &[server], edu).await;
    }
}
