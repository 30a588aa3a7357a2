"""Knocking (client-server "Knocking on rooms", server-server make_knock/send_knock): a user asks
to be let into a room whose join rule is `knock`; a member who may invite accepts with an invite,
or rejects with a kick; the knocker may withdraw with /leave. The knocker's /sync lists the room
under `rooms.knock` with stripped state; the room's members see the knock in their timeline.

Local flows use the session's `server`; the flows across servers use `federation_pair` (our
Worker and a real Synapse) and the helpers of test_federation_peer.py.
"""

from __future__ import annotations

import secrets

import pytest

from test_federation_peer import (
    FEDERATION_WAIT, PASSWORD, V3, Client, eventually, our_user, q, synapse_user,
)

KNOCK_RULES = {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}


def local_user(server, name: str) -> Client:
    body = {"username": f"{name}-{secrets.token_hex(4)}", "password": PASSWORD,
            "auth": {"type": "m.login.dummy"}}
    response = server.request("POST", f"{V3}/register", json=body)
    assert response.status_code == 200, response.text
    return Client(server.base_url, response.json()["user_id"], response.json()["access_token"])


def knock(client: Client, room: str, via: list[str] | None = None, reason: str | None = None,
          expect: int = 200) -> dict:
    body = {} if reason is None else {"reason": reason}
    params = [("via", s) for s in via or []]
    return client.call("POST", f"{V3}/knock/{q(room)}", json=body, params=params, expect=expect).json()


def knocked_rooms(client: Client) -> dict:
    rooms: dict = {}
    for body in client.seen:
        rooms.update(body.get("rooms", {}).get("knock", {}))
    return rooms


def left(client: Client, room_id: str) -> bool:
    return any(room_id in b.get("rooms", {}).get("leave", {}) for b in client.seen)


def knock_room(admin: Client, version: str = "12", name: str = "knock here") -> str:
    return admin.create_room(preset="private_chat", name=name, room_version=version,
                             initial_state=[KNOCK_RULES])


@pytest.mark.parametrize("version", ["10", "12"])
def test_a_knock_is_seen_by_the_admin_and_accepted_with_an_invite(server, version):
    admin, knocker = local_user(server, "admin"), local_user(server, "knocker")
    room_id = knock_room(admin, version)
    admin.sync_once(0), knocker.sync_once(0)

    assert knock(knocker, room_id, reason="let me in, please") == {"room_id": room_id}
    knocked = knocker.wait(lambda c: knocked_rooms(c).get(room_id), "the room under rooms.knock")
    events = knocked["knock_state"]["events"]
    assert {e["type"] for e in events} >= {"m.room.create", "m.room.join_rules", "m.room.name", "m.room.member"}
    mine = [e for e in events if e["type"] == "m.room.member"]
    assert mine == [{"type": "m.room.member", "state_key": knocker.user_id, "sender": knocker.user_id,
                     "content": mine[0]["content"]}]
    assert mine[0]["content"]["membership"] == "knock"
    assert mine[0]["content"]["reason"] == "let me in, please"
    assert all(set(e) == {"type", "state_key", "sender", "content"} for e in events)

    admin.wait(lambda c: c.saw_membership(room_id, knocker.user_id, "knock"), "the knock")
    assert admin.state(room_id)[("m.room.member", knocker.user_id)]["content"]["membership"] == "knock"
    # Joining before being let in is refused.
    assert knocker.call("POST", f"{V3}/join/{q(room_id)}", json={}, expect=403).json()["errcode"] == "M_FORBIDDEN"

    admin.invite(room_id, knocker.user_id)
    knocker.wait(lambda c: c.invited_to(room_id), "the invite that accepts the knock")
    assert knocker.join(room_id) == room_id
    admin.wait(lambda c: c.saw_membership(room_id, knocker.user_id, "join"), "the join")
    knocker.send(room_id, "thanks")
    admin.wait(lambda c: "thanks" in c.bodies(room_id), "the knocker's message")


def test_a_knock_is_rejected_with_a_kick_and_can_be_repeated(server):
    admin, knocker = local_user(server, "admin"), local_user(server, "knocker")
    room_id = knock_room(admin)
    knocker.sync_once(0)
    knock(knocker, room_id)
    knocker.wait(lambda c: room_id in knocked_rooms(c), "the knock")
    admin.ok("POST", f"{V3}/rooms/{q(room_id)}/kick", {"user_id": knocker.user_id, "reason": "not now"})
    knocker.wait(lambda c: left(c, room_id), "the rejection under rooms.leave")
    member = admin.state(room_id)[("m.room.member", knocker.user_id)]
    assert member["content"] == {"membership": "leave", "reason": "not now"}
    assert member["sender"] == admin.user_id
    # A rejected user may knock again.
    knock(knocker, room_id)
    assert admin.state(room_id)[("m.room.member", knocker.user_id)]["content"]["membership"] == "knock"


def test_a_knock_is_withdrawn_with_leave(server):
    admin, knocker = local_user(server, "admin"), local_user(server, "knocker")
    room_id = knock_room(admin)
    admin.sync_once(0), knocker.sync_once(0)
    knock(knocker, room_id)
    knocker.leave(room_id)
    knocker.wait(lambda c: left(c, room_id), "the withdrawn knock under rooms.leave")
    admin.wait(lambda c: c.saw_membership(room_id, knocker.user_id, "leave"), "the withdrawal")
    member = admin.state(room_id)[("m.room.member", knocker.user_id)]
    assert member["sender"] == knocker.user_id and member["content"]["membership"] == "leave"


