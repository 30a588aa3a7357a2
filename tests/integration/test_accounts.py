"""The account endpoints over real HTTP: registration (UIA, tokens, Synapse's shared-secret admin
API driven by Synapse's own `register_new_matrix_user`), login, refresh, logout, password change,
deactivation, devices, rate limits and malformed input.

Each test asserts the status, `errcode` and body shape the client-server spec gives. Every
request goes through `Api.call`, which fails the test on any 5xx: a bad request is the client's
fault, never a server error.

Most tests share the session `server` (open registration, the dev shared secret). Two more
instances, started side by side once for this module, cover the other settings: token-only
registration, and closed registration with a rate limit of 3 auth requests a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness import Homeserver

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery staple"
# scripts/dev.sh's default; the shared server runs with it.
DEV_SHARED_SECRET = "matrix-edge-dev-shared-secret"
REGISTRATION_TOKEN = "tok-" + secrets.token_hex(8)
REGISTER_NEW_MATRIX_USER = Path(sys.executable).parent / "register_new_matrix_user"


class Api:
    """Requests against one instance; any 5xx answer fails the test on the spot."""

    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.server_name = hs.server_name

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        if token is not None:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
        response = self.hs.request(method, path, **kwargs)
        assert response.status_code < 500, (
            f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


def ok(response: requests.Response) -> dict:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"] == "application/json"
    return response.json()


def error(response: requests.Response, status: int, errcode: str) -> dict:
    """A standard error: exactly this status, this errcode and a human-readable `error`."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errcode"] == errcode, body
    assert isinstance(body.get("error"), str), body
    return body


def uia_challenge(response: requests.Response, stages: list[str]) -> dict:
    """A 401 that starts or continues user-interactive auth, offering exactly one flow."""
    assert response.status_code == 401, f"{response.status_code}: {response.text[:500]}"
    body = response.json()
    assert body["flows"] == [{"stages": stages}], body
    assert isinstance(body["params"], dict), body
    assert isinstance(body["session"], str) and body["session"], body
    return body


def fresh(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


def register(api: Api, localpart: str | None = None, **fields) -> dict:
    """Registers through the full UIA dance: ask for a session, then complete m.login.dummy."""
    body = {"password": PASSWORD, **fields}
    if localpart is not None:
        body["username"] = localpart
    session = uia_challenge(api.call("POST", f"{V3}/register", json=body), ["m.login.dummy"])["session"]
    body["auth"] = {"type": "m.login.dummy", "session": session}
    return ok(api.call("POST", f"{V3}/register", json=body))


def login(api: Api, user: str, password: str = PASSWORD, **fields) -> requests.Response:
    return api.call("POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password, **fields})


def assert_session(body: dict, user_id: str) -> None:
    """A /login or /register answer that logged in."""
    assert body["user_id"] == user_id
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert isinstance(body["device_id"], str) and body["device_id"]


def whoami(api: Api, token: str) -> requests.Response:
    return api.call("GET", f"{V3}/account/whoami", token)


def password_auth(localpart: str, session: str, password: str = PASSWORD) -> dict:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
            "password": password, "session": session}


def with_password_uia(api: Api, method: str, path: str, token: str, localpart: str,
                      body: dict | None = None, unchanged=lambda: None) -> requests.Response:
    """A request behind m.login.password: the bare request gets the challenge, a wrong password
    fails with M_FORBIDDEN in the same session (and `unchanged()` checks nothing happened),
    and the right password gets the final answer, returned."""
    body = dict(body or {})
    challenge = uia_challenge(api.call(method, path, token, json=body), ["m.login.password"])
    session = challenge["session"]
    body["auth"] = password_auth(localpart, session, "not my password")
    wrong = error(api.call(method, path, token, json=body), 401, "M_FORBIDDEN")
    assert wrong["session"] == session and wrong["flows"] == challenge["flows"]
    assert "completed" not in wrong
    unchanged()
    body["auth"] = password_auth(localpart, session)
    return api.call(method, path, token, json=body)


@pytest.fixture(scope="module")
def api(server) -> Api:
    return Api(server)


@pytest.fixture(scope="module")
def user(api):
    """A registered user and one logged-in session of theirs: (localpart, register response)."""
    localpart = fresh("alice")
    return localpart, register(api, localpart)


@pytest.fixture(scope="module")
def other_instances(tmp_path_factory):
    """Token-only registration, and closed registration with 3 auth requests a minute, started
    in parallel: each instance takes seconds to come up."""
    base = tmp_path_factory.mktemp("accounts")
    token = Homeserver(base / "token", env={"REGISTRATION": "token",
                                            "REGISTRATION_TOKEN": REGISTRATION_TOKEN})
    closed = Homeserver(base / "closed", env={"REGISTRATION": "closed",
                                              "AUTH_REQUESTS_PER_MINUTE": "3"})
    with ThreadPoolExecutor(2) as pool:
        starts = [pool.submit(hs.start) for hs in (token, closed)]
        failures = [f.exception() for f in starts]
    try:
        for failure in failures:
            if failure:
                raise failure
        yield Api(token), Api(closed)
    finally:
        token.stop()
        closed.stop()


@pytest.fixture(scope="module")
def token_api(other_instances) -> Api:
    return other_instances[0]


@pytest.fixture(scope="module")
def closed_api(other_instances) -> Api:
    return other_instances[1]


# --- Registration ----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [None, {}, {"username": "someone-new", "password": PASSWORD}],
                         ids=["no body", "empty object", "no auth"])
