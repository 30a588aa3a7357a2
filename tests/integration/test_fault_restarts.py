"""The runtime dies under load and nothing is lost or duplicated (issue 17, docs/security.md).

Three of our users send into three rooms, round robin, while a Synapse user sends into the same
rooms over federation. Twice, our whole local runtime (wrangler and workerd, SIGKILL: no clean
shutdown) is killed mid-load and started again on the same port and the same state directory.
Clients do what real clients do: a send that failed (connection refused or reset, timeout, 5xx) is
retried with the same transaction id until it gets an answer. Afterwards:

- every message a client got an event id for is stored exactly once, under that event id
  (idempotency of transaction ids across a crash), and nothing else of theirs is;
- each room has one order: our client API pages the room's messages in the order D1 stored them,
  each once;
- every PDU the Synapse user sent is in our D1 (received, or fetched when a later PDU named it);
- every message of ours reached Synapse (the destination queues, kept in Durable Object storage,
  delivered what was queued before and after the crashes).

The numbers are printed (run with -s) and recorded in the junit properties.
"""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import threading
import time

import requests

from harness import d1_database
from test_federation_peer import V3, our_user, q, record, synapse_user

ROOMS = 3
CLIENTS = 3
RESTARTS = 2
# How long a client keeps retrying one send: covers a restart (migrations and wrangler start).
RETRY_FOR_S = 90
CONVERGE_S = 60


class Sender:
    """One client's loop: a message per round into the next room, retried with its transaction id
    until it is answered. Records what it was told."""

    def __init__(self, pair, user, rooms: list[str], label: str, stop: threading.Event):
        self.pair, self.user, self.rooms, self.label, self.stop = pair, user, rooms, label, stop
        self.sent: list[tuple[str, str, str]] = []  # (room, body, event id)
        self.retries = 0
        self.successes_at: list[float] = []
        self.error: str | None = None

    def send_until_answered(self, room_id: str, txn: str, body: str) -> str:
        path = f"{V3}/rooms/{q(room_id)}/send/m.room.message/{txn}"
        end = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                r = requests.put(self.pair.ours.base_url + path, json={"msgtype": "m.text", "body": body},
                                 headers={"Authorization": f"Bearer {self.user.token}"},
                                 verify=str(self.pair.ca), timeout=10)
                if r.status_code == 200:
                    return r.json()["event_id"]
                if r.status_code < 500 and r.status_code != 429:
                    raise AssertionError(f"{body}: {r.status_code} {r.text}")
            except requests.RequestException:
                pass
            if time.monotonic() > end:
                raise AssertionError(f"{body} was never answered within {RETRY_FOR_S}s")
            self.retries += 1
            time.sleep(0.2)

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                room_id = self.rooms[n % len(self.rooms)]
                body = f"{self.label} {n}"
                event_id = self.send_until_answered(room_id, f"{self.label}-{n}", body)
                self.sent.append((room_id, body, event_id))
                self.successes_at.append(time.monotonic())
                n += 1
                time.sleep(0.05)
        except Exception as e:  # reported by the test, not lost in the thread
            self.error = repr(e)


def synapse_loop(bob, rooms: list[str], stop: threading.Event, sent: list, errors: list) -> None:
    """Synapse's user: a message every 0.4 s, round robin (Synapse itself never goes down)."""
    n = 0
    try:
        while not stop.is_set():
            room_id = rooms[n % len(rooms)]
            body = f"synapse {n}"
            sent.append((room_id, body, bob.send(room_id, body)))
            n += 1
            time.sleep(0.4)
    except Exception as e:
        errors.append(repr(e))


def our_messages(pair, rooms: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(event id, body) of every m.room.message per room, in D1's stream order."""
    with sqlite3.connect(f"file:{d1_database(pair.ours.state_dir)}?mode=ro", uri=True) as db:
        out = {}
        for room_id in rooms:
            rows = db.execute("SELECT event_id, pdu FROM events WHERE room_id = ? AND type = 'm.room.message' "
                              "ORDER BY stream_ordering", (room_id,)).fetchall()
            out[room_id] = [(eid, json.loads(pdu)["content"].get("body")) for eid, pdu in rows]
        return out


def synapse_event_ids(pair) -> set[str]:
    with sqlite3.connect(f"file:{pair.synapse.directory / 'homeserver.db'}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT event_id FROM events")}


