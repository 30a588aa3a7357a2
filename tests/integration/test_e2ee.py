"""End-to-end encryption between users of this server: the key endpoints checked over plain HTTP
(shapes, errors, the one-time-key claim race), matrix-nio with its [e2e] extra exchanging
encrypted messages that both sides decrypt, and matrix-js-sdk with its Rust crypto
(tests/clients/js/e2ee.mjs: encrypted messages both ways, cross-signing bootstrap, and a third
device restoring room keys from key backup to decrypt history)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import ROOT
from test_js_sdk import run_node_script
from nio_steps import ok, settle

PASSWORD = "correct horse battery staple"


def register(server, name: str | None = None) -> dict:
    name = name or f"e2ee-{uuid.uuid4().hex[:8]}"
    r = server.request("POST", "/_matrix/client/v3/register",
                       json={"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
                             "initial_device_display_name": "e2ee test"})
    assert r.status_code == 200, r.text
    body = r.json()
    return {"user_id": body["user_id"], "device_id": body["device_id"],
            "headers": {"Authorization": f"Bearer {body['access_token']}"}}


def call(server, user, method, path, **kwargs):
    return server.request(method, "/_matrix/client/v3" + path, headers=user["headers"], **kwargs)


def device_keys(user, curve="curve-key", ed="ed-key"):
    return {"user_id": user["user_id"], "device_id": user["device_id"],
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{user['device_id']}": curve, f"ed25519:{user['device_id']}": ed},
            "signatures": {user["user_id"]: {f"ed25519:{user['device_id']}": "sig"}}}


def one_time_keys(n, prefix="k"):
    return {f"signed_curve25519:{prefix}{i}": {"key": f"{prefix}-key-{i}", "signatures": {}} for i in range(n)}


def sync(server, user, since=None, timeout=0):
    params = {"timeout": timeout}
    if since:
        params["since"] = since
    r = call(server, user, "GET", "/sync", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def shared_room(server, a, b, encrypted=True) -> str:
    initial_state = [{"type": "m.room.encryption", "state_key": "",
                      "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
    r = call(server, a, "POST", "/createRoom", json={"invite": [b["user_id"]], "initial_state": initial_state})
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]
    r = call(server, b, "POST", f"/join/{room_id}", json={})
    assert r.status_code == 200, r.text
    return room_id


def test_upload_answers_counts_and_rejects_other_devices_keys(server):
    alice = register(server)
    r = call(server, alice, "POST", "/keys/upload",
             json={"device_keys": device_keys(alice), "one_time_keys": one_time_keys(5),
                   "fallback_keys": {"signed_curve25519:fb": {"key": "fallback", "fallback": True}}})
    assert r.status_code == 200, r.text
    assert r.json() == {"one_time_key_counts": {"signed_curve25519": 5}}
    # A retried upload of the same ids adds nothing.
    r = call(server, alice, "POST", "/keys/upload", json={"one_time_keys": one_time_keys(5)})
    assert r.json()["one_time_key_counts"]["signed_curve25519"] == 5

    wrong_device = dict(device_keys(alice), device_id="SOMEONEELSE")
    r = call(server, alice, "POST", "/keys/upload", json={"device_keys": wrong_device})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
    wrong_user = dict(device_keys(alice), user_id="@mallory:example.org")
    r = call(server, alice, "POST", "/keys/upload", json={"device_keys": wrong_user})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
    r = call(server, alice, "POST", "/keys/upload", json={"one_time_keys": {"no-algorithm": "x"}})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")
    r = call(server, alice, "POST", "/keys/upload", data="{not json")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")
    r = server.request("POST", "/_matrix/client/v3/keys/upload", json={})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")

    s = sync(server, alice)
    assert s["device_one_time_keys_count"] == {"signed_curve25519": 5}
    assert s["device_unused_fallback_key_types"] == ["signed_curve25519"]


def test_query_returns_device_keys_and_reports_remote_servers(server):
    alice, bob = register(server), register(server)
    call(server, alice, "POST", "/keys/upload", json={"device_keys": device_keys(alice)})
    r = call(server, bob, "POST", "/keys/query",
             json={"device_keys": {alice["user_id"]: [], "@someone:remote.example": []}})
    assert r.status_code == 200, r.text
    body = r.json()
    keys = body["device_keys"][alice["user_id"]][alice["device_id"]]
    assert keys["keys"] == device_keys(alice)["keys"]
    assert keys["unsigned"]["device_display_name"]
    assert "remote.example" in body["failures"]
    assert set(body) >= {"master_keys", "self_signing_keys", "user_signing_keys"}
    # A named device that does not exist is simply absent.
    r = call(server, bob, "POST", "/keys/query", json={"device_keys": {alice["user_id"]: ["NOPE"]}})
    assert r.json()["device_keys"] == {alice["user_id"]: {}}
    r = call(server, bob, "POST", "/keys/query", json={"device_keys": {alice["user_id"]: "all"}})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")


def test_claim_hands_out_each_one_time_key_once_then_the_fallback(server):
    alice, bob = register(server), register(server)
    call(server, alice, "POST", "/keys/upload",
         json={"device_keys": device_keys(alice), "one_time_keys": one_time_keys(2),
               "fallback_keys": {"signed_curve25519:fb": {"key": "fallback", "fallback": True}}})
    claim = {"one_time_keys": {alice["user_id"]: {alice["device_id"]: "signed_curve25519"}}}
    got = []
    for _ in range(4):
        r = call(server, bob, "POST", "/keys/claim", json=claim)
        assert r.status_code == 200, r.text
        got.extend(r.json()["one_time_keys"][alice["user_id"]][alice["device_id"]])
    assert sorted(got[:2]) == ["signed_curve25519:k0", "signed_curve25519:k1"]
    assert got[2:] == ["signed_curve25519:fb", "signed_curve25519:fb"]
    s = sync(server, alice)
    assert s["device_unused_fallback_key_types"] == []
    r = call(server, bob, "POST", "/keys/claim", json={"one_time_keys": {"@x:remote.example": {"D": "signed_curve25519"}}})
    assert r.json()["one_time_keys"] == {} and "remote.example" in r.json()["failures"]


def test_twenty_parallel_claims_never_share_a_one_time_key(server):
    alice, bob = register(server), register(server)
    call(server, alice, "POST", "/keys/upload",
         json={"device_keys": device_keys(alice), "one_time_keys": one_time_keys(15),
               "fallback_keys": {"signed_curve25519:fb": {"key": "fallback", "fallback": True}}})
    claim = {"one_time_keys": {alice["user_id"]: {alice["device_id"]: "signed_curve25519"}}}

    def one(_):
        r = call(server, bob, "POST", "/keys/claim", json=claim, timeout=30)
        assert r.status_code == 200, r.text
        return list(r.json()["one_time_keys"][alice["user_id"]][alice["device_id"]])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = [k for keys in pool.map(one, range(20)) for k in keys]
    one_time = [k for k in results if k != "signed_curve25519:fb"]
    assert len(results) == 20
    assert len(one_time) == len(set(one_time)) == 15, results
    assert results.count("signed_curve25519:fb") == 5
    print(f"\n20 parallel claims: {len(set(one_time))} distinct one-time keys, "
          f"{results.count('signed_curve25519:fb')} fallback")


def test_to_device_is_idempotent_delivered_until_acknowledged_and_star_reaches_all(server):
    alice, bob = register(server), register(server)
    r = server.request("POST", "/_matrix/client/v3/login",
                       json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob["user_id"]},
                             "password": PASSWORD})
    bob2 = {"user_id": bob["user_id"], "device_id": r.json()["device_id"],
            "headers": {"Authorization": f"Bearer {r.json()['access_token']}"}}
    first = sync(server, bob)
    for _ in range(2):  # the retry with the same transaction id queues nothing more
        r = call(server, alice, "PUT", "/sendToDevice/m.test/txn1",
                 json={"messages": {bob["user_id"]: {bob["device_id"]: {"n": 1}}}})
        assert r.status_code == 200 and r.json() == {}, r.text
    got = sync(server, bob, since=first["next_batch"], timeout=5000)
    assert got["to_device"]["events"] == [{"sender": alice["user_id"], "type": "m.test", "content": {"n": 1}}]
    # Not acknowledged yet: the same since gets it again.
    again = sync(server, bob, since=first["next_batch"])
    assert len(again["to_device"]["events"]) == 1
    # Acknowledged by the next since: gone.
    after = sync(server, bob, since=got["next_batch"])
    assert after["to_device"]["events"] == []

    call(server, alice, "PUT", "/sendToDevice/m.test/txn2", json={"messages": {bob["user_id"]: {"*": {"n": 2}}}})
    assert [e["content"] for e in sync(server, bob2)["to_device"]["events"]] == [{"n": 2}]
    r = call(server, alice, "PUT", "/sendToDevice/m.test/txn3", json={"messages": []})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")


def test_device_lists_changes_reach_room_members_and_deleted_devices_lose_their_keys(server):
    alice, bob = register(server), register(server)
    shared_room(server, alice, bob)
    since = sync(server, bob)["next_batch"]
    call(server, alice, "POST", "/keys/upload", json={"device_keys": device_keys(alice)})
    s = sync(server, bob, since=since, timeout=5000)
    assert alice["user_id"] in s["device_lists"]["changed"]
    r = call(server, bob, "GET", "/keys/changes", params={"from": since, "to": s["next_batch"]})
    assert r.status_code == 200 and alice["user_id"] in r.json()["changed"]
    r = call(server, bob, "GET", "/keys/changes", params={"from": since})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_MISSING_PARAM")

    # A new member counts as changed for the others.
    carol = register(server)
    r = call(server, alice, "POST", "/createRoom", json={"preset": "public_chat"})
    room = r.json()["room_id"]
    call(server, bob, "POST", f"/join/{room}", json={})
    since = sync(server, bob)["next_batch"]
    call(server, carol, "POST", f"/join/{room}", json={})
    s = sync(server, bob, since=since, timeout=5000)
    assert carol["user_id"] in s["device_lists"]["changed"]
    # ... and one who leaves every shared room is in "left".
    since = s["next_batch"]
    call(server, carol, "POST", f"/rooms/{room}/leave", json={})
    s = sync(server, bob, since=since, timeout=5000)
    assert carol["user_id"] in s["device_lists"]["left"]

    # Logging out deletes the device's keys and tells the others.
    since = sync(server, bob)["next_batch"]
    r = call(server, alice, "POST", "/logout", json={})
    assert r.status_code == 200
    s = sync(server, bob, since=since, timeout=5000)
    assert alice["user_id"] in s["device_lists"]["changed"]
    r = call(server, bob, "POST", "/keys/query", json={"device_keys": {alice["user_id"]: []}})
    assert r.json()["device_keys"][alice["user_id"]] == {}


def test_old_sync_tokens_still_work(server):
    alice = register(server)
    token = sync(server, alice)["next_batch"]
    # Tokens from before the E2EE streams (4 positions) and before presence (6) still work,
    # and the answer carries every stream (7).
    for fields in (4, 6):
        old = "_".join(token.split("_")[:fields])
        s = sync(server, alice, since=old)
        assert len(s["next_batch"].split("_")) == 7


# --- cross-signing, with real ed25519 signatures -------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _canonical(obj) -> bytes:
    obj = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class Key:
    def __init__(self):
        from nacl.signing import SigningKey  # installed with matrix-nio's dependencies? fall back below
        self.sk = SigningKey.generate()
        self.public = _b64(bytes(self.sk.verify_key))

    def sign(self, obj, user_id, key_id=None):
        sig = _b64(self.sk.sign(_canonical(obj)).signature)
        obj.setdefault("signatures", {}).setdefault(user_id, {})[f"ed25519:{key_id or self.public}"] = sig
        return obj


def _cross_key(user_id, usage, key):
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{key.public}": key.public}}


def test_cross_signing_upload_query_and_signatures(server):
    pytest.importorskip("nacl.signing")
    alice, bob = register(server), register(server)
    device = Key()
    dk = device_keys(alice, ed=device.public)
    dk.pop("signatures")
    device.sign(dk, alice["user_id"], alice["device_id"])
    call(server, alice, "POST", "/keys/upload", json={"device_keys": dk})

    master, ssk, usk = Key(), Key(), Key()
    body = {"master_key": master.sign(_cross_key(alice["user_id"], "master", master), alice["user_id"]),
            "self_signing_key": master.sign(_cross_key(alice["user_id"], "self_signing", ssk), alice["user_id"]),
            "user_signing_key": master.sign(_cross_key(alice["user_id"], "user_signing", usk), alice["user_id"])}
    # The first upload needs no user-interactive auth.
    r = call(server, alice, "POST", "/keys/device_signing/upload", json=body)
    assert r.status_code == 200, r.text
    # Replacing them does.
    other = Key()
    replace = {"master_key": other.sign(_cross_key(alice["user_id"], "master", other), alice["user_id"])}
    r = call(server, alice, "POST", "/keys/device_signing/upload", json=replace)
    assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}], r.text
    session = r.json()["session"]
    r = call(server, alice, "POST", "/keys/device_signing/upload", json={**body, "auth": {
        "type": "m.login.password", "session": session, "password": PASSWORD,
        "identifier": {"type": "m.id.user", "user": alice["user_id"]}}})
    assert r.status_code == 200, r.text
    # A self-signing key the master key did not sign is refused.
    unsigned = {"self_signing_key": _cross_key(alice["user_id"], "self_signing", Key())}
    r = call(server, alice, "POST", "/keys/device_signing/upload", json=unsigned)
    assert r.status_code in (400, 401), r.text

    # The self-signing key signs the device; a bad signature is a per-key failure.
    signed_device = ssk.sign(json.loads(json.dumps(dk)), alice["user_id"])
    r = call(server, alice, "POST", "/keys/signatures/upload",
             json={alice["user_id"]: {alice["device_id"]: signed_device}})
    assert r.status_code == 200 and r.json()["failures"] == {}, r.text
    forged = Key().sign(json.loads(json.dumps(dk)), alice["user_id"], ssk.public)
    r = call(server, alice, "POST", "/keys/signatures/upload",
             json={alice["user_id"]: {alice["device_id"]: forged, "NOSUCHKEY": forged}})
    failures = r.json()["failures"][alice["user_id"]]
    assert failures[alice["device_id"]]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures["NOSUCHKEY"]["errcode"] == "M_NOT_FOUND"

    r = call(server, bob, "POST", "/keys/query", json={"device_keys": {alice["user_id"]: []}})
    answer = r.json()
    assert answer["master_keys"][alice["user_id"]]["keys"] == {f"ed25519:{master.public}": master.public}
    assert alice["user_id"] in answer["self_signing_keys"]
    assert alice["user_id"] not in answer["user_signing_keys"]  # only its owner sees it
    sigs = answer["device_keys"][alice["user_id"]][alice["device_id"]]["signatures"][alice["user_id"]]
    assert f"ed25519:{ssk.public}" in sigs
    r = call(server, alice, "POST", "/keys/query", json={"device_keys": {alice["user_id"]: []}})
    assert alice["user_id"] in r.json()["user_signing_keys"]


# --- key backup ----------------------------------------------------------------------------

def _session(index, forwarded=0, verified=False, tag="x"):
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ciphertext": tag, "mac": "m", "ephemeral": "e"}}


def test_key_backup_versions_and_keys(server):
    alice = register(server)
    r = call(server, alice, "GET", "/room_keys/version")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
    algorithm = "m.megolm_backup.v1.curve25519-aes-sha2"
    r = call(server, alice, "POST", "/room_keys/version", json={"algorithm": algorithm, "auth_data": {"public_key": "p"}})
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    r = call(server, alice, "GET", "/room_keys/version")
    assert r.json() == {"version": v1, "algorithm": algorithm, "auth_data": {"public_key": "p"}, "etag": "0", "count": 0}
    assert call(server, alice, "GET", f"/room_keys/version/{v1}").status_code == 200
    assert call(server, alice, "GET", "/room_keys/version/999999").json()["errcode"] == "M_NOT_FOUND"
    r = call(server, alice, "PUT", f"/room_keys/version/{v1}",
             json={"algorithm": algorithm, "auth_data": {"public_key": "p", "signatures": {}}, "version": v1})
    assert r.status_code == 200, r.text
    r = call(server, alice, "POST", "/room_keys/version", json={"algorithm": algorithm})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")

    room = "!room:example.org"
    r = call(server, alice, "PUT", "/room_keys/keys", params={"version": v1},
             json={"rooms": {room: {"sessions": {"s1": _session(5, tag="first"), "s2": _session(0)}}}})
    assert r.status_code == 200 and r.json()["count"] == 2, r.text
    etag = r.json()["etag"]
    # Replacement rules: a worse key (higher index) is ignored, a better one replaces.
    call(server, alice, "PUT", f"/room_keys/keys/{room}/s1", params={"version": v1}, json=_session(7, tag="worse"))
    assert call(server, alice, "GET", f"/room_keys/keys/{room}/s1", params={"version": v1}).json()["session_data"]["ciphertext"] == "first"
    call(server, alice, "PUT", f"/room_keys/keys/{room}/s1", params={"version": v1}, json=_session(9, verified=True, tag="verified"))
    assert call(server, alice, "GET", f"/room_keys/keys/{room}/s1", params={"version": v1}).json()["session_data"]["ciphertext"] == "verified"
    call(server, alice, "PUT", f"/room_keys/keys/{room}/s1", params={"version": v1}, json=_session(9, forwarded=0, verified=False, tag="unverified"))
    assert call(server, alice, "GET", f"/room_keys/keys/{room}/s1", params={"version": v1}).json()["session_data"]["ciphertext"] == "verified"
    r = call(server, alice, "GET", f"/room_keys/version/{v1}")
    assert r.json()["count"] == 2 and r.json()["etag"] != etag

    all_keys = call(server, alice, "GET", "/room_keys/keys", params={"version": v1}).json()
    assert set(all_keys["rooms"][room]["sessions"]) == {"s1", "s2"}
    assert call(server, alice, "GET", "/room_keys/keys/!other:x", params={"version": v1}).json() == {"sessions": {}}
    r = call(server, alice, "GET", f"/room_keys/keys/{room}/nope", params={"version": v1})
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
    r = call(server, alice, "GET", "/room_keys/keys")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_MISSING_PARAM")

    # A newer version makes the old one read-only for uploads.
    v2 = call(server, alice, "POST", "/room_keys/version", json={"algorithm": algorithm, "auth_data": {}}).json()["version"]
    r = call(server, alice, "PUT", f"/room_keys/keys/{room}/s3", params={"version": v1}, json=_session(0))
    assert (r.status_code, r.json()["errcode"], r.json()["current_version"]) == (403, "M_WRONG_ROOM_KEYS_VERSION", v2)

    r = call(server, alice, "DELETE", f"/room_keys/keys/{room}/s2", params={"version": v1})
    assert r.json()["count"] == 1
    assert call(server, alice, "DELETE", f"/room_keys/version/{v2}").status_code == 200
    assert call(server, alice, "GET", "/room_keys/version").json()["version"] == v1
    assert call(server, alice, "DELETE", f"/room_keys/version/{v2}").status_code == 404
    # Someone else's version is not yours.
    bob = register(server)
    assert call(server, bob, "GET", f"/room_keys/version/{v1}").status_code == 404


# --- matrix-nio with [e2e]: an encrypted exchange ------------------------------------------

async def _nio_exchange(base_url: str, store: str) -> None:
    from nio import (AsyncClient, AsyncClientConfig, JoinResponse, MegolmEvent, RegisterResponse,
                     RoomCreateResponse, RoomMessageText, RoomSendResponse, SyncResponse)

    def client():
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=2,
                                   max_limit_exceeded=0, request_timeout=30)
        return AsyncClient(base_url, "", store_path=store, config=config)

    alice, bob = client(), client()
    try:
        ok(await alice.register(f"nio-a-{secrets.token_hex(3)}", PASSWORD, "alice e2e"), RegisterResponse, "register")
        ok(await bob.register(f"nio-b-{secrets.token_hex(3)}", PASSWORD, "bob e2e"), RegisterResponse, "register")
        for c in (alice, bob):
            c.load_store()
            await settle(c)
        room = ok(await alice.room_create(invite=[bob.user_id], initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]),
            RoomCreateResponse, "create").room_id
        await settle(bob)
        ok(await bob.join(room), JoinResponse, "join")
        for _ in range(2):
            for c in (alice, bob):
                await settle(c)
        assert alice.rooms[room].encrypted

        async def send_and_receive(sender, receiver, text):
            ok(await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text},
                                      ignore_unverified_devices=True), RoomSendResponse, f"{sender.user_id} send")
            seen = []
            for _ in range(6):
                response = ok(await receiver.sync(timeout=3000), SyncResponse, "sync")
                events = response.rooms.join.get(room).timeline.events if room in response.rooms.join else []
                seen += [type(e).__name__ for e in events]
                if any(isinstance(e, RoomMessageText) and e.body == text for e in events):
                    return
                assert not any(isinstance(e, MegolmEvent) for e in events), \
                    f"{receiver.user_id} could not decrypt: {seen}"
                await settle(receiver)
            pytest.fail(f"{receiver.user_id} never decrypted {text!r}; saw {seen}")

        await send_and_receive(alice, bob, "hello from alice, encrypted")
        await settle(alice)
        await send_and_receive(bob, alice, "hello from bob, encrypted")
    finally:
        await alice.close()
        await bob.close()


def test_matrix_nio_encrypted_exchange(server, tmp_path):
    pytest.importorskip("nio.crypto")
    asyncio.run(_nio_exchange(server.base_url, str(tmp_path)))


def test_matrix_js_sdk_rust_crypto(server):
    run_node_script(server, ROOT / "tests" / "clients" / "js" / "e2ee.mjs", timeout=300)
