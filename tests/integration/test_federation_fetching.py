"""Our server fetches what an incoming PDU refers to and it lacks, from the server that sent it:
the events missing before it (`get_missing_events`), its missing auth events (`event_auth`), and
past a gap that get_missing_events does not close, the state at the missing predecessor
(`/event` and `/state`).
The sending server is tests/integration/fake_origin.py, which holds events on cue; everything it
sends is signed and verified like any server's."""

from __future__ import annotations

import secrets

from fake_origin import FakeOrigin
from fedsign import event_id
from test_federation_peer import our_user, q

MESSAGE = "m.room.message"


def text(body: str) -> dict:
    return {"msgtype": "m.text", "body": body}


def bodies(client, room_id: str) -> list[str]:
    return [e["content"]["body"] for e in reversed(client.messages(room_id, dir="b", limit=50))
            if e["type"] == MESSAGE]


def room_with_eve(pair, fake):
    alice = our_user(pair, "alice")
    room_id = alice.create_room(preset="public_chat")
    eve, version, join = fake.join(room_id)
    levels = alice.state(room_id)[("m.room.power_levels", "")]["event_id"]
    return alice, room_id, eve, version, join, levels


def test_events_missing_before_an_incoming_pdu_are_fetched_in_order(federation_pair):
    with FakeOrigin(federation_pair) as fake:
        alice, room_id, eve, version, join, levels = room_with_eve(federation_pair, fake)
        prev, chain = event_id(version, join), []
        for i in range(3):
            prev, pdu = fake.event(version, room_id=room_id, sender=eve, type=MESSAGE, content=text(f"gap {i}"),
                                   prev_events=[prev], auth_events=[levels, event_id(version, join)],
                                   depth=join["depth"] + 1 + i)
            chain.append((prev, pdu))
        fake.missing_events = [pdu for _, pdu in chain[:2]]
        (first, _), (second, _), (last, last_pdu) = chain
        answer = fake.signed.send_transaction(secrets.token_hex(6), [last_pdu])
        assert answer.status_code == 200, answer.text
        assert answer.json()["pdus"] == {last: {}}
        asked = fake.asked("/_matrix/federation/v1/get_missing_events/")
        assert len(asked) == 1 and asked[0]["latest_events"] == [last], asked
        assert bodies(alice, room_id)[-3:] == ["gap 0", "gap 1", "gap 2"]
        # Linked as the fake built them: each one's only predecessor is the one before.
        stored = {e["event_id"]: e for e in alice.messages(room_id, dir="b", limit=10)}
        assert {first, second, last} <= set(stored)


