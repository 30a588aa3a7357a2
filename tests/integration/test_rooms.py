"""The room endpoints over real HTTP: createRoom, membership, sending, reading, redaction,
history visibility, aliases and the room directory, each checked against the client-server
spec's statuses, errcodes and response shapes.

Every call goes through `User.call`, which fails the test on any 5xx before looking at anything
else: a server error is never an acceptable answer to a client request. All tests share the
session's `server`; every user and alias is fresh, so the tests are independent of each other
and of the other test files.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests

PASSWORD = "correct horse battery staple"
V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


def q(value: str) -> str:
    """A path segment: room ids, event ids and aliases carry `!`, `$`, `#` and `:`."""
    return quote(value, safe="")


def fresh(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


def no_server_error(response: requests.Response) -> requests.Response:
    request = response.request
    assert response.status_code < 500, (
        f"{request.method} {request.url} -> {response.status_code}: {response.text[:500]}")
    return response


def assert_error(response: requests.Response, status: int, errcode: str) -> dict:
    request = response.request
    what = f"{request.method} {request.path_url}"
    assert response.status_code == status, f"{what}: {response.status_code} {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), what
    body = response.json()
    assert body.get("errcode") == errcode, f"{what}: {body}"
    assert isinstance(body.get("error"), str), f"{what}: {body}"
    return body


@dataclass
class User:
    base_url: str
    user_id: str
    token: str

    def call(self, method: str, path: str, *, expect: int | None = 200, **kwargs) -> requests.Response:
        """One request with this user's token. `expect=None` leaves the status to the caller."""
        kwargs.setdefault("timeout", 15)
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = no_server_error(
            requests.request(method, self.base_url + path, headers=headers, **kwargs))
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} {path} -> {response.status_code}, expected {expect}: {response.text[:500]}")
        return response

    def get(self, path: str, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body=None, **kwargs):
        return self.call("POST", path, json={} if body is None else body, **kwargs)

    def put(self, path: str, body=None, **kwargs):
        return self.call("PUT", path, json={} if body is None else body, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.call("DELETE", path, **kwargs)

    # Room helpers, each asserting the spec's success shape.

    def create_room(self, **body) -> str:
        room_id = self.post(f"{V3}/createRoom", body).json()["room_id"]
        assert isinstance(room_id, str) and room_id.startswith("!"), room_id
        return room_id

    def send(self, room_id: str, body: dict | str = "hello", *, kind: str = "m.room.message",
             txn: str | None = None) -> str:
        content = {"msgtype": "m.text", "body": body} if isinstance(body, str) else body
        txn = txn or secrets.token_hex(8)
        event_id = self.put(f"{V3}/rooms/{q(room_id)}/send/{kind}/{txn}", content).json()["event_id"]
        assert isinstance(event_id, str) and event_id.startswith("$"), event_id
        return event_id

    def join(self, room_id_or_alias: str) -> None:
        joined = self.post(f"{V3}/join/{q(room_id_or_alias)}").json()
        assert joined["room_id"].startswith("!"), joined

    def state(self, room_id: str) -> dict[tuple[str, str], dict]:
        events = self.get(f"{V3}/rooms/{q(room_id)}/state").json()
        assert isinstance(events, list)
        return {(e["type"], e["state_key"]): e for e in events}

    def state_content(self, room_id: str, kind: str, state_key: str = "") -> dict:
        return self.get(f"{V3}/rooms/{q(room_id)}/state/{kind}/{q(state_key)}").json()

    def messages(self, room_id: str, **params) -> dict:
        body = self.get(f"{V3}/rooms/{q(room_id)}/messages", params=params).json()
        assert isinstance(body["chunk"], list) and isinstance(body["start"], str), body
        return body


@pytest.fixture(scope="module")
def base_url(server) -> str:
    return server.base_url


@pytest.fixture(scope="module")
def server_name(server) -> str:
    return server.server_name


@pytest.fixture
def new_user(base_url):
    def make(name: str = "user") -> User:
        localpart = fresh(name)
        response = no_server_error(requests.post(
            base_url + f"{V3}/register", timeout=15,
            json={"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}))
        assert response.status_code == 200, response.text
        body = response.json()
        return User(base_url, body["user_id"], body["access_token"])
    return make


def ids(events: list[dict]) -> list[str]:
    return [e["event_id"] for e in events]


def assert_client_event(event: dict, room_id: str) -> None:
    """The ClientEvent shape: the required fields, and no federation-only ones."""
    for field in ("event_id", "type", "sender", "origin_server_ts", "content", "room_id"):
        assert field in event, (field, event)
    assert event["room_id"] == room_id, event
    assert isinstance(event["content"], dict) and isinstance(event["origin_server_ts"], int)
    for server_only in ("hashes", "signatures", "auth_events", "prev_events", "depth"):
        assert server_only not in event, (server_only, event)


# createRoom


PRESETS = {
    "private_chat": ("invite", "shared", "can_join"),
    "trusted_private_chat": ("invite", "shared", "can_join"),
    # Guests are forbidden where the room has no m.room.guest_access event (spec), so
    # public_chat sends none.
    "public_chat": ("public", "shared", None),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_sets_join_rules_history_and_guest_access(new_user, preset):
    alice = new_user("alice")
    room_id = alice.create_room(preset=preset)
    join_rule, history, guests = PRESETS[preset]
    assert alice.state_content(room_id, "m.room.join_rules") == {"join_rule": join_rule}
    assert alice.state_content(room_id, "m.room.history_visibility") == {"history_visibility": history}
    if guests is None:
        assert_error(alice.get(f"{V3}/rooms/{q(room_id)}/state/m.room.guest_access/", expect=None),
                     404, "M_NOT_FOUND")
    else:
        assert alice.state_content(room_id, "m.room.guest_access") == {"guest_access": guests}


@pytest.mark.parametrize("visibility,join_rule", [("public", "public"), ("private", "invite"), (None, "invite")])
def test_without_a_preset_the_visibility_chooses_it(new_user, visibility, join_rule):
    alice = new_user("alice")
    room_id = alice.create_room(**({"visibility": visibility} if visibility else {}))
    assert alice.state_content(room_id, "m.room.join_rules")["join_rule"] == join_rule


@pytest.mark.parametrize("version", ["11", "12"])
def test_trusted_private_chat_gives_invitees_the_creators_power(new_user, version):
    alice, bob = new_user("alice"), new_user("bob")
    room_id = alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], room_version=version)
    levels = alice.state_content(room_id, "m.room.power_levels")
    create = alice.state_content(room_id, "m.room.create")
    if version == "11":
        assert levels["users"][bob.user_id] == levels["users"][alice.user_id] == 100, levels
    else:
        # v12: creators have unlimited power and are named by the create event, not power levels.
        assert create["additional_creators"] == [bob.user_id], create
        assert bob.user_id not in levels["users"] and alice.user_id not in levels["users"], levels


def test_name_topic_and_initial_state_override_the_preset(new_user):
    alice = new_user("alice")
    room_id = alice.create_room(
        preset="private_chat", name="The name", topic="The topic",
        initial_state=[
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}},
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            # `name` wins over an initial_state name: it is sent after it.
            {"type": "m.room.name", "state_key": "", "content": {"name": "overridden"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ])
    state = alice.state(room_id)
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "joined"}
    assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}
    assert state[("m.room.name", "")]["content"] == {"name": "The name"}
    assert state[("m.room.topic", "")]["content"] == {
        "topic": "The topic", "m.topic": {"m.text": [{"mimetype": "text/plain", "body": "The topic"}]}}
    assert state[("org.example.custom", "k")]["content"] == {"x": 1}
    for event in state.values():
        assert_client_event(event, room_id)
        assert event["sender"] == alice.user_id
    # The overridden preset events were never sent: the timeline holds each slot once.
    timeline = alice.messages(room_id, dir="f", limit=100)["chunk"]
    slots = [(e["type"], e.get("state_key")) for e in timeline]
    assert slots.count(("m.room.join_rules", "")) == 1, slots
    assert slots.count(("m.room.history_visibility", "")) == 1, slots
    # The spec's order: create, creator's join, power levels, preset, initial_state, name, topic.
    kinds = [e["type"] for e in timeline]
    assert kinds[:3] == ["m.room.create", "m.room.member", "m.room.power_levels"], kinds
    assert kinds.index("m.room.guest_access") < kinds.index("org.example.custom"), kinds
    # The initial_state name is sent too; the `name` one comes after it and wins.
    names = [e["content"]["name"] for e in timeline if e["type"] == "m.room.name"]
    assert names == ["overridden", "The name"], names
    last_name = len(kinds) - 1 - kinds[::-1].index("m.room.name")
    assert kinds.index("org.example.custom") < last_name < kinds.index("m.room.topic"), kinds


def test_invite_with_is_direct_reaches_the_invitee(new_user):
    alice, bob = new_user("alice"), new_user("bob")
    room_id = alice.create_room(invite=[bob.user_id], is_direct=True, name="dm")
    member = alice.state_content(room_id, "m.room.member", bob.user_id)
    assert member["membership"] == "invite" and member["is_direct"] is True, member
    sync = bob.get(f"{V3}/sync", params={"timeout": "0"}).json()
    invite = sync["rooms"]["invite"][room_id]["invite_state"]["events"]
    mine = [e for e in invite if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert mine and mine[-1]["content"]["membership"] == "invite", invite
    assert mine[-1]["content"]["is_direct"] is True and mine[-1]["sender"] == alice.user_id
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "dm"},
            "sender": alice.user_id} in invite, invite
    # Without is_direct the flag is absent.
    carol = new_user("carol")
    other = alice.create_room(invite=[carol.user_id])
    assert "is_direct" not in alice.state_content(other, "m.room.member", carol.user_id)


