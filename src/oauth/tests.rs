//! OAuth end to end through `TestServer` (real routing, handlers and SQLite): the pages with
//! their cookie and CSRF token, the code flow with PKCE, refresh, revocation, the device grant,
//! the registration modes, and `m.oauth` in UIA. tests/integration/test_oauth.py drives the same
//! flow over real HTTP against the built Worker.

use futures::executor::block_on;
use serde_json::{json, Value};

use super::pkce::s256;
use super::*;
use crate::testing::TestServer;

const REDIRECT: &str = "http://127.0.0.1/callback";
const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";
const DEVICE: &str = "OAUTHDEVICE1";

/// A browser: keeps the session cookie, answers status, headers and body text.
struct Browser<'a> {
    server: &'a TestServer,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn location(&self) -> &str {
        assert_eq!(self.status, 303, "{}", self.body);
        self.header("location").expect("a Location")
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a CSRF field")
            + 19;
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            cookie: None,
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> Page {
        let cookie = self.cookie.clone();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(cookie) = cookie.as_deref() {
            headers.push(("cookie", cookie));
        }
        let (status, headers, body) = self
            .server
            .request_with_headers(method, path, None, &headers, body)
            .await;
        let page = Page {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        };
        if let Some(set) = page.header("set-cookie") {
            let pair = set.split(';').next().unwrap();
            self.cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, Vec::new()).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send("POST", path, body.into_bytes()).await
    }
}

