"""`make bench`'s sliding sync rows (simplified sliding sync, MSC4186): the first answer to Element X's
room-list request for a user in 20 and in 200 rooms, and the incremental answer after one new event
in a room inside the window, on our Worker (behind bench/meter.mjs, which counts D1 queries and
rows) and on Synapse, both running, the servers alternating between repetitions; medians.

  python bench/sliding.py [--quick]   prints the section; without --quick also writes it into
                                      docs/benchmarks.md (run.py adds it to the whole report)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402

from client import Client  # noqa: E402
import report  # noqa: E402
from servers import Ours, Synapse, cpu_seconds, remove_workdir  # noqa: E402

MARK = "<!-- sliding sync rows (bench/sliding.py) -->"
SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

# Element X's room-list request (matrix-rust-sdk's RoomListService; tests/element_x/compare.py
# sends it too): the first 20 rooms by activity, one timeline event each, the state its list shows.
REQUIRED_STATE = [["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                  ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                  ["m.room.canonical_alias", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""],
                  ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
                  ["m.space.parent", "*"], ["m.space.child", "*"]]
WINDOW = 20


def request(conn_id: str) -> dict:
    return {"conn_id": conn_id,
            "lists": {"all_rooms": {"ranges": [[0, WINDOW - 1]], "timeline_limit": 1,
                                    "required_state": REQUIRED_STATE}},
            "extensions": {"account_data": {"enabled": True}, "receipts": {"enabled": True, "rooms": ["*"]},
                           "typing": {"enabled": True}}}


SIZES = (20, 200)                 # rooms of the two users
MESSAGES_PER_ROOM = 2
REPETITIONS = 21                  # per row and server (7 gave medians from 0.69 to 1.20 of Synapse's for one build)
QUICK = dict(SIZES=(3, 25), REPETITIONS=2)
PREPARE_THREADS = 4               # room creation in parallel (setup only, never timed)


class Side:
    """One server under test: its users, their rooms and their steady sliding sync connections."""

    def __init__(self, server):
        self.server, self.name = server, server.name
        self.errors: Counter = Counter()
        self.users: dict[int, Client] = {}
        self.rooms: dict[int, list[str]] = {}
        self.pos: dict[int, str] = {}
        self.firsts = 0

    def meter(self) -> dict:
        if self.name != "ours":
            return {}
        return requests.get(self.server.base_url + "/_bench/meter", timeout=10).json()

    def prepare(self, sizes, log) -> None:
        anon = Client(self.server.base_url, self.errors)
        stamp = int(time.time())
        creating = threading.Lock()
        for size in sizes:
            user = anon.register(f"ss{size}x{stamp}")

            def room(i: int, user=user) -> str:
                # One createRoom at a time: ours derives a room id from the create event (room
                # version 12), so one user's two creations in the same millisecond would collide.
                with creating:
                    room_id = user.create_room(name=f"room {i}")
                for m in range(MESSAGES_PER_ROOM):
                    user.send(room_id, f"message {m} in room {i}")
                return room_id

            t0 = time.perf_counter()
            with ThreadPoolExecutor(PREPARE_THREADS) as pool:
                # Creation order is the activity order, newest last (a room's last message).
                self.rooms[size] = list(pool.map(room, range(size)))
            self.users[size] = user
            log(f"  {self.name}: user in {size} rooms ready in {time.perf_counter() - t0:.1f} s")
            # The steady connection the incremental rows continue (its first answer is not timed).
            _, body = user.call("POST", SLIDING, body=request("steady"), params={"timeout": "0"})
            self.pos[size] = body["pos"]

    def timed(self, fn) -> dict:
        """Runs fn() once: wall ms of the request, the server processes' CPU ms and (ours) the meter."""
        time.sleep(0.3)  # let the background work of earlier requests (notifications) finish
        self.meter()
        cpu0 = cpu_seconds(self.server.pids())
        elapsed, body = fn()
        cpu_ms = (cpu_seconds(self.server.pids()) - cpu0) * 1000
        counts = self.meter()
        row = {"ms": elapsed * 1000, "cpu_ms": cpu_ms, "body": body}
        row.update({k: counts[k] for k in ("d1_queries", "rows_read", "rows_written") if k in counts})
        return row

    def first(self, size: int) -> dict:
        self.firsts += 1
        user = self.users[size]
        row = self.timed(lambda: user.call("POST", SLIDING, body=request(f"first-{self.firsts}"),
                                           params={"timeout": "0"}))
        body = row.pop("body")
        rooms, count = body.get("rooms", {}), body.get("lists", {}).get("all_rooms", {}).get("count")
        if count != size or len(rooms) != min(size, WINDOW):
            self.errors[f"first answer, {size} rooms: count {count}, {len(rooms)} rooms"] += 1
        return row

    def incremental(self, size: int, n: int) -> dict:
        """One new message (the user's own) in a room inside the window, then the answer to the
        steady connection's pos; the send is outside the clock and the meter."""
        user, rooms = self.users[size], self.rooms[size]
        room = rooms[-(n % min(len(rooms), WINDOW // 2)) - 1]  # always among the newest, so in view
        _, event_id = user.send(room, f"new {n}")
        row = self.timed(lambda: user.call("POST", SLIDING, body=request("steady"),
                                           params={"timeout": "10000", "pos": self.pos[size]}))
        body = row.pop("body")
        self.pos[size] = body["pos"]
        got = [e.get("event_id") for e in body.get("rooms", {}).get(room, {}).get("timeline", [])]
        if event_id not in got:
            self.errors[f"incremental answer, {size} rooms: new event missing"] += 1
        return row


def measure(workdir: Path, quick: bool = False, log=print) -> dict:
    """{"rows": {label: {server: {ms, cpu_ms, n[, d1_queries, rows_read, rows_written]}}},
    "errors": {server: {...}}, "load": (start, end), "sizes", "repetitions"}."""
    # A directory of its own: run.py's earlier passes leave their servers' state in `workdir`.
    workdir = workdir / "sliding"
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = QUICK["SIZES"] if quick else SIZES
    reps = QUICK["REPETITIONS"] if quick else REPETITIONS
    load_start = loadavg()
    sides: list[Side] = []
    try:
        for server in (Ours(workdir, entry="bench/meter.mjs"), Synapse(workdir)):
            sides.append(Side(server))
            log(f"sliding sync: starting {server.name}")
            server.start()
        log(f"sliding sync: preparing users in {' and '.join(map(str, sizes))} rooms"
            f" ({MESSAGES_PER_ROOM} messages each)")
        with ThreadPoolExecutor(len(sides)) as pool:
            list(pool.map(lambda s: s.prepare(sizes, log), sides))
        samples: dict = {}
        for r in range(reps):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                for size in sizes:
                    samples.setdefault(f"first answer, user in {size} rooms", {}) \
                        .setdefault(side.name, []).append(side.first(size))
                for size in sizes:
                    samples.setdefault(f"incremental answer, one new event, user in {size} rooms", {}) \
                        .setdefault(side.name, []).append(side.incremental(size, r))
            log(f"  repetition {r + 1}/{reps} done")
        rows = {label: {name: median_row(runs) for name, runs in by.items()} for label, by in samples.items()}
        return {"rows": rows, "errors": {s.name: dict(s.errors) for s in sides}, "sizes": sizes,
                "repetitions": reps, "load": (load_start, loadavg())}
    finally:
        for side in sides:
            side.server.stop()


def median_row(runs: list[dict]) -> dict:
    return {**{k: statistics.median(r[k] for r in runs) for k in runs[0]}, "n": len(runs)}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def section(results: dict) -> list[str]:
    out = [MARK, "## Sliding sync", "",
           "`bench/sliding.py`: simplified sliding sync (MSC4186) with Element X's room-list request (range"
           f" 0-{WINDOW - 1}, `timeline_limit` 1, its 14 `required_state` entries, account_data/receipts/typing"
           f" extensions). One user in {results['sizes'][0]} rooms and one in {results['sizes'][1]} rooms per server,"
           f" {MESSAGES_PER_ROOM} messages in each room. \"First answer\" is a new connection (no `pos`);"
           " \"incremental\" answers a steady connection's `pos` after one new message in a room inside the"
           " window (the send is outside the clock). Both servers run at once, our Worker behind"
           f" `bench/meter.mjs`; {results['repetitions']} repetitions per row alternating the servers, medians."
           " CPU is the server processes' CPU time per answer (workerd, including local D1's SQLite work, for us).",
           "",
           "| answer | ours ms | Synapse ms | ratio | ours CPU ms | Synapse CPU ms | D1 queries | rows read |"
           " rows written |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, row in results["rows"].items():
        ours, syn = row.get("ours"), row.get("synapse")
        if not ours or not syn:
            continue
        out.append(f"| {label} | {ours['ms']:.1f} | {syn['ms']:.1f} | {ours['ms'] / syn['ms']:.2f} |"
                   f" {ours['cpu_ms']:.1f} | {syn['cpu_ms']:.1f} | {ours['d1_queries']:.0f} |"
                   f" {ours['rows_read']:.0f} | {ours['rows_written']:.0f} |")
    errors = {name: errs for name, errs in results["errors"].items() if errs}
    start, end = results["load"]
    out += ["", f"- Load average (1, 5, 15 min) at the start {start}, at the end {end} (2 cores, shared with"
            " other work: times are noisy; the D1 counts are not).",
            "- Errors or wrong answers (count, list size, the new event in the incremental answer): "
            + (json.dumps(errors) if errors else "none."),
            "- Our query count per answer does not grow with the number of rooms. A first answer ranks all of"
            " the user's rooms (`storage::sliding_sync::room_list_sql` reads each room's membership, version and"
            " newest events for the bump stamp; its create and encryption state only when a list filters on"
            " them); an incremental answer ranks only the rooms of the windows its connection row keeps and"
            " those with events since its `pos` (`storage::sliding_sync::partial_room_list_sql`), and reads no"
            " state changes, summary or lazily loaded members for rooms whose new events need none; when few"
            " events came since its `pos`, the same first statement also reads those rooms' new events, unread"
            " counts and lazily loaded members (`storage::sliding_sync::fold_column`), so a steady connection's"
            " answer is one D1 round trip"
            + growth(results) + "; the rest of a first answer is the rooms in the"
            " window (their required_state, timeline, receipts). A steady connection writes no D1 row for new"
            " events in rooms already in view.", ""]
    return out


def growth(results: dict) -> str:
    """", about N rows per room (first answer) and M (incremental)", from the two room counts."""
    small, big = results["sizes"]
    per_room = []
    for kind in ("first answer", "incremental answer, one new event"):
        rows = [results["rows"].get(f"{kind}, user in {n} rooms", {}).get("ours", {}).get("rows_read")
                for n in (small, big)]
        if None in rows:
            return ""
        per_room.append((rows[1] - rows[0]) / (big - small))
    return (f": from {small} to {big} rooms, {per_room[0]:.0f} more rows read per room on a first answer"
            f" and {per_room[1]:.0f} on an incremental one")


def main() -> int:
    quick = "--quick" in sys.argv
    workdir = Path(tempfile.mkdtemp(prefix="matrix-edge-sliding-bench-"))
    try:
        results = measure(workdir, quick, log=lambda m: print(f"[sliding] {m}", file=sys.stderr, flush=True))
    finally:
        remove_workdir(workdir, False, print)
    lines = section(results)
    print("\n".join(lines))
    print(json.dumps(results, indent=1), file=sys.stderr)
    if not quick:
        report.write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