def test_room_alias_name_creates_the_alias_and_a_taken_one_is_refused(new_user, server_name):
    alice, bob = new_user("alice"), new_user("bob")
    localpart = fresh("pub")
    alias = f"#{localpart}:{server_name}"
    room_id = alice.create_room(room_alias_name=localpart, preset="public_chat")
    resolved = bob.get(f"{V3}/directory/room/{q(alias)}").json()
    assert resolved["room_id"] == room_id and server_name in resolved["servers"], resolved
    assert alice.state_content(room_id, "m.room.canonical_alias")["alias"] == alias
    taken = bob.post(f"{V3}/createRoom", {"room_alias_name": localpart}, expect=None)
    assert_error(taken, 400, "M_ROOM_IN_USE")
    # The refused request created no room for bob.
    assert bob.get(f"{V3}/joined_rooms").json()["joined_rooms"] == []


def test_power_level_content_override_and_creation_content(new_user):
    alice = new_user("alice")
    room_id = alice.create_room(
        room_version="11",
        power_level_content_override={"events_default": 7, "invite": 80,
                                      "events": {"m.room.topic": 99}},
        creation_content={"m.federate": False, "room_version": "1", "org.example.extra": "x"})
    levels = alice.state_content(room_id, "m.room.power_levels")
    assert levels["events_default"] == 7 and levels["invite"] == 80, levels
    # Top-level keys are replaced as a whole, the others keep the defaults.
    assert levels["events"] == {"m.room.topic": 99}, levels
    assert levels["kick"] == 50 and levels["users"][alice.user_id] == 100, levels
    create = alice.state_content(room_id, "m.room.create")
    assert create["m.federate"] is False and create["org.example.extra"] == "x", create
    assert create["room_version"] == "11", "the server overwrites room_version"


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_room_versions_shape_the_create_event_and_the_room_id(new_user, server_name, version):
    alice = new_user("alice")
    room_id = alice.create_room(room_version=version)
    create = alice.get(f"{V3}/rooms/{q(room_id)}/state/m.room.create/",
                       params={"format": "event"}).json()
    assert_client_event(create, room_id)
    assert create["type"] == "m.room.create" and create["state_key"] == ""
    assert create["sender"] == alice.user_id
    assert create["content"]["room_version"] == version
    if version == "10":
        assert create["content"]["creator"] == alice.user_id
    else:
        assert "creator" not in create["content"], "v11 removed `creator`"
    if version == "12":
        assert ":" not in room_id, room_id
        assert create["event_id"] == "$" + room_id[1:], (create["event_id"], room_id)
    else:
        assert room_id.endswith(":" + server_name), room_id
    # Every later event of the room carries the same room id.
    assert alice.state_content(room_id, "m.room.member", alice.user_id)["membership"] == "join"


