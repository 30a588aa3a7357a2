//! Application services end to end through `TestServer`: the as_token and masquerading,
//! `m.login.application_service`, the exclusive namespaces, and what a queue would push.

use futures::executor::block_on;
use serde_json::{json, Value};

use super::push::next_step;
use super::AppService;
use crate::storage::Db;
use crate::testing::{TestServer, SERVER_NAME};

const AS_TOKEN: &str = "as-secret";

/// A server with one service: users `@irc_*`, aliases `#irc_*`, bot `@ircbot`.
async fn with_service() -> TestServer {
    let server = TestServer::new();
    let registration = json!({
        "id": "irc", "url": "http://127.0.0.1:9", "as_token": AS_TOKEN, "hs_token": "hs-secret",
        "sender_localpart": "ircbot",
        "namespaces": {
            "users": [{"regex": "@irc_.*", "exclusive": true}],
            "aliases": [{"regex": "#irc_.*", "exclusive": true}]
        }
    });
    let text = registration.to_string().replace('\'', "''");
    server
        .rows(&format!(
            "INSERT INTO appservices (id, as_token, registration, start_stream, updated_ts)
             VALUES ('irc', '{AS_TOKEN}', '{text}', 0, 0)"
        ))
        .await;
    server
        .rows(&format!(
            "INSERT INTO users (user_id, created_ts) VALUES ('@ircbot:{SERVER_NAME}', 0)"
        ))
        .await;
    server
}

async fn public_room(server: &TestServer, token: &str) -> String {
    let body = json!({ "preset": "public_chat" });
    let path = "/_matrix/client/v3/createRoom";
    let (status, answer) = server.request("POST", path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer["room_id"].as_str().unwrap().to_owned()
}

/// The service as the queue reads it from D1.
async fn stored_service(server: &TestServer) -> AppService {
    let rows = server.rows("SELECT registration FROM appservices").await;
    AppService::from_json(rows[0]["registration"].as_str().unwrap(), SERVER_NAME).unwrap()
}

async fn as_register(server: &TestServer, username: &str) -> (u16, Value) {
    server
        .request(
            "POST",
            "/_matrix/client/v3/register",
            Some(AS_TOKEN),
            Some(json!({ "type": "m.login.application_service", "username": username })),
        )
        .await
}

#[test]
fn the_token_acts_as_the_bot_or_a_user_of_the_namespace() {
    block_on(async {
        let server = with_service().await;
        let whoami = "/_matrix/client/v3/account/whoami";
        let (status, me) = server.request("GET", whoami, Some(AS_TOKEN), None).await;
        assert_eq!(status, 200);
        assert_eq!(
            me,
            json!({ "user_id": format!("@ircbot:{SERVER_NAME}"), "is_guest": false })
        );

        let puppet = format!("@irc_alice:{SERVER_NAME}");
        let path = format!("{whoami}?user_id={puppet}");
        let (status, _) = server.request("GET", &path, Some(AS_TOKEN), None).await;
        assert_eq!(status, 403, "not registered yet");
        let (status, made) = as_register(&server, "irc_alice").await;
        assert_eq!(status, 200, "{made}");
        let (status, me) = server.request("GET", &path, Some(AS_TOKEN), None).await;
        assert_eq!(
            (status, me["user_id"].as_str()),
            (200, Some(puppet.as_str()))
        );

        let outside = format!("{whoami}?user_id=@bob:{SERVER_NAME}");
        let (status, error) = server.request("GET", &outside, Some(AS_TOKEN), None).await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
    });
}

#[test]
fn exclusive_namespaces_are_refused_to_others() {
    block_on(async {
        let server = with_service().await;
        let (status, error) = as_register(&server, "bob").await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (400, Some("M_EXCLUSIVE"))
        );
        let body = json!({ "username": "irc_eve", "password": "correct horse battery",
                           "auth": { "type": "m.login.dummy" } });
        let (status, error) = server
            .request("POST", "/_matrix/client/v3/register", None, Some(body))
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (400, Some("M_EXCLUSIVE"))
        );
        let nothing = server
            .rows(&format!(
                "SELECT 1 FROM users WHERE user_id = '@irc_eve:{SERVER_NAME}'"
            ))
            .await;
        assert!(nothing.is_empty());
    });
}

