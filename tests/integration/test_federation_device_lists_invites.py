"""Device lists and invites across servers, with a real Synapse (fixture `federation_pair`).

- Device lists both ways: a new device of our user, with keys, reaches the Synapse user
  (`m.device_list_update` from us, Synapse's sync `device_lists.changed`, its `/keys/query`);
  renaming it reaches Synapse too; a new device of the Synapse user reaches ours. A user who just
  joined a room sees its members, itself included, in `device_lists.changed`.
- Invites: our user rejecting an invite to a room only Synapse holds sees the leave event in its
  sync's `leave` section; a Synapse user withdrawing (kicking) the invite of ours reaches our
  user the same way; an invite whose content a redaction would drop (`is_direct`) is co-signed
  and checked against the redacted form.
"""

from __future__ import annotations

import requests
from signedjson.key import generate_signing_key, get_verify_key, encode_verify_key_base64
from signedjson.sign import sign_json

from test_federation_peer import (FEDERATION_WAIT, PASSWORD, V3, Client, eventually, our_user, q,
                                  shared_room_on_ours, synapse_user)
from synapse_peer import PASSWORD as SYNAPSE_PASSWORD


def login(base_url: str, user_id: str, password: str, verify) -> Client:
    """A second device of an existing user."""
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, "initial_device_display_name": "second device"}
    r = requests.post(base_url + V3 + "/login", json=body, verify=verify, timeout=30)
    assert r.status_code == 200, r.text
    return Client(base_url, user_id, r.json()["access_token"], verify=verify)


def device_id(client: Client) -> str:
    return client.ok("GET", f"{V3}/account/whoami")["device_id"]


def upload_device_keys(client: Client) -> dict:
    """Signed device keys for the client's device, as a real client uploads them."""
    device = device_id(client)
    key = generate_signing_key(device)
    keys = {"user_id": client.user_id, "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device}": encode_verify_key_base64(get_verify_key(key)),
                     f"curve25519:{device}": encode_verify_key_base64(get_verify_key(generate_signing_key("c")))}}
    keys = sign_json(keys, client.user_id, key)
    client.ok("POST", f"{V3}/keys/upload", {"device_keys": keys})
    return keys


def changed(client: Client) -> set[str]:
    return {u for b in client.seen for u in b.get("device_lists", {}).get("changed", [])}


def queried_devices(client: Client, user_id: str) -> dict:
    return client.ok("POST", f"{V3}/keys/query", {"device_keys": {user_id: []}})["device_keys"].get(user_id, {})


def left_events(client: Client, room_id: str) -> list[dict]:
    """The events our syncs showed for the room under `leave`, timeline and state."""
    return [e for b in client.seen for part in ("timeline", "state")
            for e in b.get("rooms", {}).get("leave", {}).get(room_id, {}).get(part, {}).get("events", [])]