def test_create_room_errors(new_user, base_url):
    alice = new_user("alice")
    assert_error(alice.post(f"{V3}/createRoom", {"room_version": "13"}, expect=None),
                 400, "M_UNSUPPORTED_ROOM_VERSION")
    assert_error(alice.call("POST", f"{V3}/createRoom", data=b'{"name": "half',
                            headers={"Content-Type": "application/json"}, expect=None),
                 400, "M_NOT_JSON")
    assert_error(alice.post(f"{V3}/createRoom", {"preset": "party_chat"}, expect=None),
                 400, "M_BAD_JSON")
    assert_error(no_server_error(requests.post(base_url + f"{V3}/createRoom", json={}, timeout=15)),
                 401, "M_MISSING_TOKEN")
    # None of the refused requests made a room.
    assert alice.get(f"{V3}/joined_rooms").json()["joined_rooms"] == []


# Membership


def test_join_by_id_and_alias_and_the_refusals(new_user, server_name):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    localpart = fresh("lobby")
    public = alice.create_room(preset="public_chat", room_alias_name=localpart)
    assert bob.post(f"{V3}/rooms/{q(public)}/join").json() == {"room_id": public}
    carol.join(f"#{localpart}:{server_name}")
    joined = alice.get(f"{V3}/rooms/{q(public)}/joined_members").json()["joined"]
    assert set(joined) == {alice.user_id, bob.user_id, carol.user_id}, joined
    assert public in carol.get(f"{V3}/joined_rooms").json()["joined_rooms"]
    # Joining again is allowed (a no-op membership change), and a member cannot be invited.
    assert bob.post(f"{V3}/join/{q(public)}").json() == {"room_id": public}
    assert_error(alice.post(f"{V3}/rooms/{q(public)}/invite", {"user_id": bob.user_id}, expect=None),
                 403, "M_FORBIDDEN")
    # A user who was never in the room can be banned ahead of time, and then cannot join.
    dave = new_user("dave")
    assert alice.post(f"{V3}/rooms/{q(public)}/ban", {"user_id": dave.user_id}).json() == {}
    assert_error(dave.post(f"{V3}/join/{q(public)}", expect=None), 403, "M_FORBIDDEN")

    private = alice.create_room(preset="private_chat")
    assert_error(bob.post(f"{V3}/join/{q(private)}", expect=None), 403, "M_FORBIDDEN")
    assert_error(bob.post(f"{V3}/rooms/{q(private)}/join", expect=None), 403, "M_FORBIDDEN")
    assert bob.get(f"{V3}/rooms/{q(private)}/members", expect=None).status_code == 403

    unknown_room = f"!{secrets.token_hex(9)}:{server_name}"
    assert_error(bob.post(f"{V3}/join/{q(unknown_room)}", expect=None), 404, "M_NOT_FOUND")
    assert_error(bob.post(f"{V3}/join/{q('#' + fresh('nowhere') + ':' + server_name)}", expect=None),
                 404, "M_NOT_FOUND")


