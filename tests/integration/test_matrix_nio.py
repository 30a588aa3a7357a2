"""A real client library against the client-server API: matrix-nio (the Python SDK bots use).

Two fresh users register, one logs in again, they share a room and exchange messages, and both
log out. nio does not raise on a failed request: it returns an *Error response, so every response
is checked for its success type. The error cases are plain HTTP requests, two of them also through nio.

MATRIX_EDGE_TEST_BASE_URL=http://127.0.0.1:8008 points these tests at another homeserver (a local
Synapse with open registration and relaxed rate limits) instead of starting our own: they were
written against Synapse first.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass

import pytest
import requests
from nio import (AsyncClient, AsyncClientConfig, InviteMemberEvent, JoinResponse, LoginResponse,
                 LogoutResponse, RegisterResponse, RoomCreateResponse, RoomInviteResponse,
                 RoomMessageText, RoomSendResponse, SyncResponse)

PASSWORD = "correct horse battery staple"


@dataclass
class Target:
    base_url: str

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self.base_url + path, **kwargs)


@pytest.fixture(scope="module")
def homeserver(request) -> Target:
    """The homeserver under test: ours (the session `server`), or the one the environment names."""
    override = os.environ.get("MATRIX_EDGE_TEST_BASE_URL")
    if override:
        return Target(override.rstrip("/"))
    return Target(request.getfixturevalue("server").base_url)


def expect(response, success_type, what: str):
    """nio hands back an error response instead of raising: name what failed and what came back."""
    if not isinstance(response, success_type):
        http = getattr(response, "transport_response", None)
        request = f" ({http.method} {http.url.path_qs} -> HTTP {http.status})" if http is not None else ""
        pytest.fail(f"{what}: expected {success_type.__name__}, got {type(response).__name__}: "
                    f"{getattr(response, 'status_code', '')} {getattr(response, 'message', '')}{request}",
                    pytrace=False)
    return response


def new_client(base_url: str, user: str = "", device_id: str | None = None) -> AsyncClient:
    # No encryption, so the same requests go out whether or not nio's e2e extra is installed.
    # Bounded retries: by default nio retries timeouts and 429s forever, which would hang a test.
    config = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False,
                               max_timeouts=2, max_limit_exceeded=0, request_timeout=30)
    return AsyncClient(base_url, user, device_id=device_id, config=config)


def fresh_localpart(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def sync_until(client: AsyncClient, what: str, found, *, timeout_ms: int = 5000,
                     attempts: int = 5):
    """Long-polls from the client's last token until `found(response)` is truthy; returns it.

    A server may answer a long poll early with something else (a receipt, a presence change),
    so a few rounds are allowed; a server that ignores `since` and `timeout` still passes
    quickly, but one that never delivers fails after `attempts` rounds."""
    assert client.next_batch, "sync_until needs an earlier sync's token"
    seen = []
    for _ in range(attempts):
        since = client.next_batch
        response = expect(await client.sync(timeout=timeout_ms, since=since), SyncResponse,
                          f"{client.user_id}'s sync since {since} waiting for {what}")
        result = found(response)
        if result:
            return response, result
        seen.append(summarize(response))
    pytest.fail(f"{client.user_id}'s sync never showed {what}; it showed (nio's parse):\n"
                + "\n".join(map(str, seen)))


def summarize(response: SyncResponse) -> dict:
    """What nio made of a sync: events it could not validate show up as BadEvent classes."""
    rooms = response.rooms
    return {
        "next_batch": response.next_batch,
        "invite": {r: [type(e).__name__ for e in info.invite_state] for r, info in rooms.invite.items()},
        "join": {r: [f"{type(e).__name__}:{getattr(e, 'event_id', None)}" for e in info.timeline.events]
                 for r, info in rooms.join.items()},
    }


def timeline_messages(response: SyncResponse, room_id: str) -> list[RoomMessageText]:
    room = response.rooms.join.get(room_id)
    if room is None:
        return []
    return [e for e in room.timeline.events if isinstance(e, RoomMessageText)]


async def conversation(base_url: str) -> None:
    alice = new_client(base_url)
    bob = new_client(base_url)
    relogged = None
    try:
        a_name, b_name = fresh_localpart("alice"), fresh_localpart("bob")
        registered = expect(await alice.register(a_name, PASSWORD, "nio alice"), RegisterResponse,
                            f"register {a_name}")
        assert registered.user_id.startswith(f"@{a_name}:") and registered.access_token
        assert registered.device_id, "register must return a device_id"
        assert alice.access_token == registered.access_token and alice.user_id == registered.user_id
        expect(await bob.register(b_name, PASSWORD, "nio bob"), RegisterResponse, f"register {b_name}")
        assert bob.user_id.startswith(f"@{b_name}:")

        # A second device for bob by password (m.login.password with a user identifier).
        relogged = new_client(base_url, bob.user_id)
        login = expect(await relogged.login(PASSWORD, device_name="nio bob again"), LoginResponse,
                       f"login {bob.user_id} with a password")
        assert login.user_id == bob.user_id
        assert login.access_token and login.access_token != bob.access_token
        assert login.device_id and login.device_id != bob.device_id

        # Initial syncs give each side a `since` token.
        expect(await alice.sync(timeout=0, full_state=True), SyncResponse, "alice's initial sync")
        expect(await bob.sync(timeout=0, full_state=True), SyncResponse, "bob's initial sync")
        assert alice.next_batch and bob.next_batch, "sync must return next_batch"

        created = expect(await alice.room_create(name="nio test room"), RoomCreateResponse,
                         "alice creates a room")
        room_id = created.room_id
        assert room_id.startswith("!"), room_id
        expect(await alice.room_invite(room_id, bob.user_id), RoomInviteResponse,
               f"alice invites bob to {room_id}")

        def invited(response: SyncResponse):
            room = response.rooms.invite.get(room_id)
            if room is None:
                return None
            members = [e for e in room.invite_state
                       if isinstance(e, InviteMemberEvent) and e.state_key == bob.user_id]
            return members or None

        _, members = await sync_until(bob, f"the invite to {room_id}", invited)
        assert members[-1].membership == "invite" and members[-1].sender == alice.user_id

        joined = expect(await bob.join(room_id), JoinResponse, f"bob joins {room_id}")
        assert joined.room_id == room_id

        sent = expect(await alice.room_send(room_id, "m.room.message",
                                            {"msgtype": "m.text", "body": "hello bob"}),
                      RoomSendResponse, "alice sends a message")
        assert sent.event_id.startswith("$"), sent.event_id

        def alices_message(response: SyncResponse):
            return [m for m in timeline_messages(response, room_id) if m.event_id == sent.event_id]

        _, (seen,) = await sync_until(bob, f"alice's message {sent.event_id}", alices_message)
        assert seen.sender == alice.user_id and seen.body == "hello bob"
        assert seen.server_timestamp > 0

        reply = expect(await bob.room_send(room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": "hi alice"}),
                       RoomSendResponse, "bob replies")
        assert reply.event_id != sent.event_id

        def bobs_reply(response: SyncResponse):
            return [m for m in timeline_messages(response, room_id) if m.event_id == reply.event_id]

        _, (heard,) = await sync_until(alice, f"bob's reply {reply.event_id}", bobs_reply)
        assert heard.sender == bob.user_id and heard.body == "hi alice"

        # Logging out ends exactly the token it was sent with.
        tokens = {"alice": alice.access_token, "bob": bob.access_token}
        expect(await alice.logout(), LogoutResponse, "alice logs out")
        expect(await bob.logout(), LogoutResponse, "bob logs out")
        for who, token in tokens.items():
            response = await asyncio.to_thread(
                requests.get, base_url + "/_matrix/client/v3/sync", params={"timeout": "0"},
                headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert response.status_code == 401, (who, response.status_code, response.text)
            assert response.json()["errcode"] == "M_UNKNOWN_TOKEN", (who, response.text)
        # bob's other device is still logged in.
        still = expect(await relogged.sync(timeout=0), SyncResponse, "bob's second device syncs")
        assert room_id in still.rooms.join
        expect(await relogged.logout(), LogoutResponse, "bob's second device logs out")
    finally:
        for client in (alice, bob, relogged):
            if client is not None:
                await client.close()


def test_two_nio_clients_register_share_a_room_and_log_out(homeserver):
    asyncio.run(conversation(homeserver.base_url))


def register(homeserver: Target, localpart: str, *, expect_status: int = 200) -> requests.Response:
    """POST /register as nio does it: m.login.dummy on the first request. A server that first wants
    a UIA session (401 with `session`) gets the dummy stage again with that session."""
    body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
            "initial_device_display_name": "error cases"}
    response = homeserver.request("POST", "/_matrix/client/v3/register", json=body)
    if response.status_code == 401 and "session" in response.json():
        body["auth"]["session"] = response.json()["session"]
        response = homeserver.request("POST", "/_matrix/client/v3/register", json=body)
    assert response.status_code == expect_status, (localpart, response.status_code, response.text)
    return response


def assert_error(response: requests.Response, status: int, errcode: str, what: str) -> None:
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), what
    body = response.json()
    # nio, for one, drops errcode and message both when `error` is missing.
    assert body.get("errcode") == errcode and isinstance(body.get("error"), str), f"{what}: {body}"


def test_error_cases_have_the_spec_status_and_errcode(homeserver):
    alice, bob = fresh_localpart("alice"), fresh_localpart("bob")
    alice_token = register(homeserver, alice).json()["access_token"]
    bob_token = register(homeserver, bob).json()["access_token"]
    auth = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731

    wrong = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice},
             "password": "not " + PASSWORD}
    assert_error(homeserver.request("POST", "/_matrix/client/v3/login", json=wrong),
                 403, "M_FORBIDDEN", "login with a wrong password")

    assert_error(register(homeserver, alice, expect_status=400), 400, "M_USER_IN_USE",
                 "register an existing username")

    room = homeserver.request("POST", "/_matrix/client/v3/createRoom", json={}, headers=auth(bob_token))
    assert room.status_code == 200, room.text
    room_id = room.json()["room_id"]
    outsider = homeserver.request(
        "PUT", f"/_matrix/client/v3/rooms/{requests.utils.quote(room_id, safe='')}/send/m.room.message/t1",
        json={"msgtype": "m.text", "body": "let me in"}, headers=auth(alice_token))
    assert_error(outsider, 403, "M_FORBIDDEN", "send to a room the sender is not in")

    unknown = "syt_" + secrets.token_urlsafe(24)
    assert_error(homeserver.request("GET", "/_matrix/client/v3/sync", params={"timeout": "0"},
                                    headers=auth(unknown)),
                 401, "M_UNKNOWN_TOKEN", "sync with an unknown access token")

    assert_error(homeserver.request("POST", "/_matrix/client/v3/createRoom", data=b'{"name": "half',
                                    headers={**auth(alice_token), "Content-Type": "application/json"}),
                 400, "M_NOT_JSON", "createRoom with a malformed JSON body")

    # The same failures as nio reports them: an error response carrying the errcode, no exception.
    async def through_nio():
        client = new_client(homeserver.base_url, alice)  # a bare localpart, as m.id.user
        try:
            failed = await client.login("not " + PASSWORD)
            assert not isinstance(failed, LoginResponse), failed
            assert failed.status_code == "M_FORBIDDEN", failed
            client.access_token = unknown
            failed = await client.sync(timeout=0)
            assert not isinstance(failed, SyncResponse), failed
            assert failed.status_code == "M_UNKNOWN_TOKEN", failed
        finally:
            await client.close()

    asyncio.run(through_nio())
