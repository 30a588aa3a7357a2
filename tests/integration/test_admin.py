"""The Synapse-compatible admin API, driven by `synadm` (PyPI), the admin CLI of Synapse
operators: users (create, modify, list, details, password, whois, deactivate), rooms (list,
details, members, state, delete and its status), registration tokens and media (a user's uploads,
quarantine, delete). The admin is made by shared-secret registration with `admin: true`; a plain
user is refused with 403 `M_FORBIDDEN`.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness import Homeserver

V3 = "/_matrix/client/v3"
DEV_SHARED_SECRET = "matrix-edge-dev-shared-secret"
SYNADM = Path(sys.executable).parent / "synadm"
PASSWORD = "correct horse battery staple"


def shared_secret_register(hs: Homeserver, name: str, admin: bool) -> dict:
    nonce = hs.get("/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(DEV_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), name.encode(), PASSWORD.encode(),
                             b"admin" if admin else b"notadmin"]))
    answer = hs.request("POST", "/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": name, "password": PASSWORD, "admin": admin,
        "mac": mac.hexdigest()})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    base = tmp_path_factory.mktemp("admin")
    with Homeserver(base / "state") as hs:
        me = shared_secret_register(hs, "root", admin=True)
        config = base / "synadm.yaml"
        config.write_text(json.dumps({
            "user": me["user_id"], "token": me["access_token"], "base_url": hs.base_url,
            "admin_path": "/_synapse/admin", "matrix_path": "/_matrix", "timeout": 30,
            "format": "json", "ssl_verify": False, "server_discovery": "well-known",
            "homeserver": hs.server_name, "protocol": "http"}))

        def synadm(*args: str) -> object:
            done = subprocess.run([str(SYNADM), "-c", str(config), "--batch", "-o", "json", *args],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"synadm {args}: {done.stdout}\n{done.stderr}"
            try:
                return json.loads(done.stdout) if done.stdout.strip() else None
            except json.JSONDecodeError:
                return done.stdout  # `user modify` prints prose around its JSON

        yield hs, me, synadm


def call(hs, method, path, token=None, **kwargs):
    if token:
        kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
    response = hs.request(method, path, **kwargs)
    assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text}"
    return response


def test_server_version_and_users(admin):
    hs, me, synadm = admin
    assert "server_version" in synadm("version")

    bob = f"@bob:{hs.server_name}"
    synadm("user", "modify", bob, "--password", PASSWORD, "--display-name", "Bob")
    details = synadm("user", "details", bob)
    assert details["name"] == bob and details["displayname"] == "Bob"
    assert details["admin"] is False and details["deactivated"] is False
    listed = synadm("user", "list")
    names = [u["name"] for u in listed["users"]]
    assert bob in names and me["user_id"] in names and listed["total"] == len(names)

    login = call(hs, "POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": PASSWORD})
    assert login.status_code == 200, login.text
    old_token = login.json()["access_token"]

    synadm("user", "password", bob, "--password", "another password entirely")
    assert call(hs, "GET", f"{V3}/account/whoami", old_token).status_code == 401
    relogin = call(hs, "POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": "another password entirely"})
    assert relogin.status_code == 200
    token = relogin.json()["access_token"]

    whois = synadm("user", "whois", bob)
    assert whois["user_id"] == bob and "devices" in whois

    synadm("user", "deactivate", bob)
    assert synadm("user", "details", bob)["deactivated"] is True
    gone = call(hs, "GET", f"{V3}/account/whoami", token)
    assert gone.status_code == 401 and gone.json()["errcode"] == "M_UNKNOWN_TOKEN"
    refused = call(hs, "POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": "another password entirely"})
    assert refused.status_code in (401, 403)


def test_rooms_are_listed_inspected_and_deleted(admin):
    hs, me, synadm = admin
    carol = shared_secret_register(hs, "carol", admin=False)
    room = call(hs, "POST", f"{V3}/createRoom", carol["access_token"],
                json={"name": "Garden", "room_alias_name": "garden"}).json()["room_id"]

    rooms = synadm("room", "list")
    assert room in [r["room_id"] for r in rooms["rooms"]]
    assert rooms["total_rooms"] >= 1 and rooms["offset"] == 0
    found = synadm("room", "search", "garden")
    assert any(r["room_id"] == room for r in found["rooms"])
    details = synadm("room", "details", room)
    assert details["name"] == "Garden" and details["joined_local_members"] == 1
    assert details["canonical_alias"] == f"#garden:{hs.server_name}"
    assert synadm("room", "members", room)["members"] == [carol["user_id"]]
    state_types = {e["type"] for e in synadm("room", "state", room)["state"]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= state_types
    joined = synadm("user", "membership", carol["user_id"], "--ids")
    assert joined["joined_rooms"] == [room] and joined["total"] == 1

    deleted = synadm("room", "delete", room, "--block")
    assert "delete_id" in deleted
    status = synadm("room", "delete-status", "--room-id", room)
    assert status["results"][0]["status"] == "complete"
    assert status["results"][0]["shutdown_room"]["kicked_users"] == [carol["user_id"]]
    rejoin = call(hs, "POST", f"{V3}/join/{room}", carol["access_token"], json={})
    assert rejoin.status_code == 403


def test_registration_tokens(admin):
    hs, me, synadm = admin
    made = synadm("regtok", "new", "--token", "garden-party", "--uses-allowed", "2")
    assert made == {"token": "garden-party", "uses_allowed": 2, "pending": 0, "completed": 0,
                    "expiry_time": None}
    assert "garden-party" in [t["token"] for t in synadm("regtok", "list")["registration_tokens"]]
    synadm("regtok", "update", "garden-party", "--uses-allowed", "5")
    assert synadm("regtok", "details", "garden-party")["uses_allowed"] == 5
    valid = call(hs, "GET", f"{V3.replace('v3', 'v1')}/register/m.login.registration_token/validity",
                 params={"token": "garden-party"})
    assert valid.status_code == 200
    synadm("regtok", "delete", "garden-party")
    missing = call(hs, "GET", "/_synapse/admin/v1/registration_tokens/garden-party", me["access_token"])
    assert missing.status_code == 404 and missing.json()["errcode"] == "M_NOT_FOUND"


def test_media_is_listed_quarantined_and_deleted(admin):
    hs, me, synadm = admin
    erin = shared_secret_register(hs, "erin", admin=False)
    token = erin["access_token"]

    def upload(data: bytes, name: str) -> str:
        answer = call(hs, "POST", f"/_matrix/media/v3/upload?filename={name}", token,
                      data=data, headers={"Content-Type": "text/plain"})
        assert answer.status_code == 200, answer.text
        return answer.json()["content_uri"].rsplit("/", 1)[1]

    def download(media_id: str) -> int:
        return call(hs, "GET", f"/_matrix/client/v1/media/download/{hs.server_name}/{media_id}",
                    token).status_code

    small, big = upload(b"small", "small.txt"), upload(b"a bigger file", "big.txt")
    listed = synadm("media", "list", "--user-id", erin["user_id"], "--sort", "media_length",
                    "--reverse", "--timestamp")
    assert listed["total"] == 2 and "next_token" not in listed
    assert [m["media_id"] for m in listed["media"]] == [big, small]
    assert listed["media"][0]["media_length"] == 13
    assert listed["media"][0]["upload_name"] == "big.txt"
    assert listed["media"][0]["quarantined_by"] is None
    paged = synadm("media", "list", "--user-id", erin["user_id"], "--limit", "1",
                   "--sort", "media_length")
    assert [m["media_id"] for m in paged["media"]] == [small] and paged["next_token"] == 1

    # A plain user can neither list nor quarantine.
    refused = call(hs, "POST", f"/_synapse/admin/v1/media/quarantine/{hs.server_name}/{small}",
                   token, json={})
    assert refused.status_code == 403 and refused.json()["errcode"] == "M_FORBIDDEN"
    assert download(small) == 200

    synadm("media", "quarantine", "--media-id", small)
    gone = call(hs, "GET", f"/_matrix/client/v1/media/download/{hs.server_name}/{small}", token)
    assert gone.status_code == 404 and gone.json()["errcode"] == "M_NOT_FOUND"
    info = call(hs, "GET", f"/_synapse/admin/v1/media/{hs.server_name}/{small}",
                me["access_token"]).json()["media_info"]
    assert info["quarantined_by"] == me["user_id"]
    synadm("media", "unquarantine", "--media-id", small)
    assert download(small) == 200

    deleted = synadm("media", "delete", "--media-id", big)
    assert deleted == {"deleted_media": [big], "total": 1}
    assert download(big) == 404
    assert synadm("media", "list", "--user-id", erin["user_id"])["total"] == 1
    remote = call(hs, "DELETE", "/_synapse/admin/v1/media/elsewhere.example/abc",
                  me["access_token"])
    assert remote.status_code == 400


def test_a_thumbnail_served_again_is_refused_once_quarantined_or_deleted(admin):
    """A thumbnail asked for again is served from the Worker's memory (src/media/memory.rs), but
    only while the request's own D1 rows say it is there: quarantine and deletion refuse it at
    once."""
    hs, _, synadm = admin
    frank = shared_secret_register(hs, "frank", admin=False)
    token = frank["access_token"]
    picture = io.BytesIO()
    Image.effect_noise((400, 300), 40).convert("RGB").save(picture, format="JPEG")
    answer = call(hs, "POST", "/_matrix/media/v3/upload", token, data=picture.getvalue(),
                  headers={"Content-Type": "image/jpeg"})
    media_id = answer.json()["content_uri"].rsplit("/", 1)[1]
    path = f"/_matrix/client/v1/media/thumbnail/{hs.server_name}/{media_id}?width=96&height=96&method=crop"

    def thumbnail() -> tuple[int, bytes]:
        got = call(hs, "GET", path, token)
        return got.status_code, got.content

    made = thumbnail()
    assert made[0] == 200 and Image.open(io.BytesIO(made[1])).size == (96, 96)
    assert thumbnail() == made
    synadm("media", "quarantine", "--media-id", media_id)
    assert thumbnail()[0] == 404
    synadm("media", "unquarantine", "--media-id", media_id)
    assert thumbnail() == made
    assert synadm("media", "delete", "--media-id", media_id)["total"] == 1
    assert thumbnail()[0] == 404


def test_everyone_else_is_refused(admin):
    hs, me, synadm = admin
    dave = shared_secret_register(hs, "dave", admin=False)
    for method, path in [("GET", "/_synapse/admin/v2/users"),
                         ("GET", "/_synapse/admin/v1/rooms"),
                         ("PUT", f"/_synapse/admin/v2/users/@eve:{hs.server_name}"),
                         ("POST", "/_synapse/admin/v1/registration_tokens/new")]:
        answer = call(hs, method, path, dave["access_token"], json={"admin": True})
        assert answer.status_code == 403 and answer.json()["errcode"] == "M_FORBIDDEN", path
    assert call(hs, "GET", f"/_synapse/admin/v2/users/@eve:{hs.server_name}",
                me["access_token"]).status_code == 404
