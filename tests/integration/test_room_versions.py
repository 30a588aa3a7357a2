"""Room versions 1 to 9 and room upgrades against a real Synapse (fixture `federation_pair`).

- A version 1 room (server-made event ids, `[id, hashes]` references, state resolution v1) and a
  version 9 room made on our server, each joined by a Synapse user, with messages both ways and
  the same state on both servers; and a version 1 room made on Synapse joined by our user.
- A room upgraded on our server (`POST /rooms/{roomId}/upgrade`): the Synapse user sees the
  tombstone, follows it into the replacement room, whose create event names its predecessor,
  and the alias now leads there.
"""

from __future__ import annotations

import secrets

import pytest

from test_federation_peer import (
    MAKE_JOIN, SEND, SEND_JOIN, V3, our_user, q, require_our_federation_endpoints, synapse_user,
    wait_equal_state,
)


def message_both_ways(first, second, room_id: str) -> None:
    for sender, reader in ((first, second), (second, first)):
        text = f"v-test from {sender.server_name} {secrets.token_hex(3)}"
        sender.send(room_id, text)
        reader.wait(lambda c: text in c.bodies(room_id), f"the message {text!r}")


@pytest.mark.parametrize("version", ["1", "9"])
def test_a_room_of_an_old_version_made_here_is_joined_by_a_synapse_user(federation_pair, version):
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND, MAKE_JOIN, SEND_JOIN)
    alice, bob = our_user(pair, "alice"), synapse_user(pair, "bob")
    alice.sync_once(0), bob.sync_once(0)
    room_id = alice.create_room(room_version=version, preset="public_chat", name=f"version {version}")
    create = alice.ok("GET", f"{V3}/rooms/{q(room_id)}/state/m.room.create/")
    assert create["room_version"] == version
    # Up to v10 the create event names the creator.
    assert create["creator"] == alice.user_id

    assert bob.join(room_id, via=[pair.our_name]) == room_id
    alice.wait(lambda c: c.saw_membership(room_id, bob.user_id, "join"), "bob's join")
    message_both_ways(alice, bob, room_id)
    state = wait_equal_state(alice, bob, room_id)
    assert state[("m.room.name", "")]["content"]["name"] == f"version {version}"
    assert bob.ok("GET", f"{V3}/rooms/{q(room_id)}/state/m.room.create/")["room_version"] == version
    ours = [e["event_id"] for e in state.values() if e["sender"] == alice.user_id]
    if version == "1":
        # Version 1 event ids are made by the sending server and name it.
        assert all(i.endswith(":" + pair.our_name) for i in ours), ours
    else:
        assert all(":" not in i for i in ours), ours


def test_our_user_joins_a_version_1_room_made_on_synapse(federation_pair):
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND)
    alice, bob = our_user(pair, "alice"), synapse_user(pair, "bob")
    alice.sync_once(0), bob.sync_once(0)
    room_id = bob.create_room(room_version="1", preset="public_chat", name="v1 on synapse")
    assert alice.join(room_id, via=[pair.synapse.server_name]) == room_id
    bob.wait(lambda c: c.saw_membership(room_id, alice.user_id, "join"), "alice's join")
    message_both_ways(bob, alice, room_id)
    state = wait_equal_state(alice, bob, room_id)
    assert state[("m.room.create", "")]["content"]["room_version"] == "1"
    # Our join, in Synapse's copy: an event id of ours.
    assert state[("m.room.member", alice.user_id)]["event_id"].endswith(":" + pair.our_name)