def test_knock_restricted_rooms_take_knocks(server):
    admin, knocker = local_user(server, "admin"), local_user(server, "knocker")
    rules = {"type": "m.room.join_rules", "state_key": "",
             "content": {"join_rule": "knock_restricted", "allow": []}}
    room_id = admin.create_room(preset="private_chat", initial_state=[rules])
    knock(knocker, room_id, reason="hello")
    assert admin.state(room_id)[("m.room.member", knocker.user_id)]["content"]["membership"] == "knock"


def test_knocks_the_room_does_not_take_are_refused(server):
    admin, knocker = local_user(server, "admin"), local_user(server, "knocker")
    public = admin.create_room(preset="public_chat")
    invite_only = admin.create_room(preset="private_chat")
    for room_id in (public, invite_only):
        assert knock(knocker, room_id, expect=403)["errcode"] == "M_FORBIDDEN"
        assert ("m.room.member", knocker.user_id) not in admin.state(room_id)
    # Members cannot knock on their own room.
    assert knock(admin, knock_room(admin), expect=403)["errcode"] == "M_FORBIDDEN"
    # A banned user cannot knock.
    room_id = knock_room(admin)
    admin.ok("POST", f"{V3}/rooms/{q(room_id)}/ban", {"user_id": knocker.user_id})
    assert knock(knocker, room_id, expect=403)["errcode"] == "M_FORBIDDEN"


def test_knocks_on_unknown_rooms_and_bad_ids(server):
    knocker = local_user(server, "knocker")
    assert knock(knocker, f"!nowhere{secrets.token_hex(4)}:{server.server_name}", expect=404)["errcode"] == "M_NOT_FOUND"
    assert knock(knocker, f"#nowhere{secrets.token_hex(4)}:{server.server_name}", expect=404)["errcode"] == "M_NOT_FOUND"
    assert knock(knocker, "not-a-room", expect=400)["errcode"] == "M_INVALID_PARAM"
    response = knocker.call("POST", f"{V3}/knock/{q('!x:' + server.server_name)}", data="{", expect=400)
    assert response.json()["errcode"] == "M_NOT_JSON"
    anonymous = Client(server.base_url, "", "")
    assert anonymous.call("POST", f"{V3}/knock/{q('!x:y')}", json={}, headers={"Authorization": ""},
                          expect=401).json()["errcode"] == "M_MISSING_TOKEN"


# -- across servers -------------------------------------------------------------------------------

def test_a_synapse_user_knocks_on_our_room_and_our_admin_accepts(federation_pair):
    """Synapse asks us for make_knock and sends send_knock; our admin sees the knock and invites
    (over /v2/invite); the Synapse user then joins through us."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    room_id = knock_room(alice, name="knock at the edge")
    alice.sync_once(0), bob.sync_once(0)

    knock(bob, room_id, via=[federation_pair.our_name], reason="from synapse")
    alice.wait(lambda c: c.saw_membership(room_id, bob.user_id, "knock"), "bob's knock")
    knocked = bob.wait(lambda c: knocked_rooms(c).get(room_id), "the room under bob's rooms.knock")
    names = [e["content"].get("name") for e in knocked["knock_state"]["events"] if e["type"] == "m.room.name"]
    assert names == ["knock at the edge"]

    alice.invite(room_id, bob.user_id)
    bob.wait(lambda c: c.invited_to(room_id), "the invite after the knock")
    assert bob.join(room_id, via=[federation_pair.our_name]) == room_id
    alice.wait(lambda c: c.saw_membership(room_id, bob.user_id, "join"), "bob's join")
    bob.send(room_id, "in through the knock")
    alice.wait(lambda c: "in through the knock" in c.bodies(room_id), "bob's message")


def test_our_user_knocks_on_a_synapse_room_and_joins_once_accepted(federation_pair):
    """Our server asks Synapse for make_knock (with the versions we support), signs, sends
    send_knock and keeps the answer's stripped state for our user's rooms.knock."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    room_id = bob.create_room(preset="private_chat", name="knock on synapse", initial_state=[KNOCK_RULES])
    alice.sync_once(0), bob.sync_once(0)

    assert knock(alice, room_id, via=[federation_pair.synapse.server_name], reason="hi bob") == {"room_id": room_id}
    knocked = alice.wait(lambda c: knocked_rooms(c).get(room_id), "the room under rooms.knock")
    events = knocked["knock_state"]["events"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "knock on synapse" for e in events)
    assert any(e["type"] == "m.room.member" and e["state_key"] == alice.user_id
               and e["content"]["membership"] == "knock" for e in events)
    bob.wait(lambda c: c.saw_membership(room_id, alice.user_id, "knock"), "alice's knock")
    eventually(lambda: bob.state(room_id)[("m.room.member", alice.user_id)]["content"].get("reason") == "hi bob",
               "saw the knock's reason on synapse")

    bob.invite(room_id, alice.user_id)
    alice.wait(lambda c: c.invited_to(room_id), "the invite that accepts the knock")
    assert alice.join(room_id) == room_id
    bob.wait(lambda c: c.saw_membership(room_id, alice.user_id, "join"), "alice's join", deadline=FEDERATION_WAIT)
    alice.send(room_id, "knocked and joined")
    bob.wait(lambda c: "knocked and joined" in c.bodies(room_id), "alice's message")
