"""Backfill (server-server spec, "Backfilling and retrieving missing events"): our user joins a
Synapse room with history, then pages back with /messages past the join; our server fetches the
older events from Synapse with /backfill, checks them, and serves them in order, back to the
room's creation.
"""

from __future__ import annotations

from test_federation_peer import (
    V3, Client, our_user, q, require_our_federation_endpoints, synapse_user,
)

BACKFILL = ("GET", "/_matrix/federation/v1/backfill/!probe:localhost?v=$probe&limit=1")


def page_back(client: Client, room_id: str, limit: int) -> list[dict]:
    """Every event /messages gives when paging back from now to the start, oldest first."""
    events, token = [], None
    for _ in range(100):
        params = {"dir": "b", "limit": limit, **({"from": token} if token else {})}
        body = client.ok("GET", f"{V3}/rooms/{q(room_id)}/messages", params=params)
        events.extend(body["chunk"])
        token = body.get("end")
        if not token:
            return list(reversed(events))
    raise AssertionError("pagination never reached the start of the room")


def test_paging_back_past_our_join_fetches_the_history_from_synapse(federation_pair):
    require_our_federation_endpoints(federation_pair, BACKFILL)
    pair = federation_pair
    bob, alice = synapse_user(pair, "bob"), our_user(pair, "alice")
    room_id = bob.create_room(preset="public_chat", name="with history")
    sent = [f"before {i}" for i in range(25)]
    for text in sent:
        bob.send(room_id, text)
    bob.set_state(room_id, "m.room.topic", {"topic": "set before alice came"})
    alice.join(room_id, via=[pair.synapse.server_name])
    alice.send(room_id, "alice is here")

    events = page_back(alice, room_id, limit=10)
    bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert bodies == sent + ["alice is here"]
    assert events[0]["type"] == "m.room.create", [e["type"] for e in events[:3]]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event came twice"
    # The same order Synapse has, event for event.
    theirs = page_back(bob, room_id, limit=100)
    assert ids == [e["event_id"] for e in theirs]
    # History does not change the present: the topic is the current one, set once.
    assert alice.state(room_id)[("m.room.topic", "")]["content"]["topic"] == "set before alice came"
    # A second pass asks nobody and gives the same.
    assert [e["event_id"] for e in page_back(alice, room_id, limit=7)] == ids


def test_a_room_joined_again_shows_what_was_said_while_we_were_away(federation_pair):
    """Our user leaves a Synapse room and joins it again; what was said meanwhile is fetched
    with the join (the resident's /backfill from the join's prev events) and /messages pages
    through it in order, between our leave and our new join."""
    require_our_federation_endpoints(federation_pair, BACKFILL)
    pair = federation_pair
    bob, alice = synapse_user(pair, "bob"), our_user(pair, "alice")
    room_id = bob.create_room(preset="public_chat", name="coming back")
    alice.join(room_id, via=[pair.synapse.server_name])
    alice.send(room_id, "hello")
    alice.leave(room_id)
    bob.wait(lambda c: c.saw_membership(room_id, alice.user_id, "leave"), "alice's leave")
    missed = [f"while away {i}" for i in range(15)]
    for text in missed:
        bob.send(room_id, text)
    alice.join(room_id, via=[pair.synapse.server_name])
    alice.send(room_id, "back")

    events = page_back(alice, room_id, limit=10)
    bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert bodies == ["hello"] + missed + ["back"]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event came twice"
    theirs = [e["event_id"] for e in page_back(bob, room_id, limit=100)]
    assert ids == theirs
