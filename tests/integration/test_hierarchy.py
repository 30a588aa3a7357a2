"""Space hierarchies (client `GET /v1/rooms/{roomId}/hierarchy`, server-server
`GET /federation/v1/hierarchy/{roomId}`): the rooms a space links with `m.space.child`, depth
first in the spec's order, with their summaries and `children_state`, only those the requester
may see, a page at a time.

Local checks use the session's `server`; the last test asks Synapse for the hierarchy of a space
on our server, which makes Synapse call our federation endpoint for the rooms it does not hold.
"""

from __future__ import annotations

import secrets

import pytest

from test_federation_peer import V3, eventually, our_user, q, synapse_user
from test_knock import local_user

V1 = "/_matrix/client/v1"
SPACE = {"type": "m.space"}


def link(owner, space: str, child: str, server_name: str, **content) -> None:
    owner.set_state(space, "m.space.child", {"via": [server_name], **content}, state_key=child)


def hierarchy(client, room_id: str, expect: int = 200, **params) -> dict:
    return client.call("GET", f"{V1}/rooms/{q(room_id)}/hierarchy", params=params, expect=expect).json()


def ids(page: dict) -> list[str]:
    return [r["room_id"] for r in page["rooms"]]


@pytest.fixture(scope="module")
def tree(server):
    """space (public, alias, topic)
         ├─ a        public room, suggested, order "a"
         ├─ sub      public space (order "b")
         │    ├─ b        world-readable invite-only room, suggested
         │    ├─ private  invite-only room (the owner's alone)
         │    └─ space    (a loop back to the top)
         ├─ removed  a link without `via`
         └─ last     public room, no order
    """
    owner = local_user(server, "owner")
    name = server.server_name
    rooms = {
        "space": owner.create_room(preset="public_chat", name="The space", topic="about it",
                                   creation_content=SPACE, room_alias_name=f"space-{secrets.token_hex(3)}"),
        "a": owner.create_room(preset="public_chat", name="A"),
        "sub": owner.create_room(preset="public_chat", name="Sub", creation_content=SPACE),
        "b": owner.create_room(preset="private_chat", name="B", initial_state=[
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}]),
        "private": owner.create_room(preset="private_chat", name="Private"),
        "removed": owner.create_room(preset="public_chat", name="Removed"),
        "last": owner.create_room(preset="public_chat", name="Last"),
    }
    link(owner, rooms["space"], rooms["last"], name)
    link(owner, rooms["space"], rooms["sub"], name, order="b")
    link(owner, rooms["space"], rooms["a"], name, order="a", suggested=True)
    link(owner, rooms["space"], rooms["removed"], name)
    owner.set_state(rooms["space"], "m.space.child", {}, state_key=rooms["removed"])
    link(owner, rooms["sub"], rooms["b"], name, suggested=True)
    link(owner, rooms["sub"], rooms["private"], name)
    link(owner, rooms["sub"], rooms["space"], name)
    return owner, rooms


def test_the_hierarchy_is_depth_first_in_the_spec_order_with_summaries(server, tree):
    owner, r = tree
    viewer = local_user(server, "viewer")
    page = hierarchy(viewer, r["space"])
    assert ids(page) == [r["space"], r["a"], r["sub"], r["b"], r["last"]]
    assert "next_batch" not in page
    space = page["rooms"][0]
    assert space["name"] == "The space" and space["topic"] == "about it"
    assert space["canonical_alias"].startswith("#space-")
    assert space["room_type"] == "m.space" and space["join_rule"] == "public"
    assert space["num_joined_members"] == 1
    assert space["world_readable"] is False and space["guest_can_join"] is False
    children = space["children_state"]
    assert [c["state_key"] for c in children] == [r["a"], r["sub"], r["last"]]
    for child in children:
        assert set(child) == {"type", "state_key", "content", "sender", "origin_server_ts"}
        assert child["type"] == "m.space.child" and child["sender"] == owner.user_id
    assert children[0]["content"] == {"via": [server.server_name], "order": "a", "suggested": True}
    room_a = page["rooms"][1]
    assert room_a["children_state"] == [] and "room_type" not in room_a
    b = page["rooms"][3]
    assert b["world_readable"] is True and b["join_rule"] == "invite"
    # The owner, a member of the private room, sees it too.
    assert ids(hierarchy(owner, r["space"])) == [r["space"], r["a"], r["sub"], r["b"], r["private"], r["last"]]