def test_invite_kick_ban_unban_leave_and_forget(new_user, server_name):
    alice, bob, mallory = new_user("alice"), new_user("bob"), new_user("mallory")
    room_id = alice.create_room(preset="private_chat")
    path = f"{V3}/rooms/{q(room_id)}"

    assert alice.post(f"{path}/invite", {"user_id": bob.user_id}).json() == {}
    assert alice.state_content(room_id, "m.room.member", bob.user_id)["membership"] == "invite"
    bob.join(room_id)
    assert_error(alice.post(f"{path}/invite", {"user_id": f"@{fresh('ghost')}:{server_name}"}, expect=None),
                 404, "M_NOT_FOUND")
    assert_error(alice.post(f"{path}/invite", {"user_id": "not a user id"}, expect=None), 400, "M_INVALID_PARAM")
    assert_error(alice.post(f"{path}/invite", {}, expect=None), 400, "M_BAD_JSON")

    # Kick and ban need power bob does not have (level 0 against kick 50 / ban 50).
    alice.post(f"{path}/invite", {"user_id": mallory.user_id})
    mallory.join(room_id)
    assert_error(bob.post(f"{path}/kick", {"user_id": mallory.user_id}, expect=None), 403, "M_FORBIDDEN")
    assert_error(bob.post(f"{path}/ban", {"user_id": mallory.user_id}, expect=None), 403, "M_FORBIDDEN")
    assert alice.state_content(room_id, "m.room.member", mallory.user_id)["membership"] == "join"

    assert alice.post(f"{path}/kick", {"user_id": mallory.user_id, "reason": "spam"}).json() == {}
    kicked = alice.state_content(room_id, "m.room.member", mallory.user_id)
    assert kicked == {"membership": "leave", "reason": "spam"}, kicked
    assert_error(mallory.post(f"{path}/join", expect=None), 403, "M_FORBIDDEN")  # invite only

    assert alice.post(f"{path}/ban", {"user_id": mallory.user_id, "reason": "again"}).json() == {}
    assert alice.state_content(room_id, "m.room.member", mallory.user_id)["membership"] == "ban"
    assert_error(alice.post(f"{path}/invite", {"user_id": mallory.user_id}, expect=None), 403, "M_FORBIDDEN")
    alice.put(f"{path}/state/m.room.join_rules", {"join_rule": "public"})
    assert_error(mallory.post(f"{V3}/join/{q(room_id)}", expect=None), 403, "M_FORBIDDEN")
    assert alice.post(f"{path}/unban", {"user_id": mallory.user_id}).json() == {}
    assert alice.state_content(room_id, "m.room.member", mallory.user_id)["membership"] == "leave"
    mallory.join(room_id)

    # Forget: refused while joined, allowed after leaving; then the room is gone for them.
    assert_error(bob.post(f"{path}/forget", expect=None), 400, "M_UNKNOWN")
    assert bob.post(f"{path}/leave").json() == {}
    assert alice.state_content(room_id, "m.room.member", bob.user_id)["membership"] == "leave"
    assert room_id not in bob.get(f"{V3}/joined_rooms").json()["joined_rooms"]
    assert bob.post(f"{path}/forget").json() == {}


# Sending


def test_a_transaction_id_sends_once(new_user):
    alice = new_user("alice")
    room_id = alice.create_room()
    first = alice.send(room_id, "once", txn="txn-1")
    again = alice.send(room_id, "twice?", txn="txn-1")
    assert again == first
    chunk = alice.messages(room_id, limit=50)["chunk"]
    messages = [e for e in chunk if e["type"] == "m.room.message"]
    assert ids(messages) == [first], messages
    assert messages[0]["content"]["body"] == "once"
    assert messages[0]["unsigned"]["transaction_id"] == "txn-1"
    # The same txn id in another room is another transaction.
    other = alice.create_room()
    assert alice.send(other, "elsewhere", txn="txn-1") != first


def test_state_with_an_empty_key_with_and_without_the_trailing_slash(new_user):
    alice = new_user("alice")
    room_id = alice.create_room()
    path = f"{V3}/rooms/{q(room_id)}/state"
    unset = alice.get(f"{path}/m.room.topic", expect=None)
    assert_error(unset, 404, "M_NOT_FOUND")
    assert_error(alice.get(f"{path}/m.room.topic/", expect=None), 404, "M_NOT_FOUND")
    assert_error(alice.get(f"{path}/org.example.thing/key", expect=None), 404, "M_NOT_FOUND")

    with_slash = alice.put(f"{path}/m.room.topic/", {"topic": "slash"}).json()["event_id"]
    assert alice.get(f"{path}/m.room.topic").json() == {"topic": "slash"}
    without = alice.put(f"{path}/m.room.topic", {"topic": "no slash"}).json()["event_id"]
    assert without != with_slash
    assert alice.get(f"{path}/m.room.topic/").json() == {"topic": "no slash"}
    event = alice.get(f"{path}/m.room.topic", params={"format": "event"}).json()
    assert event["event_id"] == without and event["state_key"] == "" and event["content"] == {"topic": "no slash"}

    keyed = alice.put(f"{path}/org.example.thing/{q('some key')}", {"v": 2}).json()["event_id"]
    assert alice.get(f"{path}/org.example.thing/{q('some key')}").json() == {"v": 2}
    state = alice.state(room_id)
    assert state[("org.example.thing", "some key")]["event_id"] == keyed
    assert state[("m.room.topic", "")]["event_id"] == without


def test_power_levels_and_size_limits_on_sending(new_user):
    alice, bob, eve = new_user("alice"), new_user("bob"), new_user("eve")
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    path = f"{V3}/rooms/{q(room_id)}"
    # m.room.name needs 50; bob has the default 0.
    assert_error(bob.put(f"{path}/state/m.room.name", {"name": "mine"}, expect=None), 403, "M_FORBIDDEN")
    assert_error(bob.put(f"{path}/state/m.room.power_levels",
                         {"users": {bob.user_id: 100}}, expect=None), 403, "M_FORBIDDEN")
    assert_error(alice.get(f"{path}/state/m.room.name", expect=None), 404, "M_NOT_FOUND")
    bob.send(room_id, "members may talk")

    # Over 65536 bytes: refused as too large, and nothing is stored.
    big = {"msgtype": "m.text", "body": "x" * 70_000}
    assert_error(alice.put(f"{path}/send/m.room.message/big-1", big, expect=None), 413, "M_TOO_LARGE")
    assert_error(alice.put(f"{path}/state/org.example.big", {"x": "y" * 70_000}, expect=None),
                 413, "M_TOO_LARGE")
    chunk = alice.messages(room_id, limit=100)["chunk"]
    assert all(len(json.dumps(e)) < 65_536 for e in chunk)
    assert not [e for e in chunk if e["type"] == "org.example.big"]
    # The txn id was not used up by the refusal.
    assert alice.send(room_id, "small", txn="big-1")

    # Malformed bodies: not JSON, and JSON that is not an object.
    assert_error(alice.call("PUT", f"{path}/send/m.room.message/bad-1", data=b"{oops",
                            headers={"Content-Type": "application/json"}, expect=None), 400, "M_NOT_JSON")
    assert_error(alice.put(f"{path}/send/m.room.message/bad-2", ["not", "an", "object"], expect=None),
                 400, "M_BAD_JSON")
    # A state key that is a user id belongs to that user alone (the auth rules).
    assert_error(alice.put(f"{path}/state/org.example.mine/{q(bob.user_id)}", {"x": 1}, expect=None),
                 403, "M_FORBIDDEN")
    assert bob.put(f"{path}/state/org.example.mine/{q(bob.user_id)}", {"x": 1}, expect=None).status_code == 403, \
        "bob still lacks state_default (50)"
    alice.put(f"{path}/state/org.example.mine/{q(alice.user_id)}", {"x": 1})

    # Someone who is not in the room cannot send to it, nor set its state.
    assert_error(eve.put(f"{path}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"}, expect=None),
                 403, "M_FORBIDDEN")
    assert_error(eve.put(f"{path}/state/m.room.topic", {"topic": "x"}, expect=None), 403, "M_FORBIDDEN")
    assert_error(eve.get(f"{path}/messages", expect=None), 403, "M_FORBIDDEN")