def test_register_without_auth_answers_401_with_flows_and_a_session(api, body):
    kwargs = {"json": body} if body is not None else {}
    response = api.call("POST", f"{V3}/register", **kwargs)
    challenge = uia_challenge(response, ["m.login.dummy"])
    # Nothing is completed and nothing failed yet.
    assert "completed" not in challenge and "errcode" not in challenge


def test_register_with_dummy_stage_and_session_logs_in(api):
    localpart = fresh("dummy")
    body = register(api, localpart, initial_device_display_name="Laptop")
    assert_session(body, api.user_id(localpart))
    assert "refresh_token" not in body and "expires_in_ms" not in body
    assert ok(whoami(api, body["access_token"])) == {
        "user_id": api.user_id(localpart), "device_id": body["device_id"], "is_guest": False}
    devices = ok(api.call("GET", f"{V3}/devices", body["access_token"]))["devices"]
    assert [(d["device_id"], d["display_name"]) for d in devices] == [(body["device_id"], "Laptop")]


def test_register_with_dummy_stage_without_session(api):
    localpart = fresh("nosession")
    body = ok(api.call("POST", f"{V3}/register", json={
        "username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}))
    assert_session(body, api.user_id(localpart))
    assert_session(ok(login(api, localpart)), api.user_id(localpart))


def test_register_without_username_generates_a_user_id(api):
    body = register(api)
    assert body["user_id"].startswith("@") and body["user_id"].endswith(f":{api.server_name}")
    assert ok(whoami(api, body["access_token"]))["user_id"] == body["user_id"]


def test_register_available(api, user):
    path = f"{V3}/register/available"
    assert ok(api.call("GET", path, params={"username": fresh("free")})) == {"available": True}
    error(api.call("GET", path, params={"username": user[0]}), 400, "M_USER_IN_USE")
    # Capitals fold to the name they spell, as at login.
    error(api.call("GET", path, params={"username": user[0].upper()}), 400, "M_USER_IN_USE")
    error(api.call("GET", path, params={"username": "Ålice"}), 400, "M_INVALID_USERNAME")
    error(api.call("GET", path, params={"username": "has space"}), 400, "M_INVALID_USERNAME")
    error(api.call("GET", path), 400, "M_MISSING_PARAM")


def test_register_refuses_a_taken_or_invalid_name_before_uia(api, user):
    # No auth at all: the 400 comes before any 401 challenge, so no stage is done for nothing.
    error(api.call("POST", f"{V3}/register", json={"username": user[0], "password": PASSWORD}),
          400, "M_USER_IN_USE")
    error(api.call("POST", f"{V3}/register", json={"username": user[0].upper(), "password": PASSWORD}),
          400, "M_USER_IN_USE")
    error(api.call("POST", f"{V3}/register", json={"username": "Ålice", "password": PASSWORD}),
          400, "M_INVALID_USERNAME")
    # And with a completed stage it is still refused: the account keeps its password.
    error(api.call("POST", f"{V3}/register", json={
        "username": user[0], "password": "other", "auth": {"type": "m.login.dummy"}}),
        400, "M_USER_IN_USE")
    assert_session(ok(login(api, user[0])), api.user_id(user[0]))


def test_register_guest_is_forbidden(api):
    error(api.call("POST", f"{V3}/register", params={"kind": "guest"}, json={}),
          403, "M_GUEST_ACCESS_FORBIDDEN")


def test_register_with_inhibit_login_returns_no_session(api):
    localpart = fresh("inhibit")
    body = register(api, localpart, inhibit_login=True)
    assert body["user_id"] == api.user_id(localpart)
    for field in ("access_token", "device_id", "refresh_token", "expires_in_ms"):
        assert field not in body, body
    # The account exists and has no device until it logs in.
    session = ok(login(api, localpart))
    devices = ok(api.call("GET", f"{V3}/devices", session["access_token"]))["devices"]
    assert [d["device_id"] for d in devices] == [session["device_id"]]


def test_refresh_token_rotates_and_the_old_one_stops_working(api):
    localpart = fresh("refresh")
    body = register(api, localpart, refresh_token=True)
    assert_session(body, api.user_id(localpart))
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert isinstance(body["expires_in_ms"], int) and body["expires_in_ms"] > 0

    refreshed = ok(api.call("POST", f"{V3}/refresh", json={"refresh_token": body["refresh_token"]}))
    assert set(refreshed) == {"access_token", "refresh_token", "expires_in_ms"}
    assert isinstance(refreshed["expires_in_ms"], int) and refreshed["expires_in_ms"] > 0
    assert refreshed["access_token"] != body["access_token"]
    assert refreshed["refresh_token"] != body["refresh_token"]
    # Until a new token is used, the old refresh token still works (a client whose answer was
    # lost can refresh again), and the first answer's tokens stay valid too.
    retried = ok(api.call("POST", f"{V3}/refresh", json={"refresh_token": body["refresh_token"]}))
    assert retried["access_token"] != refreshed["access_token"]
    # Same device, new token. Once a new access token is used, the old refresh token is
    # revoked (spec: it stays valid at most until then).
    assert ok(whoami(api, refreshed["access_token"]))["device_id"] == body["device_id"]
    error(api.call("POST", f"{V3}/refresh", json={"refresh_token": body["refresh_token"]}),
          401, "M_UNKNOWN_TOKEN")
    # The new refresh token goes on working.
    again = ok(api.call("POST", f"{V3}/refresh", json={"refresh_token": refreshed["refresh_token"]}))
    assert ok(whoami(api, again["access_token"]))["user_id"] == api.user_id(localpart)
    error(api.call("POST", f"{V3}/refresh", json={"refresh_token": "not-a-token"}),
          401, "M_UNKNOWN_TOKEN")


def test_login_with_refresh_token_and_without(api, user):
    with_refresh = ok(login(api, user[0], refresh_token=True))
    assert isinstance(with_refresh["refresh_token"], str)
    assert isinstance(with_refresh["expires_in_ms"], int) and with_refresh["expires_in_ms"] > 0
    plain = ok(login(api, user[0]))
    assert "refresh_token" not in plain and "expires_in_ms" not in plain


# --- Token-only and closed registration --------------------------------------------------------

def test_token_registration_offers_only_the_token_stage(token_api):
    localpart = fresh("tokenuser")
    body = {"username": localpart, "password": PASSWORD}
    challenge = uia_challenge(token_api.call("POST", f"{V3}/register", json=body),
                              ["m.login.registration_token"])
    session = challenge["session"]

    body["auth"] = {"type": "m.login.registration_token", "token": "wrong", "session": session}
    wrong = error(token_api.call("POST", f"{V3}/register", json=body), 401, "M_UNAUTHORIZED")
    assert wrong["session"] == session
    assert wrong["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert "completed" not in wrong

    # The dummy stage is not offered here, so it cannot stand in for the token.
    body["auth"] = {"type": "m.login.dummy", "session": session}
    assert token_api.call("POST", f"{V3}/register", json=body).status_code == 401
    error(login(token_api, localpart), 403, "M_FORBIDDEN")

    body["auth"] = {"type": "m.login.registration_token", "token": REGISTRATION_TOKEN,
                    "session": session}
    assert_session(ok(token_api.call("POST", f"{V3}/register", json=body)),
                   token_api.user_id(localpart))
    assert_session(ok(login(token_api, localpart)), token_api.user_id(localpart))


def test_registration_token_validity(token_api, closed_api, api):
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert ok(token_api.call("GET", path, params={"token": REGISTRATION_TOKEN})) == {"valid": True}
    assert ok(token_api.call("GET", path, params={"token": "wrong"})) == {"valid": False}
    error(token_api.call("GET", path), 400, "M_MISSING_PARAM")
    # Spec: 403 means the server does not permit registration at all.
    error(closed_api.call("GET", path, params={"token": REGISTRATION_TOKEN}), 403, "M_FORBIDDEN")
    # Open registration uses no tokens, so none is valid; registration itself is permitted.
    assert ok(api.call("GET", path, params={"token": "anything"})) == {"valid": False}


def test_closed_registration_is_forbidden(closed_api):
    error(closed_api.call("POST", f"{V3}/register", json={}), 403, "M_FORBIDDEN")
    error(closed_api.call("POST", f"{V3}/register", json={
        "username": fresh("closed"), "password": PASSWORD, "auth": {"type": "m.login.dummy"}}),
        403, "M_FORBIDDEN")


def test_login_rate_limit(closed_api):
    # The limit counts per fixed minute; start well inside one so all four attempts share it.
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.5)
    for _ in range(3):
        error(login(closed_api, "nobody"), 403, "M_FORBIDDEN")
    response = login(closed_api, "nobody")
    limited = error(response, 429, "M_LIMIT_EXCEEDED")
    assert isinstance(limited["retry_after_ms"], int) and 0 < limited["retry_after_ms"] <= 60_000
    # Spec (v1.10): homeservers SHOULD send Retry-After, in seconds, on every 429.
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and 0 < int(retry_after) <= 60


# --- Shared-secret registration with Synapse's own tool ------------------------------------------

def run_register_tool(api: Api, localpart: str, shared_secret: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REGISTER_NEW_MATRIX_USER), "-u", localpart, "-p", PASSWORD, "--no-admin",
         "-k", shared_secret, api.hs.base_url],
        capture_output=True, text=True, timeout=60)


def test_register_new_matrix_user_creates_a_user_who_can_log_in(api):
    localpart = fresh("admintool")
    result = run_register_tool(api, localpart, DEV_SHARED_SECRET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success!" in result.stdout
    assert_session(ok(login(api, localpart)), api.user_id(localpart))


def test_register_new_matrix_user_with_a_wrong_secret_is_refused(api):
    localpart = fresh("badsecret")
    result = run_register_tool(api, localpart, "not-the-secret")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR! Received 403" in result.stdout and "HMAC incorrect" in result.stdout
    assert ok(api.call("GET", f"{V3}/register/available",
                       params={"username": localpart})) == {"available": True}


def admin_mac(nonce: str, localpart: str, password: str, admin: bool = False) -> str:
    """The MAC register_new_matrix_user computes: HMAC-SHA1 over NUL-separated fields."""
    mac = hmac.new(DEV_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    mac.update("\x00".join([nonce, localpart, password, "admin" if admin else "notadmin"]).encode())
    return mac.hexdigest()


def test_shared_secret_nonce_cannot_be_reused(api):
    path = "/_synapse/admin/v1/register"
    nonce = ok(api.call("GET", path))["nonce"]
    assert isinstance(nonce, str) and nonce
    first = fresh("nonce")
    body = ok(api.call("POST", path, json={
        "nonce": nonce, "username": first, "password": PASSWORD, "admin": False,
        "mac": admin_mac(nonce, first, PASSWORD)}))
    assert_session(body, api.user_id(first))
    second = fresh("nonce")
    error(api.call("POST", path, json={
        "nonce": nonce, "username": second, "password": PASSWORD, "admin": False,
        "mac": admin_mac(nonce, second, PASSWORD)}), 400, "M_UNKNOWN")
    assert ok(api.call("GET", f"{V3}/register/available",
                       params={"username": second})) == {"available": True}


# --- Login ---------------------------------------------------------------------------------------

def test_login_flows(api):
    flows = ok(api.call("GET", f"{V3}/login"))["flows"]
    assert {"type": "m.login.password"} in flows
    assert all(isinstance(flow["type"], str) for flow in flows)


def test_login_by_localpart_full_id_and_legacy_user_field(api, user):
    localpart, _ = user
    user_id = api.user_id(localpart)
    by_localpart = ok(login(api, localpart))
    by_full_id = ok(login(api, user_id))
    legacy = ok(api.call("POST", f"{V3}/login", json={
        "type": "m.login.password", "user": localpart, "password": PASSWORD}))
    sessions = [by_localpart, by_full_id, legacy]
    for session in sessions:
        assert_session(session, user_id)
        assert ok(whoami(api, session["access_token"])) == {
            "user_id": user_id, "device_id": session["device_id"], "is_guest": False}
    assert len({s["device_id"] for s in sessions}) == 3
    assert len({s["access_token"] for s in sessions}) == 3


def test_login_failures(api, user):
    error(login(api, user[0], "wrong password"), 403, "M_FORBIDDEN")
    error(login(api, fresh("nobody")), 403, "M_FORBIDDEN")
    error(api.call("POST", f"{V3}/login", json={
        "type": "m.login.password", "password": PASSWORD,
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}}),
        403, "M_FORBIDDEN")
    error(api.call("POST", f"{V3}/login", json={"type": "m.login.nonexistent", "user": user[0]}),
          400, "M_UNKNOWN")


def test_login_with_a_known_device_id_replaces_its_token(api, user):
    localpart, _ = user
    device_id = "REUSED" + secrets.token_hex(3).upper()
    first = ok(login(api, localpart, device_id=device_id, initial_device_display_name="Phone"))
    assert first["device_id"] == device_id
    second = ok(login(api, localpart, device_id=device_id))
    assert second["device_id"] == device_id and second["access_token"] != first["access_token"]
    error(whoami(api, first["access_token"]), 401, "M_UNKNOWN_TOKEN")
    assert ok(whoami(api, second["access_token"]))["device_id"] == device_id
    devices = ok(api.call("GET", f"{V3}/devices", second["access_token"]))["devices"]
    reused = [d for d in devices if d["device_id"] == device_id]
    assert len(reused) == 1 and reused[0]["display_name"] == "Phone"


# --- Logout and tokens ---------------------------------------------------------------------------

def test_logout_ends_only_that_session(api, user):
    localpart, _ = user
    leaving, staying = ok(login(api, localpart)), ok(login(api, localpart))
    assert ok(api.call("POST", f"{V3}/logout", leaving["access_token"], json={})) == {}
    error(whoami(api, leaving["access_token"]), 401, "M_UNKNOWN_TOKEN")
    error(api.call("POST", f"{V3}/logout", leaving["access_token"], json={}), 401, "M_UNKNOWN_TOKEN")
    assert ok(whoami(api, staying["access_token"]))["device_id"] == staying["device_id"]
    devices = ok(api.call("GET", f"{V3}/devices", staying["access_token"]))["devices"]
    assert leaving["device_id"] not in [d["device_id"] for d in devices]


def test_logout_all_ends_every_session(api):
    localpart = fresh("logoutall")
    first = register(api, localpart)
    second = ok(login(api, localpart))
    assert ok(api.call("POST", f"{V3}/logout/all", second["access_token"], json={})) == {}
    for session in (first, second):
        error(whoami(api, session["access_token"]), 401, "M_UNKNOWN_TOKEN")
    # The account itself is fine.
    assert_session(ok(login(api, localpart)), api.user_id(localpart))


@pytest.mark.parametrize("method,path", [
    ("GET", f"{V3}/account/whoami"), ("POST", f"{V3}/logout"), ("POST", f"{V3}/logout/all"),
    ("GET", f"{V3}/devices"), ("POST", f"{V3}/account/password"), ("POST", f"{V3}/account/deactivate"),
    ("POST", f"{V3}/delete_devices")])
def test_missing_and_unknown_tokens(api, method, path):
    error(api.call(method, path, json={}), 401, "M_MISSING_TOKEN")
    error(api.call(method, path, "syt_not_a_real_token", json={}), 401, "M_UNKNOWN_TOKEN")


def test_access_token_query_parameter(api, user):
    localpart, _ = user
    session = ok(login(api, localpart))
    body = ok(api.call("GET", f"{V3}/account/whoami", params={"access_token": session["access_token"]}))
    assert body["user_id"] == api.user_id(localpart) and body["device_id"] == session["device_id"]
    error(api.call("GET", f"{V3}/account/whoami", params={"access_token": "nope"}), 401, "M_UNKNOWN_TOKEN")


# --- Password change and deactivation ------------------------------------------------------------

def test_change_password_with_uia_logs_out_other_devices(api):
    localpart = fresh("passwd")
    current = register(api, localpart)
    other = ok(login(api, localpart))
    new_password = "a brand new password"
    assert ok(with_password_uia(
        api, "POST", f"{V3}/account/password", current["access_token"], localpart,
        {"new_password": new_password},
        unchanged=lambda: ok(whoami(api, other["access_token"])))) == {}
    error(whoami(api, other["access_token"]), 401, "M_UNKNOWN_TOKEN")
    assert ok(whoami(api, current["access_token"]))["device_id"] == current["device_id"]
    error(login(api, localpart), 403, "M_FORBIDDEN")
    assert_session(ok(login(api, localpart, new_password)), api.user_id(localpart))


def test_change_password_can_keep_other_devices(api):
    localpart = fresh("keepdev")
    current = register(api, localpart)
    other = ok(login(api, localpart))
    assert ok(with_password_uia(
        api, "POST", f"{V3}/account/password", current["access_token"], localpart,
        {"new_password": "another password", "logout_devices": False})) == {}
    assert ok(whoami(api, other["access_token"]))["device_id"] == other["device_id"]


def test_uia_cannot_use_another_users_password(api, user):
    """Authenticating as somebody else, with their correct password, must not pass."""
    victim = fresh("victim")
    victim_session = register(api, victim)
    path = f"{V3}/account/password"
    body = {"new_password": "hijacked"}
    session = uia_challenge(api.call("POST", path, victim_session["access_token"], json=body),
                            ["m.login.password"])["session"]
    body["auth"] = password_auth(user[0], session)
    # Refused outright (403, as for device deletion in sytest), not offered as a retry.
    error(api.call("POST", path, victim_session["access_token"], json=body), 403, "M_FORBIDDEN")
    assert_session(ok(login(api, victim)), api.user_id(victim))


def test_deactivate_with_uia(api):
    localpart = fresh("deact")
    current = register(api, localpart)
    other = ok(login(api, localpart))
    body = ok(with_password_uia(
        api, "POST", f"{V3}/account/deactivate", current["access_token"], localpart,
        unchanged=lambda: ok(whoami(api, other["access_token"]))))
    assert body["id_server_unbind_result"] in ("success", "no-support")
    for session_body in (current, other):
        error(whoami(api, session_body["access_token"]), 401, "M_UNKNOWN_TOKEN")
    response = login(api, localpart)
    assert response.status_code == 403
    assert response.json()["errcode"] in ("M_USER_DEACTIVATED", "M_FORBIDDEN")
    # A deactivated id is never handed out again.
    error(api.call("GET", f"{V3}/register/available", params={"username": localpart}),
          400, "M_USER_IN_USE")
    error(api.call("POST", f"{V3}/register", json={"username": localpart, "password": PASSWORD}),
          400, "M_USER_IN_USE")


# --- Devices -------------------------------------------------------------------------------------

def assert_device_shape(device: dict) -> None:
    """Spec `Device`: device_id required; display_name, last_seen_ip, last_seen_ts are absent
    rather than null when unknown."""
    assert isinstance(device["device_id"], str)
    assert set(device) <= {"device_id", "display_name", "last_seen_ip", "last_seen_ts"}, device
    for field, kind in (("display_name", str), ("last_seen_ip", str), ("last_seen_ts", int)):
        if field in device:
            assert isinstance(device[field], kind), (field, device)


def test_list_and_get_devices(api):
    localpart = fresh("devices")
    named = register(api, localpart, initial_device_display_name="Laptop")
    unnamed = ok(login(api, localpart))
    devices = ok(api.call("GET", f"{V3}/devices", named["access_token"]))["devices"]
    for device in devices:
        assert_device_shape(device)
    by_id = {d["device_id"]: d for d in devices}
    assert set(by_id) == {named["device_id"], unnamed["device_id"]}
    assert by_id[named["device_id"]]["display_name"] == "Laptop"
    assert "display_name" not in by_id[unnamed["device_id"]]

    one = ok(api.call("GET", f"{V3}/devices/{named['device_id']}", unnamed["access_token"]))
    assert_device_shape(one)
    assert one["device_id"] == named["device_id"] and one["display_name"] == "Laptop"
    error(api.call("GET", f"{V3}/devices/NOSUCHDEVICE", named["access_token"]), 404, "M_NOT_FOUND")


def test_another_users_device_is_not_found(api, user):
    localpart = fresh("nosy")
    mine = register(api, localpart)
    theirs = user[1]["device_id"]
    error(api.call("GET", f"{V3}/devices/{theirs}", mine["access_token"]), 404, "M_NOT_FOUND")
    error(api.call("PUT", f"{V3}/devices/{theirs}", mine["access_token"], json={"display_name": "x"}),
          404, "M_NOT_FOUND")


def test_rename_device(api):
    localpart = fresh("rename")
    session = register(api, localpart, initial_device_display_name="Old name")
    path = f"{V3}/devices/{session['device_id']}"
    token = session["access_token"]
    assert ok(api.call("PUT", path, token, json={"display_name": "New name"})) == {}
    assert ok(api.call("GET", path, token))["display_name"] == "New name"
    # Spec: without display_name, the name is unchanged.
    assert ok(api.call("PUT", path, token, json={})) == {}
    assert ok(api.call("GET", path, token))["display_name"] == "New name"
    error(api.call("PUT", f"{V3}/devices/NOSUCHDEVICE", token, json={"display_name": "x"}),
          404, "M_NOT_FOUND")


def test_delete_one_device_with_uia(api):
    localpart = fresh("delone")
    current = register(api, localpart)
    doomed = ok(login(api, localpart))
    path = f"{V3}/devices/{doomed['device_id']}"
    assert ok(with_password_uia(api, "DELETE", path, current["access_token"], localpart,
                                unchanged=lambda: ok(whoami(api, doomed["access_token"])))) == {}
    error(whoami(api, doomed["access_token"]), 401, "M_UNKNOWN_TOKEN")
    error(api.call("GET", path, current["access_token"]), 404, "M_NOT_FOUND")
    assert ok(whoami(api, current["access_token"]))


def test_delete_devices_with_uia(api):
    localpart = fresh("delmany")
    current = register(api, localpart)
    doomed = [ok(login(api, localpart)) for _ in range(2)]
    assert ok(with_password_uia(
        api, "POST", f"{V3}/delete_devices", current["access_token"], localpart,
        {"devices": [d["device_id"] for d in doomed]},
        unchanged=lambda: [ok(whoami(api, d["access_token"])) for d in doomed])) == {}
    for session_body in doomed:
        error(whoami(api, session_body["access_token"]), 401, "M_UNKNOWN_TOKEN")
    devices = ok(api.call("GET", f"{V3}/devices", current["access_token"]))["devices"]
    assert [d["device_id"] for d in devices] == [current["device_id"]]


def test_a_uia_session_is_bound_to_its_purpose(api):
    """A session opened for deleting devices cannot authorise a password change."""
    localpart = fresh("purpose")
    current = register(api, localpart)
    session = uia_challenge(api.call("POST", f"{V3}/delete_devices", current["access_token"],
                                     json={"devices": []}), ["m.login.password"])["session"]
    response = api.call("POST", f"{V3}/account/password", current["access_token"], json={
        "new_password": "x", "auth": password_auth(localpart, session)})
    assert response.status_code in (400, 401), response.text
    assert_session(ok(login(api, localpart)), api.user_id(localpart))


# --- Malformed input -----------------------------------------------------------------------------

def authed(api: Api, user) -> str:
    return ok(login(api, user[0]))["access_token"]


@pytest.mark.parametrize("method,path,needs_token", [
    ("POST", f"{V3}/register", False), ("POST", f"{V3}/login", False),
    ("POST", f"{V3}/refresh", False), ("POST", "/_synapse/admin/v1/register", False),
    ("POST", f"{V3}/account/password", True), ("POST", f"{V3}/account/deactivate", True),
    ("PUT", f"{V3}/devices/SOMEDEVICE", True), ("POST", f"{V3}/delete_devices", True)])
def test_a_body_that_is_not_json_is_m_not_json(api, user, method, path, needs_token):
    token = authed(api, user) if needs_token else None
    for raw in (b"{not json", b"\xff\xfe", b"{\"a\": 1"):
        error(api.call(method, path, token, data=raw, headers={"Content-Type": "application/json"}),
              400, "M_NOT_JSON")


@pytest.mark.parametrize("method,path,body,needs_token", [
    ("POST", f"{V3}/login", {"type": 5}, False),
    ("POST", f"{V3}/login", {"password": PASSWORD, "user": "x"}, False),
    ("POST", f"{V3}/login", {"type": "m.login.password", "user": "x", "password": 5}, False),
    ("POST", f"{V3}/login", {"type": "m.login.password", "password": PASSWORD,
                             "identifier": {"type": "m.id.user", "user": 5}}, False),
    ("POST", f"{V3}/login", {"type": "m.login.password", "user": "x", "password": PASSWORD,
                             "refresh_token": "yes"}, False),
    ("POST", f"{V3}/login", ["m.login.password"], False),
    ("POST", f"{V3}/register", {"username": 5}, False),
    ("POST", f"{V3}/register", {"inhibit_login": "yes"}, False),
    ("POST", f"{V3}/register", "just a string", False),
    ("POST", f"{V3}/refresh", {}, False),
    ("POST", f"{V3}/refresh", {"refresh_token": 5}, False),
    ("POST", f"{V3}/refresh", ["a refresh token"], False),
    ("POST", f"{V3}/account/password", {"new_password": 5}, True),
    ("POST", f"{V3}/account/password", {}, True),
    ("POST", f"{V3}/account/password", ["new password"], True),
    ("POST", f"{V3}/account/deactivate", [], True),
    ("POST", f"{V3}/delete_devices", {"devices": "SOMEDEVICE"}, True),
    ("POST", f"{V3}/delete_devices", {}, True),
    ("PUT", f"{V3}/devices/SOMEDEVICE", {"display_name": 5}, True),
    ("PUT", f"{V3}/devices/SOMEDEVICE", ["new name"], True),
], ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None)
def test_wrong_field_types_are_m_bad_json(api, user, method, path, body, needs_token):
    token = authed(api, user) if needs_token else None
    error(api.call(method, path, token, json=body), 400, "M_BAD_JSON")