def test_suggested_only_and_max_depth(server, tree):
    _, r = tree
    viewer = local_user(server, "viewer")
    page = hierarchy(viewer, r["space"], suggested_only="true")
    assert ids(page) == [r["space"], r["a"]]
    assert [c["state_key"] for c in page["rooms"][0]["children_state"]] == [r["a"]]
    assert ids(hierarchy(viewer, r["space"], max_depth=1)) == [r["space"], r["a"], r["sub"], r["last"]]
    assert ids(hierarchy(viewer, r["space"], max_depth=0)) == [r["space"]]
    assert ids(hierarchy(viewer, r["sub"])) == [r["sub"], r["b"], r["space"], r["a"], r["last"]]


def test_pages_follow_each_other(server, tree):
    _, r = tree
    viewer = local_user(server, "viewer")
    seen = []
    page = hierarchy(viewer, r["space"], limit=2)
    assert len(page["rooms"]) == 2
    pages = 1
    while "next_batch" in page:
        seen += ids(page)
        token = page["next_batch"]
        page = hierarchy(viewer, r["space"], limit=2, **{"from": token})
        pages += 1
        assert pages < 10
    seen += ids(page)
    assert seen == [r["space"], r["a"], r["sub"], r["b"], r["last"]]
    first = hierarchy(viewer, r["space"], limit=2)
    # The token belongs to its parameters.
    error = hierarchy(viewer, r["space"], expect=400, limit=2, suggested_only="true", **{"from": first["next_batch"]})
    assert error["errcode"] == "M_INVALID_PARAM"
    assert hierarchy(viewer, r["space"], expect=400, **{"from": "garbage"})["errcode"] == "M_INVALID_PARAM"
    assert hierarchy(viewer, r["space"], expect=400, limit=0)["errcode"] == "M_INVALID_PARAM"
    assert hierarchy(viewer, r["space"], expect=400, suggested_only="maybe")["errcode"] == "M_INVALID_PARAM"


def test_who_may_see_a_hierarchy(server, tree):
    owner, r = tree
    viewer = local_user(server, "viewer")
    hidden = owner.create_room(preset="private_chat", creation_content=SPACE)
    link(owner, hidden, r["a"], server.server_name)
    assert hierarchy(viewer, hidden, expect=403)["errcode"] == "M_FORBIDDEN"
    # Invited is enough to look inside.
    owner.invite(hidden, viewer.user_id)
    assert ids(hierarchy(viewer, hidden)) == [hidden, r["a"]]
    unknown = f"!nothing{secrets.token_hex(4)}:{server.server_name}"
    assert hierarchy(viewer, unknown, expect=404)["errcode"] == "M_NOT_FOUND"
    assert viewer.call("GET", f"{V1}/rooms/{q(r['space'])}/hierarchy", headers={"Authorization": ""},
                       expect=401).json()["errcode"] == "M_MISSING_TOKEN"