async fn form_post(server: &TestServer, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let (status, _, body) = server
        .request_with_headers(
            "POST",
            path,
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.into_bytes(),
        )
        .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn register_client(server: &TestServer, metadata: Value) -> String {
    let (status, answer) = server
        .request("POST", REGISTRATION_PATH, None, Some(metadata))
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["client_id"].as_str().unwrap().to_owned()
}

async fn native_client(server: &TestServer) -> String {
    register_client(
        server,
        json!({
            "client_name": "Test App",
            "client_uri": "https://app.example.org/",
            "application_type": "native",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await
}

fn authorize_path(client_id: &str, extra: &str) -> String {
    format!(
        "{AUTHORIZE_PATH}?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=st4te&code_challenge={}&code_challenge_method=S256{extra}",
        encode(REDIRECT),
        encode(&format!("urn:matrix:client:api:* urn:matrix:client:device:{DEVICE}")),
        s256(VERIFIER),
    )
}

/// Query parameters of a callback URL.
fn callback_params(location: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Logs `browser` in as a user registered with the password "correct horse battery".
async fn log_in(browser: &mut Browser<'_>, localpart: &str, next: &str) -> Page {
    let page = browser
        .get(&format!("{LOGIN_PATH}?next={}", encode(next)))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    browser
        .post(
            LOGIN_PATH,
            &[
                ("csrf", &csrf),
                ("username", localpart),
                ("password", "correct horse battery"),
                ("next", next),
            ],
        )
        .await
}

/// Runs authorize, login and consent; answers the code.
async fn consented_code(server: &TestServer, client_id: &str, localpart: &str) -> String {
    let mut browser = Browser::new(server);
    let to_login = browser.get(&authorize_path(client_id, "")).await;
    assert!(to_login.location().starts_with(LOGIN_PATH));
    let next: String =
        url::form_urlencoded::parse(to_login.location().split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "next")
            .unwrap()
            .1
            .into_owned();
    let to_consent = log_in(&mut browser, localpart, &next).await;
    assert_eq!(to_consent.location(), next);
    let consent = browser.get(&next).await;
    assert_eq!(consent.status, 200);
    assert!(consent.body.contains("Test App"), "{}", consent.body);
    let id = next.split("id=").nth(1).unwrap().to_owned();
    let answered = browser
        .post(
            CONSENT_PATH,
            &[
                ("csrf", &consent.csrf()),
                ("id", &id),
                ("decision", "allow"),
            ],
        )
        .await;
    let params = callback_params(answered.location());
    assert_eq!(param(&params, "state"), Some("st4te"));
    param(&params, "code").expect("a code").to_owned()
}

async fn exchange(
    server: &TestServer,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> (u16, Value) {
    form_post(
        server,
        TOKEN_PATH,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh_with(server: &TestServer, refresh: &str, client_id: &str) -> (u16, Value) {
    form_post(
        server,
        TOKEN_PATH,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", client_id),
        ],
    )
    .await
}

async fn revoke_with(server: &TestServer, token: &str, client_id: &str) -> (u16, Value) {
    form_post(
        server,
        REVOCATION_PATH,
        &[("token", token), ("client_id", client_id)],
    )
    .await
}

async fn whoami(server: &TestServer, token: &str) -> (u16, Value) {
    server
        .request(
            "GET",
            "/_matrix/client/v3/account/whoami",
            Some(token),
            None,
        )
        .await
}

#[test]
fn metadata_is_served_at_both_paths() {
    block_on(async {
        let server = TestServer::new();
        let (status, stable) = server
            .request("GET", "/_matrix/client/v1/auth_metadata", None, None)
            .await;
        assert_eq!(status, 200);
        let (_, unstable) = server
            .request(
                "GET",
                "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
                None,
                None,
            )
            .await;
        assert_eq!(stable, unstable);
        assert_eq!(stable["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(stable["prompt_values_supported"], json!(["create"]));
        assert!(stable["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with(TOKEN_PATH));
        server.set_var("REGISTRATION", "closed");
        let (_, closed) = server
            .request("GET", "/_matrix/client/v1/auth_metadata", None, None)
            .await;
        assert!(closed.get("prompt_values_supported").is_none());
    });
}

/// ruma's type for the metadata is what matrix-rust-sdk (Element X) reads it with: it refuses a
/// document without the grants, modes and PKCE method the spec requires, and URLs not on https.
#[test]
fn metadata_passes_ruma_validation_as_matrix_rust_sdk_reads_it() {
    use ruma::api::client::discovery::get_authorization_server_metadata::v1::AuthorizationServerMetadata;
    block_on(async {
        let server = TestServer::new();
        server.set_var("PUBLIC_BASEURL", "https://matrix.test.local");
        let (_, body) = server
            .request("GET", "/_matrix/client/v1/auth_metadata", None, None)
            .await;
        let parsed: AuthorizationServerMetadata =
            serde_json::from_value(body).expect("ruma accepts the metadata");
        parsed.validate_urls().expect("every URL is https");
        assert_eq!(
            parsed.device_authorization_endpoint.unwrap().as_str(),
            "https://matrix.test.local/oauth2/device_authorization"
        );
        assert!(parsed.account_management_actions_supported.len() >= 4);
    });
}

#[test]
fn code_flow_issues_tokens_that_work_refresh_and_revoke() {
    block_on(async {
        let server = TestServer::new();
        server.register("alice").await;
        let client_id = native_client(&server).await;
        let code = consented_code(&server, &client_id, "alice").await;
        let (status, tokens) = exchange(&server, &client_id, &code, VERIFIER).await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        let access = tokens["access_token"].as_str().unwrap();
        let (status, me) = whoami(&server, access).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["device_id"], DEVICE);
        // The device is named after the app.
        let (_, devices) = server
            .request("GET", "/_matrix/client/v3/devices", Some(access), None)
            .await;
        assert!(devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == DEVICE && d["display_name"] == "Test App"));

        // Another client cannot use the refresh token.
        let other = native_client(&server).await;
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let (status, refused) = refresh_with(&server, refresh, &other).await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, renewed) = refresh_with(&server, refresh, &client_id).await;
        assert_eq!(status, 200, "{renewed}");
        let new_access = renewed["access_token"].as_str().unwrap();
        assert_eq!(whoami(&server, new_access).await.0, 200);
        // Once the new token is used, the old refresh token is spent.
        let (status, spent) = refresh_with(&server, refresh, &client_id).await;
        assert_eq!(
            (status, spent["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        // Revocation by another client is refused; by the owner it ends the device.
        let (status, refused) = revoke_with(&server, new_access, &other).await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("unauthorized_client"))
        );
        assert_eq!(whoami(&server, new_access).await.0, 200);
        let (status, _) = revoke_with(&server, new_access, &client_id).await;
        assert_eq!(status, 200);
        let (status, gone) = whoami(&server, new_access).await;
        assert_eq!(
            (status, gone["errcode"].as_str()),
            (401, Some("M_UNKNOWN_TOKEN"))
        );
        let renewed_refresh = renewed["refresh_token"].as_str().unwrap();
        let (status, _) = refresh_with(&server, renewed_refresh, &client_id).await;
        assert_eq!(status, 400);
        assert!(server.rows("SELECT * FROM oauth_sessions").await.is_empty());
        // An unknown token is answered 200 (RFC 7009 section 2.2).
        let (status, _) = revoke_with(&server, "nope", &client_id).await;
        assert_eq!(status, 200);
    });
}

#[test]
fn hostile_code_exchanges_are_refused_with_invalid_grant() {
    block_on(async {
        let server = TestServer::new();
        server.register("bob").await;
        let client_id = native_client(&server).await;

        // A wrong verifier: refused, and the code is spent.
        let code = consented_code(&server, &client_id, "bob").await;
        let wrong = "another-verifier-that-is-long-enough-for-pkce-xyz0";
        let (status, body) = exchange(&server, &client_id, &code, wrong).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(exchange(&server, &client_id, &code, VERIFIER).await.0, 400);

        // A reused code: refused, and the session the first use started ends.
        let code = consented_code(&server, &client_id, "bob").await;
        let (status, tokens) = exchange(&server, &client_id, &code, VERIFIER).await;
        assert_eq!(status, 200);
        let (status, body) = exchange(&server, &client_id, &code, VERIFIER).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(
            whoami(&server, tokens["access_token"].as_str().unwrap())
                .await
                .0,
            401
        );

        // Another redirect URI than the request's.
        let code = consented_code(&server, &client_id, "bob").await;
        let (status, body) = form_post(
            &server,
            TOKEN_PATH,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1/other"),
                ("client_id", &client_id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        // An expired code.
        let code = consented_code(&server, &client_id, "bob").await;
        server
            .rows("UPDATE oauth_authorizations SET code_expires_ts = 1 WHERE used = 0")
            .await;
        let (status, body) = exchange(&server, &client_id, &code, VERIFIER).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        // Unknown grant types and missing fields.
        let (status, body) = form_post(&server, TOKEN_PATH, &[("grant_type", "password")]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        let (status, body) =
            form_post(&server, TOKEN_PATH, &[("grant_type", "authorization_code")]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );
    });
}

#[test]
fn authorize_never_redirects_to_an_unregistered_uri_and_reports_errors_to_the_client() {
    block_on(async {
        let server = TestServer::new();
        let client_id = native_client(&server).await;
        let mut browser = Browser::new(&server);
        let foreign = authorize_path(&client_id, "")
            .replace(&encode(REDIRECT), &encode("https://evil.example/cb"));
        let page = browser.get(&foreign).await;
        assert_eq!(page.status, 400);
        assert!(page.header("location").is_none());
        let page = browser.get(&authorize_path("nobody", "")).await;
        assert_eq!(page.status, 400);
        assert!(page.header("location").is_none());

        // A loopback redirect matches on any port.
        let any_port = authorize_path(&client_id, "")
            .replace(&encode(REDIRECT), &encode("http://127.0.0.1:5555/callback"));
        assert!(browser
            .get(&any_port)
            .await
            .location()
            .starts_with(LOGIN_PATH));

        let bad_scope = authorize_path(&client_id, "")
            .replace("scope=", "scope=urn%3Amatrix%3Aclient%3Aapi%3A*&x=");
        let params = callback_params(browser.get(&bad_scope).await.location());
        assert_eq!(param(&params, "error"), Some("invalid_scope"));
        assert_eq!(param(&params, "state"), Some("st4te"));
        let plain = authorize_path(&client_id, "")
            .replace("code_challenge_method=S256", "code_challenge_method=plain");
        let params = callback_params(browser.get(&plain).await.location());
        assert_eq!(param(&params, "error"), Some("invalid_request"));
        let token =
            authorize_path(&client_id, "").replace("response_type=code", "response_type=token");
        let params = callback_params(browser.get(&token).await.location());
        assert_eq!(param(&params, "error"), Some("unsupported_response_type"));
    });
}

#[test]
fn forms_without_their_csrf_token_change_nothing() {
    block_on(async {
        let server = TestServer::new();
        server.register("carol").await;
        let client_id = native_client(&server).await;
        let mut browser = Browser::new(&server);
        let next = browser
            .get(&authorize_path(&client_id, ""))
            .await
            .location()
            .to_owned();
        let next = url::form_urlencoded::parse(next.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "next")
            .unwrap()
            .1
            .into_owned();
        // A login without the token is refused, with or without a cookie.
        let refused = browser
            .post(
                LOGIN_PATH,
                &[("username", "carol"), ("password", "correct horse battery")],
            )
            .await;
        assert_eq!(refused.status, 403);
        let mut stranger = Browser::new(&server);
        let refused = stranger
            .post(
                LOGIN_PATH,
                &[
                    ("csrf", "guess"),
                    ("username", "carol"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(refused.status, 403);
        log_in(&mut browser, "carol", &next).await;
        let id = next.split("id=").nth(1).unwrap();
        let refused = browser
            .post(CONSENT_PATH, &[("id", id), ("decision", "allow")])
            .await;
        assert_eq!(refused.status, 403);
        assert!(refused.header("location").is_none());
        let rows = server
            .rows("SELECT code_hash FROM oauth_authorizations")
            .await;
        assert_eq!(rows, vec![json!({ "code_hash": null })]);
        // Denying sends the RFC's error back.
        let consent = browser.get(&next).await;
        let denied = browser
            .post(
                CONSENT_PATH,
                &[("csrf", &consent.csrf()), ("id", id), ("decision", "deny")],
            )
            .await;
        let params = callback_params(denied.location());
        assert_eq!(param(&params, "error"), Some("access_denied"));
    });
}

#[test]
fn registration_page_follows_the_registration_mode() {
    block_on(async {
        let server = TestServer::new();
        let mut browser = Browser::new(&server);
        let page = browser.get(REGISTER_PATH).await;
        assert_eq!(page.status, 200);
        let fields = |csrf: &str, name: &'static str| {
            vec![
                ("csrf".to_owned(), csrf.to_owned()),
                ("username".to_owned(), name.to_owned()),
                ("password".to_owned(), "long enough pw".to_owned()),
                ("password2".to_owned(), "long enough pw".to_owned()),
            ]
        };
        async fn post(browser: &mut Browser<'_>, fields: Vec<(String, String)>) -> Page {
            let refs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            browser.post(REGISTER_PATH, &refs).await
        }
        let created = post(&mut browser, fields(&page.csrf(), "dave")).await;
        assert_eq!(created.location(), ACCOUNT_PATH);
        let account = browser.get(ACCOUNT_PATH).await;
        assert!(
            account.body.contains("@dave:test.local"),
            "{}",
            account.body
        );

        server.set_var("REGISTRATION", "token");
        server.set_var("REGISTRATION_TOKEN", "letmein");
        let mut browser = Browser::new(&server);
        let page = browser.get(REGISTER_PATH).await;
        assert!(page.body.contains("registration_token"));
        let refused = post(&mut browser, fields(&page.csrf(), "erin")).await;
        assert_eq!(refused.status, 400);
        let mut with_token = fields(&page.csrf(), "erin");
        with_token.push(("registration_token".into(), "letmein".into()));
        assert_eq!(post(&mut browser, with_token).await.status, 303);

        server.set_var("REGISTRATION", "closed");
        let mut browser = Browser::new(&server);
        let page = browser.get(REGISTER_PATH).await;
        assert_eq!(page.status, 403);
        let csrf = browser.get(LOGIN_PATH).await.csrf();
        assert_eq!(post(&mut browser, fields(&csrf, "frank")).await.status, 403);
        assert!(server
            .rows("SELECT user_id FROM users WHERE user_id LIKE '@frank%'")
            .await
            .is_empty());
    });
}

#[test]
fn device_grant_polls_until_the_person_approves() {
    block_on(async {
        let server = TestServer::new();
        server.register("gina").await;
        let client_id = register_client(
            &server,
            json!({
                "client_uri": "https://tv.example.org/",
                "grant_types": [client_metadata::DEVICE_CODE_GRANT, "refresh_token"],
            }),
        )
        .await;
        let scope = format!("urn:matrix:client:api:* urn:matrix:client:device:{DEVICE}");
        let (status, grant) = form_post(
            &server,
            DEVICE_AUTHORIZATION_PATH,
            &[("client_id", &client_id), ("scope", &scope)],
        )
        .await;
        assert_eq!(status, 200, "{grant}");
        let device_code = grant["device_code"].as_str().unwrap();
        let poll = || async {
            form_post(
                &server,
                TOKEN_PATH,
                &[
                    ("grant_type", client_metadata::DEVICE_CODE_GRANT),
                    ("device_code", device_code),
                    ("client_id", &client_id),
                ],
            )
            .await
        };
        assert_eq!(poll().await.1["error"], "authorization_pending");
        assert_eq!(poll().await.1["error"], "slow_down");

        let mut browser = Browser::new(&server);
        let complete = grant["verification_uri_complete"].as_str().unwrap();
        let path = &complete[complete.find(DEVICE_PAGE_PATH).unwrap()..];
        let to_login = browser.get(path).await;
        let next =
            url::form_urlencoded::parse(to_login.location().split_once('?').unwrap().1.as_bytes())
                .find(|(k, _)| k == "next")
                .unwrap()
                .1
                .into_owned();
        assert_eq!(log_in(&mut browser, "gina", &next).await.location(), next);
        let page = browser.get(&next).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let user_code = grant["user_code"].as_str().unwrap();
        let answered = browser
            .post(
                DEVICE_PAGE_PATH,
                &[
                    ("csrf", &page.csrf()),
                    ("user_code", user_code),
                    ("decision", "allow"),
                ],
            )
            .await;
        assert_eq!(answered.status, 200);
        let (status, tokens) = poll().await;
        assert_eq!(status, 200, "{tokens}");
        let (_, me) = whoami(&server, tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(me["user_id"], "@gina:test.local");
        // The grant is spent.
        assert_eq!(poll().await.1["error"], "invalid_grant");
    });
}

#[test]
fn cross_signing_reset_offers_m_oauth_and_passes_once_approved() {
    block_on(async {
        let server = TestServer::new();
        let (user_id, password_token) = server.register("hana").await;
        let client_id = native_client(&server).await;
        let code = consented_code(&server, &client_id, "hana").await;
        let (_, tokens) = exchange(&server, &client_id, &code, VERIFIER).await;
        let token = tokens["access_token"].as_str().unwrap().to_owned();
        let keys = |n: &str| {
            json!({
                "master_key": { "user_id": user_id, "usage": ["master"], "keys": { format!("ed25519:{n}"): n } },
            })
        };
        let path = "/_matrix/client/v3/keys/device_signing/upload";
        let (status, _) = server
            .request("POST", path, Some(&token), Some(keys("first")))
            .await;
        assert_eq!(status, 200);
        let (status, challenge) = server
            .request("POST", path, Some(&token), Some(keys("second")))
            .await;
        assert_eq!(status, 401, "{challenge}");
        // A device signed in with a password is asked for the password, as before.
        let (_, password_challenge) = server
            .request("POST", path, Some(&password_token), Some(keys("second")))
            .await;
        assert_eq!(
            password_challenge["flows"],
            json!([{ "stages": ["m.login.password"] }])
        );
        assert_eq!(challenge["flows"][0], json!({ "stages": ["m.oauth"] }));
        let url = challenge["params"]["m.oauth"]["url"].as_str().unwrap();
        assert!(url.ends_with("/account?action=org.matrix.cross_signing_reset"));
        let session = challenge["session"].as_str().unwrap();
        let mut body = keys("second");
        body["auth"] = json!({ "type": "m.oauth", "session": session });
        let (status, _) = server
            .request("POST", path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(status, 401);

        let mut browser = Browser::new(&server);
        log_in(
            &mut browser,
            "hana",
            "/account?action=org.matrix.cross_signing_reset",
        )
        .await;
        let page = browser
            .get("/account?action=org.matrix.cross_signing_reset")
            .await;
        assert!(page.body.contains("Reset your identity"));
        let approved = browser
            .post("/account/cross_signing_reset", &[("csrf", &page.csrf())])
            .await;
        assert_eq!(approved.status, 200);
        let (status, answer) = server.request("POST", path, Some(&token), Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        // While the approval lasts, a retry without `auth` passes too (matrix-rust-sdk polls so).
        let (status, answer) = server
            .request("POST", path, Some(&token), Some(keys("third")))
            .await;
        assert_eq!(status, 200, "{answer}");
    });
}

#[test]
fn account_page_signs_devices_out() {
    block_on(async {
        let server = TestServer::new();
        let (_, token) = server.register("ivan").await;
        let mut browser = Browser::new(&server);
        let to_login = browser.get(ACCOUNT_PATH).await;
        assert!(to_login.location().starts_with(LOGIN_PATH));
        log_in(&mut browser, "ivan", ACCOUNT_PATH).await;
        let page = browser.get(ACCOUNT_PATH).await;
        let (_, me) = whoami(&server, &token).await;
        let device = me["device_id"].as_str().unwrap();
        assert!(page.body.contains(device));
        let unknown = browser
            .post(
                "/account/devices/delete",
                &[("csrf", &page.csrf()), ("device_id", "NOSUCHDEVICE")],
            )
            .await;
        assert_eq!(unknown.status, 400);
        assert_eq!(whoami(&server, &token).await.0, 200);
        let done = browser
            .post(
                "/account/devices/delete",
                &[("csrf", &page.csrf()), ("device_id", device)],
            )
            .await;
        assert_eq!(done.status, 200);
        assert_eq!(whoami(&server, &token).await.0, 401);
        let out = browser
            .post("/account/sign_out_everywhere", &[("csrf", &done.csrf())])
            .await;
        assert!(out.location().starts_with(LOGIN_PATH));
        assert!(browser
            .get(ACCOUNT_PATH)
            .await
            .location()
            .starts_with(LOGIN_PATH));
    });
}

#[test]
fn next_only_leads_to_our_own_pages() {
    assert_eq!(
        local_next(Some("/oauth2/consent?id=x")),
        "/oauth2/consent?id=x"
    );
    assert_eq!(local_next(Some("/account?action=x")), "/account?action=x");
    for bad in [
        "https://evil.example/",
        "//evil.example/oauth2/",
        "/oauth2/..//evil",
        "/\\evil",
        "/_matrix/client/v3/logout",
        "/oauth2/x\r\nSet-Cookie: a=b",
    ] {
        assert_eq!(local_next(Some(bad)), ACCOUNT_PATH, "{bad}");
    }
    assert_eq!(local_next(None), ACCOUNT_PATH);
}
