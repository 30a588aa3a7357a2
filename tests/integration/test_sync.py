"""/sync over real HTTP: initial and incremental syncs, gaps, filters, invites and leaves, long
polls that writers wake, and the ephemeral data (typing, receipts, read markers, unread counts).

Every request goes through `User.call`, which fails the test on any 5xx. Each test registers its
own users, so tests do not see each other's rooms and can run in any order.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time

import requests

CS = "/_matrix/client/v3"
PASSWORD = "sync test password"
STRIPPED_KEYS = {"type", "state_key", "sender", "content"}


class User:
    """A registered user and the requests it makes; every answer is checked to be below 500."""

    def __init__(self, server, name: str):
        self.server = server
        localpart = f"{name}-{secrets.token_hex(4)}"
        body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        response = server.request("POST", f"{CS}/register", json=body)
        assert response.status_code == 200, f"register {localpart}: {response.status_code} {response.text}"
        self.user_id = response.json()["user_id"]
        self.token = response.json()["access_token"]

    def call(self, method: str, path: str, *, status: int | None = 200, **kwargs) -> requests.Response:
        """The response to a request as this user; `status` is what it must be (None: any < 500)."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = self.server.request(method, CS + path, headers=headers, **kwargs)
        what = f"{method} {path} {kwargs.get('params', '')} -> {response.status_code} {response.text[:500]}"
        assert response.status_code < 500, what
        if status is not None:
            assert response.status_code == status, what
        return response

    def ok(self, method: str, path: str, **kwargs) -> dict:
        return self.call(method, path, **kwargs).json()

    def sync(self, since: str | None = None, *, timeout_ms: int = 0, filter=None, **params) -> dict:
        if since is not None:
            params["since"] = since
        if filter is not None:
            params["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
        params["timeout"] = timeout_ms
        body = self.ok("GET", "/sync", params=params, timeout=timeout_ms / 1000 + 15)
        assert isinstance(body["next_batch"], str) and body["next_batch"]
        return body

    def create_room(self, **body) -> str:
        return self.ok("POST", "/createRoom", json=body)["room_id"]

    def join(self, room_id: str) -> None:
        self.ok("POST", f"/rooms/{room_id}/join", json={})

    def invite(self, room_id: str, user: "User") -> None:
        self.ok("POST", f"/rooms/{room_id}/invite", json={"user_id": user.user_id})

    def send(self, room_id: str, text: str, msgtype: str = "m.text") -> str:
        path = f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(8)}"
        return self.ok("PUT", path, json={"msgtype": msgtype, "body": text})["event_id"]

    def set_state(self, room_id: str, kind: str, content: dict, state_key: str = "") -> str:
        return self.ok("PUT", f"/rooms/{room_id}/state/{kind}/{state_key}", json=content)["event_id"]


def shared_room(server, *names: str, **create) -> tuple[str, list[User]]:
    """A room the first user creates and the others join."""
    users = [User(server, n) for n in names]
    room_id = users[0].create_room(**create)
    for user in users[1:]:
        users[0].invite(room_id, user)
        user.join(room_id)
    return room_id, users


def joined(body: dict, room_id: str) -> dict:
    rooms = body["rooms"]["join"]
    assert room_id in rooms, f"{room_id} not in rooms.join: {sorted(rooms)}"
    return rooms[room_id]


def bodies(events: list[dict]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def state_keys(events: list[dict], kind: str) -> set[str]:
    return {e["state_key"] for e in events if e["type"] == kind}


def assert_client_event(event: dict) -> None:
    """ClientEventWithoutRoomID: the fields every timeline or state event in /sync has."""
    for key, kind in (("event_id", str), ("sender", str), ("type", str),
                      ("origin_server_ts", int), ("content", dict)):
        assert isinstance(event.get(key), kind), f"{key} missing or not {kind.__name__}: {event}"


def ephemeral_of(body: dict, room_id: str, kind: str) -> list[dict]:
    room = body["rooms"]["join"].get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == kind]