def test_synapse_shows_a_space_of_ours_through_our_federation_hierarchy(federation_pair):
    """A Synapse user joins our public space; the space's children are rooms only we hold, so
    Synapse's /hierarchy asks our federation endpoint for each (the nested space's children
    included)."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    ours = federation_pair.our_name
    space = alice.create_room(preset="public_chat", name="Edge space", creation_content=SPACE)
    child = alice.create_room(preset="public_chat", name="Edge room", topic="on the edge")
    sub = alice.create_room(preset="public_chat", name="Edge subspace", creation_content=SPACE)
    leaf = alice.create_room(preset="public_chat", name="Edge leaf")
    private = alice.create_room(preset="private_chat", name="Edge private")
    link(alice, space, child, ours, suggested=True)
    link(alice, space, sub, ours)
    link(alice, sub, leaf, ours)
    link(alice, sub, private, ours)
    bob.join(space, via=[ours])

    def synapse_hierarchy():
        page = bob.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy")
        return {r["room_id"]: r for r in page["rooms"]}

    found = {}

    def complete() -> bool:
        found.update(synapse_hierarchy())
        return {space, child, sub, leaf} <= set(found)

    eventually(complete, "saw the whole space on synapse")
    assert private not in found
    assert found[child]["name"] == "Edge room" and found[child]["topic"] == "on the edge"
    assert found[child]["num_joined_members"] == 1 and found[child]["join_rule"] == "public"
    assert found[sub]["room_type"] == "m.space"
    assert {c["state_key"] for c in found[sub]["children_state"]} == {leaf, private}
    suggested = bob.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy", params={"suggested_only": "true"})
    assert [r["room_id"] for r in suggested["rooms"]] == [space, child]



def test_our_federation_hierarchy_answers_only_what_the_server_may_see(federation_pair):
    """Signed as the Synapse peer, which has no user in any of these rooms: a public space is
    answered with its accessible children and the ids of the others; a private one is 404."""
    from fedsign import SignedAs
    alice = our_user(federation_pair, "alice")
    ours = federation_pair.our_name
    space = alice.create_room(preset="public_chat", name="Open space", creation_content=SPACE)
    open_room = alice.create_room(preset="public_chat", name="Open room")
    closed = alice.create_room(preset="private_chat", name="Closed room")
    link(alice, space, open_room, ours, suggested=True)
    link(alice, space, closed, ours)
    link(alice, space, f"!elsewhere{secrets.token_hex(3)}:{federation_pair.synapse.server_name}", "x")
    peer = SignedAs(federation_pair)

    answer = peer.request("GET", f"/_matrix/federation/v1/hierarchy/{q(space)}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["room"]["room_id"] == space and body["room"]["room_type"] == "m.space"
    assert len(body["room"]["children_state"]) == 3
    assert [c["room_id"] for c in body["children"]] == [open_room]
    assert body["children"][0]["name"] == "Open room" and "children_state" not in body["children"][0]
    assert body["inaccessible_children"] == [closed]
    suggested = peer.request("GET", f"/_matrix/federation/v1/hierarchy/{q(space)}?suggested_only=true").json()
    assert len(suggested["room"]["children_state"]) == 1 and suggested["inaccessible_children"] == []

    hidden = alice.create_room(preset="private_chat", creation_content=SPACE)
    refused = peer.request("GET", f"/_matrix/federation/v1/hierarchy/{q(hidden)}")
    assert refused.status_code == 404 and refused.json()["errcode"] == "M_NOT_FOUND", refused.text
    unsigned = federation_pair.ours.request("GET", f"/_matrix/federation/v1/hierarchy/{q(space)}")
    assert unsigned.status_code == 401, unsigned.text


def test_our_hierarchy_lists_rooms_only_synapse_holds(federation_pair):
    """Our user's space links a room and a subspace only Synapse holds: our server asks
    Synapse's federation /hierarchy (the servers of the links' `via`) and lists them with
    Synapse's summaries; the subspace's public child comes with the subspace's answer, its
    private one stays hidden."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    ours, theirs = federation_pair.our_name, federation_pair.synapse.server_name
    space = alice.create_room(preset="public_chat", name="Mixed space", creation_content=SPACE)
    local = alice.create_room(preset="public_chat", name="Ours")
    room = bob.create_room(preset="public_chat", name="Synapse room", topic="held there")
    sub = bob.create_room(preset="public_chat", name="Synapse subspace", creation_content=SPACE)
    leaf = bob.create_room(preset="public_chat", name="Synapse leaf")
    hidden = bob.create_room(preset="private_chat", name="Synapse private")
    link(bob, sub, leaf, theirs, order="1")
    link(bob, sub, hidden, theirs, order="2")
    link(alice, space, local, ours, order="1")
    link(alice, space, room, theirs, order="2")
    link(alice, space, sub, theirs, order="3")

    page = hierarchy(alice, space)
    assert ids(page) == [space, local, room, sub, leaf]
    found = {r["room_id"]: r for r in page["rooms"]}
    assert found[room]["name"] == "Synapse room" and found[room]["topic"] == "held there"
    assert found[room]["num_joined_members"] == 1 and found[room]["join_rule"] == "public"
    assert found[room]["children_state"] == []
    assert found[sub]["room_type"] == "m.space"
    assert [c["state_key"] for c in found[sub]["children_state"]] == [leaf, hidden]
    assert found[leaf]["name"] == "Synapse leaf"
    # Page by page, the servers to ask travel in the token.
    first = hierarchy(alice, space, limit=3)
    assert ids(first) == [space, local, room]
    second = hierarchy(alice, space, limit=3, **{"from": first["next_batch"]})
    assert ids(second) == [sub, leaf] and "next_batch" not in second