# Reading


@pytest.fixture(scope="module")
def chatty_room(base_url):
    """A room with alice, bob (who joins), five messages from alice, and carol who was invited
    and left: shared by the read-only tests below."""
    def register(name):
        body = no_server_error(requests.post(
            base_url + f"{V3}/register", timeout=15,
            json={"username": fresh(name), "password": PASSWORD, "auth": {"type": "m.login.dummy"}})).json()
        return User(base_url, body["user_id"], body["access_token"])
    alice, bob, carol = register("alice"), register("bob"), register("carol")
    room_id = alice.create_room(preset="public_chat", name="chatty")
    bob.join(room_id)
    alice.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": carol.user_id})
    carol.post(f"{V3}/rooms/{q(room_id)}/leave")
    messages = [alice.send(room_id, f"m{i}") for i in range(1, 6)]
    return alice, bob, carol, room_id, messages


def test_state_members_and_joined_members(chatty_room):
    alice, bob, carol, room_id, _ = chatty_room
    state = bob.state(room_id)
    assert state[("m.room.name", "")]["content"] == {"name": "chatty"}
    assert state[("m.room.create", "")]["type"] == "m.room.create"
    path = f"{V3}/rooms/{q(room_id)}"

    def members(**params):
        chunk = bob.get(f"{path}/members", params=params).json()["chunk"]
        for event in chunk:
            assert event["type"] == "m.room.member"
            assert_client_event(event, room_id)
        return {e["state_key"]: e["content"]["membership"] for e in chunk}

    everyone = {alice.user_id: "join", bob.user_id: "join", carol.user_id: "leave"}
    assert members() == everyone
    assert members(membership="join") == {alice.user_id: "join", bob.user_id: "join"}
    assert members(membership="leave") == {carol.user_id: "leave"}
    assert members(not_membership="leave") == {alice.user_id: "join", bob.user_id: "join"}
    assert members(not_membership="join") == {carol.user_id: "leave"}

    # `at` a token from before bob joined: only alice was a member then.
    timeline = bob.messages(room_id, dir="f", limit=100)
    join = next(e for e in timeline["chunk"]
                if e["type"] == "m.room.member" and e["state_key"] == bob.user_id)
    before_join = bob.get(f"{path}/context/{q(join['event_id'])}", params={"limit": "0"}).json()["start"]
    assert members(at=before_join) == {alice.user_id: "join"}
    assert members(at=bob.messages(room_id, limit=1)["start"]) == everyone

    assert_error(bob.get(f"{path}/members", params={"at": "garbage"}, expect=None), 400, "M_INVALID_PARAM")

    joined = bob.get(f"{path}/joined_members").json()["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}, joined
    for profile in joined.values():
        assert set(profile) <= {"display_name", "avatar_url"}, profile
    outsider_chunk = carol.get(f"{path}/members").json()["chunk"]
    # carol left: she sees the members as they were when she left.
    assert {e["state_key"] for e in outsider_chunk} == {alice.user_id, bob.user_id, carol.user_id}


def test_messages_pages_backwards_and_forwards(chatty_room):
    alice, bob, _, room_id, (m1, m2, m3, m4, m5) = chatty_room
    first = bob.messages(room_id, dir="b", limit=3)
    assert ids(first["chunk"]) == [m5, m4, m3]
    for event in first["chunk"]:
        assert_client_event(event, room_id)
        assert event["content"]["body"].startswith("m") and event["sender"] == alice.user_id
    assert "end" in first, "a full page is not the start of the room"
    second = bob.messages(room_id, dir="b", limit=2, **{"from": first["end"]})
    assert second["start"] == first["end"]
    assert ids(second["chunk"]) == [m2, m1]

    # Forwards from the first page's end gives its events again, oldest first.
    forward = bob.messages(room_id, dir="f", limit=3, **{"from": first["end"]})
    assert ids(forward["chunk"]) == [m3, m4, m5]
    # `to` stops the page; the start token of the newest page reaches the same events.
    bounded = bob.messages(room_id, dir="b", limit=100, to=first["end"], **{"from": first["start"]})
    assert ids(bounded["chunk"]) == [m5, m4, m3]
    bounded_f = bob.messages(room_id, dir="f", limit=100, to=first["start"], **{"from": second["end"]})
    assert ids(bounded_f["chunk"]) == [m1, m2, m3, m4, m5]

    # The whole room backwards: it ends at the create event; the page after it is empty, and
    # only then is `end` omitted.
    everything = bob.messages(room_id, dir="b", limit=1000)
    assert everything["chunk"][-1]["type"] == "m.room.create"
    beyond = bob.messages(room_id, dir="b", limit=1000, **{"from": everything["end"]})
    assert beyond["chunk"] == [] and "end" not in beyond, beyond
    # Forwards without `from` starts at the start of the room.
    assert bob.messages(room_id, dir="f", limit=1)["chunk"][0]["type"] == "m.room.create"

    # Forwards pages carry `end` while full, and continue from it.
    f1 = bob.messages(room_id, dir="f", limit=2, **{"from": second["end"]})
    assert ids(f1["chunk"]) == [m1, m2] and "end" in f1
    f2 = bob.messages(room_id, dir="f", limit=2, **{"from": f1["end"]})
    assert ids(f2["chunk"]) == [m3, m4]
    # A sync's next_batch is a valid `from` too (clients paginate from it).
    next_batch = bob.get(f"{V3}/sync", params={"timeout": "0"}).json()["next_batch"]
    assert ids(bob.messages(room_id, dir="b", limit=1, **{"from": next_batch})["chunk"]) == [m5]

    only = bob.messages(room_id, dir="b", limit=100, filter=json.dumps({"types": ["m.room.message"]}))
    assert ids(only["chunk"]) == [m5, m4, m3, m2, m1]
    lazy = bob.messages(room_id, dir="b", limit=2,
                        filter=json.dumps({"types": ["m.room.message"], "lazy_load_members": True}))
    assert [(e["type"], e["state_key"]) for e in lazy.get("state", [])] == [("m.room.member", alice.user_id)]
    no_messages = bob.messages(room_id, dir="b", limit=100,
                               filter=json.dumps({"not_types": ["m.room.message"]}))
    assert no_messages["chunk"] and all(e["type"] != "m.room.message" for e in no_messages["chunk"])

    path = f"{V3}/rooms/{q(room_id)}/messages"
    assert_error(bob.get(path, params={"dir": "sideways"}, expect=None), 400, "M_INVALID_PARAM")
    assert_error(bob.get(path, params={"filter": "{nope"}, expect=None), 400, "M_BAD_JSON")


def test_context_and_its_tokens(chatty_room):
    _, bob, _, room_id, (m1, m2, m3, m4, m5) = chatty_room
    context = bob.get(f"{V3}/rooms/{q(room_id)}/context/{q(m3)}", params={"limit": "2"}).json()
    assert context["event"]["event_id"] == m3
    assert_client_event(context["event"], room_id)
    assert ids(context["events_before"]) == [m2]
    assert ids(context["events_after"]) == [m4]
    assert isinstance(context["state"], list)
    assert any(e["type"] == "m.room.create" for e in context["state"])
    before = bob.messages(room_id, dir="b", limit=1, **{"from": context["start"]})
    assert ids(before["chunk"]) == [m1]
    after = bob.messages(room_id, dir="f", limit=10, **{"from": context["end"]})
    assert ids(after["chunk"]) == [m5]
    # events_before is newest first, events_after oldest first.
    wide = bob.get(f"{V3}/rooms/{q(room_id)}/context/{q(m3)}", params={"limit": "4"}).json()
    assert ids(wide["events_before"]) == [m2, m1] and ids(wide["events_after"]) == [m4, m5]
    assert_error(bob.get(f"{V3}/rooms/{q(room_id)}/context/{q('$nothing')}", expect=None), 404, "M_NOT_FOUND")


def test_event_by_id_and_not_from_another_room(chatty_room, new_user):
    alice, bob, _, room_id, (m1, *_) = chatty_room
    event = bob.get(f"{V3}/rooms/{q(room_id)}/event/{q(m1)}").json()
    assert_client_event(event, room_id)
    assert event["event_id"] == m1 and event["content"] == {"msgtype": "m.text", "body": "m1"}
    # Both rooms are bob's, but the event is not in the one named.
    elsewhere = bob.create_room()
    assert_error(bob.get(f"{V3}/rooms/{q(elsewhere)}/event/{q(m1)}", expect=None), 404, "M_NOT_FOUND")
    assert_error(bob.get(f"{V3}/rooms/{q(room_id)}/event/{q('$unknown')}", expect=None), 404, "M_NOT_FOUND")
    outsider = new_user("outsider")
    assert outsider.get(f"{V3}/rooms/{q(room_id)}/event/{q(m1)}", expect=None).status_code in (403, 404)


def test_relations_by_type(new_user):
    alice, bob = new_user("alice"), new_user("bob")
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    target = alice.send(room_id, "react to me")
    reaction = bob.send(room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}},
                        kind="m.reaction")
    reference = bob.send(room_id, {"msgtype": "m.text", "body": "see above",
                                   "m.relates_to": {"rel_type": "m.reference", "event_id": target}})
    alice.send(room_id, "unrelated")
    path = f"{V1}/rooms/{q(room_id)}/relations/{q(target)}"
    everything = alice.get(path).json()
    assert ids(everything["chunk"]) == [reference, reaction], "newest first"
    for event in everything["chunk"]:
        assert_client_event(event, room_id)
    annotations = alice.get(f"{path}/m.annotation").json()
    assert ids(annotations["chunk"]) == [reaction]
    assert annotations["chunk"][0]["content"]["m.relates_to"]["key"] == "👍"
    assert ids(alice.get(f"{path}/m.reference/m.room.message").json()["chunk"]) == [reference]
    assert alice.get(f"{path}/m.annotation/m.room.message").json()["chunk"] == []
    paged = alice.get(path, params={"limit": "1"}).json()
    assert ids(paged["chunk"]) == [reference] and "next_batch" in paged
    rest = alice.get(path, params={"limit": "1", "from": paged["next_batch"]}).json()
    assert ids(rest["chunk"]) == [reaction]
    # dir=f: chronological, and its pages continue forwards.
    forwards = alice.get(path, params={"dir": "f"}).json()
    assert ids(forwards["chunk"]) == [reaction, reference]
    f1 = alice.get(path, params={"dir": "f", "limit": "1"}).json()
    assert ids(f1["chunk"]) == [reaction] and "next_batch" in f1
    f2 = alice.get(path, params={"dir": "f", "limit": "1", "from": f1["next_batch"]}).json()
    assert ids(f2["chunk"]) == [reference]
    # `from` may be a /messages start or a /sync next_batch: both include the newest relation.
    answer = bob.send(room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "🎉"}},
                      kind="m.reaction")
    start = alice.messages(room_id, limit=1)["start"]
    assert ids(alice.get(path, params={"from": start}).json()["chunk"]) == [answer, reference, reaction]
    next_batch = alice.get(f"{V3}/sync", params={"timeout": "0"}).json()["next_batch"]
    assert ids(alice.get(path, params={"from": next_batch, "limit": "1"}).json()["chunk"]) == [answer]
    # `to` stops the page: from the newest down to the first one-event page's next_batch.
    assert ids(alice.get(path, params={"to": paged["next_batch"]}).json()["chunk"]) == [answer, reference]
    assert ids(alice.get(path, params={"dir": "f", "from": paged["next_batch"], "to": start}).json()["chunk"]) \
        == [reference, answer]
    assert_error(alice.get(path, params={"dir": "up"}, expect=None), 400, "M_INVALID_PARAM")
    assert_error(alice.get(f"{V1}/rooms/{q(room_id)}/relations/{q('$missing')}", expect=None),
                 404, "M_NOT_FOUND")


