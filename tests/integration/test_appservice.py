"""Application services, driven by a real bridge framework: mautrix's `AppService` (PyPI) is the
service, registered with `APPSERVICE_CONFIG` at `make dev` start (two registration files: the
bridge, and a plain HTTP service that fails on purpose). The bridge registers and puppets a user,
a message crosses each way, the homeserver restarts in between, and transactions, retries, alias
queries, the ping, masquerading and the exclusive namespaces are checked with Synapse's answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from mautrix.appservice import AppService
from mautrix.appservice.state_store.file import FileASStateStore

from harness import ROOT, Homeserver, free_port

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery staple"


class Bridge:
    """mautrix's AppService on its own event loop thread; records what it is sent."""

    def __init__(self, hs: Homeserver, port: int, as_token: str, hs_token: str, state: Path):
        self.port = port
        self.events: list[dict] = []
        self.aliases_asked: list[str] = []
        self.users_asked: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hs = hs

        async def make():
            appservice = AppService(
                server=hs.base_url, domain=hs.server_name, as_token=as_token,
                hs_token=hs_token, bot_localpart="bridgebot", id="bridge", ephemeral_events=True,
                state_store=FileASStateStore(path=str(state), binary=False),
                query_alias=self.query_alias, query_user=self.query_user)

            @appservice.matrix_event_handler
            async def on_event(event):
                self.events.append(event.serialize())

            return appservice

        self.appservice = self.run(make())

    def run(self, coroutine, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def query_alias(self, alias: str):
        """Creates the room the alias names, as a bridge does for a portal, and says yes."""
        self.aliases_asked.append(alias)
        intent = self.appservice.intent
        room_id = await intent.create_room(name="portal")
        await intent.add_room_alias(room_id, alias.split(":")[0][1:], override=False)
        # mautrix answers 404 for an empty answer; anything else is a 200.
        return {"room_id": room_id}

    async def query_user(self, user_id: str):
        """Creates the ghost user asked about, as a bridge does, and says yes."""
        self.users_asked.append(user_id)
        await self.appservice.intent.user(user_id).ensure_registered()
        return {"user_id": user_id}

    def start(self):
        self.run(self.appservice.start("127.0.0.1", self.port))

    def stop(self):
        self.run(self.appservice.stop())

    def close(self):
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def wait_for(self, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if predicate(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"the bridge never received it; it got {self.events[-5:]}")


class Flaky(BaseHTTPRequestHandler):
    """A service that refuses its first `refuse` transactions (500), or all of them while
    `down`; records every try (id, body, Authorization) and answers pings."""

    tries: list[tuple[str, dict, str]] = []
    refuse = 2
    down = False

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        txn = self.path.rsplit("/", 1)[-1]
        Flaky.tries.append((txn, body, self.headers.get("Authorization")))
        status = 500 if Flaky.down or len(Flaky.tries) <= Flaky.refuse else 200
        self.answer(status)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(200 if self.path == "/_matrix/app/v1/ping" else 404)

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def registration(path: Path, **fields) -> Path:
    lines = []
    for key, value in fields.items():
        lines.append(f"{key}: {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("appservice")
    hs = Homeserver(base / "state")
    server = hs.server_name.replace(".", "\\.")
    bridge_port, flaky_port = free_port(), free_port()
    tokens = {k: secrets.token_hex(16) for k in ("as", "hs", "as2", "hs2")}
    bridge_file = registration(
        base / "bridge.yaml", id="bridge", url=f"http://127.0.0.1:{bridge_port}",
        as_token=tokens["as"], hs_token=tokens["hs"], sender_localpart="bridgebot",
        namespaces={"users": [{"exclusive": True, "regex": f"@bridge_.*:{server}"}],
                    "aliases": [{"exclusive": True, "regex": f"#bridge_.*:{server}"}],
                    "rooms": []},
        rate_limited=False, **{"de.sorunome.msc2409.push_ephemeral": True})
    flaky_file = registration(
        base / "flaky.yaml", id="flaky", url=f"http://127.0.0.1:{flaky_port}",
        as_token=tokens["as2"], hs_token=tokens["hs2"], sender_localpart="flakybot",
        namespaces={"users": [{"exclusive": True, "regex": f"@flaky_.*:{server}"}]},
        receive_ephemeral=True, **{"org.matrix.msc3202": True})
    hs.extra_env["APPSERVICE_CONFIG"] = f"{bridge_file},{flaky_file}"
    flaky = ThreadingHTTPServer(("127.0.0.1", flaky_port), Flaky)
    threading.Thread(target=flaky.serve_forever, daemon=True).start()
    bridge = Bridge(hs, bridge_port, tokens["as"], tokens["hs"], base / "mx-state.json")
    bridge.start()
    hs.start()
    try:
        yield {"hs": hs, "bridge": bridge, "tokens": tokens, "base": base}
    finally:
        hs.stop()
        bridge.close()
        flaky.shutdown()


def call(hs, method, path, token=None, **kwargs):
    if token:
        kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
    response = hs.request(method, path, **kwargs)
    assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text}"
    return response


def register_user(hs, name):
    body = call(hs, "POST", f"{V3}/register",
                json={"username": name, "password": PASSWORD,
                      "auth": {"type": "m.login.dummy"}}).json()
    return body["access_token"], body["user_id"]


def test_as_token_is_the_bot_and_masquerades_in_its_namespace(world):
    hs, tokens = world["hs"], world["tokens"]
    me = call(hs, "GET", f"{V3}/account/whoami", tokens["as"]).json()
    assert me == {"user_id": f"@bridgebot:{hs.server_name}", "is_guest": False}

    puppet = f"@bridge_alice:{hs.server_name}"
    intent = world["bridge"].appservice.intent.user(puppet)
    world["bridge"].run(intent.ensure_registered())
    masked = call(hs, "GET", f"{V3}/account/whoami", tokens["as"], params={"user_id": puppet})
    assert masked.status_code == 200 and masked.json()["user_id"] == puppet

    outside = call(hs, "GET", f"{V3}/account/whoami", tokens["as"],
                   params={"user_id": f"@someone:{hs.server_name}"})
    assert outside.status_code == 403 and outside.json()["errcode"] == "M_FORBIDDEN"
    unregistered = call(hs, "GET", f"{V3}/account/whoami", tokens["as"],
                        params={"user_id": f"@bridge_nobody:{hs.server_name}"})
    assert unregistered.status_code == 403 and unregistered.json()["errcode"] == "M_FORBIDDEN"
    no_device = call(hs, "GET", f"{V3}/account/whoami", tokens["as"],
                     params={"user_id": puppet, "device_id": "NOPE"})
    assert no_device.status_code == 400 and no_device.json()["errcode"] == "M_UNKNOWN_DEVICE"

    # Another service's token cannot act as this one's users.
    other = call(hs, "GET", f"{V3}/account/whoami", tokens["as2"], params={"user_id": puppet})
    assert other.status_code == 403


def test_a_service_logs_in_as_its_user_and_masquerades_as_that_device(world):
    hs, tokens = world["hs"], world["tokens"]
    flows = call(hs, "GET", f"{V3}/login").json()["flows"]
    assert {"type": "m.login.application_service"} in flows
    puppet = f"@bridge_lena:{hs.server_name}"
    call(hs, "POST", f"{V3}/register", tokens["as"],
         json={"type": "m.login.application_service", "username": "bridge_lena",
               "inhibit_login": True})
    session = call(hs, "POST", f"{V3}/login", tokens["as"], json={
        "type": "m.login.application_service", "device_id": "BRIDGE",
        "identifier": {"type": "m.id.user", "user": puppet}})
    assert session.status_code == 200, session.text
    assert session.json()["user_id"] == puppet and session.json()["device_id"] == "BRIDGE"
    me = call(hs, "GET", f"{V3}/account/whoami", tokens["as"],
              params={"user_id": puppet, "device_id": "BRIDGE"}).json()
    assert me == {"user_id": puppet, "device_id": "BRIDGE", "is_guest": False}
    outside = call(hs, "POST", f"{V3}/login", tokens["as"], json={
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": "gina"}})
    assert outside.status_code == 403 and outside.json()["errcode"] == "M_FORBIDDEN"


def test_application_service_registration_and_exclusive_namespaces(world):
    hs, tokens = world["hs"], world["tokens"]
    made = call(hs, "POST", f"{V3}/register", tokens["as"],
                json={"type": "m.login.application_service", "username": "bridge_bob"})
    assert made.status_code == 200, made.text
    assert made.json()["user_id"] == f"@bridge_bob:{hs.server_name}"
    assert "access_token" in made.json()
    again = call(hs, "POST", f"{V3}/register", tokens["as"],
                 json={"type": "m.login.application_service", "username": "bridge_bob"})
    assert again.status_code == 400 and again.json()["errcode"] == "M_USER_IN_USE"
    outside = call(hs, "POST", f"{V3}/register", tokens["as"],
                   json={"type": "m.login.application_service", "username": "plain_carol"})
    assert outside.status_code == 400 and outside.json()["errcode"] == "M_EXCLUSIVE"
    theirs = call(hs, "POST", f"{V3}/register", tokens["as2"],
                  json={"type": "m.login.application_service", "username": "bridge_dan"})
    assert theirs.status_code == 400 and theirs.json()["errcode"] == "M_EXCLUSIVE"
    no_token = call(hs, "POST", f"{V3}/register",
                    json={"type": "m.login.application_service", "username": "bridge_erin"})
    assert no_token.status_code == 400 and no_token.json()["errcode"] == "M_UNKNOWN"

    # Ordinary users cannot take the namespace, nor its aliases.
    taken = call(hs, "POST", f"{V3}/register",
                 json={"username": "bridge_frank", "password": PASSWORD,
                       "auth": {"type": "m.login.dummy"}})
    assert taken.status_code == 400 and taken.json()["errcode"] == "M_EXCLUSIVE"
    available = call(hs, "GET", f"{V3}/register/available", params={"username": "bridge_frank"})
    assert available.status_code == 400 and available.json()["errcode"] == "M_EXCLUSIVE"
    token, _ = register_user(hs, "gina")
    room = call(hs, "POST", f"{V3}/createRoom", token, json={}).json()["room_id"]
    alias = f"#bridge_portal:{hs.server_name}"
    refused = call(hs, "PUT", f"{V3}/directory/room/{requests.utils.quote(alias)}", token,
                   json={"room_id": room})
    assert refused.status_code == 400 and refused.json()["errcode"] == "M_EXCLUSIVE"


def test_a_message_each_way_with_a_restart_in_between(world):
    hs, bridge, tokens = world["hs"], world["bridge"], world["tokens"]
    token, user = register_user(hs, "hank")
    room = call(hs, "POST", f"{V3}/createRoom", token, json={"name": "bridged"}).json()["room_id"]
    puppet = f"@bridge_hank_friend:{hs.server_name}"
    intent = bridge.appservice.intent.user(puppet)
    bridge.run(intent.ensure_registered())
    call(hs, "POST", f"{V3}/rooms/{room}/invite", token, json={"user_id": puppet})
    invite = bridge.wait_for(lambda e: e.get("type") == "m.room.member"
                             and e.get("state_key") == puppet and e["room_id"] == room)
    assert invite["content"]["membership"] == "invite"
    bridge.run(intent.join_room(room))

    # Bridge -> Matrix: the puppet speaks through the service's token.
    bridge.run(intent.send_text(room, "hello from the bridge"))
    messages = call(hs, "GET", f"{V3}/rooms/{room}/messages", token,
                    params={"dir": "b", "limit": 10}).json()["chunk"]
    assert any(m.get("sender") == puppet and m["content"].get("body") == "hello from the bridge"
               for m in messages)

    # Matrix -> bridge, across a restart of the homeserver.
    hs.stop()
    hs.start()
    call(hs, "PUT", f"{V3}/rooms/{room}/send/m.room.message/t1", token,
         json={"msgtype": "m.text", "body": "hello from matrix"})
    got = bridge.wait_for(lambda e: e.get("content", {}).get("body") == "hello from matrix")
    assert got["sender"] == user and got["room_id"] == room and got["event_id"].startswith("$")

    # Ephemeral events (MSC2409): a read receipt in the bridged room reaches the bridge.
    call(hs, "POST", f"{V3}/rooms/{room}/receipt/m.read/{got['event_id']}", token, json={})
    receipt = bridge.wait_for(lambda e: e.get("type") == "m.receipt" and e.get("room_id") == room)
    assert user in receipt["content"][got["event_id"]]["m.read"]


def test_inviting_an_unknown_user_of_the_namespace_asks_the_bridge(world):
    hs, bridge = world["hs"], world["bridge"]
    token, _ = register_user(hs, "jack")
    room = call(hs, "POST", f"{V3}/createRoom", token, json={}).json()["room_id"]
    ghost = f"@bridge_ghost:{hs.server_name}"
    invited = call(hs, "POST", f"{V3}/rooms/{room}/invite", token, json={"user_id": ghost})
    assert invited.status_code == 200, invited.text
    assert bridge.users_asked == [ghost]
    bridge.wait_for(lambda e: e.get("state_key") == ghost and e["room_id"] == room)
    stranger = call(hs, "POST", f"{V3}/rooms/{room}/invite", token,
                    json={"user_id": f"@nobody:{hs.server_name}"})
    assert stranger.status_code == 404


def test_a_failing_service_gets_the_same_transaction_again_and_slows_nobody(world):
    hs = world["hs"]
    token, _ = register_user(hs, "ivy")
    room = call(hs, "POST", f"{V3}/createRoom", token, json={}).json()["room_id"]
    flaky_user = f"@flaky_one:{hs.server_name}"
    made = call(hs, "POST", f"{V3}/register", world["tokens"]["as2"],
                json={"type": "m.login.application_service", "username": "flaky_one"})
    assert made.status_code == 200
    Flaky.tries.clear()
    started = time.monotonic()
    call(hs, "POST", f"{V3}/rooms/{room}/invite", token, json={"user_id": flaky_user})
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(Flaky.tries) <= Flaky.refuse:
        time.sleep(0.2)
    assert len(Flaky.tries) > Flaky.refuse, Flaky.tries
    first_txn, first_body, auth = Flaky.tries[0]
    assert auth == f"Bearer {world['tokens']['hs2']}"
    assert all(txn == first_txn and body == first_body for txn, body, _ in Flaky.tries[:3])
    assert any(e.get("state_key") == flaky_user for e in first_body["events"])
    # The registration asked for ephemeral events and MSC3202: the fields are there.
    assert first_body["ephemeral"] == [] and first_body["de.sorunome.msc2409.to_device"] == []
    assert first_body["org.matrix.msc3202.device_lists"] == {"changed": [], "left": []}
    assert "org.matrix.msc3202.device_one_time_keys_count" in first_body


def test_a_ping_that_succeeds_ends_the_backoff(world):
    hs = world["hs"]
    token, _ = register_user(hs, "kim")
    room = call(hs, "POST", f"{V3}/createRoom", token, json={}).json()["room_id"]
    call(hs, "POST", f"{V3}/register", world["tokens"]["as2"],
         json={"type": "m.login.application_service", "username": "flaky_two"})
    Flaky.tries.clear()
    Flaky.down = True
    try:
        call(hs, "POST", f"{V3}/rooms/{room}/invite", token,
             json={"user_id": f"@flaky_two:{hs.server_name}"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(Flaky.tries) < 4:  # 1 + 2 + 4 s of backoff
            time.sleep(0.1)
        assert len(Flaky.tries) == 4, Flaky.tries
    finally:
        Flaky.down = False
    pinged = time.monotonic()
    answer = call(hs, "POST", "/_matrix/client/v1/appservice/flaky/ping", world["tokens"]["as2"],
                  json={})
    assert answer.status_code == 200 and isinstance(answer.json()["duration_ms"], int)
    while time.monotonic() - pinged < 5 and len(Flaky.tries) < 5:
        time.sleep(0.05)
    # The next scheduled try was 8 s away; the ping brought it forward.
    assert len(Flaky.tries) == 5 and time.monotonic() - pinged < 5
    assert Flaky.tries[4][0] == Flaky.tries[0][0]


def test_ping_and_alias_queries(world):
    hs, bridge, tokens = world["hs"], world["bridge"], world["tokens"]
    duration = bridge.run(bridge.appservice.ping_self("ping-txn"))
    assert isinstance(duration, int) and duration >= 0
    wrong = call(hs, "POST", "/_matrix/client/v1/appservice/flaky/ping", tokens["as"], json={})
    assert wrong.status_code == 403 and wrong.json()["errcode"] == "M_FORBIDDEN"

    alias = f"#bridge_asked:{hs.server_name}"
    found = call(hs, "GET", f"{V3}/directory/room/{requests.utils.quote(alias)}")
    assert found.status_code == 200, found.text
    assert found.json()["room_id"].startswith("!")
    assert bridge.aliases_asked == [alias]
    unknown = call(hs, "GET", f"{V3}/directory/room/{requests.utils.quote('#nobody:' + hs.server_name)}")
    assert unknown.status_code == 404


def run_dev(tmp_path, config: str) -> subprocess.CompletedProcess:
    env = {"PORT": str(free_port()), "STATE_DIR": str(tmp_path / "state"),
           "MATRIX_EDGE_PREBUILT": "1", "APPSERVICE_CONFIG": config}
    return subprocess.run(["bash", "scripts/dev.sh"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_a_malformed_registration_stops_the_start(tmp_path):
    bad = registration(tmp_path / "bad.yaml", id="x", url=None, as_token="a", hs_token="b",
                       namespaces={"users": [{"regex": "@x_.*"}]})
    done = run_dev(tmp_path, str(bad))
    assert done.returncode != 0
    assert str(bad) in done.stderr and "sender_localpart" in done.stderr, done.stderr
    assert "ready:" not in done.stderr


def test_overlapping_exclusive_namespaces_stop_the_start(tmp_path):
    common = {"url": None, "namespaces": {"users": [{"regex": "@tg_.*", "exclusive": True}]}}
    one = registration(tmp_path / "one.yaml", id="one", as_token="a1", hs_token="h1",
                       sender_localpart="one", **common)
    two = registration(tmp_path / "two.yaml", id="two", as_token="a2", hs_token="h2",
                       sender_localpart="two", **common)
    done = run_dev(tmp_path, f"{one},{two}")
    assert done.returncode != 0
    assert str(two) in done.stderr and "namespaces.users" in done.stderr, done.stderr


def test_the_deployment_command_checks_against_stored_registrations(tmp_path):
    """`make appservice-register` compares the files with what D1 holds (wrangler's JSON)."""
    stored = {"id": "old", "url": None, "as_token": "x1", "hs_token": "y1",
              "sender_localpart": "old",
              "namespaces": {"aliases": [{"regex": "#wa_.*", "exclusive": True}]}}
    existing = tmp_path / "existing.json"
    existing.write_text(json.dumps([{"results": [
        {"id": "old", "as_token": "x1", "registration": json.dumps(stored)}]}]))
    clash = registration(tmp_path / "new.yaml", id="new", url="http://127.0.0.1:1",
                         as_token="x2", hs_token="y2", sender_localpart="new",
                         namespaces={"aliases": [{"regex": "#wa_.*", "exclusive": True}]})
    script = [sys.executable, str(ROOT / "scripts" / "appservice.py"), "--server", "example.org",
              "--existing", str(existing)]
    refused = subprocess.run(script + [str(clash)], capture_output=True, text=True)
    assert refused.returncode == 2 and str(clash) in refused.stderr, refused.stderr
    assert refused.stdout == ""
    # Replacing the stored registration itself is allowed, and keeps its id.
    replacing = registration(tmp_path / "old.yaml", **{**stored, "url": "http://127.0.0.1:2"})
    accepted = subprocess.run(script + [str(replacing)], capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stderr
    assert "ON CONFLICT(id) DO UPDATE" in accepted.stdout and "'old'" in accepted.stdout
