"""Simplified sliding sync (MSC4186) over real HTTP against the Worker in workerd: the room list
in activity order, ranges, incremental answers that carry only what changed, long polls woken by
writers, M_UNKNOWN_POS, room subscriptions, invites, the extensions, and what one answer costs
in D1 (X-D1-* headers). Also the login surface Element X checks before it logs in.

Each test registers its own users, so tests do not see each other's rooms.
"""

from __future__ import annotations

import secrets
import threading
import time

CS = "/_matrix/client/v3"
SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
PASSWORD = "sliding test password"
# What matrix-rust-sdk's RoomListService asks for its room list (abridged).
LIST_STATE = [["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
              ["m.room.name", ""], ["m.room.avatar", ""], ["m.room.create", ""],
              ["m.room.power_levels", ""]]
FREE_PLAN_QUERIES = 50


class User:
    def __init__(self, server, name: str):
        self.server = server
        self.localpart = f"{name}-{secrets.token_hex(4)}"
        body = {"username": self.localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        r = server.request("POST", f"{CS}/register", json=body)
        assert r.status_code == 200, r.text
        self.user_id = r.json()["user_id"]
        self.token = r.json()["access_token"]

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def ok(self, method: str, path: str, **kwargs) -> dict:
        r = self.server.request(method, CS + path, headers=self.headers(), **kwargs)
        assert r.status_code == 200, f"{method} {path} -> {r.status_code} {r.text[:300]}"
        return r.json()

    def slide_raw(self, body: dict, pos: str | None = None, timeout_ms: int = 0):
        params = {"timeout": timeout_ms}
        if pos is not None:
            params["pos"] = pos
        return self.server.request("POST", SLIDING, headers=self.headers(), json=body, params=params,
                                   timeout=timeout_ms / 1000 + 15)

    def slide(self, body: dict, pos: str | None = None, timeout_ms: int = 0) -> dict:
        r = self.slide_raw(body, pos, timeout_ms)
        assert r.status_code == 200, r.text[:500]
        answer = r.json()
        assert isinstance(answer["pos"], str) and answer["pos"]
        return answer

    def create_room(self, **body) -> str:
        return self.ok("POST", "/createRoom", json=body)["room_id"]

    def send(self, room_id: str, text: str) -> str:
        path = f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(8)}"
        return self.ok("PUT", path, json={"msgtype": "m.text", "body": text})["event_id"]


def room_list(rng: tuple[int, int], timeline_limit: int = 1, **extra) -> dict:
    return {"conn_id": "room-list",
            "lists": {"all_rooms": {"ranges": [list(rng)], "timeline_limit": timeline_limit,
                                    "required_state": LIST_STATE}},
            **extra}


def messages(room: dict) -> list[str]:
    return [e["content"]["body"] for e in room.get("timeline", []) if e["type"] == "m.room.message"]


def test_versions_advertise_sliding_sync_and_the_login_surface(server):
    versions = server.request("GET", "/_matrix/client/versions").json()
    assert versions["unstable_features"].get("org.matrix.simplified_msc3575") is True
    # OAuth 2.0 is discovered at both paths (src/oauth/, tests/integration/test_oauth.py), and the
    # password login stays beside it.
    documents = [server.request("GET", path) for path in
                 ("/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata")]
    assert [r.status_code for r in documents] == [200, 200]
    assert documents[0].json() == documents[1].json()
    assert documents[0].json()["token_endpoint"].endswith("/oauth2/token")
    flows = server.request("GET", f"{CS}/login").json()["flows"]
    assert {"type": "m.login.password"} in [{"type": f["type"]} for f in flows]
    user = User(server, "login")
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.localpart},
             "password": PASSWORD}
    plain = server.request("POST", f"{CS}/login", json=login).json()
    assert plain["access_token"] and "refresh_token" not in plain and "expires_in_ms" not in plain
    asked = server.request("POST", f"{CS}/login", json={**login, "refresh_token": True}).json()
    assert asked["refresh_token"] and asked["expires_in_ms"] > 0


