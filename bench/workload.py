"""The workload, identical for both servers. Each scenario takes a prepared `Target` and returns
samples; the runner decides how often and in which order (alternating servers)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from client import Client, timeline_event_ids
from servers import cpu_seconds


class Target:
    """One server with the users and rooms the scenarios need."""

    def __init__(self, server):
        self.server = server
        self.name = server.name
        self.errors: Counter = Counter()
        self.anon = Client(server.base_url, self.errors)

    def clone(self, c: Client) -> Client:
        """The same user on a connection of its own (one per thread)."""
        return Client(c.base_url, self.errors, c.token, c.user_id)

    def cpu(self) -> float:
        return cpu_seconds(self.server.pids())

    def cpu_all(self) -> float:
        return cpu_seconds(self.server.all_pids())

    def prepare(self, *, senders: int, sync_rooms: int, sync_room_messages: int, pagination_events: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.alice = self.anon.register(f"alice{tag}")
        self.bob = self.anon.register(f"bob{tag}")
        self.carol = self.anon.register(f"carol{tag}")
        with ThreadPoolExecutor(4) as pool:
            self.senders = list(pool.map(lambda i: self.anon.register(f"s{i}x{tag}"), range(senders)))
        # The room of the latency scenarios: alice writes, bob reads.
        self.room = self.alice.create_room()
        self.bob.join(self.room)
        _, body = self.bob.sync()
        self.bob_since = body["next_batch"]
        # Throughput: one room all senders joined, and one room per sender.
        self.shared_room = self.alice.create_room()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda s: s.join(self.shared_room), self.senders))
            self.own_rooms = list(pool.map(lambda s: s.create_room(), self.senders))
        # Initial sync: carol in `sync_rooms` rooms of `sync_room_messages` messages each.
        self.carol_rooms = [self.carol.create_room() for _ in range(sync_rooms)]
        self.fill([(self.carol, r) for r in self.carol_rooms], sync_room_messages)
        # Back-pagination: one room of `pagination_events` messages.
        self.pagination_room = self.alice.create_room()
        self.fill([(self.alice, self.pagination_room)], pagination_events)

    def fill(self, writers: list[tuple[Client, str]], per_room: int, threads: int = 4) -> None:
        jobs = [(c, room, i) for c, room in writers for i in range(per_room)]

        def work(k: int) -> None:
            local: dict[str, Client] = {}
            for c, room, i in jobs[k::threads]:
                client = local.setdefault(c.user_id, self.clone(c))
                client.send(room, f"filler {i}")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))


def with_cpu(target: Target, fn, n: int):
    """Runs fn(); returns (its result, server CPU seconds per operation over the n operations,
    the same for all the server's processes)."""
    before, before_all = target.cpu(), target.cpu_all()
    result = fn()
    return result, (target.cpu() - before) / n, (target.cpu_all() - before_all) / n


def sequential_sends(t: Target, n: int) -> tuple[list[float], float]:
    return with_cpu(t, lambda: [t.alice.send(t.room, f"seq {i}")[0] for i in range(n)], n)


def send_to_receive(t: Target, n: int, park_s: float) -> list[float]:
    """bob long-polls /sync (timeout 30 s); alice sends once bob is parked. Sample: time from the
    start of alice's send to bob's /sync answering with the message."""
    out = []
    for _ in range(n):
        marker = f"sr-{uuid.uuid4().hex}"
        got: dict = {}

        def poll() -> None:
            since = t.bob_since
            while True:
                _, body = t.bob.sync(since, 30000)
                since = body["next_batch"]
                events = body.get("rooms", {}).get("join", {}).get(t.room, {}).get("timeline", {}).get("events", [])
                if any(e.get("content", {}).get("body") == marker for e in events):
                    got["at"] = time.perf_counter()
                    t.bob_since = since
                    return

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(park_s)
        start = time.perf_counter()
        t.alice.send(t.room, marker)
        thread.join(60)
        if "at" in got:
            out.append(got["at"] - start)
        else:
            t.errors["send-to-receive: message not seen within 60 s"] += 1
    return out


def catch_up(t: Target) -> None:
    _, body = t.bob.sync(t.bob_since, 0)
    t.bob_since = body["next_batch"]


def incremental_one(t: Target, n: int, catch: bool = True) -> list[float]:
    if catch:
        catch_up(t)
    out = []
    for i in range(n):
        _, event_id = t.alice.send(t.room, f"incr {i}")
        elapsed, body = t.bob.sync(t.bob_since, 0)
        if event_id not in timeline_event_ids(body, t.room):
            t.errors["incremental /sync: new event missing"] += 1
        t.bob_since = body["next_batch"]
        out.append(elapsed)
    return out


def incremental_none(t: Target, n: int, catch: bool = True) -> tuple[list[float], float]:
    if catch:
        catch_up(t)

    def run():
        out = []
        for _ in range(n):
            elapsed, body = t.bob.sync(t.bob_since, 0)
            t.bob_since = body["next_batch"]
            out.append(elapsed)
        return out

    return with_cpu(t, run, n)


def initial_sync(t: Target, n: int, rooms: int) -> list[float]:
    out = []
    for _ in range(n):
        elapsed, body = t.carol.sync()
        if len(body.get("rooms", {}).get("join", {})) < rooms:
            t.errors["initial /sync: rooms missing"] += 1
        out.append(elapsed)
    return out


def throughput(t: Target, senders: int, own_rooms: bool, total: int) -> tuple[float, list[float]]:
    """`senders` users send `total` messages between them at once; (messages per second, latencies)."""
    per = total // senders
    clients = [t.clone(c) for c in t.senders[:senders]]
    rooms = t.own_rooms[:senders] if own_rooms else [t.shared_room] * senders
    barrier = threading.Barrier(senders + 1)
    latencies: list[list[float]] = [[] for _ in range(senders)]

    def work(k: int) -> None:
        barrier.wait()
        for i in range(per):
            latencies[k].append(clients[k].send(rooms[k], f"tp {k} {i}")[0])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(senders)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    return per * senders / wall, [x for lat in latencies for x in lat]


def back_paginate(t: Target, page: int, events: int) -> tuple[float, list[float]]:
    """Pages backwards from the newest event until `events` messages were read, or the room's
    start. (total seconds, per-page seconds)."""
    token, seen, pages = None, 0, []
    while seen < events:
        elapsed, body = t.alice.messages(t.pagination_room, token, page)
        pages.append(elapsed)
        chunk = body.get("chunk", [])
        seen += sum(1 for e in chunk if e.get("type") == "m.room.message")
        token = body.get("end")
        if not chunk or not token:
            break
    if seen < events:
        t.errors[f"/messages: only {seen} of {events} messages paginated"] += 1
    return sum(pages), pages


def rss_after(t: Target) -> tuple[float, float]:
    from servers import rss_mib
    return rss_mib(t.server.pids()), rss_mib(t.server.all_pids())