def sync_until(user: User, since: str, found, what: str, **kwargs) -> tuple[dict, str]:
    """Incremental syncs from `since` until `found(body)`; (the body, its next_batch)."""
    for _ in range(5):
        body = user.sync(since, timeout_ms=3000, **kwargs)
        since = body["next_batch"]
        if found(body):
            return body, since
    raise AssertionError(f"never saw {what}; last sync: {json.dumps(body)[:1500]}")


# -- initial and incremental ------------------------------------------------------------------

def test_initial_sync_has_joined_rooms_with_state_and_timeline(server):
    alice = User(server, "alice")
    room_id = alice.create_room(name="Sync room", topic="about syncing")
    event_id = alice.send(room_id, "hello")
    body = alice.sync()
    assert set(body) >= {"next_batch", "rooms", "account_data"}
    assert set(body["rooms"]) >= {"join", "invite", "leave"}
    room = joined(body, room_id)
    assert set(room) >= {"state", "timeline", "ephemeral", "account_data", "unread_notifications"}
    timeline = room["timeline"]
    assert isinstance(timeline["limited"], bool) and isinstance(timeline["prev_batch"], str)
    events = timeline["events"] + room["state"]["events"]
    for event in events:
        assert_client_event(event)
    assert timeline["events"][-1]["event_id"] == event_id
    assert timeline["events"][-1]["content"] == {"msgtype": "m.text", "body": "hello"}
    assert timeline["events"][-1]["sender"] == alice.user_id
    kinds = {e["type"] for e in events}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
            "m.room.name", "m.room.topic"} <= kinds
    assert alice.user_id in state_keys(events, "m.room.member")
    for event in room["state"]["events"]:
        assert isinstance(event["state_key"], str)
    # State and timeline do not overlap: the state is the state before the timeline's start.
    in_timeline = {e["event_id"] for e in timeline["events"]}
    assert not in_timeline & {e["event_id"] for e in room["state"]["events"]}


