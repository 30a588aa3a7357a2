//! The admin API through `TestServer`: admins only, Synapse's shapes for users, rooms and
//! registration tokens.

use futures::executor::block_on;
use serde_json::json;

use crate::testing::{TestServer, SERVER_NAME};

async fn admin(server: &TestServer) -> String {
    let (user, token) = server.register("root").await;
    server
        .rows(&format!(
            "UPDATE users SET admin = 1 WHERE user_id = '{user}'"
        ))
        .await;
    token
}

#[test]
fn only_admins_may_call_it() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("mallory").await;
        let (status, error) = server
            .request("GET", "/_synapse/admin/v2/users", Some(&token), None)
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
        let path = format!("/_synapse/admin/v2/users/@x:{SERVER_NAME}");
        let (status, _) = server
            .request("PUT", &path, Some(&token), Some(json!({"admin": true})))
            .await;
        assert_eq!(status, 403);
        assert!(server
            .rows(&format!(
                "SELECT 1 FROM users WHERE user_id = '@x:{SERVER_NAME}'"
            ))
            .await
            .is_empty());
    });
}

#[test]
fn users_are_listed_created_modified_and_deactivated() {
    block_on(async {
        let server = TestServer::new();
        let token = admin(&server).await;
        let path = format!("/_synapse/admin/v2/users/@new:{SERVER_NAME}");
        let body = json!({"password": "pw-pw-pw-pw", "displayname": "New", "admin": false});
        let (status, created) = server.request("PUT", &path, Some(&token), Some(body)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["displayname"], "New");
        assert_eq!(created["deactivated"], false);
        let (status, again) = server
            .request(
                "PUT",
                &path,
                Some(&token),
                Some(json!({"displayname": "Renamed"})),
            )
            .await;
        assert_eq!(
            (status, again["displayname"].as_str()),
            (200, Some("Renamed"))
        );

        let (status, list) = server
            .request(
                "GET",
                "/_synapse/admin/v2/users?limit=1",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(list["total"], 2);
        assert_eq!(list["users"].as_array().unwrap().len(), 1);
        assert_eq!(list["next_token"], "1");
        let (_, found) = server
            .request(
                "GET",
                "/_synapse/admin/v2/users?name=renamed",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(found["total"], 1);

        let deactivate = format!("/_synapse/admin/v1/deactivate/@new:{SERVER_NAME}");
        let (status, answer) = server
            .request(
                "POST",
                &deactivate,
                Some(&token),
                Some(json!({"erase": true})),
            )
            .await;
        assert_eq!(
            (status, answer["id_server_unbind_result"].as_str()),
            (200, Some("success"))
        );
        let (_, shown) = server.request("GET", &path, Some(&token), None).await;
        assert_eq!(
            (shown["deactivated"].as_bool(), shown["erased"].as_bool()),
            (Some(true), Some(true))
        );
        let (_, list) = server
            .request("GET", "/_synapse/admin/v2/users", Some(&token), None)
            .await;
        assert_eq!(
            list["total"], 1,
            "deactivated users are left out by default"
        );
        let (_, list) = server
            .request(
                "GET",
                "/_synapse/admin/v2/users?deactivated=true",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(list["total"], 2);
    });
}

#[test]
fn registration_tokens_register_users() {
    block_on(async {
        let server = TestServer::new();
        let token = admin(&server).await;
        let (status, made) = server
            .request(
                "POST",
                "/_synapse/admin/v1/registration_tokens/new",
                Some(&token),
                Some(json!({"token": "abc", "uses_allowed": 1})),
            )
            .await;
        assert_eq!(status, 200, "{made}");
        assert_eq!(
            made,
            json!({"token": "abc", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": null})
        );
        let (status, error) = server
            .request(
                "POST",
                "/_synapse/admin/v1/registration_tokens/new",
                Some(&token),
                Some(json!({"token": "abc"})),
            )
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM"))
        );
        server.set_var("REGISTRATION", "token");
        let body = json!({"username": "tok", "password": "correct horse battery",
                          "auth": {"type": "m.login.registration_token", "token": "abc"}});
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/register",
                None,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let mut second = body;
        second["username"] = json!("tok2");
        let (status, refused) = server
            .request("POST", "/_matrix/client/v3/register", None, Some(second))
            .await;
        assert_eq!(status, 401, "the one use is spent: {refused}");
        let (_, shown) = server
            .request(
                "GET",
                "/_synapse/admin/v1/registration_tokens/abc",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(shown["completed"], 1);
        let (_, valid) = server
            .request(
                "GET",
                "/_synapse/admin/v1/registration_tokens?valid=true",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(valid["registration_tokens"], json!([]));
        let (status, _) = server
            .request(
                "DELETE",
                "/_synapse/admin/v1/registration_tokens/abc",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, error) = server
            .request(
                "DELETE",
                "/_synapse/admin/v1/registration_tokens/abc",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (404, Some("M_NOT_FOUND"))
        );
    });
}

#[test]
fn rooms_are_listed_and_shut_down() {
    block_on(async {
        let server = TestServer::new();
        let token = admin(&server).await;
        let (_, member_token) = server.register("member").await;
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&member_token),
                Some(json!({"name": "Kitchen", "room_alias_name": "kitchen"})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let room = answer["room_id"].as_str().unwrap().to_owned();
        let (status, list) = server
            .request(
                "GET",
                "/_synapse/admin/v1/rooms?search_term=kitch",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["total_rooms"], 1);
        let listed = &list["rooms"][0];
        assert_eq!(listed["room_id"], room.as_str());
        assert_eq!(listed["name"], "Kitchen");
        assert_eq!(listed["canonical_alias"], format!("#kitchen:{SERVER_NAME}"));
        assert_eq!(listed["joined_members"], 1);
        assert_eq!(listed["joined_local_members"], 1);

        let path = format!("/_synapse/admin/v2/rooms/{room}");
        let (status, deleted) = server
            .request("DELETE", &path, Some(&token), Some(json!({"block": true})))
            .await;
        assert_eq!(status, 200, "{deleted}");
        let status_path = format!("/_synapse/admin/v2/rooms/{room}/delete_status");
        let (_, report) = server
            .request("GET", &status_path, Some(&token), None)
            .await;
        let result = &report["results"][0];
        assert_eq!(result["status"], "complete");
        assert_eq!(
            result["shutdown_room"]["kicked_users"],
            json!([format!("@member:{SERVER_NAME}")])
        );
        let (status, _) = server
            .request(
                "GET",
                &format!("/_synapse/admin/v1/rooms/{room}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 404, "purged rooms are no longer shown");
        let (status, error) = server
            .request(
                "POST",
                &format!("/_matrix/client/v3/join/{room}"),
                Some(&member_token),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
    });
}

/// An upload by `token`: its media id.
async fn upload(server: &TestServer, token: &str, bytes: &[u8], name: &str) -> String {
    let (status, _, body) = server
        .request_with_headers(
            "POST",
            &format!("/_matrix/media/v3/upload?filename={name}"),
            Some(&format!("Bearer {token}")),
            &[("content-type", "text/plain")],
            bytes.to_vec(),
        )
        .await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{answer}");
    let mxc = answer["content_uri"].as_str().unwrap();
    mxc.rsplit('/').next().unwrap().to_owned()
}

/// The status and errcode of a download of our media `id`, by a user and over federation.
async fn downloads(
    server: &TestServer,
    remote: &crate::testing::RemoteServer,
    token: &str,
    id: &str,
) -> (u16, u16) {
    let path = format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{id}");
    let (client, _) = server.request("GET", &path, Some(token), None).await;
    let path = format!("/_matrix/federation/v1/media/download/{id}");
    let auth = remote.authorization("GET", &path, None);
    let (federation, _, _) = server
        .request_with_headers("GET", &path, Some(&auth), &[], vec![])
        .await;
    (client, federation)
}

#[test]
fn media_is_listed_quarantined_protected_and_deleted() {
    block_on(async {
        let server = TestServer::new();
        let remote = crate::testing::RemoteServer::new("remote.test");
        server.respond_with(remote.responder(|_| None));
        let token = admin(&server).await;
        let (alice, alice_token) = server.register("alice").await;
        let first = upload(&server, &alice_token, b"one", "one.txt").await;
        let second = upload(&server, &alice_token, b"second", "two.txt").await;

        // Others may not look, and change nothing.
        let list = format!("/_synapse/admin/v1/users/{alice}/media");
        let (status, error) = server.request("GET", &list, Some(&alice_token), None).await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
        let quarantine = format!("/_synapse/admin/v1/media/quarantine/{SERVER_NAME}/{first}");
        let (status, _) = server
            .request("POST", &quarantine, Some(&alice_token), Some(json!({})))
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            downloads(&server, &remote, &alice_token, &first).await,
            (200, 200)
        );

        // The list, paged and sorted by size, largest first.
        let (status, page) = server
            .request(
                "GET",
                &format!("{list}?limit=1&order_by=media_length&dir=b"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 2);
        assert_eq!(page["next_token"], 1);
        let entry = &page["media"][0];
        assert_eq!(entry["media_id"], second.as_str());
        assert_eq!(entry["media_length"], 6);
        assert_eq!(entry["media_type"], "text/plain");
        assert_eq!(entry["upload_name"], "two.txt");
        assert_eq!(entry["quarantined_by"], serde_json::Value::Null);
        assert_eq!(entry["safe_from_quarantine"], false);
        let (_, last) = server
            .request(
                "GET",
                &format!("{list}?from=1&order_by=media_id"),
                Some(&token),
                None,
            )
            .await;
        let larger_id = first.as_str().max(second.as_str());
        assert_eq!(last["media"][0]["media_id"], larger_id);
        assert!(last.get("next_token").is_none());
        let (status, _) = server
            .request(
                "GET",
                &format!("{list}?order_by=nonsense"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 400);

        // Quarantined: served to no one, here nor over federation; then released.
        let (status, _) = server
            .request("POST", &quarantine, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            downloads(&server, &remote, &alice_token, &first).await,
            (404, 404)
        );
        let thumbnail =
            format!("/_matrix/client/v1/media/thumbnail/{SERVER_NAME}/{first}?width=32&height=32");
        let (status, error) = server
            .request("GET", &thumbnail, Some(&alice_token), None)
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (404, Some("M_NOT_FOUND"))
        );
        let info = format!("/_synapse/admin/v1/media/{SERVER_NAME}/{first}");
        let (_, described) = server.request("GET", &info, Some(&token), None).await;
        assert_eq!(
            described["media_info"]["quarantined_by"],
            format!("@root:{SERVER_NAME}")
        );
        let unquarantine = quarantine.replace("/quarantine/", "/unquarantine/");
        let (status, _) = server
            .request("POST", &unquarantine, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            downloads(&server, &remote, &alice_token, &first).await,
            (200, 200)
        );

        // Protected media is not quarantined.
        let protect = format!("/_synapse/admin/v1/media/protect/{first}");
        let (status, _) = server
            .request("POST", &protect, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, 200);
        server
            .request("POST", &quarantine, Some(&token), Some(json!({})))
            .await;
        assert_eq!(
            downloads(&server, &remote, &alice_token, &first).await,
            (200, 200)
        );

        // Deleted: bytes, rows and all; remote media cannot be deleted here.
        let delete = format!("/_synapse/admin/v1/media/{SERVER_NAME}/{first}");
        let (status, _) = server
            .request("DELETE", &delete, Some(&alice_token), None)
            .await;
        assert_eq!(status, 403);
        let (status, deleted) = server.request("DELETE", &delete, Some(&token), None).await;
        assert_eq!(status, 200, "{deleted}");
        assert_eq!(deleted, json!({"deleted_media": [first], "total": 1}));
        assert_eq!(
            downloads(&server, &remote, &alice_token, &first).await,
            (404, 404)
        );
        assert!(server
            .rows(&format!("SELECT 1 FROM media WHERE media_id = '{first}'"))
            .await
            .is_empty());
        assert!(!server
            .recorded
            .blobs
            .borrow()
            .keys()
            .any(|key| key.contains(first.as_str())));
        let (status, _) = server.request("DELETE", &delete, Some(&token), None).await;
        assert_eq!(status, 404);
        let (status, error) = server
            .request(
                "DELETE",
                "/_synapse/admin/v1/media/remote.test/abc",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(
            (status, error["errcode"].as_str()),
            (400, Some("M_UNKNOWN"))
        );
        let (_, page) = server.request("GET", &list, Some(&token), None).await;
        assert_eq!(page["total"], 1);
    });
}
