"""Hostile federation input from a real peer: PDUs our server must refuse, redact or deduplicate.

Each test shares a room between one of our users (alice, the room's creator) and a Synapse user
(bob), then speaks to our server *as Synapse* (tests/integration/fedsign.py: Synapse's own key and
its own event-signing code) with PDUs built on the real room: prev_events and depth from the
event our server serves over federation, auth_events from the room's current state.

What is checked, per the server-server spec ("Checks performed on receipt of a PDU", "Validating
hashes and signatures on received events", "Transactions"):
- the per-PDU result map of `PUT /send/{txnId}` (`pdus: {event_id: {} | {error: ...}}`);
- that nothing refused is stored as accepted: our client API (`/event`, `/messages`, `/state`,
  `/sync`) and our federation `/event` (asked as Synapse) do not serve it;
- a control PDU in the same transaction is accepted and served, so the negatives are not vacuous.
"""

from __future__ import annotations

import secrets
import time

import pytest

from fedsign import SignedAs, event_id
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.synapse_rust.events import redact_event_dict
from test_federation_peer import V3, Client, q, record, shared_room_on_ours, synapse_user


class Room:
    """A room shared by alice (ours) and bob (Synapse's), and PDUs built on it as Synapse."""

    def __init__(self, pair, **create):
        self.pair = pair
        self.signer = SignedAs(pair)
        self.room_id, self.alice, self.bob = shared_room_on_ours(pair, **create)
        self.version = self.alice.ok("GET", f"{V3}/rooms/{q(self.room_id)}/state/m.room.create/")["room_version"]

    # -- what our server has ----------------------------------------------------------------------

    def tip(self) -> dict:
        """The newest event of the room, as our server serves it over federation."""
        latest = self.alice.messages(self.room_id, dir="b", limit=1)[0]["event_id"]
        return self.federation_event(latest).json()["pdus"][0] | {"event_id": latest}

    def state_ids(self) -> dict[tuple[str, str], str]:
        return {key: e["event_id"] for key, e in self.alice.state(self.room_id).items()}

    def federation_event(self, eid: str):
        return self.signer.request("GET", f"/_matrix/federation/v1/event/{q(eid)}")

    def client_event(self, eid: str, who: Client | None = None):
        return (who or self.alice).call("GET", f"{V3}/rooms/{q(self.room_id)}/event/{q(eid)}", expect=None)

    def timeline_ids(self) -> list[str]:
        return [e["event_id"] for e in self.alice.messages(self.room_id, dir="b", limit=100)]

    # -- PDUs as Synapse --------------------------------------------------------------------------

    def auth_events(self, sender: str, kind: str, state_key: str | None = None) -> list[str]:
        """The auth events the spec selects for an event (create only before v12, whose room id
        is the create event's), from the room's current state."""
        state = self.state_ids()
        wanted = [("m.room.power_levels", ""), ("m.room.member", sender)]
        if self.version not in ("12",):
            wanted.append(("m.room.create", ""))
        if kind == "m.room.member" and state_key is not None:
            wanted += [("m.room.member", state_key), ("m.room.join_rules", "")]
        return sorted({state[k] for k in wanted if k in state})

    def pdu(self, *, sender: str | None = None, kind: str = "m.room.message", content: dict | None = None,
            state_key: str | None = None, **overrides) -> dict:
        """A correctly hashed and signed PDU from Synapse, built on the room's newest event."""
        sender = sender or self.bob.user_id
        tip = self.tip()
        event = {
            "room_id": self.room_id, "sender": sender, "type": kind,
            "content": content if content is not None else {"msgtype": "m.text",
                                                            "body": f"as synapse {secrets.token_hex(4)}"},
            "prev_events": [tip["event_id"]], "depth": tip["depth"] + 1,
            "auth_events": self.auth_events(sender, kind, state_key),
        }
        if state_key is not None:
            event["state_key"] = state_key
        event.update(overrides)
        return self.signer.pdu(self.version, event)

    def event_id(self, pdu: dict) -> str:
        return event_id(self.version, pdu)

    def send(self, *pdus: dict, txn: str | None = None) -> dict:
        response = self.signer.send_transaction(txn or secrets.token_hex(8), list(pdus))
        assert response.status_code == 200, response.text
        return response.json()["pdus"]

    # -- assertions -------------------------------------------------------------------------------

    def assert_not_stored(self, eid: str, since_sync: Client) -> None:
        """Refused: not served over either API, not in /messages, /state or /sync."""
        client = self.client_event(eid)
        assert client.status_code == 404 and client.json()["errcode"] == "M_NOT_FOUND", client.text
        federation = self.federation_event(eid)
        assert federation.status_code == 404, federation.text
        assert eid not in self.timeline_ids()
        assert eid not in self.state_ids().values()
        synced = since_sync.sync_once(0)
        timeline = synced.get("rooms", {}).get("join", {}).get(self.room_id, {}).get("timeline", {})
        assert eid not in [e["event_id"] for e in timeline.get("events", [])]

    def assert_accepted(self, eid: str) -> dict:
        client = self.client_event(eid)
        assert client.status_code == 200, client.text
        assert self.federation_event(eid).status_code == 200
        assert self.timeline_ids().count(eid) == 1
        return client.json()


