"""The federation rows of `make bench`: our Worker federating with a Synapse, next to a Synapse
federating with a Synapse, alternating the two pairs between rounds like the other rows.

Both pairs come from tests/integration/synapse_peer.py's `federation_pair` (TLS from a throwaway
test CA, server names `localhost:<port>`, relaxed rate limits): with `reference=True` a second
Synapse stands in for our Worker. In each pair "local" is the server under test (ours, or the
stand-in Synapse) and "peer" is the Synapse it federates with.

- join: a local user joins (POST /join with server_name and via) a 3-member room created on the
  peer; samples until the join returns and until a peer member's long-polling /sync shows it;
- delivery each way: a message sent on one side until the other side's long-polling /sync has it;
- platform cost (ours only, a third pair behind bench/meter.mjs): D1 queries, rows, Durable Object
  requests per incoming federated PDU (one message per /send), per remote join, per message sent
  into a federated room.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "integration"))
from client import Client  # noqa: E402
from harness import d1_database  # noqa: E402
from synapse_peer import FederationPair, federation_pair  # noqa: E402

OUR_ENV = {"AUTH_REQUESTS_PER_MINUTE": "1000000", "PRESENCE": "false"}
WAIT_S = 60


def user(base_url: str, errors: Counter, verify, name: str) -> Client:
    anon = Client(base_url, errors)
    anon.verify = verify
    c = anon.register(f"{name}{uuid.uuid4().hex[:6]}")
    c.verify = verify
    return c


def clone(c: Client) -> Client:
    out = Client(c.base_url, c.errors, c.token, c.user_id)
    out.verify = c.verify
    return out


def join(c: Client, room_id: str, server: str) -> float:
    return c.call("POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}",
                  params=[("server_name", server), ("via", server)], body={})[0]


def timeline(body: dict, room_id: str) -> list[dict]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return room.get("timeline", {}).get("events", [])


class Reader:
    """A user whose /sync position is kept between waits."""

    def __init__(self, client: Client):
        self.c = client
        self.since = client.sync(None, 0)[1]["next_batch"]

    def catch_up(self) -> None:
        self.since = self.c.sync(self.since, 0)[1]["next_batch"]

    def wait_for(self, match, room_id: str, deadline: float = WAIT_S) -> float | None:
        """Long-polls until an event of `room_id` matches: the perf_counter time it was seen."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            _, body = self.c.sync(self.since, 30000)
            self.since = body["next_batch"]
            # Also the state section: a join can land there rather than in the timeline.
            room = body.get("rooms", {}).get("join", {}).get(room_id, {})
            events = timeline(body, room_id) + room.get("state", {}).get("events", [])
            if any(match(e) for e in events):
                return time.perf_counter()
        return None


def timed_wait(reader: Reader, match, room_id: str, action, park_s: float) -> tuple[float, float | None]:
    """Parks `reader`'s long-poll, runs `action()`; (seconds action took, seconds from its start
    until the reader saw a matching event, None if never)."""
    seen: dict = {}
    thread = threading.Thread(target=lambda: seen.setdefault("at", reader.wait_for(match, room_id)))
    thread.start()
    time.sleep(park_s)
    start = time.perf_counter()
    took = action()
    thread.join(WAIT_S + 35)
    at = seen.get("at")
    return took, (at - start if at else None)


class Side:
    """One pair as a benchmark target: `name` is the server under test ("ours" or "synapse")."""

    def __init__(self, name: str, pair: FederationPair):
        self.name, self.pair = name, pair
        self.errors: Counter = Counter()
        self.peer_name = pair.synapse.server_name
        ours = pair.ours
        self.local_url = ours.base_url
        self.local_verify = str(pair.ca) if ours.base_url.startswith("https") else True

    def prepare(self, joins: int) -> None:
        peer_url = self.pair.synapse.client_url
        self.local = user(self.local_url, self.errors, self.local_verify, "local")
        self.owner = user(peer_url, self.errors, True, "owner")
        self.members = [user(peer_url, self.errors, True, f"member{i}") for i in range(2)]
        # The message room; joining it is also the warm-up (first contact, key fetches both ways).
        self.room = self.owner.create_room()
        for m in self.members:
            m.join(self.room)
        join(self.local, self.room, self.peer_name)
        self.peer_reader = Reader(self.members[0])
        self.local_reader = Reader(clone(self.local))
        self.local_sender = clone(self.local)
        # Rooms for the join samples, made up front: 3 members each, all on the peer.
        self.join_rooms = []
        for _ in range(joins):
            r = self.owner.create_room()
            for m in self.members:
                m.join(r)
            self.join_rooms.append(r)
        self.join_reader = Reader(clone(self.members[1]))
        # A first exchange each way, so that both sides' queues and connections are warm.
        self.delivery(out=True, n=1, park_s=0.15)
        self.delivery(out=False, n=1, park_s=0.15)

    def joins(self, n: int, park_s: float) -> list[tuple[float, float | None]]:
        out = []
        for _ in range(n):
            room = self.join_rooms.pop()
            me = self.local.user_id
            match = lambda e: (e.get("type") == "m.room.member" and e.get("state_key") == me
                               and e.get("content", {}).get("membership") == "join")
            self.join_reader.catch_up()
            took, seen = timed_wait(self.join_reader, match, room,
                                    lambda: join(self.local, room, self.peer_name), park_s)
            if seen is None:
                self.errors["federated join not seen by the peer within 60 s"] += 1
            out.append((took, seen))
        return out

    def delivery(self, out: bool, n: int, park_s: float) -> list[float]:
        """Messages sent here and read on the peer (`out`), or the reverse."""
        sender, reader = (self.local_sender, self.peer_reader) if out else (self.owner, self.local_reader)
        samples = []
        for _ in range(n):
            marker = f"fed-{uuid.uuid4().hex}"
            match = lambda e: e.get("content", {}).get("body") == marker
            _, seen = timed_wait(reader, match, self.room, lambda: sender.send(self.room, marker), park_s)
            if seen is None:
                self.errors[f"federated message ({'out' if out else 'in'}) not seen within 60 s"] += 1
            else:
                samples.append(seen)
        return samples