def test_auth_events_missing_from_an_incoming_pdu_are_fetched_and_checked(federation_pair):
    with FakeOrigin(federation_pair) as fake:
        alice, room_id, eve, version, join, levels = room_with_eve(federation_pair, fake)
        join_id = event_id(version, join)
        # Eve's server changes her display name and never sends it; her next message cites it.
        rename_id, rename = fake.event(version, room_id=room_id, sender=eve, type="m.room.member", state_key=eve,
                                       content={"membership": "join", "displayname": "Eve, renamed"},
                                       prev_events=[join_id], auth_events=[*join["auth_events"], join_id],
                                       depth=join["depth"] + 1)
        message_id, message = fake.event(version, room_id=room_id, sender=eve, type=MESSAGE, content=text("cites"),
                                         prev_events=[join_id], auth_events=[levels, rename_id],
                                         depth=join["depth"] + 2)
        # First the fake cannot help: the message is refused, and nothing of it is stored.
        answer = fake.signed.send_transaction(secrets.token_hex(6), [message])
        assert answer.status_code == 200, answer.text
        assert "error" in answer.json()["pdus"][message_id], answer.text
        alice.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(message_id)}", expect=404)
        # Now it serves the auth chain: ours of Eve's join, her join, and the rename.
        ours = fake.signed.request("GET", f"/_matrix/federation/v1/event_auth/{q(room_id)}/{q(join_id)}")
        assert ours.status_code == 200, ours.text
        # The chain holds the create event even where no event cites it (v12, MSC4291).
        state = alice.ok("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
        create_id = next(e["event_id"] for e in state if e["type"] == "m.room.create")
        assert create_id in {event_id(version, e) for e in ours.json()["auth_chain"]}, ours.text
        fake.auth_chains[message_id] = [*ours.json()["auth_chain"], join, rename]
        answer = fake.signed.send_transaction(secrets.token_hex(6), [message])
        assert answer.json()["pdus"] == {message_id: {}}, answer.text
        assert len(fake.asked(f"/_matrix/federation/v1/event_auth/{q(room_id)}/")) >= 2
        assert "cites" in bodies(alice, room_id)


def gap_with_a_rename(pair, fake):
    """Alice lets Eve rename the room; Eve's server then renames it and sends two messages, but
    only the last one reaches us, and its get_missing_events finds nothing: a gap. The fake
    serves the missing predecessor and the state before it (ours, the new power levels, the
    rename) for `/event` and `/state`. Returns what the tests check, and the pieces to spoil."""
    alice, room_id, eve, version, join, _ = room_with_eve(pair, fake)
    join_id = event_id(version, join)
    levels = alice.ok("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels/")
    levels.setdefault("users", {})[eve] = 50
    levels_id = alice.set_state(room_id, "m.room.power_levels", levels)
    ours = fake.signed.request("GET", f"/_matrix/federation/v1/state/{q(room_id)}?event_id={q(levels_id)}")
    assert ours.status_code == 200, ours.text
    levels_pdu = fake.signed.request("GET", f"/_matrix/federation/v1/event/{q(levels_id)}").json()["pdus"][0]
    depth = levels_pdu["depth"]
    rename_id, rename = fake.event(version, room_id=room_id, sender=eve, type="m.room.name", state_key="",
                                   content={"name": "named past a gap"}, prev_events=[levels_id],
                                   auth_events=[levels_id, join_id], depth=depth + 1)
    first_id, first = fake.event(version, room_id=room_id, sender=eve, type=MESSAGE, content=text("in the gap"),
                                 prev_events=[rename_id], auth_events=[levels_id, join_id], depth=depth + 2)
    last_id, last = fake.event(version, room_id=room_id, sender=eve, type=MESSAGE, content=text("after the gap"),
                               prev_events=[first_id], auth_events=[levels_id, join_id], depth=depth + 3)
    state_before_first = [e for e in ours.json()["pdus"] if e["type"] != "m.room.power_levels"]
    fake.events[first_id] = first
    fake.states[first_id] = ([*state_before_first, levels_pdu, rename], ours.json()["auth_chain"])
    fake.missing_events = []
    return alice, room_id, (rename_id, rename), (first_id, last_id, last)


def test_past_a_gap_the_state_comes_from_the_sender(federation_pair):
    with FakeOrigin(federation_pair) as fake:
        alice, room_id, (rename_id, _), (first_id, last_id, last) = gap_with_a_rename(federation_pair, fake)
        answer = fake.signed.send_transaction(secrets.token_hex(6), [last])
        assert answer.json()["pdus"] == {last_id: {}}, answer.text
        assert len(fake.asked("/_matrix/federation/v1/state/")) == 1
        # The room's state has the rename the gap held; the timeline has the gap.
        assert alice.state(room_id)[("m.room.name", "")]["event_id"] == rename_id
        assert "after the gap" in bodies(alice, room_id) and "in the gap" not in bodies(alice, room_id)


def test_past_a_gap_a_state_with_a_forged_event_is_refused(federation_pair):
    with FakeOrigin(federation_pair) as fake:
        alice, room_id, (rename_id, rename), (first_id, last_id, last) = gap_with_a_rename(federation_pair, fake)
        # The rename in the state answer carries a signature that is not the fake's.
        pdus, chain = fake.states[first_id]
        forged = {**rename, "signatures": {fake.server_name: {
            k: "A" * 86 for k in rename["signatures"][fake.server_name]}}}
        fake.states[first_id] = ([p for p in pdus if p is not rename] + [forged], chain)
        answer = fake.signed.send_transaction(secrets.token_hex(6), [last])
        assert answer.status_code == 200, answer.text
        # Checked against the state we hold instead: Eve may speak, but the name never came.
        assert ("m.room.name", "") not in alice.state(room_id)
        alice.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(rename_id)}", expect=404)


def test_past_a_gap_an_incremental_sync_is_limited_and_starts_at_the_gap(federation_pair):
    """What came before a gap is not contiguous with what follows: the incremental sync that
    brings the event after the gap starts its timeline there and says `limited`, with the state
    the gap changed, so the client pages back instead of joining the two parts."""
    with FakeOrigin(federation_pair) as fake:
        alice, room_id, (rename_id, _), (first_id, last_id, last) = gap_with_a_rename(federation_pair, fake)
        alice.sync_once(0)
        before = alice.send(room_id, "before the gap")
        answer = fake.signed.send_transaction(secrets.token_hex(6), [last])
        assert answer.json()["pdus"] == {last_id: {}}, answer.text
        room = alice.sync_once(0)["rooms"]["join"][room_id]
        timeline = room["timeline"]
        assert timeline["limited"] is True, timeline
        assert [e["event_id"] for e in timeline["events"]] == [last_id], timeline
        assert before not in {e["event_id"] for e in timeline["events"]}
        assert rename_id in {e["event_id"] for e in room["state"]["events"]}, room["state"]
        # Paging back from the timeline's start finds what preceded the gap.
        page = alice.ok("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages",
                        params={"dir": "b", "from": timeline["prev_batch"], "limit": 5})
        assert before in {e["event_id"] for e in page["chunk"]}, page
        # The next sync goes on as usual.
        after = alice.send(room_id, "after it")
        timeline = alice.sync_once(0)["rooms"]["join"][room_id]["timeline"]
        assert timeline["limited"] is False and [e["event_id"] for e in timeline["events"]] == [after]
