"""OAuth 2.0 served by the Worker (src/oauth/), driven over real HTTP as a person and an app
would: `requests` plays both the browser (a cookie jar, the HTML forms with their CSRF token,
redirects followed by hand so each hop is checked) and the client (dynamic registration, PKCE,
the token, refresh and revocation endpoints).

The full authorization code flow registers a new account through the pages, consents, exchanges
the code, calls `/whoami` with the token, refreshes and revokes. The hostile cases (wrong
verifier, reused code, foreign redirect URI, expired code, missing CSRF token) are each refused
with the RFC's error and change nothing. The device authorization grant (RFC 8628) runs from
the device's first poll to its tokens. Parallel exchanges of one code issue tokens once.
And matrix-js-sdk's own OAuth client (what Element Web signs in with) runs the same flows
(tests/clients/js/oauth.mjs).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from harness import ROOT, d1_database
from test_js_sdk import run_node_script

V3 = "/_matrix/client/v3"
REDIRECT = "http://127.0.0.1/callback"
PASSWORD = "a long enough password"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def scope(device_id: str) -> str:
    return f"urn:matrix:client:api:* urn:matrix:client:device:{device_id}"


def csrf(page: requests.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Browser:
    """A person's browser: one cookie jar, no automatic redirects."""

    def __init__(self, server):
        self.server = server
        self.session = requests.Session()

    def get(self, path_or_url: str) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else self.server.base_url + path_or_url
        r = self.session.get(url, allow_redirects=False, timeout=10)
        assert r.status_code < 500, r.text
        return r

    def post(self, path: str, fields: dict) -> requests.Response:
        r = self.session.post(self.server.base_url + path, data=fields, allow_redirects=False, timeout=10)
        assert r.status_code < 500, r.text
        return r


@pytest.fixture(scope="module")
def metadata(server) -> dict:
    stable = server.get("/_matrix/client/v1/auth_metadata")
    assert stable.status_code == 200
    unstable = server.get("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata")
    assert unstable.json() == stable.json()
    body = stable.json()
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert "create" in body["prompt_values_supported"]
    assert DEVICE_GRANT in body["grant_types_supported"]
    return body


