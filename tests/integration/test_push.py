"""Push over real HTTP in workerd: notification counts in /sync (per thread, reset by threaded
and unthreaded receipts), GET /notifications, and pushers whose notifications the PushQueue
Durable Object delivers to a fake push gateway on 127.0.0.1 (payload checked; a pushkey the
gateway rejects loses its pusher).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import free_port
from test_sync import User, joined


def send(user: User, room_id: str, content: dict) -> str:
    path = f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(6)}"
    return user.ok("PUT", path, json=content)["event_id"]


def unread(user: User, room_id: str, threaded: bool) -> tuple[dict, dict | None]:
    flt = {"room": {"timeline": {"limit": 1, "unread_thread_notifications": threaded}}}
    room = joined(user.sync(filter=flt), room_id)
    return room["unread_notifications"], room.get("unread_thread_notifications")


def counts(notifications: int, highlights: int) -> dict:
    return {"notification_count": notifications, "highlight_count": highlights}


def group_room(server):
    """Alice's room with Bob and Carol (three members, so messages notify without ringing)."""
    alice, bob, carol = User(server, "alice"), User(server, "bob"), User(server, "carol")
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    carol.join(room_id)
    return alice, bob, room_id


def text(body: str, **extra) -> dict:
    return {"msgtype": "m.text", "body": body, **extra}


def test_counts_per_thread_and_receipts(server):
    alice, bob, room_id = group_room(server)
    root = send(alice, room_id, text("root"))
    thread = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    first = send(alice, room_id, text("in thread", **thread))
    send(alice, room_id, text("bob, look", **thread, **{"m.mentions": {"user_ids": [bob.user_id]}}))
    main = send(alice, room_id, text("main again"))
    send(alice, room_id, {"msgtype": "m.notice", "body": "a bot's notice never counts"})

    assert unread(bob, room_id, False) == (counts(4, 1), None)
    assert unread(bob, room_id, True) == (counts(2, 0), {root: counts(2, 1)})
    assert unread(alice, room_id, False)[0] == counts(0, 0)

    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{main}", json={"thread_id": "main"})
    assert unread(bob, room_id, True) == (counts(0, 0), {root: counts(2, 1)})
    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{first}", json={"thread_id": root})
    assert unread(bob, room_id, True) == (counts(0, 0), {root: counts(1, 1)})
    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{main}", json={})
    assert unread(bob, room_id, True) == (counts(0, 0), None)


def test_notifications_endpoint(server):
    alice, bob, room_id = group_room(server)
    plain = send(alice, room_id, text("hello"))
    mention = send(alice, room_id, text("hey", **{"m.mentions": {"user_ids": [bob.user_id]}}))
    page = bob.ok("GET", "/notifications", params={"limit": 1})
    assert [n["event"]["event_id"] for n in page["notifications"]] == [mention]
    first = page["notifications"][0]
    assert first["room_id"] == room_id and first["read"] is False
    assert {"set_tweak": "highlight"} in first["actions"] or \
        {"set_tweak": "highlight", "value": True} in first["actions"]
    rest = bob.ok("GET", "/notifications", params={"from": page["next_token"]})
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [plain]
    only = bob.ok("GET", "/notifications", params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in only["notifications"]] == [mention]


class Gateway(BaseHTTPRequestHandler):
    """A push gateway: records every notification; rejects the pushkeys in `reject`."""

    received: list[dict] = []
    reject: set[str] = set()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Gateway.received.append({"path": self.path, "body": body})
        keys = [d["pushkey"] for d in body["notification"]["devices"]]
        answer = {"rejected": [k for k in keys if k in Gateway.reject]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def gateway():
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Gateway)
    Gateway.received = []
    Gateway.reject = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/_matrix/push/v1/notify"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def pusher(url: str, pushkey: str, **data) -> dict:
    return {"kind": "http", "app_id": "org.example.push", "pushkey": pushkey,
            "app_display_name": "Push test", "device_display_name": "Phone", "lang": "en",
            "data": {"url": url, **data}}


def wait_for(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in list(Gateway.received) if predicate(r)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"the gateway never got it; it got {Gateway.received[-3:]}")