@contextlib.contextmanager
def pairs(workdir: Path):
    """Both pairs, started one after the other and stopped whatever happens."""
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(federation_pair(workdir / "fed-ours", our_env=OUR_ENV, reference=False))
        ref = stack.enter_context(federation_pair(workdir / "fed-ref", reference=True))
        yield [Side("ours", ours), Side("synapse", ref)]


def compare(workdir: Path, c: dict, alternate, chunks, log, park_s: float) -> tuple[dict, dict]:
    """The federation rows ({row key: {server: samples}}) and the errors per server."""
    rows: dict = {}
    log("federation: starting our Worker + Synapse, and Synapse + Synapse (TLS, test CA)")
    with pairs(workdir) as sides:
        for s in sides:
            log(f"  preparing {s.name}: users, {c['FED_JOINS']} rooms of 3 members on the peer")
            s.prepare(c["FED_JOINS"])
        log(f"federation: joins of a 3-member room on the peer ({c['FED_JOINS']})")
        sizes = chunks(c["FED_JOINS"], c["ROUNDS"])
        res = alternate(sides, c["ROUNDS"], lambda s, r: s.joins(sizes[r], park_s))
        rows["fed_join"] = {n: [x[0] for chunk in v for x in chunk] for n, v in res.items()}
        rows["fed_join_seen"] = {n: [x[1] for chunk in v for x in chunk if x[1] is not None] for n, v in res.items()}
        sizes = chunks(c["FED_MESSAGES"], c["ROUNDS"])
        for key, out in (("fed_out", True), ("fed_in", False)):
            log(f"federation: delivery {'to' if out else 'from'} the peer ({c['FED_MESSAGES']})")
            res = alternate(sides, c["ROUNDS"], lambda s, r: s.delivery(out, sizes[r], park_s))
            rows[key] = {n: [x for chunk in v for x in chunk] for n, v in res.items()}
        return rows, {s.name: dict(s.errors) for s in sides}


def meter_pass(workdir: Path, n: int, log) -> dict:
    """Our Worker behind bench/meter.mjs in a pair with a Synapse: platform cost per incoming
    federated PDU, per remote join and per message sent into a federated room."""
    log("federation platform cost: our Worker (bench/meter.mjs) + Synapse")
    results: dict = {}
    with federation_pair(workdir / "fed-meter", our_env=OUR_ENV, reference=False,
                         our_entry="bench/meter.mjs") as pair:
        side = Side("ours", pair)
        meter_url = pair.ours.base_url + "/_bench/meter"
        meter = lambda: requests.get(meter_url, timeout=10, verify=str(pair.ca)).json()
        side.prepare(3)
        db = d1_database(pair.ours.state_dir)

        def stored(event_id: str) -> bool:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
                return con.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone() is not None

        def measure(label: str, fn, ops: int) -> None:
            time.sleep(0.5)  # let earlier work (notifications, outbound queues) finish
            meter()
            fn()
            time.sleep(0.5)
            counts = meter()
            out = {k: counts[k] / ops for k in ("worker_requests", "d1_queries", "rows_read", "rows_written")}
            out["do_requests"] = sum(counts["do_requests"].values()) / ops
            out["do_by_class"] = {k: v / ops for k, v in counts["do_requests"].items()}
            out["unmetered"] = counts["unmetered_queries"]
            out["cpu_ms"] = None
            # Round trips (a batch is one) and where the queries and rows went, per operation:
            # printed by `bench/run.py --federation-only`, not part of the document's table.
            out["d1_round_trips"] = counts["d1_round_trips"] / ops
            out["statements"] = {sql: {k: v / ops for k, v in st.items()}
                                 for sql, st in counts["statements"].items()}
            results[label] = out

        def incoming() -> None:
            # One message at a time, each stored on our side before the next (checked in the
            # local D1 file, so no client request of ours is counted): one PDU per /send.
            for i in range(n):
                event_id = side.owner.send(side.room, f"incoming {i}")[1]
                end = time.monotonic() + WAIT_S
                while not stored(event_id):
                    if time.monotonic() > end:
                        side.errors["incoming PDU not stored within 60 s"] += 1
                        break
                    time.sleep(0.02)

        measure("incoming federated PDU (one message per /send)", incoming, n)

        def outgoing() -> None:
            for i in range(n):
                marker = f"outgoing {i} {uuid.uuid4().hex}"
                match = lambda e: e.get("content", {}).get("body") == marker
                _, seen = timed_wait(side.peer_reader, match, side.room,
                                     lambda: side.local_sender.send(side.room, marker), 0.05)
                if seen is None:
                    side.errors["outgoing message not seen by the peer"] += 1

        measure("message sent into a federated room (one remote server)", outgoing, n)
        measure("remote join of a 3-member room (make_join + send_join)",
                lambda: [join(side.local, r, side.peer_name) for r in list(side.join_rooms)], len(side.join_rooms))
        results["_errors"] = dict(side.errors)
    return results