#[test]
fn the_queue_takes_events_that_concern_the_service() {
    block_on(async {
        let server = with_service().await;
        let (_, token) = server.register("dora").await;
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let room = answer["room_id"].as_str().unwrap().to_owned();
        let db = Db::new(&server.platform);
        let service = std::rc::Rc::new(stored_service(&server).await);
        let step = next_step(&server.platform, &db, &service, SERVER_NAME, 0)
            .await
            .unwrap();
        assert!(step.events.is_empty(), "a room without the service's users");
        assert!(step.through > 0 && !step.more);

        as_register(&server, "irc_bo").await;
        let invite = json!({ "user_id": format!("@irc_bo:{SERVER_NAME}") });
        let path = format!("/_matrix/client/v3/rooms/{room}/invite");
        let (status, _) = server
            .request("POST", &path, Some(&token), Some(invite))
            .await;
        assert_eq!(status, 200);
        let next = next_step(&server.platform, &db, &service, SERVER_NAME, step.through)
            .await
            .unwrap();
        assert_eq!(next.events.len(), 1);
        assert_eq!(next.events[0]["content"]["membership"], "invite");
        assert!(next.events[0]["event_id"]
            .as_str()
            .unwrap()
            .starts_with('$'));
    });
}

#[test]
fn receipts_in_rooms_of_the_service_go_out_as_ephemeral_events() {
    block_on(async {
        let server = with_service().await;
        let (_, token) = server.register("erin").await;
        let room = public_room(&server, &token).await;
        as_register(&server, "irc_joe").await;
        let join = format!("/_matrix/client/v3/join/{room}?user_id=@irc_joe:{SERVER_NAME}");
        let (status, joined) = server
            .request("POST", &join, Some(AS_TOKEN), Some(json!({})))
            .await;
        assert_eq!(status, 200, "{joined}");
        let messages = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1");
        let (_, page) = server.request("GET", &messages, Some(&token), None).await;
        let event_id = page["chunk"][0]["event_id"].as_str().unwrap().to_owned();
        let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
        let (status, _) = server
            .request("POST", &receipt, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, 200);

        let service = stored_service(&server).await;
        let db = Db::new(&server.platform);
        let step = super::push::ephemeral_step(&db, &service, 0, 0, 0)
            .await
            .unwrap();
        assert_eq!(step.edus.len(), 1, "{:?}", step.edus);
        assert_eq!(step.edus[0]["type"], "m.receipt");
        assert_eq!(step.edus[0]["room_id"], room.as_str());
        assert!(step.edus[0]["content"][&event_id]["m.read"]
            .get(format!("@erin:{SERVER_NAME}"))
            .is_some());
        assert!(step.receipts_through > 0);
        let again = super::push::ephemeral_step(&db, &service, 0, step.receipts_through, 0)
            .await
            .unwrap();
        assert!(again.edus.is_empty());
    });
}

#[test]
fn a_service_logs_in_as_its_users() {
    block_on(async {
        let server = with_service().await;
        as_register(&server, "irc_liz").await;
        let login = |user: &str| {
            json!({ "type": "m.login.application_service",
                    "identifier": { "type": "m.id.user", "user": user } })
        };
        let (status, session) = server
            .request(
                "POST",
                "/_matrix/client/v3/login",
                Some(AS_TOKEN),
                Some(login("irc_liz")),
            )
            .await;
        assert_eq!(status, 200, "{session}");
        let token = session["access_token"].as_str().unwrap();
        let (_, me) = server
            .request(
                "GET",
                "/_matrix/client/v3/account/whoami",
                Some(token),
                None,
            )
            .await;
        assert_eq!(me["user_id"], format!("@irc_liz:{SERVER_NAME}"));
        assert_eq!(me["device_id"], session["device_id"]);
        let (status, error) = server
            .request(
                "POST",
                "/_matrix/client/v3/login",
                Some(AS_TOKEN),
                Some(login("someone")),
            )
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
        let (status, error) = server
            .request(
                "POST",
                "/_matrix/client/v3/login",
                Some(token),
                Some(login("irc_liz")),
            )
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (401, Some("M_UNKNOWN_TOKEN"))
        );
    });
}