def test_push_delivered_and_rejected_pushkey_removed(server, gateway):
    alice, bob, room_id = group_room(server)
    alice.ok("PUT", f"/rooms/{room_id}/state/m.room.name/", json={"name": "Push room"})
    bob.ok("POST", "/pushers/set", json=pusher(gateway, "phone-1", extra="kept"))
    assert [p["pushkey"] for p in bob.ok("GET", "/pushers")["pushers"]] == ["phone-1"]
    event_id = send(alice, room_id, text("wake up"))

    sent = wait_for(lambda r: r["body"]["notification"].get("event_id") == event_id)
    assert sent["path"] == "/_matrix/push/v1/notify"
    note = sent["body"]["notification"]
    assert note["room_id"] == room_id
    assert note["type"] == "m.room.message"
    assert note["sender"] == alice.user_id
    assert note["content"]["body"] == "wake up"
    assert note["room_name"] == "Push room"
    assert note["prio"] in ("high", "low")
    assert note["counts"]["unread"] >= 1
    [device] = note["devices"]
    assert device["app_id"] == "org.example.push" and device["pushkey"] == "phone-1"
    assert device["data"] == {"extra": "kept"}, "the gateway url is not the device's data"
    assert isinstance(device["pushkey_ts"], int)

    # The gateway now rejects the pushkey: the next push removes the pusher.
    Gateway.reject = {"phone-1"}
    second = send(alice, room_id, text("again"))
    wait_for(lambda r: r["body"]["notification"].get("event_id") == second)
    deadline = time.monotonic() + 15
    while bob.ok("GET", "/pushers")["pushers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bob.ok("GET", "/pushers")["pushers"] == []
    # With no pusher left, nothing more is sent.
    third = send(alice, room_id, text("nobody listens"))
    time.sleep(2)
    assert not [r for r in Gateway.received if r["body"]["notification"].get("event_id") == third]


def test_bad_pushers_are_refused(server):
    user = User(server, "pusher")
    bad = pusher("https://gateway.example/notify", "k")
    assert user.ok("POST", "/pushers/set", status=400, json=bad)["errcode"] == "M_INVALID_PARAM"
    missing = pusher("https://gateway.example/_matrix/push/v1/notify", "k")
    del missing["app_display_name"]
    assert user.ok("POST", "/pushers/set", status=400, json=missing)["errcode"] == "M_MISSING_PARAM"
    assert user.ok("GET", "/pushers")["pushers"] == []


def room_rule(user: User, room_id: str, status: int = 200) -> dict:
    return user.call("GET", f"/pushrules/global/room/{room_id}", status=status).json()


def test_an_upgraded_rooms_push_rules_follow_each_user_into_the_new_room(server):
    """A user who muted a room keeps it muted when it is upgraded: the rules named after the old
    room are copied for each local user when they join the new one (the upgrader at the
    upgrade), whether by POST /upgrade or by hand (createRoom with a `predecessor`)."""
    alice, bob, carol = User(server, "alice"), User(server, "bob"), User(server, "carol")
    old = alice.create_room(preset="public_chat", room_version="10")
    bob.join(old)
    carol.join(old)
    mute = {"actions": [], "conditions": [{"kind": "event_match", "key": "room_id", "pattern": old}]}
    for user in (alice, bob):
        user.ok("PUT", f"/pushrules/global/room/{old}", json={"actions": ["dont_notify"]})
    bob.ok("PUT", f"/pushrules/global/override/{old}", json=mute)
    since = bob.sync()["next_batch"]

    new = alice.ok("POST", f"/rooms/{old}/upgrade", json={"new_version": "11"})["replacement_room"]
    assert room_rule(alice, new)["actions"] == ["dont_notify"]
    # Bob's follow when he joins; Carol had none to follow.
    assert room_rule(bob, new, status=404)["errcode"] == "M_NOT_FOUND"
    bob.join(new)
    carol.join(new)
    assert room_rule(bob, new)["actions"] == ["dont_notify"]
    override = bob.ok("GET", f"/pushrules/global/override/{new}")
    assert override["conditions"] == [{"kind": "event_match", "key": "room_id", "pattern": new}]
    assert room_rule(bob, old)["actions"] == ["dont_notify"]
    assert room_rule(carol, new, status=404)["errcode"] == "M_NOT_FOUND"
    # Bob's client learns of it in the m.push_rules account data of its next sync.
    rules = [e for e in bob.sync(since)["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert rules and new in {r["rule_id"] for r in rules[-1]["content"]["global"]["room"]}, rules
    # A message in the new room counts for Carol, not for Bob, who muted the old one.
    send(alice, new, text("after the upgrade"))
    assert unread(bob, new, False)[0] == counts(0, 0)
    assert unread(carol, new, False)[0]["notification_count"] == 1

    # By hand: a new room naming the old one as its predecessor, then the tombstone.
    manual = alice.create_room(preset="public_chat", room_version="11",
                               creation_content={"predecessor": {"room_id": new}})
    alice.set_state(new, "m.room.tombstone", {"body": "moved", "replacement_room": manual})
    assert room_rule(alice, manual)["actions"] == ["dont_notify"]
    bob.join(manual)
    assert room_rule(bob, manual)["actions"] == ["dont_notify"]


def test_concurrent_rule_changes_of_one_user_are_all_kept(server):
    """Two clients of one user (or a client and a join carrying rules over) changing rules at
    once: every change lands, and the m.push_rules account data shows them all."""
    alice = User(server, "alice")
    rooms = [f"!r{i}-{secrets.token_hex(3)}:example.org" for i in range(8)]
    since = alice.sync()["next_batch"]
    threads = [threading.Thread(target=alice.ok, args=("PUT", f"/pushrules/global/room/{room}"),
                                kwargs={"json": {"actions": ["dont_notify"]}}) for room in rooms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stored = {r["rule_id"] for r in alice.ok("GET", "/pushrules/global/")["room"]}
    assert stored == set(rooms), sorted(set(rooms) - stored)
    events = [e for e in alice.sync(since)["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert {r["rule_id"] for r in events[-1]["content"]["global"]["room"]} == set(rooms)
