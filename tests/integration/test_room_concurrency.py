"""One writer per room: parallel sends from several clients land once each, in one linear order,
with the event ids their senders were given; retried transaction ids return the first event.
And /sync long-polls are woken by a send, or return empty at their timeout."""

from __future__ import annotations

import json
import sqlite3
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness import d1_database


def register(server, prefix: str) -> dict:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = server.request("POST", "/_matrix/client/v3/register",
                       json={"username": name, "password": "pw-" + name, "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    body = r.json()
    return {"user_id": body["user_id"], "headers": {"Authorization": f"Bearer {body['access_token']}"}}


def call(server, method: str, path: str, user: dict, **kwargs) -> dict:
    r = server.request(method, path, headers=user["headers"], **kwargs)
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


@pytest.fixture(scope="module")
def room(server):
    """A public room with five members."""
    users = [register(server, f"writer{i}") for i in range(5)]
    room_id = call(server, "POST", "/_matrix/client/v3/createRoom", users[0],
                   json={"preset": "public_chat"})["room_id"]
    for user in users[1:]:
        call(server, "POST", f"/_matrix/client/v3/join/{room_id}", user, json={})
    return room_id, users


def stored_events(server, room_id: str) -> list[tuple[str, str, list, int]]:
    """(event id, type, prev_events, depth) of the room's events in stream order, from D1 itself."""
    with sqlite3.connect(f"file:{d1_database(server.state_dir)}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event_id, type, pdu FROM events WHERE room_id = ? ORDER BY stream_ordering",
                          (room_id,)).fetchall()
    return [(event_id, kind, json.loads(pdu)["prev_events"], json.loads(pdu)["depth"]) for event_id, kind, pdu in rows]


def test_fifty_parallel_sends_are_stored_once_in_one_linear_order(server, room):
    room_id, users = room

    def send(i: int) -> tuple[str, str]:
        user = users[i % len(users)]
        txn = f"par-{i}-{uuid.uuid4().hex}"
        body = call(server, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}", user,
                    json={"msgtype": "m.text", "body": f"parallel {i}"})
        return body["event_id"], f"parallel {i}"

    with ThreadPoolExecutor(max_workers=25) as pool:
        sent = list(pool.map(send, range(50)))
    given = {event_id for event_id, _ in sent}
    assert len(given) == 50, "two sends were given the same event id"

    events = stored_events(server, room_id)
    messages = [e for e in events if e[1] == "m.room.message"]
    assert sorted(e[0] for e in messages) == sorted(given), "stored messages differ from the ids senders got"
    # One linear order: every event's only prev_event is the event stored just before it.
    for (prev_id, _, _, prev_depth), (event_id, _, prev_events, depth) in zip(events, events[1:]):
        assert prev_events == [prev_id], f"{event_id} does not follow {prev_id}: {prev_events}"
        assert depth == prev_depth + 1

    # What clients read back is the same set, each once.
    chunk = call(server, "GET", f"/_matrix/client/v3/rooms/{room_id}/messages?dir=f&limit=200", users[0])["chunk"]
    read = [e["event_id"] for e in chunk if e["type"] == "m.room.message"]
    assert sorted(read) == sorted(given) and len(read) == len(set(read))


def test_a_retried_transaction_returns_the_first_event_id(server, room):
    room_id, users = room
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/retry-{uuid.uuid4().hex}"
    content = {"msgtype": "m.text", "body": "sent once"}
    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(lambda _: call(server, "PUT", path, users[1], json=content)["event_id"], range(10)))
    assert len(set(ids)) == 1, f"one transaction id gave several events: {set(ids)}"
    again = call(server, "PUT", path, users[1], json=content)["event_id"]
    assert again == ids[0]
    stored = [e for e in stored_events(server, room_id) if e[0] == ids[0]]
    assert len(stored) == 1
    # The same transaction id from another device of the same user is another transaction.
    other_device = server.request("POST", "/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": users[1]["user_id"]},
        "password": "pw-" + users[1]["user_id"][1:].split(":")[0]}).json()
    other = {"headers": {"Authorization": f"Bearer {other_device['access_token']}"}}
    assert call(server, "PUT", path, other, json=content)["event_id"] != ids[0]


def sync(server, user: dict, since: str | None = None, timeout_ms: int = 0) -> dict:
    query = f"?timeout={timeout_ms}" + (f"&since={since}" if since else "")
    r = server.request("GET", "/_matrix/client/v3/sync" + query, headers=user["headers"],
                       timeout=timeout_ms / 1000 + 10)
    assert r.status_code == 200, r.text
    return r.json()