#[test]
fn an_encrypting_bridge_gets_to_device_messages_and_key_counts() {
    block_on(async {
        let server = with_service().await;
        // The bridge declares MSC3202, as mautrix does with appservice encryption on.
        server
            .rows(
                "UPDATE appservices SET registration =
                 json_set(registration, '$.\"org.matrix.msc3202\"', json('true'))",
            )
            .await;
        as_register(&server, "irc_max").await;
        let login = json!({ "type": "m.login.application_service", "device_id": "BRIDGEDEV",
                            "identifier": { "type": "m.id.user", "user": "irc_max" } });
        let (status, session) = server
            .request(
                "POST",
                "/_matrix/client/v3/login",
                Some(AS_TOKEN),
                Some(login),
            )
            .await;
        assert_eq!(status, 200, "{session}");
        let device_token = session["access_token"].as_str().unwrap().to_owned();
        let keys = json!({ "one_time_keys": {
            "signed_curve25519:AAAA": { "key": "a", "signatures": {} },
            "signed_curve25519:AAAB": { "key": "b", "signatures": {} } } });
        let (status, uploaded) = server
            .request(
                "POST",
                "/_matrix/client/v3/keys/upload",
                Some(&device_token),
                Some(keys),
            )
            .await;
        assert_eq!(status, 200, "{uploaded}");
        let (_, token) = server.register("nina").await;
        let message = json!({ "messages": { format!("@irc_max:{SERVER_NAME}"): {
            "BRIDGEDEV": { "hello": "bridge" } } } });
        let (status, _) = server
            .request(
                "PUT",
                "/_matrix/client/v3/sendToDevice/m.test/t1",
                Some(&token),
                Some(message),
            )
            .await;
        assert_eq!(status, 200);

        let service = stored_service(&server).await;
        assert!(service.msc3202());
        let db = Db::new(&server.platform);
        let step = super::push::device_step(&db, &service, 0, 0, &[])
            .await
            .unwrap();
        assert_eq!(step.to_device.len(), 1, "{:?}", step.to_device);
        let sent = &step.to_device[0];
        assert_eq!(sent["to_user_id"], format!("@irc_max:{SERVER_NAME}"));
        assert_eq!(sent["to_device_id"], "BRIDGEDEV");
        assert_eq!(sent["content"]["hello"], "bridge");
        assert_eq!(sent["sender"], format!("@nina:{SERVER_NAME}"));
        let counts = &step.one_time_keys_count[&format!("@irc_max:{SERVER_NAME}")];
        assert_eq!(counts["BRIDGEDEV"]["signed_curve25519"], 2);
        let mut body = super::push::transaction_body(&service, vec![], vec![]);
        super::push::add_device_fields(&mut body, &step);
        assert_eq!(body["de.sorunome.msc2409.to_device"][0], *sent);
        crate::storage::appservices::delete_to_device(&db, &step.to_device_ids)
            .await
            .unwrap();
        let after = super::push::device_step(&db, &service, 0, 0, &[])
            .await
            .unwrap();
        assert!(after.to_device.is_empty());

        // Device-list changes: only users sharing a room with the service's users are news.
        let room = public_room(&server, &token).await;
        let join = format!("/_matrix/client/v3/join/{room}?user_id=@irc_max:{SERVER_NAME}");
        let (status, _) = server
            .request("POST", &join, Some(AS_TOKEN), Some(json!({})))
            .await;
        assert_eq!(status, 200);
        server.register("olga").await;
        for user in ["nina", "olga"] {
            server
                .rows(&format!(
                    "INSERT OR REPLACE INTO e2e_device_list_changes (user_id)
                     VALUES ('@{user}:{SERVER_NAME}')"
                ))
                .await;
        }
        let lists = super::push::device_step(&db, &service, 0, 0, &[])
            .await
            .unwrap();
        assert_eq!(
            lists.device_lists_changed,
            vec![format!("@nina:{SERVER_NAME}")]
        );
        assert!(lists.device_lists_through > 0);
    });
}
