"""`make test-element-x`: matrix-rust-sdk (the client library of Element X, pinned in
tests/element_x/Cargo.toml) against our Worker, then the same scenario against a Synapse from the
test venv (`--server synapse`, the reference the scenario was validated with). This script starts
the server, registers two users, prepares rooms over plain HTTP, and runs the compiled check
(tests/element_x/src/main.rs) with them in its environment. Against our Worker it then runs the
check's OAuth sign-up (`client.oauth()`, `prompt=create`), this script playing the person on the
registration and consent pages. Everything it starts, it stops.

    python tests/element_x/run.py [--server ours|synapse|both] [--binary PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import Homeserver, make_test_ca  # noqa: E402

PASSWORD = "element x check password"
HISTORY = 30


def register(base: str, name: str) -> dict:
    localpart = f"{name}-{secrets.token_hex(3)}"
    body = {"username": localpart, "password": PASSWORD}
    first = requests.post(f"{base}/_matrix/client/v3/register", json=body, timeout=30)
    session = first.json().get("session")
    body["auth"] = {"type": "m.login.dummy", **({"session": session} if session else {})}
    r = requests.post(f"{base}/_matrix/client/v3/register", json=body, timeout=30)
    r.raise_for_status()
    return {"user_id": r.json()["user_id"], "token": r.json()["access_token"]}


def call(base: str, user: dict, method: str, path: str, body: dict) -> dict:
    r = requests.request(method, f"{base}/_matrix/client/v3{path}", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {user['token']}"})
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:300]}"
    return r.json()


def prepare(base: str) -> dict:
    """Three rooms for alice: `quiet` (oldest activity), `history` (shared with bob, 30
    messages), `latest` (newest message). Element X's list must show latest, history, quiet."""
    alice, bob = register(base, "alice"), register(base, "bob")
    say = lambda room, text: call(base, alice, "PUT", f"/rooms/{room}/send/m.room.message/{secrets.token_hex(6)}",
                                  {"msgtype": "m.text", "body": text})
    quiet = call(base, alice, "POST", "/createRoom", {"name": "Quiet"})["room_id"]
    history = call(base, alice, "POST", "/createRoom", {"name": "History", "invite": [bob["user_id"]]})["room_id"]
    call(base, bob, "POST", f"/join/{history}", {})
    for i in range(HISTORY):
        say(history, f"history {i}")
    time.sleep(0.05)
    latest = call(base, alice, "POST", "/createRoom", {"name": "Latest"})["room_id"]
    say(latest, "the latest message")
    return {
        "ALICE": alice["user_id"], "BOB": bob["user_id"], "PASSWORD": PASSWORD,
        "EXPECTED_ORDER": ",".join([latest, history, quiet]),
        "HISTORY_ROOM": history, "HISTORY_FIRST": "history 0",
    }


@contextlib.contextmanager
def our_server(directory: Path):
    with Homeserver(directory / "state") as hs:
        yield hs.base_url


@contextlib.contextmanager
def synapse_server(directory: Path):
    from synapse_peer import Synapse
    ca, cert, key = make_test_ca(directory / "tls")
    synapse = Synapse(directory / "synapse", ca=ca, cert=cert, key=key)
    (directory / "synapse").mkdir(parents=True, exist_ok=True)
    synapse.start()
    try:
        yield synapse.client_url
    finally:
        synapse.stop()


def run(label: str, server, binary: Path) -> bool:
    with tempfile.TemporaryDirectory(prefix=f"element-x-{label}-") as tmp, server(Path(tmp)) as base:
        env = {**os.environ, **prepare(base), "HOMESERVER": base, "RUST_LOG": os.environ.get("RUST_LOG", "error")}
        started = time.monotonic()
        result = subprocess.run([str(binary)], env=env, timeout=600)
        print(f"[{label}] exit {result.returncode} in {time.monotonic() - started:.1f} s", flush=True)
        if result.returncode != 0 or label != "ours":
            return result.returncode == 0
        # Sign-up through OAuth, as Element X registers: Synapse needs a separate service for it.
        return oauth_sign_up(base, binary, env)


def oauth_sign_up(base: str, binary: Path, env: dict) -> bool:
    """Runs the check's OAuth step; this process is the person's browser in between."""
    check = subprocess.Popen([str(binary)], env={**env, "OAUTH": "1"}, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = check.stdout.readline()
        if not line.startswith("oauth-authorize "):
            print(f"[ours] no authorization URL from the check: {line!r}", flush=True)
            return False
        check.stdin.write(browse(base, line.split(" ", 1)[1].strip()) + "\n")
        check.stdin.flush()
        for line in check.stdout:
            print(line, end="", flush=True)
        code = check.wait(timeout=120)
        print(f"[ours/oauth] exit {code}", flush=True)
        return code == 0
    finally:
        if check.poll() is None:
            check.kill()
            check.wait()


def browse(base: str, authorize: str) -> str:
    """The pages a person sees: registration (prompt=create), then consent. Answers the URL the
    server sends the browser back to, which carries the code."""
    browser = requests.Session()

    def form(path: str, fields: dict) -> str:
        page = browser.get(base + path, allow_redirects=False, timeout=10)
        page.raise_for_status()
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        done = browser.post(base + path.split("?")[0], data={"csrf": token, **fields},
                            allow_redirects=False, timeout=10)
        assert done.status_code == 303, done.text
        return done.headers["Location"]

    start = browser.get(authorize, allow_redirects=False, timeout=10)
    assert start.status_code == 303, start.text
    to_register = start.headers["Location"]
    assert to_register.startswith("/oauth2/register"), to_register
    name = "element-x-" + secrets.token_hex(3)
    consent = form(to_register, {"username": name, "password": PASSWORD, "password2": PASSWORD,
                                 "next": parse_qs(urlsplit(to_register).query)["next"][0]})
    assert consent.startswith("/oauth2/consent"), consent
    back = form(consent, {"id": parse_qs(urlsplit(consent).query)["id"][0], "decision": "allow"})
    assert back.startswith("http://127.0.0.1/callback?"), back
    return back


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=["ours", "synapse", "both"], default="both")
    parser.add_argument("--binary", default=str(HERE / "target" / "debug" / "element-x-check"))
    args = parser.parse_args()
    servers = {"synapse": synapse_server, "ours": our_server}
    wanted = ["synapse", "ours"] if args.server == "both" else [args.server]
    results = {name: run(name, servers[name], Path(args.binary)) for name in wanted}
    passed = sum(results.values())
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