def refused(results: dict, eid: str) -> str:
    assert eid in results, f"no result for {eid}: {results}"
    error = results[eid].get("error")
    assert isinstance(error, str) and error, f"{eid} was not refused: {results}"
    return error


@pytest.fixture
def room(federation_pair, request):
    began = time.monotonic()
    shared = Room(federation_pair, preset="public_chat", name="hostile input")
    record(request, "shared_room_setup_s", time.monotonic() - began)
    shared.alice.sync_once(0)
    return shared


def timed(request, began: float) -> None:
    record(request, "hostile_checks_s", time.monotonic() - began)


# -- a: bad signatures ------------------------------------------------------------------------------

def test_a_pdu_altered_after_signing_is_refused(room, request):
    """Signed, then a field the signature covers (origin_server_ts, kept by redaction) changed:
    the signature no longer verifies, the PDU is rejected and nothing of it is stored."""
    began = time.monotonic()
    altered = room.pdu()
    altered["origin_server_ts"] += 1
    control = room.pdu()
    altered_id, control_id = room.event_id(altered), room.event_id(control)
    results = room.send(altered, control)
    error = refused(results, altered_id)
    assert "signature" in error.lower(), error
    assert results[control_id] == {}
    room.assert_not_stored(altered_id, room.alice)
    room.assert_accepted(control_id)
    timed(request, began)


def test_a_pdu_with_a_wrong_signature_value_is_refused(room, request):
    """The signature of another event (a well-formed ed25519 signature by the right key, over
    the wrong bytes) in place of the PDU's own: rejected, not stored."""
    began = time.monotonic()
    victim, other = room.pdu(), room.pdu()
    origin = room.signer.origin
    victim["signatures"][origin] = dict(other["signatures"][origin])
    victim_id = room.event_id(victim)
    error = refused(room.send(victim), victim_id)
    assert "signature" in error.lower(), error
    room.assert_not_stored(victim_id, room.alice)
    timed(request, began)


# -- b: wrong content hash --------------------------------------------------------------------------

def test_a_pdu_with_a_wrong_content_hash_is_accepted_redacted(room, request):
    """Signed by Synapse, then `content` replaced without re-hashing: the signature (over the
    redacted form) verifies, the content hash does not. The spec: accept the event, redacted
    (the room version's algorithm: a message keeps no content). Its event id (a reference hash
    of the redacted form) is unchanged; neither the original nor the substituted text is served."""
    began = time.monotonic()
    original = room.pdu(content={"msgtype": "m.text", "body": "the signed original"})
    tampered = dict(original, content={"msgtype": "m.text", "body": "substituted on the way"})
    eid = room.event_id(tampered)
    assert eid == room.event_id(original)
    results = room.send(tampered)
    assert results == {eid: {}}, results

    served = room.assert_accepted(eid)
    assert served["content"] == {}, served
    assert served["type"] == "m.room.message" and served["sender"] == room.bob.user_id
    pdu = room.federation_event(eid).json()["pdus"][0]
    pdu.pop("unsigned", None)
    expected = redact_event_dict(KNOWN_ROOM_VERSIONS[room.version], tampered)
    expected.pop("unsigned", None)
    assert pdu == expected
    chunk = room.alice.messages(room.room_id, dir="b", limit=20)
    served_bodies = [e["content"].get("body") for e in chunk]
    assert "substituted on the way" not in served_bodies and "the signed original" not in served_bodies
    timed(request, began)


# -- c: auth rules ----------------------------------------------------------------------------------