def register_client(metadata: dict, **fields) -> dict:
    body = {"client_name": "Integration App", "client_uri": "https://app.example.org/",
            "application_type": "native", "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"], **fields}
    r = requests.post(metadata["registration_endpoint"], json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def token_call(metadata: dict, **fields) -> requests.Response:
    r = requests.post(metadata["token_endpoint"], data=fields, timeout=10)
    assert r.status_code < 500, r.text
    assert r.headers.get("Cache-Control") == "no-store"
    return r


def oauth_error(r: requests.Response, error: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error, r.text


def whoami(server, token: str) -> requests.Response:
    return server.get(f"{V3}/account/whoami", headers={"Authorization": f"Bearer {token}"})


def authorize_url(metadata: dict, client_id: str, challenge: str, device_id: str, **extra) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": scope(device_id), "state": "state-" + device_id,
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return metadata["authorization_endpoint"] + "?" + urlencode(params)


def consent(browser: Browser, consent_path: str, decision: str = "allow") -> dict[str, str]:
    """Answers the consent page; returns the parameters of the callback to the app."""
    page = browser.get(consent_path)
    assert page.status_code == 200, page.text
    assert "Integration App" in page.text
    done = browser.post("/oauth2/consent", {"csrf": csrf(page), "id": query(consent_path)["id"],
                                            "decision": decision})
    assert done.status_code == 303, done.text
    assert done.headers["Location"].startswith(REDIRECT)
    return query(done.headers["Location"])


@pytest.fixture(scope="module")
def account(server, metadata) -> dict:
    """A person with an account (registered through the pages) and a signed-in browser."""
    browser = Browser(server)
    to_register = browser.get("/oauth2/register")
    assert to_register.status_code == 200
    name = "oauth-" + secrets.token_hex(4)
    created = browser.post("/oauth2/register", {"csrf": csrf(to_register), "username": name,
                                                "password": PASSWORD, "password2": PASSWORD})
    assert created.status_code == 303, created.text
    return {"browser": browser, "name": name, "user_id": f"@{name}:{server.server_name}"}


def code_for(metadata, browser: Browser, client_id: str, device_id: str) -> tuple[str, str]:
    """Runs authorize and consent in a signed-in browser; answers (code, verifier)."""
    verifier, challenge = pkce_pair()
    to_consent = browser.get(authorize_url(metadata, client_id, challenge, device_id))
    assert to_consent.status_code == 303 and to_consent.headers["Location"].startswith("/oauth2/consent")
    params = consent(browser, to_consent.headers["Location"])
    assert params["state"] == "state-" + device_id
    return params["code"], verifier


def exchange(metadata, client_id: str, code: str, verifier: str, redirect_uri: str = REDIRECT):
    return token_call(metadata, grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                      client_id=client_id, code_verifier=verifier)


def test_full_code_flow_registers_consents_exchanges_refreshes_and_revokes(server, metadata):
    client = register_client(metadata)
    assert client["token_endpoint_auth_method"] == "none"
    browser = Browser(server)
    device_id = "FLOW" + secrets.token_hex(4).upper()
    verifier, challenge = pkce_pair()
    # prompt=create: the app asks for the registration page. A loopback redirect may use any port.
    start = browser.get(authorize_url(metadata, client["client_id"], challenge, device_id, prompt="create",
                                      redirect_uri="http://127.0.0.1:43210/callback"))
    assert start.status_code == 303, start.text
    to_register = start.headers["Location"]
    assert to_register.startswith("/oauth2/register?next=")
    page = browser.get(to_register)
    assert page.status_code == 200 and 'name="password2"' in page.text
    name = "flow-" + secrets.token_hex(4)
    created = browser.post("/oauth2/register", {
        "csrf": csrf(page), "username": name, "password": PASSWORD, "password2": PASSWORD,
        "next": query(to_register)["next"]})
    assert created.status_code == 303, created.text
    consent_path = created.headers["Location"]
    assert consent_path.startswith("/oauth2/consent?id=")
    page = browser.get(consent_path)
    done = browser.post("/oauth2/consent", {"csrf": csrf(page), "id": query(consent_path)["id"],
                                            "decision": "allow"})
    callback = done.headers["Location"]
    assert callback.startswith("http://127.0.0.1:43210/callback?")
    params = query(callback)
    assert params["state"] == "state-" + device_id

    r = exchange(metadata, client["client_id"], params["code"], verifier,
                 redirect_uri="http://127.0.0.1:43210/callback")
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] > 0
    assert tokens["scope"] == scope(device_id)
    me = whoami(server, tokens["access_token"])
    assert me.status_code == 200, me.text
    assert me.json() == {"user_id": f"@{name}:{server.server_name}", "device_id": device_id,
                         "is_guest": False}

    # Refresh rotates: the new token works, and once it is used the old refresh token is spent.
    r = token_call(metadata, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                   client_id=client["client_id"])
    assert r.status_code == 200, r.text
    renewed = r.json()
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert whoami(server, renewed["access_token"]).status_code == 200
    oauth_error(token_call(metadata, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                           client_id=client["client_id"]), "invalid_grant")

    # Revocation (RFC 7009) ends the session: the device and both its tokens.
    r = requests.post(metadata["revocation_endpoint"],
                      data={"token": renewed["access_token"], "token_type_hint": "access_token",
                            "client_id": client["client_id"]}, timeout=10)
    assert r.status_code == 200, r.text
    gone = whoami(server, renewed["access_token"])
    assert gone.status_code == 401 and gone.json()["errcode"] == "M_UNKNOWN_TOKEN"
    oauth_error(token_call(metadata, grant_type="refresh_token", refresh_token=renewed["refresh_token"],
                           client_id=client["client_id"]), "invalid_grant")


def test_wrong_verifier_is_refused_and_spends_the_code(server, metadata, account):
    client = register_client(metadata)
    code, verifier = code_for(metadata, account["browser"], client["client_id"], "WRONGVERIF")
    other_verifier, _ = pkce_pair()
    oauth_error(exchange(metadata, client["client_id"], code, other_verifier), "invalid_grant")
    oauth_error(exchange(metadata, client["client_id"], code, verifier), "invalid_grant")


def test_reused_code_is_refused_and_ends_the_session_it_started(server, metadata, account):
    client = register_client(metadata)
    code, verifier = code_for(metadata, account["browser"], client["client_id"], "REUSEDCODE")
    first = exchange(metadata, client["client_id"], code, verifier)
    assert first.status_code == 200
    token = first.json()["access_token"]
    assert whoami(server, token).status_code == 200
    oauth_error(exchange(metadata, client["client_id"], code, verifier), "invalid_grant")
    assert whoami(server, token).status_code == 401


def test_foreign_redirect_uri_is_never_redirected_to(server, metadata, account):
    r = requests.post(metadata["registration_endpoint"],
                      json={"client_uri": "https://app.example.org/", "redirect_uris": ["https://evil.example/cb"]},
                      timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_redirect_uri"
    client = register_client(metadata)
    _, challenge = pkce_pair()
    foreign = authorize_url(metadata, client["client_id"], challenge, "FOREIGNURI",
                            redirect_uri="https://evil.example/cb")
    page = account["browser"].get(foreign)
    assert page.status_code == 400 and "Location" not in page.headers
    # A code is bound to the redirect URI of its request.
    code, verifier = code_for(metadata, account["browser"], client["client_id"], "OTHERREDIR")
    oauth_error(exchange(metadata, client["client_id"], code, verifier, redirect_uri="http://127.0.0.1/elsewhere"),
                "invalid_grant")


def test_expired_code_is_refused(server, metadata, account):
    client = register_client(metadata)
    code, verifier = code_for(metadata, account["browser"], client["client_id"], "EXPIREDCOD")
    # Codes live a minute (src/oauth/authorize.rs); rather than wait, the test ages this one in
    # the instance's local D1 file (SQLite's own locking makes the write safe beside workerd).
    code_hash = hashlib.sha256(code.encode()).hexdigest()
    with sqlite3.connect(d1_database(server.state_dir), timeout=10) as db:
        changed = db.execute("UPDATE oauth_authorizations SET code_expires_ts = 1 WHERE code_hash = ?",
                             (code_hash,)).rowcount
    assert changed == 1
    oauth_error(exchange(metadata, client["client_id"], code, verifier), "invalid_grant")


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(server, metadata, account):
    client = register_client(metadata)
    browser = account["browser"]
    _, challenge = pkce_pair()
    to_consent = browser.get(authorize_url(metadata, client["client_id"], challenge, "CSRFCHECK1"))
    consent_path = to_consent.headers["Location"]
    refused = browser.post("/oauth2/consent", {"id": query(consent_path)["id"], "decision": "allow"})
    assert refused.status_code == 403 and "Location" not in refused.headers
    # A login form posted from elsewhere (no cookie, a guessed token) is refused too.
    stranger = Browser(server)
    refused = stranger.post("/oauth2/login", {"csrf": "guess", "username": account["name"],
                                              "password": PASSWORD})
    assert refused.status_code == 403 and "Set-Cookie" not in refused.headers
    # The request is still pending: the real form, with its token, still answers it.
    params = consent(browser, consent_path, decision="deny")
    assert params["error"] == "access_denied" and params["state"] == "state-CSRFCHECK1"


def test_device_authorization_grant(server, metadata, account):
    client = register_client(metadata, client_uri="https://tv.example.org/", redirect_uris=[],
                             grant_types=[DEVICE_GRANT, "refresh_token"], client_name="Integration App")
    r = requests.post(metadata["device_authorization_endpoint"],
                      data={"client_id": client["client_id"], "scope": scope("TVDEVICE01")}, timeout=10)
    assert r.status_code == 200, r.text
    grant = r.json()
    assert grant["interval"] >= 5 and grant["expires_in"] > 0
    poll = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": client["client_id"]}
    oauth_error(token_call(metadata, **poll), "authorization_pending")
    oauth_error(token_call(metadata, **poll), "slow_down")

    browser = account["browser"]
    page = browser.get(grant["verification_uri_complete"])
    assert page.status_code == 200, page.text
    assert grant["user_code"] in page.text
    done = browser.post("/oauth2/device", {"csrf": csrf(page), "user_code": grant["user_code"],
                                           "decision": "allow"})
    assert done.status_code == 200, done.text

    r = token_call(metadata, **poll)
    assert r.status_code == 200, r.text
    me = whoami(server, r.json()["access_token"])
    assert me.json()["user_id"] == account["user_id"] and me.json()["device_id"] == "TVDEVICE01"
    oauth_error(token_call(metadata, **poll), "invalid_grant")


def test_concurrent_exchanges_of_one_code_issue_tokens_once(server, metadata, account):
    """Spending a code is one conditional UPDATE: of parallel exchanges exactly one gets tokens
    (and, a reuse being detected, that session is then ended as for a reused code)."""
    client = register_client(metadata)
    code, verifier = code_for(metadata, account["browser"], client["client_id"], "PARALLEL01")
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: exchange(metadata, client["client_id"], code, verifier), range(4)))
    assert sorted(r.status_code for r in answers) == [200, 400, 400, 400]
    assert all(r.json()["error"] == "invalid_grant" for r in answers if r.status_code == 400)


def test_matrix_js_sdk_oauth_client(server):
    """matrix-js-sdk's own OAuth client (Element Web's sign-in) through discovery, registration,
    the pages, code exchange, refresh, revocation and the device grant
    (tests/clients/js/oauth.mjs)."""
    run_node_script(server, ROOT / "tests" / "clients" / "js" / "oauth.mjs")