def test_room_list_in_activity_order_with_growing_ranges(server):
    alice = User(server, "alice")
    rooms = [alice.create_room(name=f"room {i}") for i in range(3)]
    # Activity order: room 1, then room 0, then room 2 (oldest activity: its creation).
    alice.send(rooms[0], "zero")
    alice.send(rooms[1], "one")

    first = alice.slide(room_list((0, 1)))
    assert first["lists"]["all_rooms"]["count"] == 3
    assert set(first["rooms"]) == {rooms[1], rooms[0]}
    one, zero = first["rooms"][rooms[1]], first["rooms"][rooms[0]]
    assert one["bump_stamp"] > zero["bump_stamp"]
    assert one["initial"] is True and one["name"] == "room 1" and messages(one) == ["one"]
    assert one["joined_count"] == 1 and one["notification_count"] == 0
    own = [e for e in one["required_state"] if e["type"] == "m.room.member"]
    assert [e["state_key"] for e in own] == [alice.user_id]

    # The range grows to the whole list: only the room not sent yet comes.
    second = alice.slide(room_list((0, 99)), pos=first["pos"])
    assert list(second["rooms"]) == [rooms[2]]
    assert second["rooms"][rooms[2]]["name"] == "room 2"

    # A message in the oldest room: an incremental answer with that event only, live.
    event = alice.send(rooms[2], "two")
    third = alice.slide(room_list((0, 99)), pos=second["pos"], timeout_ms=5000)
    assert list(third["rooms"]) == [rooms[2]]
    room = third["rooms"][rooms[2]]
    assert "initial" not in room and room["num_live"] == 1 and room["limited"] is False
    assert [e["event_id"] for e in room["timeline"]] == [event]
    assert room["bump_stamp"] > one["bump_stamp"]

    # History before the first answer's window is paged with /messages from prev_batch.
    page = alice.ok("GET", f"/rooms/{rooms[1]}/messages",
                    params={"dir": "b", "from": one["prev_batch"], "limit": 50})
    assert any(e["type"] == "m.room.create" for e in page["chunk"])
    assert not any(e.get("content", {}).get("body") == "one" for e in page["chunk"])


def test_long_poll_is_woken_by_a_message_from_another_user(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    room = alice.create_room(invite=[bob.user_id])
    bob.ok("POST", f"/join/{room}", json={})
    first = alice.slide(room_list((0, 9)))
    quiet = alice.slide(room_list((0, 9)), pos=first["pos"])
    assert quiet["rooms"] == {}

    answer: dict = {}

    def poll():
        started = time.monotonic()
        answer["body"] = alice.slide(room_list((0, 9)), pos=quiet["pos"], timeout_ms=20000)
        answer["took"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1.0)
    event = bob.send(room, "wake up")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert answer["took"] < 10, answer["took"]
    room_answer = answer["body"]["rooms"][room]
    assert [e["event_id"] for e in room_answer["timeline"]] == [event]
    assert room_answer["notification_count"] == 1
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id
               for e in room_answer["required_state"]), "the sender's member event ($LAZY)"

    # With nothing new, a timeout is honoured and the answer is empty.
    started = time.monotonic()
    empty = alice.slide(room_list((0, 9)), pos=answer["body"]["pos"], timeout_ms=1500)
    assert empty["rooms"] == {} and time.monotonic() - started >= 1.4