def test_an_upgrade_on_our_server_is_followed_by_a_synapse_user(federation_pair):
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND, MAKE_JOIN, SEND_JOIN)
    alice, bob = our_user(pair, "alice"), synapse_user(pair, "bob")
    alice.sync_once(0), bob.sync_once(0)
    alias_name = f"upgrade-{secrets.token_hex(3)}"
    old_room = alice.create_room(room_version="10", preset="public_chat", name="before the upgrade",
                                 topic="kept", room_alias_name=alias_name)
    alias = f"#{alias_name}:{pair.our_name}"
    assert bob.join(old_room, via=[pair.our_name]) == old_room
    alice.wait(lambda c: c.saw_membership(room_id=old_room, user_id=bob.user_id, membership="join"), "bob's join")

    # An unknown version is refused, and so is a member who may not send a tombstone.
    refused = alice.call("POST", f"{V3}/rooms/{q(old_room)}/upgrade", json={"new_version": "13"}, expect=400)
    assert refused.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    carol = our_user(pair, "carol")
    carol.join(old_room)
    refused = carol.call("POST", f"{V3}/rooms/{q(old_room)}/upgrade", json={"new_version": "12"}, expect=403)
    assert refused.json()["errcode"] == "M_FORBIDDEN"
    new_room = alice.ok("POST", f"{V3}/rooms/{q(old_room)}/upgrade", {"new_version": "12"})["replacement_room"]
    assert new_room != old_room

    # Bob, on Synapse, sees the tombstone and the old room closed to him.
    tombstone = bob.wait(lambda c: next((e for e in c.timeline(old_room) if e["type"] == "m.room.tombstone"), None),
                         "the tombstone")
    assert tombstone["content"]["replacement_room"] == new_room
    bob.wait(lambda c: c.state(old_room)[("m.room.power_levels", "")]["content"].get("events_default") == 50,
             "the old room's restricted power levels")

    # He follows it (by the server named in the tombstone's sender) into the new room.
    assert bob.join(new_room, via=[pair.our_name]) == new_room
    create = bob.ok("GET", f"{V3}/rooms/{q(new_room)}/state/m.room.create/")
    assert create["room_version"] == "12"
    assert create["predecessor"] == {"room_id": old_room}
    state = wait_equal_state(alice, bob, new_room)
    assert state[("m.room.name", "")]["content"]["name"] == "before the upgrade"
    assert state[("m.room.topic", "")]["content"]["topic"] == "kept"
    assert state[("m.room.canonical_alias", "")]["content"]["alias"] == alias
    # The alias moved, as seen through a federation directory query from Synapse.
    resolved = bob.ok("GET", f"{V3}/directory/room/{q(alias)}")
    assert resolved["room_id"] == new_room
    message_both_ways(alice, bob, new_room)


def test_our_users_push_rules_follow_a_room_upgraded_on_synapse(federation_pair):
    """A room of Synapse's that two of our users muted is upgraded there: each keeps the mute in
    the new room when joining it, the first over federation, the second locally."""
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND, MAKE_JOIN, SEND_JOIN)
    alice, dave, bob = our_user(pair, "alice"), our_user(pair, "dave"), synapse_user(pair, "bob")
    alice.sync_once(0)
    old_room = bob.create_room(room_version="10", preset="public_chat")
    assert alice.join(old_room, via=[pair.synapse.server_name]) == old_room
    dave.join(old_room)
    for user in (alice, dave):
        user.ok("PUT", f"{V3}/pushrules/global/room/{q(old_room)}", {"actions": ["dont_notify"]})
    new_room = bob.ok("POST", f"{V3}/rooms/{q(old_room)}/upgrade", {"new_version": "11"})["replacement_room"]
    alice.wait(lambda c: any(e["type"] == "m.room.tombstone" for e in c.timeline(old_room)), "the tombstone")
    assert alice.join(new_room, via=[pair.synapse.server_name]) == new_room
    dave.join(new_room)
    for user in (alice, dave):
        rule = user.ok("GET", f"{V3}/pushrules/global/room/{q(new_room)}")
        assert rule["actions"] == ["dont_notify"] and rule["enabled"] is True, rule


def restricted_to(room_id: str) -> list[dict]:
    """`initial_state` making a room joinable by the members of `room_id` (v8+)."""
    allow = [{"type": "m.room_membership", "room_id": room_id}]
    return [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "restricted", "allow": allow}}]