def test_our_device_changes_reach_synapse_and_theirs_reach_us(federation_pair):
    room_id, alice, bob = shared_room_on_ours(federation_pair, preset="private_chat", initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    # Whoever joined sees the room's members, itself too (its other devices need to know).
    bob.wait(lambda c: {alice.user_id, bob.user_id} <= changed(c), "both users in device_lists.changed")

    # Our user signs in on a new device and uploads its keys: Synapse hears of it.
    bob.seen.clear()
    alice2 = login(alice.base_url, alice.user_id, PASSWORD, alice.verify)
    keys = upload_device_keys(alice2)
    bob.wait(lambda c: alice.user_id in changed(c), "our user's new device in device_lists.changed")
    eventually(lambda: keys["device_id"] in queried_devices(bob, alice.user_id),
               "saw our user's new device in synapse's /keys/query")
    listed = queried_devices(bob, alice.user_id)[keys["device_id"]]
    assert listed["keys"] == keys["keys"] and listed["signatures"] == keys["signatures"]

    # Renaming it is a change of the device list too, with the new name.
    bob.seen.clear()
    alice2.ok("PUT", f"{V3}/devices/{q(keys['device_id'])}", {"display_name": "renamed on the edge"})
    bob.wait(lambda c: alice.user_id in changed(c), "the rename in device_lists.changed")
    eventually(lambda: queried_devices(bob, alice.user_id)[keys["device_id"]]
               .get("unsigned", {}).get("device_display_name") == "renamed on the edge",
               "saw the new device name on synapse")

    # And the other way: a new device of the Synapse user, with keys, reaches our user.
    alice.sync_once(0)
    alice.seen.clear()
    bob2 = login(bob.base_url, bob.user_id, SYNAPSE_PASSWORD, True)
    bob_keys = upload_device_keys(bob2)
    alice.wait(lambda c: bob.user_id in changed(c), "the synapse user's new device in device_lists.changed")
    eventually(lambda: bob_keys["device_id"] in queried_devices(alice, bob.user_id),
               "saw the synapse user's new device in our /keys/query")


def test_our_user_rejecting_an_invite_sees_the_leave_event(federation_pair):
    """The rejection of an invite to a room only Synapse holds (make_leave/send_leave): the leave
    is our only event of the room, and the sync's `leave` section carries it."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    alice.sync_once(0), bob.sync_once(0)
    room_id = bob.create_room(preset="private_chat")
    bob.invite(room_id, alice.user_id)
    alice.wait(lambda c: c.invited_to(room_id), "the invite")
    alice.leave(room_id)
    alice.wait(lambda c: any(e["type"] == "m.room.member" and e["state_key"] == alice.user_id
                             and e["content"]["membership"] == "leave" for e in left_events(c, room_id)),
               "the leave event under rooms.leave")


def test_a_synapse_user_withdrawing_an_invite_reaches_our_user(federation_pair):
    """Synapse sends the leave that rescinds an invite to the invitee's server; we take it (it is
    the inviter's, citing the invite) although we are not in the room."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    alice.sync_once(0), bob.sync_once(0)
    room_id = bob.create_room(preset="private_chat")
    bob.invite(room_id, alice.user_id)
    alice.wait(lambda c: c.invited_to(room_id), "the invite")
    bob.ok("POST", f"{V3}/rooms/{q(room_id)}/kick", {"user_id": alice.user_id, "reason": "changed my mind"})
    leave = alice.wait(lambda c: next((e for e in left_events(c, room_id) if e["type"] == "m.room.member"
                                       and e["content"]["membership"] == "leave"), None),
                       "the withdrawn invite under rooms.leave", deadline=FEDERATION_WAIT)
    assert leave["sender"] == bob.user_id and leave["state_key"] == alice.user_id
    # Nothing is left to reject, and the room is no longer an invite.
    assert alice.call("POST", f"{V3}/rooms/{q(room_id)}/leave", json={}, expect=403).json()["errcode"] == "M_FORBIDDEN"
    fresh = alice.ok("GET", f"{V3}/sync", params={"timeout": 0})
    assert room_id not in fresh["rooms"]["invite"]


def test_a_direct_invite_to_synapse_is_checked_against_its_redacted_form(federation_pair):
    """`is_direct` lives in the invite's content, outside what the signatures cover: our check of
    Synapse's co-signature must verify the redacted form (and the hash the content)."""
    alice, bob = our_user(federation_pair, "alice"), synapse_user(federation_pair, "bob")
    bob.sync_once(0)
    room_id = alice.create_room(preset="private_chat", invite=[bob.user_id], is_direct=True)
    bob.wait(lambda c: c.invited_to(room_id), "the direct invite")
    invite = [e for b in bob.seen for e in b.get("rooms", {}).get("invite", {}).get(room_id, {}).get("invite_state", {}).get("events", [])
              if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert invite and invite[0]["content"].get("is_direct") is True
    bob.join(room_id, via=[federation_pair.our_name])
    alice.wait(lambda c: c.saw_membership(room_id, bob.user_id, "join"), "bob's join")
    # The join replaced the invite: our clients see what it was (unsigned.prev_content).
    join = next(e for e in alice.timeline(room_id) if e["type"] == "m.room.member"
                and e["state_key"] == bob.user_id and e["content"]["membership"] == "join")
    assert join["unsigned"]["prev_content"]["membership"] == "invite", join
    assert join["unsigned"]["prev_content"]["is_direct"] is True, join
    assert join["unsigned"]["prev_sender"] == alice.user_id, join
