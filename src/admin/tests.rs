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