def test_restricted_rooms_let_in_members_of_the_allowed_room_both_ways(federation_pair):
    """Our server as the resident: it checks the allow list for a Synapse user's make_join,
    names our member as the authoriser and co-signs the join at send_join; for a local user it
    does the same within one join. Synapse as the resident: our user's join carries the
    authoriser Synapse names, and the copy Synapse signed is the one we keep."""
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND, MAKE_JOIN, SEND_JOIN)
    alice, dave, eve = our_user(pair, "alice"), our_user(pair, "dave"), our_user(pair, "eve")
    bob, carol = synapse_user(pair, "bob"), synapse_user(pair, "carol")
    for c in (alice, bob):
        c.sync_once(0)

    # Resident: our server.
    lobby = alice.create_room(preset="public_chat", name="lobby")
    inner = alice.create_room(preset="private_chat", room_version="9", initial_state=restricted_to(lobby))
    refused = carol.call("POST", f"{V3}/join/{q(inner)}", params=[("server_name", pair.our_name)],
                         json={}, expect=None)
    assert refused.status_code in (400, 403), refused.text
    refused = eve.call("POST", f"{V3}/join/{q(inner)}", json={}, expect=403)
    assert bob.join(lobby, via=[pair.our_name]) == lobby
    dave.join(lobby)
    assert bob.join(inner, via=[pair.our_name]) == inner
    assert dave.join(inner) == inner
    state = wait_equal_state(alice, bob, inner)
    for user in (bob, dave):
        content = state[("m.room.member", user.user_id)]["content"]
        assert content["membership"] == "join"
        assert content["join_authorised_via_users_server"] == alice.user_id

    # Resident: Synapse.
    hall = bob.create_room(preset="public_chat", name="hall")
    # Only moderators may invite, so only Synapse's Bob can authorise joins.
    private = bob.create_room(preset="private_chat", room_version="10", initial_state=restricted_to(hall),
                              power_level_content_override={"invite": 50})
    refused = alice.call("POST", f"{V3}/join/{q(private)}", params=[("server_name", pair.synapse.server_name)],
                         json={}, expect=None)
    assert refused.status_code == 403, refused.text
    assert alice.join(hall, via=[pair.synapse.server_name]) == hall
    assert alice.join(private, via=[pair.synapse.server_name]) == private
    bob.wait(lambda c: c.saw_membership(private, alice.user_id, "join"), "alice's restricted join")
    state = wait_equal_state(alice, bob, private)
    assert state[("m.room.member", alice.user_id)]["content"]["join_authorised_via_users_server"] == bob.user_id
    message_both_ways(alice, bob, private)

    # Our server is in the room now, but none of its members may authorise a join: Eve's
    # goes through Synapse, which can, and is then accepted here.
    assert eve.join(hall) == hall
    # Synapse judges the restricted join by its own view of the hall: wait until our server
    # has delivered Eve's join there.
    bob.wait(lambda c: c.saw_membership(hall, eve.user_id, "join"), "eve's join of the hall")
    assert eve.join(private) == private
    bob.wait(lambda c: c.saw_membership(private, eve.user_id, "join"), "eve's join through synapse")
    state = wait_equal_state(alice, bob, private)
    assert state[("m.room.member", eve.user_id)]["content"]["join_authorised_via_users_server"] == bob.user_id


def test_a_resident_no_longer_in_the_allowed_room_cannot_vouch_for_a_joiner(federation_pair):
    """The allowed room is Synapse's; our server holds the restricted room. While our user is
    in the allowed room, our make_join names her as the authoriser of a Synapse user who is in
    it too. Once no user of ours is in it, our copy of it cannot tell who joined since: the
    answer is M_UNABLE_TO_AUTHORISE_JOIN (spec: restricted rooms), the code that sends a
    joining server on to another resident."""
    from fedsign import SignedAs
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND, MAKE_JOIN, SEND_JOIN)
    alice, bob, carol = our_user(pair, "alice"), synapse_user(pair, "bob"), synapse_user(pair, "carol")
    lobby = bob.create_room(preset="public_chat", name="synapse lobby")
    assert alice.join(lobby, via=[pair.synapse.server_name]) == lobby
    inner = alice.create_room(preset="private_chat", room_version="10", initial_state=restricted_to(lobby))
    carol.join(lobby)
    alice.wait(lambda c: c.saw_membership(lobby, carol.user_id, "join"), "carol's join of the lobby")
    peer = SignedAs(pair)
    make_join = f"/_matrix/federation/v1/make_join/{q(inner)}/{q(carol.user_id)}?ver=10"

    answer = peer.request("GET", make_join)
    assert answer.status_code == 200, answer.text
    assert answer.json()["event"]["content"]["join_authorised_via_users_server"] == alice.user_id
    alice.leave(lobby)
    answer = peer.request("GET", make_join)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errcode"] == "M_UNABLE_TO_AUTHORISE_JOIN"
    assert ("m.room.member", carol.user_id) not in alice.state(inner)
