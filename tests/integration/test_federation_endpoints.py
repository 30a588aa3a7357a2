"""The federation endpoints' own checks, against a real Synapse (fixture `federation_pair`):
history visibility and room membership before events or state are served, server ACLs, the
public room directory, space hierarchies and timestamp lookups.

What Synapse does on its own (joins, transactions, `/publicRooms?server=`) goes through
Synapse's client API; what it would not do unprompted (asking for events of rooms it is not in,
or while an ACL denies it) is sent signed as the Synapse peer with `fedsign.SignedAs`.
"""

from __future__ import annotations

import secrets
import pytest

from fedsign import SignedAs, event_id
from test_federation_peer import V3, eventually, our_user, q, shared_room_on_ours, synapse_user

FED = "/_matrix/federation/v1"


def forbidden(response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["errcode"] == "M_FORBIDDEN", response.text


def last_membership(client, room_id: str, user_id: str) -> str | None:
    events = [e for e in client.timeline(room_id) if e["type"] == "m.room.member" and e["state_key"] == user_id]
    return events[-1]["content"]["membership"] if events else None


def typing_now(client, room_id: str) -> list[str]:
    """Who the client's syncs last said was typing in the room."""
    typing = client.ephemeral(room_id, "m.typing")
    return typing[-1]["content"]["user_ids"] if typing else []


def room_reads(room_id: str, event: str) -> list[tuple[str, str, dict | None]]:
    """Every room-wide read the spec protects, at `event`."""
    return [
        ("GET", f"{FED}/state/{q(room_id)}?event_id={q(event)}", None),
        ("GET", f"{FED}/state_ids/{q(room_id)}?event_id={q(event)}", None),
        ("GET", f"{FED}/backfill/{q(room_id)}?v={q(event)}&limit=10", None),
        ("GET", f"{FED}/event_auth/{q(room_id)}/{q(event)}", None),
        ("POST", f"{FED}/get_missing_events/{q(room_id)}",
         {"earliest_events": [], "latest_events": [event], "limit": 10}),
    ]


# -- history visibility and membership ------------------------------------------------------------

def test_a_server_with_no_member_in_the_room_reads_nothing(federation_pair):
    pair = federation_pair
    alice = our_user(pair, "alice")
    room_id = alice.create_room(preset="public_chat")
    secret = alice.send(room_id, "not for other servers")
    peer = SignedAs(pair)
    forbidden(peer.request("GET", f"{FED}/event/{q(secret)}"))
    for method, uri, body in room_reads(room_id, secret):
        forbidden(peer.request(method, uri, body))
    # An unknown event is simply not there.
    response = peer.request("GET", f"{FED}/event/{q('$nothing-' + secrets.token_hex(4))}")
    assert response.status_code == 404 and response.json()["errcode"] == "M_NOT_FOUND", response.text


def test_history_before_the_join_is_redacted_under_joined_visibility(federation_pair):
    pair = federation_pair
    room_id, alice, bob = shared_room_on_ours(pair, preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    # shared_room_on_ours sent nothing before bob's join; make the history bob missed by hand:
    # a second room would hide nothing, so use the same room with a message before a rejoin.
    bob.leave(room_id)
    alice.wait(lambda c: c.saw_membership(room_id, bob.user_id, "leave"), "bob's leave")
    before = alice.send(room_id, "said while bob was away")
    alice.invite(room_id, bob.user_id)
    bob.wait(lambda c: c.invited_to(room_id), "the second invite")
    bob.join(room_id, via=[pair.our_name])
    alice.wait(lambda c: last_membership(c, room_id, bob.user_id) == "join", "bob's rejoin")
    after = alice.send(room_id, "said with bob back")
    peer = SignedAs(pair)

    hidden = peer.request("GET", f"{FED}/event/{q(before)}")
    assert hidden.status_code == 200, hidden.text
    pdu, = hidden.json()["pdus"]
    assert pdu["content"] == {} and pdu["type"] == "m.room.message", pdu
    assert event_id("12", pdu) == before, "redacted, the event keeps its id (hashes and signatures)"
    shown = peer.request("GET", f"{FED}/event/{q(after)}").json()["pdus"][0]
    assert shown["content"]["body"] == "said with bob back"

    backfill = peer.request("GET", f"{FED}/backfill/{q(room_id)}?v={q(after)}&limit=30")
    assert backfill.status_code == 200, backfill.text
    by_id = {event_id("12", p): p for p in backfill.json()["pdus"]}
    assert by_id[after]["content"]["body"] == "said with bob back"
    assert by_id[before]["content"] == {}
    # Bob's own membership events are always his server's to see, even his leave.
    own = [p for p in by_id.values() if p["type"] == "m.room.member" and p["state_key"] == bob.user_id]
    assert {p["content"]["membership"] for p in own} >= {"join", "leave", "invite"}, own

    missing = peer.request("POST", f"{FED}/get_missing_events/{q(room_id)}",
                           {"earliest_events": [], "latest_events": [after], "limit": 30})
    assert missing.status_code == 200, missing.text
    bodies = {event_id("12", p): p["content"].get("body") for p in missing.json()["events"]}
    assert before in bodies and bodies[before] is None
    depths = [p["depth"] for p in missing.json()["events"]]
    assert depths == sorted(depths)

    # State stays readable for a server in the room.
    ids = peer.request("GET", f"{FED}/state_ids/{q(room_id)}?event_id={q(after)}")
    assert ids.status_code == 200 and ids.json()["pdu_ids"], ids.text

    # Once bob leaves, his server has no member: everything is refused again.
    bob.leave(room_id)
    alice.wait(lambda c: last_membership(c, room_id, bob.user_id) == "leave", "bob's second leave")
    forbidden(peer.request("GET", f"{FED}/event/{q(after)}"))
    for method, uri, body in room_reads(room_id, after):
        forbidden(peer.request(method, uri, body))


def test_shared_history_is_served_in_full(federation_pair):
    pair = federation_pair
    alice, bob = our_user(pair, "alice"), synapse_user(pair, "bob")
    alice.sync_once(0), bob.sync_once(0)
    room_id = alice.create_room(preset="public_chat")  # history_visibility shared
    before = alice.send(room_id, "history for later joiners")
    bob.join(room_id, via=[pair.our_name])
    alice.wait(lambda c: c.saw_membership(room_id, bob.user_id, "join"), "bob's join")
    pdu = SignedAs(pair).request("GET", f"{FED}/event/{q(before)}").json()["pdus"][0]
    assert pdu["content"]["body"] == "history for later joiners"
    # And Synapse's own backfill shows it to bob.
    eventually(lambda: "history for later joiners" in [
        e["content"].get("body") for e in bob.messages(room_id, dir="b", limit=50)], "bob reading history")


# -- server ACLs ----------------------------------------------------------------------------------

def test_a_server_denied_by_the_acl_is_refused_and_its_pdus_and_edus_ignored(federation_pair):
    pair = federation_pair
    room_id, alice, bob = shared_room_on_ours(pair, preset="public_chat")
    peer = SignedAs(pair)
    last = alice.send(room_id, "before the acl")
    # Before the ACL, Synapse's typing reaches alice (the control for the check further down).
    typing = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": bob.user_id, "typing": True}}
    assert peer.send_transaction(f"t{secrets.token_hex(6)}", [], [typing]).status_code == 200
    alice.wait(lambda c: bob.user_id in typing_now(c, room_id), "bob typing")
    typing["content"]["typing"] = False
    assert peer.send_transaction(f"t{secrets.token_hex(6)}", [], [typing]).status_code == 200
    alice.wait(lambda c: bob.user_id not in typing_now(c, room_id), "bob stop typing")

    # Both servers are named localhost:<port>; ports do not count, so deny by name and case.
    acl = alice.set_state(room_id, "m.room.server_acl",
                          {"allow": ["*"], "deny": ["LOCALHOST"], "allow_ip_literals": False})
    for method, uri, body in room_reads(room_id, last):
        forbidden(peer.request(method, uri, body))
    carol = f"@carol-{secrets.token_hex(3)}:{pair.synapse.server_name}"
    forbidden(peer.request("GET", f"{FED}/make_join/{q(room_id)}/{q(carol)}?ver=12"))
    forbidden(peer.request("GET", f"{FED}/make_leave/{q(room_id)}/{q(bob.user_id)}"))
    forbidden(peer.request("PUT", f"/_matrix/federation/v2/send_leave/{q(room_id)}/$x", {}))

    # A PDU from the denied server is ignored, with an error for its id.
    state = alice.state(room_id)
    pdu = peer.pdu("12", {
        "room_id": room_id, "sender": bob.user_id, "type": "m.room.message", "depth": 50,
        "content": {"msgtype": "m.text", "body": "from a denied server"},
        "prev_events": [acl],
        "auth_events": [state[("m.room.power_levels", "")]["event_id"],
                        state[("m.room.member", bob.user_id)]["event_id"]],
    })
    pdu_id = event_id("12", pdu)
    typing["content"]["typing"] = True
    answer = peer.send_transaction(f"t{secrets.token_hex(6)}", [pdu], [typing])
    assert answer.status_code == 200, answer.text
    assert answer.json()["pdus"] == {pdu_id: {"error": "Your server is denied by the room's server ACL"}}
    missing = alice.call("GET", f"{V3}/rooms/{q(room_id)}/event/{q(pdu_id)}", expect=404)
    assert missing.json()["errcode"] == "M_NOT_FOUND"
    # ...and so is its typing EDU (the transaction is handled before its answer).
    alice.sync_once(0)
    assert bob.user_id not in typing_now(alice, room_id), alice.ephemeral(room_id, "m.typing")

    # Lifting the ACL lets the server back in.
    alice.set_state(room_id, "m.room.server_acl", {"allow": ["*"]})
    assert peer.request("GET", f"{FED}/state_ids/{q(room_id)}?event_id={q(last)}").status_code == 200


# -- public room directory ------------------------------------------------------------------------

def test_synapse_lists_our_public_rooms_and_searches_them(federation_pair):
    pair = federation_pair
    alice, bob = our_user(pair, "alice"), synapse_user(pair, "bob")
    term = f"fedroom{secrets.token_hex(4)}"
    first = alice.create_room(visibility="public", preset="public_chat", name=f"{term} one", topic="hello")
    second = alice.create_room(visibility="public", preset="public_chat", name=f"{term} two")
    # Synapse's own client API, which asks our server over federation.
    listed = bob.ok("GET", f"{V3}/publicRooms", params={"server": pair.our_name})
    rooms = {r["room_id"]: r for r in listed["chunk"]}
    assert rooms[first] == {"room_id": first, "name": f"{term} one", "topic": "hello", "num_joined_members": 1,
                            "world_readable": False, "guest_can_join": False, "join_rule": "public"}
    found = bob.ok("POST", f"{V3}/publicRooms", {"filter": {"generic_search_term": term.upper()}, "limit": 10},
                   params={"server": pair.our_name})
    assert sorted(r["room_id"] for r in found["chunk"]) == sorted([first, second])
    assert found["total_room_count_estimate"] == 2

    # Pages over federation itself, with since tokens.
    peer = SignedAs(pair)
    page = peer.request("POST", f"{FED}/publicRooms", {"filter": {"generic_search_term": term}, "limit": 1})
    assert page.status_code == 200, page.text
    assert len(page.json()["chunk"]) == 1 and page.json()["next_batch"] == "o1"
    assert "prev_batch" not in page.json()
    rest = peer.request("POST", f"{FED}/publicRooms",
                        {"filter": {"generic_search_term": term}, "limit": 1, "since": "o1"}).json()
    assert rest["prev_batch"] == "o0" and "next_batch" not in rest
    assert {page.json()["chunk"][0]["room_id"], rest["chunk"][0]["room_id"]} == {first, second}
    got = peer.request("GET", f"{FED}/publicRooms?limit=500")
    assert got.status_code == 200 and {first, second} <= {r["room_id"] for r in got.json()["chunk"]}, got.text
    bad = peer.request("GET", f"{FED}/publicRooms?since=nonsense")
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM", bad.text
    # Unsigned: refused.
    unsigned = pair.ours.request("GET", f"{FED}/publicRooms")
    assert unsigned.status_code == 401 and unsigned.json()["errcode"] == "M_UNAUTHORIZED", unsigned.text


# -- timestamp_to_event ---------------------------------------------------------------------------

def test_timestamp_to_event_over_federation_and_for_clients(federation_pair):
    pair = federation_pair
    room_id, alice, bob = shared_room_on_ours(pair, preset="public_chat")
    first = alice.send(room_id, "first")
    event = alice.ok("GET", f"{V3}/rooms/{q(room_id)}/event/{q(first)}")
    ts = event["origin_server_ts"]
    peer = SignedAs(pair)
    path = f"{FED}/timestamp_to_event/{q(room_id)}"
    forwards = peer.request("GET", f"{path}?ts={ts}&dir=f")
    assert forwards.status_code == 200, forwards.text
    assert forwards.json() == {"event_id": first, "origin_server_ts": ts}
    later = peer.request("GET", f"{path}?ts={ts + 3_600_000}&dir=b").json()
    assert later["origin_server_ts"] >= ts
    none = peer.request("GET", f"{path}?ts={ts + 3_600_000}&dir=f")
    assert none.status_code == 404 and none.json()["errcode"] == "M_NOT_FOUND", none.text
    bad = peer.request("GET", f"{path}?ts={ts}&dir=sideways")
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM", bad.text
    missing = peer.request("GET", f"{path}?dir=f")
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM", missing.text
    # The client API answers the same for a member, and refuses a stranger.
    client_path = f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event"
    assert alice.ok("GET", client_path, params={"ts": ts, "dir": "f"}) == {"event_id": first, "origin_server_ts": ts}
    stranger = our_user(pair, "stranger")
    refused = stranger.call("GET", client_path, params={"ts": ts, "dir": "f"}, expect=403)
    assert refused.json()["errcode"] == "M_FORBIDDEN"
    # And Synapse, which is in the room, asks us the same through its own client API.
    theirs = bob.ok("GET", client_path, params={"ts": ts, "dir": "f"})
    assert theirs["event_id"] == first
    # A server outside the room is refused.
    bob.leave(room_id)
    alice.wait(lambda c: last_membership(c, room_id, bob.user_id) == "leave", "bob's leave")
    forbidden(peer.request("GET", f"{path}?ts={ts}&dir=f"))


# -- invites --------------------------------------------------------------------------------------

def invite_pdu(signed: SignedAs, room_id: str, sender: str, invitee: str, membership: str = "invite") -> dict:
    """An invite event as the inviting server builds it, for a room only it holds (the ids it
    cites need not exist here: the invitee's server checks the event, not the room)."""
    return signed.pdu("12", {"room_id": room_id, "sender": sender, "type": "m.room.member",
                             "state_key": invitee, "content": {"membership": membership},
                             "prev_events": [f"$prev{secrets.token_hex(4)}"],
                             "auth_events": [f"$auth{secrets.token_hex(4)}"], "depth": 5})


def test_an_invite_that_fails_the_invite_checks_is_an_invalid_param(federation_pair):
    """Spec (PUT /v2/invite): servers SHOULD answer M_INVALID_PARAM to an invite whose signature
    fails, that is no invite, whose sender is not on the origin, or whose invitee is not ours."""
    pair = federation_pair
    signed = SignedAs(pair)
    ours = our_user(pair, "invitee")
    room_id = f"!invite{secrets.token_hex(6)}:{pair.synapse.server_name}"
    inviter = f"@boss:{pair.synapse.server_name}"
    good = invite_pdu(signed, room_id, inviter, ours.user_id)
    bad = {
        "no invite": invite_pdu(signed, room_id, inviter, ours.user_id, membership="join"),
        "sender on another server": invite_pdu(signed, room_id, "@boss:elsewhere.example", ours.user_id),
        "invitee not ours": invite_pdu(signed, room_id, inviter, "@someone:elsewhere.example"),
        "forged signature": {**good, "signatures": {pair.synapse.server_name: {
            k: "A" * 86 for k in good["signatures"][pair.synapse.server_name]}}},
    }
    for why, pdu in bad.items():
        response = signed.request("PUT", f"/_matrix/federation/v2/invite/{q(room_id)}/{q(event_id('12', pdu))}",
                                  {"room_version": "12", "event": pdu, "invite_room_state": []})
        assert response.status_code == 400, (why, response.text)
        assert response.json()["errcode"] == "M_INVALID_PARAM", (why, response.text)
    assert room_id not in ours.sync_once(0).get("rooms", {}).get("invite", {})


def test_a_v1_invite_is_for_room_versions_we_do_not_speak(federation_pair):
    """Spec (PUT /v1/invite): the receiver must assume room version 1 or 2, which this server
    does not support; unsigned, the request is refused before that."""
    pair = federation_pair
    signed = SignedAs(pair)
    ours = our_user(pair, "v1-invitee")
    room_id = f"!v1{secrets.token_hex(6)}:{pair.synapse.server_name}"
    pdu = invite_pdu(signed, room_id, f"@boss:{pair.synapse.server_name}", ours.user_id)
    path = f"/_matrix/federation/v1/invite/{q(room_id)}/{q(event_id('12', pdu))}"
    response = signed.request("PUT", path, pdu)
    assert response.status_code == 400, response.text
    assert response.json()["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION", response.text
    unsigned = pair.ours.request("PUT", path, json=pdu)
    assert unsigned.status_code == 401, unsigned.text
