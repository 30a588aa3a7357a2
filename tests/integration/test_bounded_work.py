"""Bounded work per request (DESIGN.md invariant 5): the free plan allows 50 D1 queries per
request, so a sync must cost a fixed number of queries however many rooms the user is in. The
Worker reports its D1 usage in X-D1-* headers when EXPOSE_D1_USAGE is on (scripts/dev.sh)."""

from __future__ import annotations

import uuid

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