def test_a_state_event_without_the_power_level_is_refused(room, request):
    """bob (power 0 in a public_chat room, state_default 50) renames the room: correctly signed
    and hashed, proper auth events, but the auth rules refuse it; the name stays."""
    began = time.monotonic()
    name_before = room.alice.state(room.room_id)[("m.room.name", "")]["event_id"]
    rename = room.pdu(kind="m.room.name", state_key="", content={"name": "renamed by bob"})
    eid = room.event_id(rename)
    error = refused(room.send(rename), eid)
    assert "signature" not in error.lower(), error
    room.assert_not_stored(eid, room.alice)
    state = room.alice.state(room.room_id)
    assert state[("m.room.name", "")]["event_id"] == name_before
    assert state[("m.room.name", "")]["content"]["name"] == "hostile input"
    timed(request, began)


def test_a_message_from_a_user_not_in_the_room_is_refused(room, federation_pair, request):
    """A user of the origin server who never joined sends a message (signed by his own server, so
    the signature checks pass): the auth rules refuse it."""
    began = time.monotonic()
    mallory = synapse_user(federation_pair, "mallory")
    message = room.pdu(sender=mallory.user_id)
    eid = room.event_id(message)
    error = refused(room.send(message), eid)
    assert "signature" not in error.lower(), error
    room.assert_not_stored(eid, room.alice)
    assert ("m.room.member", mallory.user_id) not in room.alice.state(room.room_id)
    timed(request, began)


# -- d: replays -------------------------------------------------------------------------------------

def test_a_replayed_transaction_gets_the_same_answer_and_stores_once(room, request):
    """The same transaction id twice gets the first answer (even with another body: the origin
    and transaction id identify it); the same PDU in a new transaction is accepted again without
    error. The event is stored once."""
    began = time.monotonic()
    txn = secrets.token_hex(8)
    message = room.pdu()
    eid = room.event_id(message)
    first = room.send(message, txn=txn)
    assert first == {eid: {}}, first
    assert room.send(message, txn=txn) == first
    sneaked = room.pdu()
    assert room.send(sneaked, txn=txn) == first
    assert room.client_event(room.event_id(sneaked)).status_code == 404
    assert room.send(message) == {eid: {}}
    room.assert_accepted(eid)
    synced = room.alice.sync_once(0)
    timeline = synced["rooms"]["join"][room.room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline].count(eid) == 1
    timed(request, began)


# -- e: PDUs that do not belong -----------------------------------------------------------------------

def test_a_pdu_forging_a_user_of_another_server_is_refused(room, request):
    """Synapse sends an event as alice (a user of *our* server, with the power to rename): it is
    signed only by Synapse, not by the sender's server, so it is refused."""
    began = time.monotonic()
    forged = room.pdu(sender=room.alice.user_id, kind="m.room.name", state_key="",
                      content={"name": "forged for alice"})
    eid = room.event_id(forged)
    error = refused(room.send(forged), eid)
    room.assert_not_stored(eid, room.alice)
    assert room.alice.state(room.room_id)[("m.room.name", "")]["content"]["name"] == "hostile input"
    assert error
    timed(request, began)


def test_a_pdu_for_a_room_the_origin_is_not_in_is_refused(room, federation_pair, request):
    """A correctly signed message from bob whose room_id names another room of ours that no
    Synapse user is in (built on this room's events): refused. One for a room we do not know at
    all cannot even be named (its id is a reference hash under a room version we do not know):
    no entry, or an error, as Synapse does; either way nothing is stored."""
    began = time.monotonic()
    other_room = room.alice.create_room(preset="public_chat", name="not shared")
    stray = room.pdu(room_id=other_room)
    eid = room.event_id(stray)
    refused(room.send(stray), eid)
    assert room.alice.call("GET", f"{V3}/rooms/{q(other_room)}/event/{q(eid)}", expect=None).status_code == 404
    assert eid not in [e["event_id"] for e in room.alice.messages(other_room, dir="b", limit=50)]
    room.assert_not_stored(eid, room.alice)

    unknown = room.pdu(room_id=f"!{secrets.token_hex(8)}:{room.signer.origin}")
    unknown_id = room.event_id(unknown)
    results = room.send(unknown)
    assert results == {} or "error" in results.get(unknown_id, {}), results
    room.assert_not_stored(unknown_id, room.alice)
    timed(request, began)