# Redaction


def test_redaction_empties_content_and_needs_power_over_others(new_user):
    alice, bob = new_user("alice"), new_user("bob")
    room_id = alice.create_room(preset="public_chat")
    bob.join(room_id)
    path = f"{V3}/rooms/{q(room_id)}"
    alices = alice.send(room_id, "alice's words")
    bobs = bob.send(room_id, "bob's words")

    # bob (level 0, redact needs 50) cannot redact alice's message, but can redact his own.
    assert_error(bob.put(f"{path}/redact/{q(alices)}/r1", {"reason": "no"}, expect=None), 403, "M_FORBIDDEN")
    redaction = bob.put(f"{path}/redact/{q(bobs)}/r2", {"reason": "oops"}).json()["event_id"]
    assert redaction.startswith("$")
    assert bob.put(f"{path}/redact/{q(bobs)}/r2", {"reason": "oops"}).json()["event_id"] == redaction
    # alice (100) may redact bob's, and an event this server does not hold (another server's:
    # the redaction is sent on, and applied by whoever holds it); bob may not.
    assert alice.put(f"{path}/redact/{q(bobs)}/r3", {}).json()["event_id"].startswith("$")
    unknown = "$notheld:elsewhere.example"
    assert alice.put(f"{path}/redact/{q(unknown)}/r4", {}).json()["event_id"].startswith("$")
    assert_error(bob.put(f"{path}/redact/{q(unknown)}/r5", {}, expect=None), 403, "M_FORBIDDEN")
    assert alice.get(f"{path}/event/{q(alices)}").json()["content"]["body"] == "alice's words"

    redacted = alice.get(f"{path}/event/{q(bobs)}").json()
    assert redacted["content"] == {}, redacted
    because = redacted["unsigned"]["redacted_because"]
    assert because["type"] == "m.room.redaction" and because["event_id"] == redaction, because
    assert because["sender"] == bob.user_id and because["content"]["reason"] == "oops"
    assert because["content"]["redacts"] == bobs  # v12 rooms: the target is in content
    in_timeline = next(e for e in alice.messages(room_id, limit=50)["chunk"] if e["event_id"] == bobs)
    assert in_timeline["content"] == {} and in_timeline["unsigned"]["redacted_because"]["event_id"] == redaction
    redaction_event = alice.get(f"{path}/event/{q(redaction)}").json()
    assert redaction_event["type"] == "m.room.redaction" and redaction_event["redacts"] == bobs