def paged_ids(client, room_id: str) -> list[str]:
    """Every message of the room as our client API pages it, oldest first."""
    ids, token = [], None
    while True:
        params = {"dir": "b", "limit": 100, **({"from": token} if token else {})}
        page = client.ok("GET", f"{V3}/rooms/{q(room_id)}/messages", params=params)
        ids += [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
        token = page.get("end")
        if not page["chunk"] or not token:
            return list(reversed(ids))


def test_two_runtime_kills_under_load_lose_nothing_and_duplicate_nothing(federation_pair, request):
    pair = federation_pair
    began = time.monotonic()
    users = [our_user(pair, f"fault{i}") for i in range(CLIENTS)]
    bob = synapse_user(pair, "faultbob")
    bob.sync_once(0)
    rooms = []
    for i in range(ROOMS):
        room_id = users[0].create_room(preset="public_chat", name=f"fault {i}")
        for user in users[1:]:
            user.join(room_id)
        bob.join(room_id, via=[pair.our_name])
        rooms.append(room_id)
    users[0].sync_once(0)
    for room_id in rooms:
        users[0].wait(lambda c, r=room_id: c.saw_membership(r, bob.user_id, "join"), "bob's join")
    setup_s = time.monotonic() - began

    stop = threading.Event()
    run = secrets.token_hex(3)
    senders = [Sender(pair, user, rooms, f"fault-{run}-c{k}", stop) for k, user in enumerate(users)]
    synapse_sent: list = []
    synapse_errors: list = []
    threads = [threading.Thread(target=s.run) for s in senders]
    threads.append(threading.Thread(target=synapse_loop, args=(bob, rooms, stop, synapse_sent, synapse_errors)))
    for thread in threads:
        thread.start()
    recoveries = []
    try:
        time.sleep(3)
        for _ in range(RESTARTS):
            killed = time.monotonic()
            pair.ours.stop(signal.SIGKILL)
            pair.ours.start()
            # Recovered: every client has had a send answered since the kill.
            while not all(s.successes_at and s.successes_at[-1] > killed for s in senders):
                assert time.monotonic() - killed < RETRY_FOR_S, "the clients never recovered"
                assert not any(s.error for s in senders), [s.error for s in senders]
                time.sleep(0.1)
            recoveries.append(time.monotonic() - killed)
            time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=RETRY_FOR_S + 15)
    assert not [s.error for s in senders if s.error], [s.error for s in senders]
    assert not synapse_errors, synapse_errors

    # One more message from each side per room: a PDU naming whatever Synapse sent while we were
    # down (fetched as missing), and new work for our destination queue.
    for room_id in rooms:
        synapse_sent.append((room_id, "synapse final", bob.send(room_id, "synapse final")))
        final = users[0].send(room_id, f"fault-{run} final")
        senders[0].sent.append((room_id, f"fault-{run} final", final))
    ours_sent = [m for s in senders for m in s.sent]

    # Converge: Synapse's PDUs all here, ours all there.
    converge_began = time.monotonic()
    while True:
        stored = our_messages(pair, rooms)
        stored_ids = {eid for room in stored.values() for eid, _ in room}
        at_synapse = synapse_event_ids(pair)
        missing_here = [m for m in synapse_sent if m[2] not in stored_ids]
        missing_there = [m for m in ours_sent if m[2] not in at_synapse]
        if not missing_here and not missing_there or time.monotonic() - converge_began > CONVERGE_S:
            break
        time.sleep(0.5)
    converge_s = time.monotonic() - converge_began

    # Every client message once, under the event id its sender was given; no other copies.
    duplicates = 0
    wrong_ids = []
    for room_id, body, event_id in ours_sent:
        copies = [eid for eid, b in stored[room_id] if b == body]
        duplicates += max(0, len(copies) - 1)
        if copies != [event_id]:
            wrong_ids.append((room_id, body, event_id, copies))
    ours_prefix = f"fault-{run}-"
    strays = [b for room in stored.values() for _, b in room
              if b and b.startswith(ours_prefix) and b not in {m[1] for m in ours_sent}]
    # One order per room: what clients page is D1's order, each message once.
    orders_agree = all(paged_ids(users[1], room_id) == [eid for eid, _ in stored[room_id]] for room_id in rooms)

    numbers = {
        "client_messages_sent": len(ours_sent),
        "synapse_messages_sent": len(synapse_sent),
        "restarts": len(recoveries),
        "client_retries": sum(s.retries for s in senders),
        "client_messages_found_once": len(ours_sent) - len(wrong_ids),
        "synapse_messages_found": len(synapse_sent) - len(missing_here),
        "ours_delivered_to_synapse": len(ours_sent) - len(missing_there),
        "duplicates": duplicates,
        "seconds_to_recover": [round(r, 1) for r in recoveries],
        "seconds_to_converge_after_load": round(converge_s, 1),
        "setup_s": round(setup_s, 1),
    }
    print(f"\n[fault] {json.dumps(numbers)}")
    for name, value in numbers.items():
        request.node.user_properties.append((name, value))
    record(request, "fault_test_total_s", time.monotonic() - began)

    assert len(recoveries) == RESTARTS
    assert duplicates == 0 and not wrong_ids, wrong_ids[:5]
    assert not strays, strays[:5]
    assert not missing_here, f"Synapse's PDUs missing here: {missing_here[:5]}"
    assert not missing_there, f"ours never delivered to Synapse: {missing_there[:5]}"
    assert orders_agree, "a room's paged order differs from the stored order"