def test_long_poll_is_woken_by_a_send_and_returns_the_event(server, room):
    room_id, users = room
    sender, reader = users[2], users[3]
    since = sync(server, reader)["next_batch"]
    after_start, after_return = [], []
    for i in range(20):
        result: dict = {}

        def poll():
            result["body"] = sync(server, reader, since, timeout_ms=30_000)
            result["returned"] = time.monotonic()

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.3)  # let the sync park (a send before it parks must be found too, see below)
        send_started = time.monotonic()
        event_id = call(server, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/wake-{i}-{uuid.uuid4().hex}",
                        sender, json={"msgtype": "m.text", "body": f"wake {i}"})["event_id"]
        sent = time.monotonic()
        poller.join(timeout=40)
        assert not poller.is_alive(), "the long-poll was not woken"
        timeline = result["body"]["rooms"]["join"][room_id]["timeline"]["events"]
        assert event_id in [e["event_id"] for e in timeline]
        after_start.append((result["returned"] - send_started) * 1000)
        # Negative when the woken sync arrives before the send's own response (it usually does).
        after_return.append((result["returned"] - sent) * 1000)
        since = result["body"]["next_batch"]
    print(f"\nlong-poll wake-up over {len(after_start)} runs: median {statistics.median(after_start):.1f} ms "
          f"(max {max(after_start):.1f}) after the send started; median {statistics.median(after_return):+.1f} ms "
          f"relative to the send's response")


def test_a_send_just_before_the_poll_parks_is_not_missed(server, room):
    room_id, users = room
    sender, reader = users[4], users[0]
    since = sync(server, reader)["next_batch"]
    event_id = call(server, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/early-{uuid.uuid4().hex}",
                    sender, json={"msgtype": "m.text", "body": "early"})["event_id"]
    started = time.monotonic()
    body = sync(server, reader, since, timeout_ms=20_000)
    assert time.monotonic() - started < 10, "a sync with news waited for its timeout"
    assert event_id in [e["event_id"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]]


def test_long_poll_returns_empty_after_its_timeout(server, room):
    _, users = room
    reader = users[1]
    since = sync(server, reader)["next_batch"]
    started = time.monotonic()
    body = sync(server, reader, since, timeout_ms=2_000)
    waited = time.monotonic() - started
    assert waited >= 1.9, f"returned after {waited:.2f} s, before its timeout"
    assert body["rooms"]["join"] == {} and body["rooms"]["invite"] == {} and body["rooms"]["leave"] == {}
    assert body["next_batch"]


def test_concurrent_senders_with_racing_retries_keep_each_senders_order(server, room):
    """Messages that reach the room's writer while it is busy are written together (group
    commit, src/rooms/object/queued.rs): each sender's messages still land in the order sent,
    once each, a retry racing its original gets the same event, a state event sent among them
    keeps its place, and every message has its notification rows for the other members."""
    room_id, users = room
    tag = uuid.uuid4().hex[:8]
    per_sender = 6

    def put(user: dict, txn: str, body: str) -> str:
        return call(server, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}", user,
                    json={"msgtype": "m.text", "body": body})["event_id"]

    def sender(k: int) -> list[tuple[str, str]]:
        user, sent = users[k], []
        with ThreadPoolExecutor(max_workers=2) as retries:
            for i in range(per_sender):
                txn, body = f"grp-{tag}-{k}-{i}", f"grp {tag} {k} {i}"
                # The original and its retry race each other into the room's queue.
                first, second = retries.map(lambda _: put(user, txn, body), range(2))
                assert first == second, f"a retry of {txn} got another event"
                sent.append((first, body))
        return sent

    def topic() -> str:
        return call(server, "PUT", f"/_matrix/client/v3/rooms/{room_id}/state/m.room.topic", users[0],
                    json={"topic": f"among {tag}"})["event_id"]

    with ThreadPoolExecutor(max_workers=len(users) + 1) as pool:
        futures = [pool.submit(sender, k) for k in range(len(users))]
        topic_future = pool.submit(topic)
        sent = [f.result() for f in futures]
        topic_id = topic_future.result()

    # A late retry of every transaction still answers the first event.
    for k, user in enumerate(users):
        for i, (event_id, body) in enumerate(sent[k]):
            assert put(user, f"grp-{tag}-{k}-{i}", body) == event_id

    events = stored_events(server, room_id)
    order = [e[0] for e in events]
    ids = [event_id for per in sent for event_id, _ in per]
    assert len(set(ids)) == len(users) * per_sender, "two transactions share an event"
    assert all(order.count(event_id) == 1 for event_id in ids + [topic_id]), "an event is missing or doubled"
    for per in sent:
        positions = [order.index(event_id) for event_id, _ in per]
        assert positions == sorted(positions), "a sender's messages are out of the order sent"
    for (prev_id, _, _, _), (event_id, _, prev_events, _) in zip(events, events[1:]):
        assert prev_events == [prev_id], f"{event_id} does not follow {prev_id}"

    with sqlite3.connect(f"file:{d1_database(server.state_dir)}?mode=ro", uri=True) as db:
        for k, per in enumerate(sent):
            for event_id, _ in per:
                notified = {u for (u,) in db.execute(
                    "SELECT u.key FROM events e JOIN json_each(e.push, '$.u') u WHERE e.event_id = ?",
                    (event_id,))}
                others = {u["user_id"] for j, u in enumerate(users) if j != k}
                assert notified == others, f"{event_id} notified {notified}, not {others}"