def test_redaction_in_a_v10_room_names_the_target_at_the_top_level(new_user):
    alice = new_user("alice")
    room_id = alice.create_room(room_version="10")
    target = alice.send(room_id, "soon gone")
    path = f"{V3}/rooms/{q(room_id)}"
    redaction = alice.put(f"{path}/redact/{q(target)}/r1", {"reason": "why"}).json()["event_id"]
    redacted = alice.get(f"{path}/event/{q(target)}").json()
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction
    assert alice.get(f"{path}/event/{q(redaction)}").json()["redacts"] == target


# History visibility


@pytest.mark.parametrize("visibility,sees_earlier", [("joined", False), ("shared", True)])
def test_history_visibility_for_a_later_joiner(new_user, visibility, sees_earlier):
    alice, bob = new_user("alice"), new_user("bob")
    room_id = alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}}])
    earlier = alice.send(room_id, "before bob")
    bob.join(room_id)
    later = alice.send(room_id, "after bob")
    path = f"{V3}/rooms/{q(room_id)}"

    seen = ids(bob.messages(room_id, dir="b", limit=100)["chunk"])
    assert later in seen
    forward = ids(bob.messages(room_id, dir="f", limit=100)["chunk"])
    assert later in forward
    event = bob.get(f"{path}/event/{q(earlier)}", expect=None)
    if sees_earlier:
        assert earlier in seen and earlier in forward
        assert event.status_code == 200 and event.json()["event_id"] == earlier
    else:
        assert earlier not in seen and earlier not in forward, seen
        assert_error(event, 404, "M_NOT_FOUND")
        assert_error(bob.get(f"{path}/context/{q(earlier)}", expect=None), 404, "M_NOT_FOUND")
    assert bob.get(f"{path}/event/{q(later)}").json()["content"]["body"] == "after bob"
    context = bob.get(f"{path}/context/{q(later)}", params={"limit": "10"}).json()
    assert (earlier in ids(context["events_before"])) == sees_earlier, context["events_before"]

    # After leaving, what is sent next is hidden whatever the visibility.
    bob.post(f"{path}/leave")
    gone = alice.send(room_id, "after bob left")
    assert gone not in ids(bob.messages(room_id, dir="b", limit=100)["chunk"])
    assert later in ids(bob.messages(room_id, dir="b", limit=100)["chunk"])
    assert_error(bob.get(f"{path}/event/{q(gone)}", expect=None), 404, "M_NOT_FOUND")


