"""Bounded work per request (docs/design.md invariant 5): the free plan allows 50 D1 queries per
request, so a sync must cost a fixed number of queries however many rooms the user is in, and
nothing a stranger sends may cost more. The Worker reports its D1 usage in X-D1-* headers when
EXPOSE_D1_USAGE is on (scripts/dev.sh). Also the limits of src/limits/: body sizes (413) and
rate limits (429), in the built Worker."""

from __future__ import annotations

import time
import uuid

import pytest

from harness import Homeserver

FREE_PLAN_QUERIES = 50


def register(server) -> dict:
    name = f"bounded-{uuid.uuid4().hex[:8]}"
    r = server.request("POST", "/_matrix/client/v3/register",
                       json={"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def queries(response) -> int:
    assert response.status_code == 200, response.text
    return int(response.headers["X-D1-Queries"])


def rooms_with_messages(server, user: dict, count: int) -> list[str]:
    rooms = []
    for i in range(count):
        r = server.request("POST", "/_matrix/client/v3/createRoom", headers=user, json={"name": f"room {i}"})
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]
        for j in range(3):
            r = server.request("PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{i}-{j}",
                               headers=user, json={"msgtype": "m.text", "body": f"message {j}"})
            assert r.status_code == 200, r.text
        rooms.append(room_id)
    return rooms


def test_sync_costs_the_same_number_of_queries_for_2_rooms_and_for_20(server):
    few, many = register(server), register(server)
    rooms_with_messages(server, few, 2)
    many_rooms = rooms_with_messages(server, many, 20)

    initial_few = server.request("GET", "/_matrix/client/v3/sync", headers=few)
    initial_many = server.request("GET", "/_matrix/client/v3/sync", headers=many)
    assert len(initial_many.json()["rooms"]["join"]) == 20
    assert queries(initial_many) == queries(initial_few), (queries(initial_few), queries(initial_many))
    assert queries(initial_many) < FREE_PLAN_QUERIES

    # An incremental sync where every one of the 20 rooms has news.
    since = initial_many.json()["next_batch"]
    for i, room_id in enumerate(many_rooms):
        server.request("PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/late{i}", headers=many,
                       json={"msgtype": "m.text", "body": "late"})
    incremental = server.request("GET", f"/_matrix/client/v3/sync?since={since}", headers=many)
    assert len(incremental.json()["rooms"]["join"]) == 20
    assert queries(incremental) < FREE_PLAN_QUERIES
    print(f"\nD1 queries per sync: initial {queries(initial_few)} (2 rooms) and {queries(initial_many)} "
          f"(20 rooms); incremental with 20 changed rooms {queries(incremental)}; rows read "
          f"{initial_many.headers['X-D1-Rows-Read']} for the 20-room initial sync")


# -- limits that hold under abuse (src/limits/) ------------------------------------------------------

def test_a_body_over_the_route_limit_is_413_too_large_and_changes_nothing(server):
    user = register(server)
    huge = {"name": "x" * (1024 * 1024 + 1)}
    r = server.request("POST", "/_matrix/client/v3/createRoom", headers=user, json=huge)
    assert r.status_code == 413, r.text
    assert r.json()["errcode"] == "M_TOO_LARGE"
    joined = server.request("GET", "/_matrix/client/v3/joined_rooms", headers=user)
    assert joined.json()["joined_rooms"] == []
    # Just under the limit is an ordinary request.
    fits = {"name": "x" * 1000}
    assert server.request("POST", "/_matrix/client/v3/createRoom", headers=user, json=fits).status_code == 200


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """An instance with small limits, as a deployment might tune them (README "Settings")."""
    hs = Homeserver(tmp_path_factory.mktemp("limited") / "state", env={"RATE_LIMITS": "send=3/1000,join=2/1000"})
    with hs:
        yield hs


def test_sends_and_joins_over_the_limit_are_429_with_retry_after_and_store_nothing(limited):
    user = register(limited)
    r = limited.request("POST", "/_matrix/client/v3/createRoom", headers=user, json={})
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message"
    for i in range(3):
        r = limited.request("PUT", f"{path}/ok{i}", headers=user, json={"msgtype": "m.text", "body": f"ok {i}"})
        assert r.status_code == 200, r.text
    refused = limited.request("PUT", f"{path}/over", headers=user, json={"msgtype": "m.text", "body": "over"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert 0 < refused.json()["retry_after_ms"] <= 60_000
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    chunk = limited.request("GET", f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50",
                            headers=user).json()["chunk"]
    bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
    assert sorted(bodies) == ["ok 0", "ok 1", "ok 2"]
    # Room creation counts as a join: one more is allowed, the next is refused.
    assert limited.request("POST", "/_matrix/client/v3/createRoom", headers=user, json={}).status_code == 200
    over = limited.request("POST", "/_matrix/client/v3/createRoom", headers=user, json={})
    assert over.status_code == 429 and over.json()["errcode"] == "M_LIMIT_EXCEEDED", over.text
    rooms = limited.request("GET", "/_matrix/client/v3/joined_rooms", headers=user).json()["joined_rooms"]
    assert len(rooms) == 2


def test_what_a_remote_server_can_ask_for_is_bounded(federation_pair, request):
    """A stranger's worst requests cost bounded work: a transaction of 50 near-limit state PDUs,
    /backfill and /get_missing_events with huge limits and thousands of event ids, /state_ids.
    Each answers within the free plan's 50 D1 queries of the Worker (room objects' queries are
    their own invocations), and a transaction over 50 PDUs or over the body limit is refused."""
    from fedsign import event_id
    from test_federation_hostile import Room
    from test_federation_peer import V3, q, record

    room = Room(federation_pair, preset="public_chat", name="bounded work")
    levels = room.alice.ok("GET", f"{V3}/rooms/{q(room.room_id)}/state/m.room.power_levels/")
    levels["users"][room.bob.user_id] = 100
    room.alice.set_state(room.room_id, "m.room.power_levels", levels)

    # 50 state events of about 60 KB each, chained: 3 MB in one transaction.
    tip = room.tip()
    prev, depth = tip["event_id"], tip["depth"]
    pdus = []
    for i in range(50):
        kind = "org.example.bounded"
        pdu = room.signer.pdu(room.version, {
            "room_id": room.room_id, "sender": room.bob.user_id, "type": kind, "state_key": f"k{i}",
            "content": {"blob": "x" * 60_000}, "prev_events": [prev], "depth": depth + 1,
            "auth_events": room.auth_events(room.bob.user_id, kind, f"k{i}"),
        })
        prev, depth = event_id(room.version, pdu), depth + 1
        pdus.append(pdu)
    began = time.monotonic()
    r = room.signer.send_transaction(f"bounded-{uuid.uuid4().hex}", pdus)
    record(request, "send_50_large_state_pdus_s", time.monotonic() - began)
    assert r.status_code == 200, r.text
    results = r.json()["pdus"]
    assert len(results) == 50 and all(result == {} for result in results.values()), results
    assert queries(r) < FREE_PLAN_QUERIES
    assert room.state_ids()[("org.example.bounded", "k49")] == prev

    too_many = room.signer.send_transaction(f"bounded-{uuid.uuid4().hex}", pdus + [pdus[0]])
    assert too_many.status_code == 400, too_many.text
    padding = [{"edu_type": "org.example.padding", "content": {"pad": "x" * (9 * 1024 * 1024)}}]
    status, answer = room.signer.declare_only("PUT", f"/_matrix/federation/v1/send/bounded-{uuid.uuid4().hex}",
                                              room.signer.transaction([], padding))
    assert status == 413 and answer["errcode"] == "M_TOO_LARGE", answer

    # More history than any one answer may carry.
    for i in range(60):
        room.alice.send(room.room_id, f"history {i}")
    tip = room.tip()["event_id"]
    fed = "/_matrix/federation/v1"
    backfill = room.signer.request("GET", f"{fed}/backfill/{q(room.room_id)}?v={q(tip)}&limit=1000000")
    assert len(backfill.json()["pdus"]) == 100
    assert queries(backfill) < FREE_PLAN_QUERIES
    unknown = [f"$unknown{i}" for i in range(2000)]
    missing = room.signer.request("POST", f"{fed}/get_missing_events/{q(room.room_id)}",
                                  {"earliest_events": [], "latest_events": [tip] + unknown, "limit": 1000000})
    assert len(missing.json()["events"]) == 100
    assert queries(missing) < FREE_PLAN_QUERIES
    state_ids = room.signer.request("GET", f"{fed}/state_ids/{q(room.room_id)}?event_id={q(tip)}")
    assert len(state_ids.json()["pdu_ids"]) >= 55
    assert queries(state_ids) < FREE_PLAN_QUERIES
    print(f"\nD1 queries: send of 50 large state PDUs {queries(r)}, backfill {queries(backfill)}, "
          f"get_missing_events with 2001 latest {queries(missing)}, state_ids {queries(state_ids)}")