def test_incremental_sync_has_only_new_events(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    since = alice.sync()["next_batch"]
    first = bob.send(room_id, "one")
    second = bob.send(room_id, "two")
    body = alice.sync(since)
    room = joined(body, room_id)
    assert [e["event_id"] for e in room["timeline"]["events"]] == [first, second]
    assert room["timeline"]["limited"] is False
    assert room["state"]["events"] == []
    # Nothing new since: the room is not repeated.
    again = alice.sync(body["next_batch"])
    assert room_id not in again["rooms"]["join"]


def test_limited_timeline_and_prev_batch_fill_the_gap(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    since = alice.sync()["next_batch"]
    sent = [bob.send(room_id, f"m{i}") for i in range(8)]
    room = joined(alice.sync(since, filter={"room": {"timeline": {"limit": 3}}}), room_id)
    timeline = room["timeline"]
    assert timeline["limited"] is True
    assert [e["event_id"] for e in timeline["events"]] == sent[-3:]
    page = alice.ok("GET", f"/rooms/{room_id}/messages",
                    params={"dir": "b", "from": timeline["prev_batch"], "limit": 5})
    assert [e["event_id"] for e in page["chunk"]] == list(reversed(sent[:5]))
    assert page["start"] == timeline["prev_batch"]
    rest = alice.ok("GET", f"/rooms/{room_id}/messages",
                    params={"dir": "b", "from": page["end"], "limit": 20})
    # Further back come the events before the gap, starting with Bob's join.
    assert not {e["event_id"] for e in rest["chunk"]} & set(sent)
    first = rest["chunk"][0]
    assert (first["type"], first["state_key"], first["content"]["membership"]) == (
        "m.room.member", bob.user_id, "join")


def test_default_timeline_limit_marks_a_long_gap_limited(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    since = alice.sync()["next_batch"]
    sent = [bob.send(room_id, f"m{i}") for i in range(12)]
    timeline = joined(alice.sync(since), room_id)["timeline"]
    assert timeline["limited"] is True
    got = [e["event_id"] for e in timeline["events"]]
    assert got and got == sent[-len(got):] and len(got) < 12


def test_full_state_repeats_the_room_state(server):
    alice = User(server, "alice")
    room_id = alice.create_room(name="Full")
    since = alice.sync()["next_batch"]
    body = alice.sync(since, full_state="true")
    room = joined(body, room_id)
    kinds = {e["type"] for e in room["state"]["events"] + room["timeline"]["events"]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= kinds


# -- filters ------------------------------------------------------------------------------

def test_stored_filters_belong_to_their_user(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    definition = {"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}},
                  "presence": {"not_types": ["*"]}}
    created = alice.ok("POST", f"/user/{alice.user_id}/filter", json=definition)
    assert set(created) == {"filter_id"} and isinstance(created["filter_id"], str)
    filter_id = created["filter_id"]
    assert alice.ok("GET", f"/user/{alice.user_id}/filter/{filter_id}") == definition
    forbidden = bob.call("GET", f"/user/{alice.user_id}/filter/{filter_id}", status=403)
    assert forbidden.json()["errcode"] == "M_FORBIDDEN"
    bob.call("POST", f"/user/{alice.user_id}/filter", json=definition, status=403)
    missing = alice.call("GET", f"/user/{alice.user_id}/filter/999999999", status=404)
    assert missing.json()["errcode"] == "M_NOT_FOUND"

    room_id = alice.create_room(name="Filtered")
    alice.send(room_id, "a")
    last = alice.send(room_id, "b")
    room = joined(alice.sync(filter=filter_id), room_id)
    assert [e["event_id"] for e in room["timeline"]["events"]] == [last]
    assert room["timeline"]["limited"] is True
    # Bob cannot use Alice's filter id.
    response = bob.call("GET", "/sync", params={"filter": filter_id}, status=None)
    assert 400 <= response.status_code < 500


def test_filter_types_not_types_and_rooms(server):
    alice = User(server, "alice")
    room_a = alice.create_room(name="A")
    room_b = alice.create_room(name="B")
    alice.send(room_a, "in a")
    alice.send(room_b, "in b")

    only_a = alice.sync(filter={"room": {"rooms": [room_a]}})
    assert set(only_a["rooms"]["join"]) == {room_a}
    not_a = alice.sync(filter={"room": {"not_rooms": [room_a]}})
    assert set(not_a["rooms"]["join"]) == {room_b}

    messages = alice.sync(filter={"room": {"timeline": {"types": ["m.room.message"]}}})
    assert {e["type"] for e in joined(messages, room_a)["timeline"]["events"]} == {"m.room.message"}
    no_messages = alice.sync(filter={"room": {"timeline": {"not_types": ["m.room.message"]}}})
    kinds = {e["type"] for e in joined(no_messages, room_a)["timeline"]["events"]}
    assert kinds and "m.room.message" not in kinds
    wildcard = alice.sync(filter={"room": {"state": {"types": ["m.room.c*"]}}})
    assert {e["type"] for e in joined(wildcard, room_a)["state"]["events"]} <= {"m.room.create"}


def test_lazy_load_members_keeps_only_timeline_senders_and_self(server):
    room_id, (alice, bob, carol) = shared_room(server, "alice", "bob", "carol")
    sent = [bob.send(room_id, f"from bob {i}") for i in range(3)]
    lazy = {"room": {"timeline": {"limit": 2}, "state": {"lazy_load_members": True}}}
    room = joined(alice.sync(filter=lazy), room_id)
    assert [e["event_id"] for e in room["timeline"]["events"]] == sent[-2:]
    assert state_keys(room["state"]["events"], "m.room.member") == {alice.user_id, bob.user_id}
    # Incrementally, a new sender's membership comes with their first event: Alice was never
    # sent Carol's, so it is not redundant.
    since = alice.sync(filter=lazy)["next_batch"]
    from_carol = carol.send(room_id, "from carol")
    room = joined(alice.sync(since, filter=lazy), room_id)
    assert [e["event_id"] for e in room["timeline"]["events"]] == [from_carol]
    assert carol.user_id in state_keys(room["state"]["events"], "m.room.member")
    # Without lazy loading, every member is there.
    room = joined(alice.sync(filter={"room": {"timeline": {"limit": 2}}}), room_id)
    assert state_keys(room["state"]["events"], "m.room.member") == {
        alice.user_id, bob.user_id, carol.user_id}


def test_use_state_after_replaces_state(server):
    alice = User(server, "alice")
    room_id = alice.create_room(name="Before")
    renamed = alice.set_state(room_id, "m.room.name", {"name": "After"})
    params = {"org.matrix.msc4222.use_state_after": "true"}
    body = alice.sync(filter={"room": {"timeline": {"limit": 1}}}, **params)
    room = joined(body, room_id)
    assert "state" not in room
    after = room["org.matrix.msc4222.state_after"]["events"]
    assert [e["event_id"] for e in room["timeline"]["events"]] == [renamed]
    # The state after the timeline: it includes the rename the timeline holds.
    names = [e for e in after if e["type"] == "m.room.name"]
    assert [e["content"] for e in names] == [{"name": "After"}]
    assert "m.room.create" in {e["type"] for e in after}

    since = body["next_batch"]
    topic = alice.set_state(room_id, "m.room.topic", {"topic": "new"})
    room = joined(alice.sync(since, **params), room_id)
    assert "state" not in room
    assert topic in {e["event_id"] for e in room["org.matrix.msc4222.state_after"]["events"]}


# -- invites and leaves ----------------------------------------------------------------------

def test_invite_shows_stripped_state_then_join(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    since = bob.sync()["next_batch"]
    room_id = alice.create_room(name="Invitation")
    alice.invite(room_id, bob)
    for body in (bob.sync(since), bob.sync()):  # incremental and initial
        assert room_id not in body["rooms"]["join"]
        invited = body["rooms"]["invite"][room_id]
        events = invited["invite_state"]["events"]
        for event in events:
            assert set(event) == STRIPPED_KEYS, event
        member = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
        assert len(member) == 1 and member[0]["content"]["membership"] == "invite"
        assert member[0]["sender"] == alice.user_id
        names = [e for e in events if e["type"] == "m.room.name"]
        assert [e["content"] for e in names] == [{"name": "Invitation"}]
    since = body["next_batch"]
    bob.join(room_id)
    body = bob.sync(since)
    assert room_id not in body["rooms"]["invite"]
    # A room joined since the token comes with its full state.
    room = joined(body, room_id)
    kinds = {e["type"] for e in room["state"]["events"] + room["timeline"]["events"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.join_rules"} <= kinds
    assert {alice.user_id, bob.user_id} <= state_keys(
        room["state"]["events"] + room["timeline"]["events"], "m.room.member")


def test_leave_and_kick_appear_under_rooms_leave(server):
    room_id, (alice, bob, carol) = shared_room(server, "alice", "bob", "carol")
    bob_since = bob.sync()["next_batch"]
    carol_since = carol.sync()["next_batch"]

    alice.ok("POST", f"/rooms/{room_id}/kick", json={"user_id": bob.user_id, "reason": "test"})
    body = bob.sync(bob_since)
    assert room_id not in body["rooms"]["join"]
    left = body["rooms"]["leave"][room_id]
    kicks = [e for e in left["timeline"]["events"]
             if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert kicks and kicks[-1]["content"]["membership"] == "leave"
    assert kicks[-1]["sender"] == alice.user_id and kicks[-1]["content"].get("reason") == "test"

    carol.ok("POST", f"/rooms/{room_id}/leave", json={})
    body = carol.sync(carol_since)
    assert room_id not in body["rooms"]["join"]
    timeline = body["rooms"]["leave"][room_id]["timeline"]["events"]
    leaves = [e for e in timeline if e["type"] == "m.room.member" and e["state_key"] == carol.user_id]
    assert leaves[-1]["content"]["membership"] == "leave" and leaves[-1]["sender"] == carol.user_id
    # Alice is still joined: neither removal puts the room under her rooms.leave.
    assert room_id not in alice.sync(filter={"room": {"timeline": {"limit": 1}}})["rooms"]["leave"]


# -- tokens and parameters -------------------------------------------------------------------

def test_unknown_params_are_ignored_and_a_bad_since_is_refused(server):
    alice = User(server, "alice")
    body = alice.sync(set_presence="online", use_sliding_sync="maybe", x_unknown="1")
    assert "rooms" in body
    for bad in ("garbage", "s1_x", "%%%", ""):
        response = alice.call("GET", "/sync", params={"since": bad}, status=None)
        if bad == "":
            continue  # an empty since may reasonably be read as no since at all
        assert response.status_code == 400, f"since={bad!r}: {response.status_code} {response.text}"
        assert response.json()["errcode"].startswith("M_")


def parse_token(token: str) -> tuple[int, ...]:
    """Our tokens are `s<events>_<account data>_<receipts>_<typing>` (opaque to clients, but
    comparable here): the only way to see a stream go backwards."""
    assert re.fullmatch(r"s\d+(_\d+)*", token), token
    return tuple(int(p) for p in token[1:].split("_"))


def test_next_batch_never_goes_backwards(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    tokens = [alice.sync()["next_batch"]]
    event_id = bob.send(room_id, "x")
    actions = [
        lambda: bob.send(room_id, "y"),
        lambda: bob.ok("PUT", f"/rooms/{room_id}/typing/{bob.user_id}", json={"typing": True, "timeout": 5000}),
        lambda: bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", json={}),
        lambda: alice.ok("PUT", f"/user/{alice.user_id}/account_data/org.example.t", json={"n": 1}),
        lambda: None,
    ]
    for action in actions:
        action()
        tokens.append(alice.sync(tokens[-1])["next_batch"])
    # An old token again: the answer's token is still not behind the newest one.
    tokens.append(alice.sync(tokens[0])["next_batch"])
    tokens.append(alice.sync()["next_batch"])
    parsed = [parse_token(t) for t in tokens]
    for before, after in zip(parsed, parsed[1:]):
        assert all(a >= b for a, b in zip(after, before)), f"token went backwards: {tokens}"


# -- long polling --------------------------------------------------------------------------

def test_long_poll_returns_when_another_user_sends(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    since = alice.sync()["next_batch"]
    sent = {}

    def send_later():
        time.sleep(1.0)
        sent["event_id"] = bob.send(room_id, "wake up")
        sent["at"] = time.monotonic()

    sender = threading.Thread(target=send_later)
    started = time.monotonic()
    sender.start()
    body = alice.sync(since, timeout_ms=10_000)
    returned = time.monotonic()
    sender.join()
    elapsed = returned - started
    print(f"\nlong poll: returned after {elapsed:.3f}s; "
          f"{(returned - sent.get('at', returned)) * 1000:.0f} ms after the send returned")
    assert elapsed < 10, f"the long poll ran to its timeout ({elapsed:.1f}s) despite the send"
    events = joined(body, room_id)["timeline"]["events"]
    if sent["event_id"] not in [e["event_id"] for e in events]:
        # Woken by something else first (the send is committed before it returns): one more look.
        body = alice.sync(body["next_batch"], timeout_ms=5000)
        events = joined(body, room_id)["timeline"]["events"]
    assert sent["event_id"] in [e["event_id"] for e in events]


def long_poll_woken_by(user: User, action, found, what: str) -> float:
    """Seconds a 10 s long poll from `user` took to return after `action` ran in 0.5 s."""
    since = user.sync()["next_batch"]
    timer = threading.Timer(0.5, action)
    started = time.monotonic()
    timer.start()
    body = user.sync(since, timeout_ms=10_000)
    elapsed = time.monotonic() - started
    timer.join()
    print(f"\nlong poll woken by {what}: {elapsed:.3f}s")
    assert elapsed < 10, f"{what} did not wake the long poll"
    if not found(body):
        body = user.sync(body["next_batch"], timeout_ms=5000)
    assert found(body), f"{what} missing: {json.dumps(body)[:1000]}"
    return elapsed


def test_long_poll_is_woken_by_ephemeral_and_account_data_writes(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    event_id = bob.send(room_id, "x")
    long_poll_woken_by(
        alice, lambda: bob.ok("PUT", f"/rooms/{room_id}/typing/{bob.user_id}", json={"typing": True}),
        lambda b: ephemeral_of(b, room_id, "m.typing"), "typing")
    long_poll_woken_by(
        alice, lambda: bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", json={}),
        lambda b: event_id in receipts_in(b, room_id), "a receipt")
    long_poll_woken_by(
        alice, lambda: alice.ok("PUT", f"/user/{alice.user_id}/account_data/org.example.w", json={"w": 1}),
        lambda b: any(e["type"] == "org.example.w" for e in b["account_data"]["events"]), "account data")
    carol = User(server, "carol")
    long_poll_woken_by(carol, lambda: alice.invite(room_id, carol),
                       lambda b: room_id in b["rooms"]["invite"], "an invite")


def test_long_poll_with_nothing_happening_waits_for_the_timeout(server):
    alice = User(server, "alice")
    alice.create_room(name="Quiet")
    since = alice.sync()["next_batch"]
    started = time.monotonic()
    body = alice.sync(since, timeout_ms=3000)
    elapsed = time.monotonic() - started
    print(f"\nidle long poll: returned after {elapsed:.3f}s (timeout 3 s)")
    assert 2.7 <= elapsed < 8, elapsed
    assert body["rooms"]["join"] == {} and body["rooms"]["invite"] == {} and body["rooms"]["leave"] == {}



def test_a_revoked_token_is_refused_by_the_next_sync_and_ends_a_parked_one(server):
    """/sync checks the token inside its first read (src/sync/start.rs): a logout, a deleted
    device or a deactivation is refused by the very next sync, the quiet one included, and a
    long poll parked with a token logged out meanwhile ends with 401 when it next looks."""
    alice = User(server, "alice")
    room_id = alice.create_room()

    def session() -> User:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                "password": PASSWORD}
        response = server.request("POST", f"{CS}/login", json=body)
        assert response.status_code == 200, response.text
        other = User.__new__(User)
        other.server, other.user_id = server, alice.user_id
        other.token, other.device_id = response.json()["access_token"], response.json()["device_id"]
        return other

    def refused(user: User, since: str | None, **params) -> None:
        if since is not None:
            params["since"] = since
        response = user.call("GET", "/sync", status=401, params=params)
        assert response.json()["errcode"] == "M_UNKNOWN_TOKEN", response.text

    # Logout: the same token, at once, on a quiet incremental sync (no stream moved).
    first = session()
    since = first.sync()["next_batch"]
    first.sync(since)
    first.ok("POST", "/logout", json={})
    refused(first, since)
    refused(first, None)

    # A parked long poll whose token is logged out while it waits: woken by a send from another
    # session, it looks again and answers 401 instead of the news.
    parked, sender = session(), session()
    since = parked.sync()["next_batch"]
    answer = {}

    def poll() -> None:
        answer["response"] = parked.call("GET", "/sync", status=None,
                                         params={"since": since, "timeout": 10_000}, timeout=25)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    parked.ok("POST", "/logout", json={})
    started = time.monotonic()
    sender.send(room_id, "wakes the parked poll")
    thread.join(20)
    assert answer["response"].status_code == 401, answer["response"].text
    assert answer["response"].json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert time.monotonic() - started < 8, "the parked poll ran to its timeout"

    # A device deleted from another session.
    doomed = session()
    since = doomed.sync()["next_batch"]
    response = sender.call("DELETE", f"/devices/{doomed.device_id}", status=401, json={})
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": PASSWORD, "session": response.json()["session"]}
    sender.ok("DELETE", f"/devices/{doomed.device_id}", json={"auth": auth})
    refused(doomed, since)

    # Deactivation: every token of the account.
    since = sender.sync()["next_batch"]
    response = alice.call("POST", "/account/deactivate", status=401, json={})
    auth["session"] = response.json()["session"]
    alice.ok("POST", "/account/deactivate", json={"auth": auth})
    refused(sender, since)
    refused(alice, None)

# -- ephemeral -----------------------------------------------------------------------------

def test_typing_on_and_off(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    since = alice.sync()["next_batch"]
    path = f"/rooms/{room_id}/typing/{bob.user_id}"
    assert bob.ok("PUT", path, json={"typing": True, "timeout": 30000}) == {}
    body, since = sync_until(alice, since, lambda b: ephemeral_of(b, room_id, "m.typing"), "typing on")
    assert ephemeral_of(body, room_id, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}]
    bob.ok("PUT", path, json={"typing": False})
    body, _ = sync_until(alice, since, lambda b: ephemeral_of(b, room_id, "m.typing"), "typing off")
    assert ephemeral_of(body, room_id, "m.typing")[-1]["content"] == {"user_ids": []}
    # A notification that times out ends without a "stopped" request: a syncing client learns.
    bob.ok("PUT", path, json={"typing": True, "timeout": 1000})
    body, since = sync_until(alice, since, lambda b: ephemeral_of(b, room_id, "m.typing"), "typing again")
    assert ephemeral_of(body, room_id, "m.typing")[-1]["content"] == {"user_ids": [bob.user_id]}
    time.sleep(1.2)
    body, since = sync_until(alice, since, lambda b: ephemeral_of(b, room_id, "m.typing"), "typing expiry")
    assert ephemeral_of(body, room_id, "m.typing")[-1]["content"] == {"user_ids": []}
    # Only for yourself, and only in a room you are in.
    alice.call("PUT", path, json={"typing": True, "timeout": 1000}, status=403)
    outsider = User(server, "outsider")
    outsider.call("PUT", f"/rooms/{room_id}/typing/{outsider.user_id}", json={"typing": True}, status=403)


def receipts_in(body: dict, room_id: str) -> dict:
    """Merged m.receipt content of a room: event id -> receipt type -> user -> receipt."""
    merged: dict = {}
    for event in ephemeral_of(body, room_id, "m.receipt"):
        for event_id, by_type in event["content"].items():
            for kind, by_user in by_type.items():
                merged.setdefault(event_id, {}).setdefault(kind, {}).update(by_user)
    return merged


def test_read_receipts_public_threaded_and_private(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    first = alice.send(room_id, "first")
    second = alice.send(room_id, "second")
    third = alice.send(room_id, "third")
    since = alice.sync()["next_batch"]
    bob_since = bob.sync()["next_batch"]

    assert bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{first}", json={}) == {}
    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{second}", json={"thread_id": "main"})
    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read.private/{third}", json={})
    body, _ = sync_until(alice, since, lambda b: second in receipts_in(b, room_id), "bob's receipts")
    receipts = receipts_in(body, room_id)
    plain = receipts[first]["m.read"][bob.user_id]
    assert set(plain) == {"ts"} and isinstance(plain["ts"], int)
    threaded = receipts[second]["m.read"][bob.user_id]
    assert threaded["thread_id"] == "main" and isinstance(threaded["ts"], int)
    assert "m.read.private" not in receipts.get(third, {}), "a private receipt leaked to alice"

    # Bob sees his own private receipt.
    mine = receipts_in(bob.sync(bob_since), room_id)
    assert bob.user_id in mine[third]["m.read.private"]
    # And the initial sync carries the receipts too.
    assert bob.user_id in receipts_in(alice.sync(), room_id)[first]["m.read"]

    bad = bob.call("POST", f"/rooms/{room_id}/receipt/m.unknown/{first}", json={}, status=None)
    assert 400 <= bad.status_code < 500


def test_read_markers_set_fully_read_account_data(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    event_id = alice.send(room_id, "read me")
    since = bob.sync()["next_batch"]
    assert bob.ok("POST", f"/rooms/{room_id}/read_markers",
                  json={"m.fully_read": event_id, "m.read": event_id}) == {}
    room = joined(bob.sync(since), room_id)
    assert {"type": "m.fully_read", "content": {"event_id": event_id}} in room["account_data"]["events"]
    assert bob.user_id in receipts_in(bob.sync(since), room_id)[event_id]["m.read"]
    got = bob.ok("GET", f"/user/{bob.user_id}/rooms/{room_id}/account_data/m.fully_read")
    assert got == {"event_id": event_id}


def test_unread_notification_count_follows_the_read_receipt(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    room_id = alice.create_room()
    alice.send(room_id, "before bob joined")
    alice.invite(room_id, bob)
    bob.join(room_id)
    sent = [alice.send(room_id, f"n{i}") for i in range(3)]
    bob.send(room_id, "bob's own message does not count")

    def count(user: User) -> int:
        unread = joined(user.sync(), room_id)["unread_notifications"]
        assert isinstance(unread["notification_count"], int)
        return unread["notification_count"]

    assert count(bob) == 3, "only others' messages since joining count"
    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{sent[1]}", json={})
    assert count(bob) == 1
    bob.ok("POST", f"/rooms/{room_id}/receipt/m.read/{sent[2]}", json={})
    assert count(bob) == 0


def test_members_at_a_sync_token_are_those_of_that_point(server):
    """`/members?at=` with a timeline's `prev_batch`: the members at the start of that timeline,
    not those who joined after. A timeline holding the whole room (from its creation) has nothing
    before it, and its token names the end of that sync."""
    alice, bob = User(server, "alice"), User(server, "bob")
    room_id = alice.create_room(preset="public_chat")
    alice.send(room_id, "hello")
    timeline = joined(alice.sync(), room_id)["timeline"]
    assert timeline["events"][0]["type"] == "m.room.create" and timeline["limited"] is False
    whole = timeline["prev_batch"]
    bob.join(room_id)
    bob.send(room_id, "hi")
    members = alice.ok("GET", f"/rooms/{room_id}/members", params={"at": whole})["chunk"]
    assert state_keys(members, "m.room.member") == {alice.user_id}
    assert all(e["room_id"] == room_id for e in members)
    now = alice.ok("GET", f"/rooms/{room_id}/members")["chunk"]
    assert state_keys(now, "m.room.member") == {alice.user_id, bob.user_id}

    # A limited timeline's token sits just before its first event: Carol's join, in the
    # timeline, is after it.
    since = alice.sync()["next_batch"]
    carol = User(server, "carol")
    [bob.send(room_id, f"m{i}") for i in range(3)]
    carol.join(room_id)
    sent = [bob.send(room_id, f"n{i}") for i in range(2)]
    timeline = joined(alice.sync(since, filter={"room": {"timeline": {"limit": 3}}}), room_id)["timeline"]
    assert timeline["limited"] is True and [e["event_id"] for e in timeline["events"]][1:] == sent
    assert timeline["events"][0]["state_key"] == carol.user_id
    members = alice.ok("GET", f"/rooms/{room_id}/members", params={"at": timeline["prev_batch"]})["chunk"]
    assert state_keys(members, "m.room.member") == {alice.user_id, bob.user_id}