def test_unknown_pos_subscriptions_and_invites(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    r = alice.slide_raw(room_list((0, 9)), pos="12345s1_2_3_4_5_6_7")
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN_POS"
    r = alice.slide_raw(room_list((0, 9)), pos="not a pos")
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN_POS"

    quiet = alice.create_room(name="quiet", topic="a topic")
    alice.send(alice.create_room(name="busy"), "busy")
    invite = bob.create_room(name="from bob", invite=[alice.user_id])
    body = {"lists": {"all_rooms": {"ranges": [[0, 0]], "timeline_limit": 1, "required_state": []}},
            "room_subscriptions": {quiet: {"timeline_limit": 10, "required_state": [["*", "*"]]}}}
    first = alice.slide(body)
    assert set(first["rooms"]) == {invite, quiet}
    stripped = first["rooms"][invite]["invite_state"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "from bob" for e in stripped)
    assert first["rooms"][invite]["membership"] == "invite"
    subscribed = first["rooms"][quiet]
    kinds = {e["type"] for e in subscribed["required_state"]}
    assert {"m.room.create", "m.room.topic", "m.room.power_levels", "m.room.name"} <= kinds
    assert "lists" not in subscribed


def test_extensions_over_http(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    room = alice.create_room(invite=[bob.user_id])
    bob.ok("POST", f"/join/{room}", json={})
    event = bob.send(room, "read me")
    extensions = {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
                  "account_data": {"enabled": True}, "receipts": {"enabled": True},
                  "typing": {"enabled": True}}
    first = alice.slide(room_list((0, 9), extensions=extensions))
    assert first["extensions"]["e2ee"]["device_one_time_keys_count"]["signed_curve25519"] == 0
    since = first["extensions"]["to_device"]["next_batch"]

    bob.ok("PUT", f"/sendToDevice/m.test/{secrets.token_hex(4)}",
           json={"messages": {alice.user_id: {"*": {"n": 7}}}})
    bob.ok("POST", f"/rooms/{room}/receipt/m.read/{event}", json={})
    bob.ok("PUT", f"/rooms/{room}/typing/{bob.user_id}", json={"typing": True, "timeout": 20000})
    ext = {**extensions, "to_device": {"enabled": True, "since": since}}
    second = alice.slide(room_list((0, 9), extensions=ext), pos=first["pos"], timeout_ms=5000)
    got = second["extensions"]
    assert [m["content"] for m in got["to_device"]["events"]] == [{"n": 7}]
    assert bob.user_id in got["receipts"]["rooms"][room]["content"][event]["m.read"]
    assert got["typing"]["rooms"][room]["content"]["user_ids"] == [bob.user_id]


def test_first_answer_costs_a_bounded_number_of_queries(server):
    """A user in 20 rooms: the first answer for a window of 5 reads 5 rooms' timelines, and costs
    the same number of D1 queries as for a user in 2 rooms."""
    def user_with_rooms(count: int) -> User:
        user = User(server, "bounded")
        for i in range(count):
            user.send(user.create_room(name=f"r{i}"), f"m{i}")
        return user

    few, many = user_with_rooms(2), user_with_rooms(20)
    costs = {}
    for label, user in (("few", few), ("many", many)):
        r = user.slide_raw(room_list((0, 4), extensions={"e2ee": {"enabled": True}}))
        assert r.status_code == 200, r.text
        assert len(r.json()["rooms"]) == min(5, 2 if label == "few" else 20)
        costs[label] = (int(r.headers["X-D1-Queries"]), int(r.headers["X-D1-Rows-Read"]))
        pos = r.json()["pos"]
        user.send(next(iter(r.json()["rooms"])), "one more")
        r = user.slide_raw(room_list((0, 4), extensions={"e2ee": {"enabled": True}}), pos=pos)
        assert r.status_code == 200 and len(r.json()["rooms"]) == 1, r.text[:300]
        costs[label + " incremental"] = (int(r.headers["X-D1-Queries"]), int(r.headers["X-D1-Rows-Read"]),
                                         int(r.headers["X-D1-Rows-Written"]))
    print("sliding sync D1 cost (queries, rows read[, rows written]):", costs)
    assert costs["many"][0] == costs["few"][0] < FREE_PLAN_QUERIES
    assert costs["many incremental"][0] < FREE_PLAN_QUERIES
    # A steady connection writes no connection state for a new message in a room in view.
    assert costs["many incremental"][2] == 0, costs
