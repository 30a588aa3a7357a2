"""`make test-element-x`: matrix-rust-sdk (the client library of Element X, pinned in
tests/element_x/Cargo.toml) against our Worker, then the same scenario against a Synapse from the
test venv (`--server synapse`, the reference the scenario was validated with). This script starts
the server, registers two users, prepares rooms over plain HTTP, and runs the compiled check
(tests/element_x/src/main.rs) with them in its environment. Everything it starts, it stops.

    python tests/element_x/run.py [--server ours|synapse|both] [--binary PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
        return result.returncode == 0


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
