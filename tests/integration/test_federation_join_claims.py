"""Joining a Synapse room from the Worker under a claim of the room (src/federation/join.rs,
src/storage/join_claims.rs): a join Synapse refuses leaves nothing behind, and two of our users
joining the same room at once run one handshake between them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from harness import d1_database
from test_federation_join_steps import synapse_requests
from test_federation_peer import SEND_JOIN, V3, q, our_user, require_our_federation_endpoints, synapse_user


def d1_count(pair, sql: str, *args) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{d1_database(pair.ours.state_dir)}?mode=ro", uri=True)) as db:
        return db.execute(sql, args).fetchone()[0]


def test_a_join_synapse_refuses_leaves_nothing_behind(federation_pair):
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND_JOIN)
    alice, bob = our_user(pair, "alice"), synapse_user(pair, "bob")
    room_id = bob.create_room(preset="private_chat", name="invite only")
    via = pair.synapse.server_name
    refused = alice.call("POST", f"{V3}/join/{q(room_id)}", json={},
                         params=[("server_name", via), ("via", via)], expect=403)
    assert refused.json()["errcode"] == "M_FORBIDDEN"
    assert synapse_requests(pair, "send_join", room_id) == 0
    assert d1_count(pair, "SELECT COUNT(*) FROM remote_join_claims WHERE room_id = ?", room_id) == 0
    assert d1_count(pair, "SELECT COUNT(*) FROM rooms WHERE room_id = ?", room_id) == 0
    assert d1_count(pair, "SELECT COUNT(*) FROM events WHERE room_id = ?", room_id) == 0

    # Nothing stands in the way of the join once Synapse lets alice in.
    bob.invite(room_id, alice.user_id)
    assert alice.join(room_id, via=[via]) == room_id
    assert d1_count(pair, "SELECT COUNT(*) FROM remote_join_claims WHERE room_id = ?", room_id) == 0
    bob.wait(lambda c: c.saw_membership(room_id, alice.user_id, "join"), "alice's join")


def test_two_of_our_users_joining_a_synapse_room_at_once_run_one_handshake(federation_pair):
    pair = federation_pair
    require_our_federation_endpoints(pair, SEND_JOIN)
    bob = synapse_user(pair, "bob")
    carol, dave = our_user(pair, "carol"), our_user(pair, "dave")
    room_id = bob.create_room(preset="public_chat", name="joined twice at once")
    via = [pair.synapse.server_name]
    with ThreadPoolExecutor(2) as pool:
        joined = list(pool.map(lambda c: c.join(room_id, via=via), [carol, dave]))
    assert joined == [room_id, room_id]
    # One of them joined through Synapse; the other here, once the room was stored.
    assert synapse_requests(pair, "send_join", room_id) == 1
    for user in (carol, dave):
        bob.wait(lambda c, u=user.user_id: c.saw_membership(room_id, u, "join"), f"{user.user_id}'s join")
    assert d1_count(pair, "SELECT COUNT(*) FROM remote_join_claims WHERE room_id = ?", room_id) == 0
    assert d1_count(pair, "SELECT COUNT(*) FROM events WHERE room_id = ? AND type = 'm.room.create'", room_id) == 1
    members = carol.ok("GET", f"{V3}/rooms/{q(room_id)}/joined_members")["joined"]
    assert set(members) == {bob.user_id, carol.user_id, dave.user_id}
