"""Presence (client-server "Presence", server-server `m.presence` EDU): a user sets their
presence and status; users sharing a room see it with GET and in /sync (a change wakes their
long-poll), strangers may not; syncing marks a user online unless `set_presence=offline`. Over
federation: an EDU from a server about its own user is kept and shown, one about another
server's user is dropped, and our users' changes go to the servers they share rooms with.
"""

from __future__ import annotations

import secrets
import threading
import time

from fake_origin import FakeOrigin
from fedsign import SignedAs
from test_federation_peer import eventually, our_user, shared_room_on_ours
from test_sync import User, shared_room


def presence_of(viewer: User, user_id: str, status: int = 200) -> dict:
    return viewer.ok("GET", f"/presence/{user_id}/status", status=status) if status == 200 else \
        viewer.call("GET", f"/presence/{user_id}/status", status=status).json()


def set_presence(user: User, presence: str, status_msg: str | None = None, status: int = 200) -> dict:
    body = {"presence": presence, **({"status_msg": status_msg} if status_msg is not None else {})}
    return user.call("PUT", f"/presence/{user.user_id}/status", json=body, status=status).json()


def presence_events(body: dict, user_id: str) -> list[dict]:
    return [e for e in body["presence"]["events"] if e["type"] == "m.presence" and e["sender"] == user_id]


def test_presence_is_seen_by_room_members_and_refused_to_strangers(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    stranger = User(server, "stranger")
    since = bob.sync()["next_batch"]
    assert set_presence(alice, "unavailable", "writing tests") == {}
    seen = presence_of(bob, alice.user_id)
    assert seen["presence"] == "unavailable" and seen["status_msg"] == "writing tests", seen
    assert seen["currently_active"] is False and seen["last_active_ago"] >= 0
    events = presence_events(bob.sync(since), alice.user_id)
    assert events and events[-1]["content"]["presence"] == "unavailable", events
    assert presence_of(stranger, alice.user_id, status=403)["errcode"] == "M_FORBIDDEN"
    # Only one's own presence can be set, and only to a known state.
    body = {"presence": "online"}
    assert bob.call("PUT", f"/presence/{alice.user_id}/status", json=body, status=403).json()["errcode"] == "M_FORBIDDEN"
    assert set_presence(alice, "asleep", status=400)["errcode"] == "M_INVALID_PARAM"
    assert presence_of(bob, alice.user_id)["presence"] == "unavailable"


def test_a_presence_change_wakes_a_long_poll(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    alice.sync(set_presence="offline")
    since = bob.sync()["next_batch"]
    answer: dict = {}

    def poll():
        started = time.monotonic()
        answer["body"] = bob.sync(since, timeout_ms=20_000)
        answer["after"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1)
    set_presence(alice, "online", "back")
    thread.join(30)
    events = presence_events(answer["body"], alice.user_id)
    assert events and events[-1]["content"]["status_msg"] == "back", answer["body"]["presence"]
    assert answer["after"] < 15, f"the long-poll was not woken ({answer['after']:.1f}s of 20)"


def test_syncing_marks_online_unless_the_client_says_offline(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    alice.sync(set_presence="offline")
    # Never set: offline, as far as anyone knows (sytest's "fetches initial status").
    assert presence_of(bob, alice.user_id) == {"presence": "offline"}
    alice.sync()
    seen = presence_of(bob, alice.user_id)
    assert seen["presence"] == "online" and seen["currently_active"] is True, seen
    alice.sync(set_presence="unavailable")
    assert presence_of(bob, alice.user_id)["presence"] == "unavailable"


def test_an_m_presence_edu_is_kept_only_for_the_sending_servers_users(federation_pair):
    pair = federation_pair
    room_id, alice, bob = shared_room_on_ours(pair, preset="public_chat")
    alice.sync_once(0)
    stranger = f"@nobody-{secrets.token_hex(3)}:elsewhere.example"
    edu = {"edu_type": "m.presence", "content": {"push": [
        {"user_id": bob.user_id, "presence": "online", "last_active_ago": 5000,
         "currently_active": True, "status_msg": "from synapse"},
        {"user_id": stranger, "presence": "online", "last_active_ago": 1},
    ]}}
    answer = SignedAs(pair).send_transaction(secrets.token_hex(6), [], [edu])
    assert answer.status_code == 200, answer.text
    alice.wait(lambda c: any(e["sender"] == bob.user_id for b in c.seen for e in b["presence"]["events"]),
               "bob's presence in our sync")
    seen = alice.ok("GET", f"/_matrix/client/v3/presence/{bob.user_id}/status")
    assert seen["presence"] == "online" and seen["status_msg"] == "from synapse", seen
    assert seen["last_active_ago"] >= 5000
    assert alice.call("GET", f"/_matrix/client/v3/presence/{stranger}/status", expect=None).status_code in (403, 404)


def test_our_presence_goes_to_the_servers_we_share_rooms_with(federation_pair):
    pair = federation_pair
    with FakeOrigin(pair) as fake:
        alice = our_user(pair, "alice")
        room_id = alice.create_room(preset="public_chat")
        fake.join(room_id)
        alice.ok("PUT", f"/_matrix/client/v3/presence/{alice.user_id}/status",
                 {"presence": "unavailable", "status_msg": "at lunch"})

        def pushed() -> list[dict]:
            return [entry for body in fake.asked("/_matrix/federation/v1/send/") if body
                    for edu in body.get("edus", []) if edu.get("edu_type") == "m.presence"
                    for entry in edu["content"]["push"] if entry["user_id"] == alice.user_id]

        eventually(lambda: any(e["status_msg"] == "at lunch" for e in pushed()), "alice's presence at the fake server")
        entry = [e for e in pushed() if e["status_msg"] == "at lunch"][-1]
        assert entry["presence"] == "unavailable" and entry["currently_active"] is False


def test_a_new_room_mates_presence_comes_with_the_join_once(server):
    """Presence set long before a join still reaches the incremental sync that brings the join,
    both ways: the members learn the newcomer's, the newcomer the members'. Only once: the next
    sync has none (nothing changed)."""
    alice, bob = User(server, "alice"), User(server, "bob")
    set_presence(alice, "unavailable", "in a meeting")
    set_presence(bob, "online", "just arrived")
    room_id = alice.create_room(preset="public_chat")
    alice_since = alice.sync(set_presence="offline")["next_batch"]
    bob_since = bob.sync(set_presence="offline")["next_batch"]
    bob.join(room_id)

    body = alice.sync(alice_since, set_presence="offline")
    events = presence_events(body, bob.user_id)
    assert events and events[-1]["content"]["status_msg"] == "just arrived", body["presence"]
    assert presence_events(alice.sync(body["next_batch"], set_presence="offline"), bob.user_id) == []

    body = bob.sync(bob_since, set_presence="offline")
    events = presence_events(body, alice.user_id)
    assert events and events[-1]["content"]["presence"] == "unavailable", body["presence"]
    assert presence_events(bob.sync(body["next_batch"], set_presence="offline"), alice.user_id) == []
