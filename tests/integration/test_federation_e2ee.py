"""End-to-end encryption over federation with a real Synapse (fixture `federation_pair`):
matrix-nio with [e2e] on each server, an encrypted room with one user on each, messages that
decrypt both ways (key queries and claims cross servers, room keys travel as m.direct_to_device
EDUs), then a new device of the Synapse user that our user sees through an m.device_list_update
(sync `device_lists.changed`, and `/keys/query` lists the device)."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time

import pytest
import requests

from nio_steps import ok, settle

PASSWORD = "federation e2ee test password"
V3 = "/_matrix/client/v3"
# How long anything crossing federation may take to show up; only reached when broken.
WAIT = 30


def _register(base_url: str, name: str, verify) -> str:
    body = {"username": f"{name}-{secrets.token_hex(4)}", "password": PASSWORD}
    r = requests.post(base_url + V3 + "/register", json=body, verify=verify, timeout=30)
    if r.status_code == 401:
        body["auth"] = {"type": "m.login.dummy", "session": r.json().get("session")}
        r = requests.post(base_url + V3 + "/register", json=body, verify=verify, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["user_id"]


async def _exchange(pair) -> None:
    from nio import (AsyncClient, AsyncClientConfig, JoinResponse, LoginResponse, MegolmEvent,
                     RoomCreateResponse, RoomMessageText, RoomSendResponse, SyncResponse)

    ours_url, theirs_url = pair.ours.base_url, pair.synapse.client_url
    ca = ssl.create_default_context(cafile=str(pair.ca))
    import tempfile
    store = tempfile.mkdtemp(prefix="nio-fed-")

    def client(base_url, user_id, secure):
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=2,
                                   max_limit_exceeded=0, request_timeout=30)
        return AsyncClient(base_url, user_id, store_path=store, config=config, ssl=ca if secure else None)

    a_id = _register(ours_url, "fe2e-a", str(pair.ca))
    b_id = _register(theirs_url, "fe2e-b", True)
    alice, bob = client(ours_url, a_id, True), client(theirs_url, b_id, False)
    bob2 = None
    try:
        for c, name in ((alice, "alice"), (bob, "bob")):
            ok(await c.login(PASSWORD, device_name=f"{name} e2e"), LoginResponse, f"{name} login")
            await settle(c)
        room = ok(await alice.room_create(invite=[bob.user_id], initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]),
            RoomCreateResponse, "create").room_id
        deadline = time.monotonic() + WAIT
        while room not in bob.invited_rooms and time.monotonic() < deadline:
            await settle(bob)
        ok(await bob.join(room), JoinResponse, "bob joins over federation")
        deadline = time.monotonic() + WAIT
        while (room not in alice.rooms or bob.user_id not in alice.rooms[room].users) and time.monotonic() < deadline:
            await settle(alice)
        for _ in range(2):
            for c in (alice, bob):
                await settle(c)
        assert alice.rooms[room].encrypted and bob.rooms[room].encrypted

        # Every sync (ours or settle's) feeds these callbacks: no message is missed between them.
        received = {c.user_id: [] for c in (alice, bob)}
        for c in (alice, bob):
            c.add_event_callback(lambda room_, event, who=c.user_id: received[who].append(event),
                                 (RoomMessageText, MegolmEvent))

        async def send_and_receive(sender, receiver, text):
            ok(await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text},
                                      ignore_unverified_devices=True), RoomSendResponse, f"{sender.user_id} send")
            end = time.monotonic() + WAIT
            while time.monotonic() < end:
                if any(isinstance(e, RoomMessageText) and e.body == text for e in received[receiver.user_id]):
                    return
                await settle(receiver)
            seen = [type(e).__name__ for e in received[receiver.user_id]]
            pytest.fail(f"{receiver.user_id} never decrypted {text!r}; saw {seen}")

        await send_and_receive(alice, bob, "hello from our server, encrypted")
        await settle(alice)
        await send_and_receive(bob, alice, "hello from synapse, encrypted")

        # A new device of the Synapse user: our user must hear of it (m.device_list_update).
        since = alice.next_batch
        bob2 = client(theirs_url, b_id, False)
        ok(await bob2.login(PASSWORD, device_name="bob second device"), LoginResponse, "bob2 login")
        await settle(bob2)
        assert not bob2.should_upload_keys
        headers = {"Authorization": f"Bearer {alice.access_token}"}
        changed, listed = False, {}
        end = time.monotonic() + WAIT
        while time.monotonic() < end and not (changed and bob2.device_id in listed):
            r = requests.get(ours_url + V3 + "/sync", params={"since": since, "timeout": 2000},
                             headers=headers, verify=str(pair.ca), timeout=30)
            assert r.status_code == 200, r.text
            body = r.json()
            since = body["next_batch"]
            changed = changed or b_id in body.get("device_lists", {}).get("changed", [])
            r = requests.post(ours_url + V3 + "/keys/query", json={"device_keys": {b_id: []}},
                              headers=headers, verify=str(pair.ca), timeout=30)
            assert r.status_code == 200, r.text
            listed = r.json()["device_keys"].get(b_id, {})
        assert changed, f"{b_id} never in our user's device_lists.changed"
        assert bob2.device_id in listed, f"keys/query of {b_id} lacks the new device: {sorted(listed)}"
    finally:
        for c in (alice, bob, bob2):
            if c is not None:
                await c.close()


def test_encrypted_room_across_servers_and_device_list_updates(federation_pair):
    pytest.importorskip("nio.crypto")
    asyncio.run(asyncio.wait_for(_exchange(federation_pair), timeout=110))