# Aliases and the directory


def test_alias_put_get_delete(new_user, server_name):
    alice, bob = new_user("alice"), new_user("bob")
    room_id = alice.create_room(preset="public_chat")
    alias = f"#{fresh('alias')}:{server_name}"
    path = f"{V3}/directory/room/{q(alias)}"
    assert_error(alice.get(path, expect=None), 404, "M_NOT_FOUND")
    assert alice.put(path, {"room_id": room_id}).json() == {}
    assert_error(alice.put(path, {"room_id": room_id}, expect=None), 409, "M_UNKNOWN")
    assert alice.get(path).json() == {"room_id": room_id, "servers": [server_name]}
    aliases = alice.get(f"{V3}/rooms/{q(room_id)}/aliases").json()
    assert aliases == {"aliases": [alias]}
    # Only members may see a room's aliases; a non-member may not delete someone else's alias.
    assert_error(bob.get(f"{V3}/rooms/{q(room_id)}/aliases", expect=None), 403, "M_FORBIDDEN")
    assert_error(bob.delete(path, expect=None), 403, "M_FORBIDDEN")
    assert alice.delete(path).json() == {}
    assert_error(alice.get(path, expect=None), 404, "M_NOT_FOUND")
    assert_error(alice.delete(path, expect=None), 404, "M_NOT_FOUND")
    assert alice.get(f"{V3}/rooms/{q(room_id)}/aliases").json() == {"aliases": []}
    assert_error(alice.put(f"{V3}/directory/room/{q('not-an-alias')}", {"room_id": room_id}, expect=None),
                 400, "M_INVALID_PARAM")


def test_directory_visibility_and_public_rooms(new_user, base_url, server_name):
    alice, bob = new_user("alice"), new_user("bob")
    word = fresh("findme")
    room_id = alice.create_room(preset="public_chat", name=f"The {word} room", topic="about things",
                                room_alias_name=word)
    path = f"{V3}/directory/list/room/{q(room_id)}"
    # Not published unless visibility is public.
    assert no_server_error(requests.get(base_url + path, timeout=15)).json() == {"visibility": "private"}
    assert_error(no_server_error(requests.get(base_url + f"{V3}/directory/list/room/{q('!nope:' + server_name)}",
                                              timeout=15)), 404, "M_NOT_FOUND")
    search = {"filter": {"generic_search_term": word}}
    assert alice.post(f"{V3}/publicRooms", search).json()["chunk"] == []

    assert_error(bob.put(path, {"visibility": "public"}, expect=None), 403, "M_FORBIDDEN")
    assert alice.put(path, {"visibility": "public"}).json() == {}
    assert alice.get(path).json() == {"visibility": "public"}
    assert_error(alice.put(path, {"visibility": "secret"}, expect=None), 400, "M_INVALID_PARAM")

    found = bob.post(f"{V3}/publicRooms", search).json()
    assert [r["room_id"] for r in found["chunk"]] == [room_id], found
    entry = found["chunk"][0]
    assert entry["name"] == f"The {word} room" and entry["topic"] == "about things"
    assert entry["canonical_alias"] == f"#{word}:{server_name}"
    assert entry["num_joined_members"] == 1 and entry["join_rule"] == "public"
    assert entry["world_readable"] is False and entry["guest_can_join"] is False
    assert_error(no_server_error(requests.post(base_url + f"{V3}/publicRooms", json=search, timeout=15)),
                 401, "M_MISSING_TOKEN")

    # GET needs no token, and lists it too.
    listed = no_server_error(requests.get(base_url + f"{V3}/publicRooms", params={"limit": "500"}, timeout=15))
    assert listed.status_code == 200
    assert room_id in [r["room_id"] for r in listed.json()["chunk"]]

    # A room created with visibility public is published from the start.
    other = alice.create_room(visibility="public", name=f"{word} two")
    found = bob.post(f"{V3}/publicRooms", search).json()
    assert {r["room_id"] for r in found["chunk"]} == {room_id, other}
    paged = bob.post(f"{V3}/publicRooms", {**search, "limit": 1}).json()
    assert len(paged["chunk"]) == 1 and "next_batch" in paged
    rest = bob.post(f"{V3}/publicRooms", {**search, "limit": 1, "since": paged["next_batch"]}).json()
    assert len(rest["chunk"]) == 1 and rest["chunk"] != paged["chunk"] and "prev_batch" in rest

    assert alice.put(path, {"visibility": "private"}).json() == {}
    assert [r["room_id"] for r in bob.post(f"{V3}/publicRooms", search).json()["chunk"]] == [other]
