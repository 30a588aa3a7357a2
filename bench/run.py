"""`make bench`: the same workload against our Worker (release wasm in local workerd, local D1
and Durable Objects) and a Synapse from PyPI on this machine, alternating the two between
repetitions, then one table on stdout and in docs/benchmarks.md. Both servers bind 127.0.0.1 only
and are stopped on every exit (Ctrl-C and exceptions included).

  python bench/run.py            the full run (about 6-10 minutes on 2 cores)
  python bench/run.py --quick    every scenario with tiny counts, to try changes (no doc written)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import appservice  # noqa: E402
import federation  # noqa: E402
import hotpaths  # noqa: E402
import media  # noqa: E402
import report  # noqa: E402
import sliding  # noqa: E402
import workload as w  # noqa: E402
from servers import ROOT, Ours, Synapse, remove_workdir  # noqa: E402

# -- repetition counts (the full run) -----------------------------------------------------------
SEQUENTIAL_SENDS = 200          # latency per send, split into ROUNDS alternating chunks
SEND_TO_RECEIVE = 50            # samples of send -> long-polling /sync of another user
INCREMENTAL_SYNCS = 100         # per kind (one new event / nothing new)
INITIAL_SYNC_ROOMS = 20
INITIAL_SYNC_ROOM_MESSAGES = 100
INITIAL_SYNCS = 10
THROUGHPUT_MESSAGES = 96        # per round and configuration, split between the senders
THROUGHPUT_CONFIGS = [(4, False), (16, False), (16, True)]  # (senders, one room each?)
THROUGHPUT_ROUNDS = 4
PAGINATION_EVENTS = 1000
PAGINATION_PAGE = 50            # events per /messages page
PAGINATIONS = 6                 # full back-paginations per server
ROUNDS = 4                      # each scenario alternates the servers over this many rounds
PARK_S = 0.15                   # head start for the long-poll before the send
METER_OPS = 20                  # operations per kind in the platform-cost pass
FED_JOINS = 8                   # federated joins per server (a 3-member room on the peer each)
FED_MESSAGES = 30               # federated deliveries per server and direction
FED_METER_OPS = 20              # incoming PDUs (and outgoing messages) in the federation cost pass

QUICK = dict(SEQUENTIAL_SENDS=8, SEND_TO_RECEIVE=4, INCREMENTAL_SYNCS=4, INITIAL_SYNC_ROOMS=3,
             INITIAL_SYNC_ROOM_MESSAGES=5, INITIAL_SYNCS=2, THROUGHPUT_MESSAGES=16, THROUGHPUT_ROUNDS=2,
             PAGINATION_EVENTS=60, PAGINATIONS=2, ROUNDS=2, METER_OPS=3, FED_JOINS=2, FED_MESSAGES=4,
             FED_METER_OPS=3)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def alternate(targets, rounds, fn):
    """Calls fn(target, round) for each round, the servers in turns (A B, B A, A B, ...);
    returns {server name: [results in round order]}."""
    out = {t.name: [] for t in targets}
    for r in range(rounds):
        for t in (targets if r % 2 == 0 else targets[::-1]):
            out[t.name].append(fn(t, r))
    return out


def chunks(total: int, rounds: int) -> list[int]:
    return [total // rounds + (1 if r < total % rounds else 0) for r in range(rounds)]


def compare(targets, c, only_sync: bool = False) -> dict:
    """The comparison: every row of the table, as {row key: {server: samples or value}}.
    `only_sync`: only the sequential sends and the /sync latency rows (`--only sync`)."""
    rows: dict = {}
    flat = lambda results: [x for chunk in results for x in chunk]

    log(f"sequential sends ({c['SEQUENTIAL_SENDS']})")
    sizes = chunks(c["SEQUENTIAL_SENDS"], c["ROUNDS"])
    res = alternate(targets, c["ROUNDS"], lambda t, r: w.sequential_sends(t, sizes[r]))
    rows["seq_send"] = {n: flat(x[0] for x in v) for n, v in res.items()}
    rows["cpu_send"] = {n: [x[1] for x in v] for n, v in res.items()}
    rows["cpu_send_all"] = {n: [x[2] for x in v] for n, v in res.items()}

    log(f"send to receive ({c['SEND_TO_RECEIVE']})")
    sizes = chunks(c["SEND_TO_RECEIVE"], c["ROUNDS"])
    res = alternate(targets, c["ROUNDS"], lambda t, r: w.send_to_receive(t, sizes[r], PARK_S))
    rows["send_receive"] = {n: flat(v) for n, v in res.items()}

    log(f"incremental syncs ({c['INCREMENTAL_SYNCS']} of each kind)")
    sizes = chunks(c["INCREMENTAL_SYNCS"], c["ROUNDS"])
    res = alternate(targets, c["ROUNDS"], lambda t, r: w.incremental_one(t, sizes[r]))
    rows["sync_one"] = {n: flat(v) for n, v in res.items()}
    res = alternate(targets, c["ROUNDS"], lambda t, r: w.incremental_none(t, sizes[r]))
    rows["sync_none"] = {n: flat(x[0] for x in v) for n, v in res.items()}
    rows["cpu_sync_none"] = {n: [x[1] for x in v] for n, v in res.items()}
    rows["cpu_sync_none_all"] = {n: [x[2] for x in v] for n, v in res.items()}
    if only_sync:
        return rows

    log(f"initial syncs ({c['INITIAL_SYNCS']})")
    sizes = chunks(c["INITIAL_SYNCS"], c["ROUNDS"])
    res = alternate(targets, c["ROUNDS"], lambda t, r: w.initial_sync(t, sizes[r], c["INITIAL_SYNC_ROOMS"]))
    rows["initial_sync"] = {n: flat(v) for n, v in res.items()}

    for senders, own in THROUGHPUT_CONFIGS:
        key = f"tp_{senders}_{'rooms' if own else 'room'}"
        log(f"throughput: {senders} senders, {'one room each' if own else 'one room'}")
        res = alternate(targets, c["THROUGHPUT_ROUNDS"], lambda t, r: w.throughput(t, senders, own, c["THROUGHPUT_MESSAGES"]))
        rows[key] = {n: [x[0] for x in v] for n, v in res.items()}
        rows[key + "_lat"] = {n: flat(x[1] for x in v) for n, v in res.items()}

    log(f"back-pagination of {c['PAGINATION_EVENTS']} events ({c['PAGINATIONS']} times)")
    res = alternate(targets, c["PAGINATIONS"],
                    lambda t, r: w.back_paginate(t, PAGINATION_PAGE, c["PAGINATION_EVENTS"]))
    rows["pagination_total"] = {n: [x[0] for x in v] for n, v in res.items()}
    rows["pagination_page"] = {n: flat(x[1] for x in v) for n, v in res.items()}
    return rows


def meter_pass(workdir: Path, ops: int) -> dict:
    """Our Worker alone behind bench/meter.mjs: D1 queries, rows read and written, Durable Object
    requests and the processes' CPU time, per operation."""
    server = Ours(workdir, entry="bench/meter.mjs")
    try:
        server.start()
        t = w.Target(server)
        meter = lambda: requests.get(server.base_url + "/_bench/meter", timeout=10).json()

        def measure(label, fn, n):
            time.sleep(0.3)  # let notifications of earlier operations finish
            meter()
            cpu0, start = t.cpu(), time.perf_counter()
            fn()
            # Less workerd's background CPU over the same wall time (measured first, while idle).
            busy = t.cpu() - cpu0 - idle_rate[0] * (time.perf_counter() - start)
            cpu = max(0.0, busy) / n
            counts = meter()
            out = {k: counts[k] / n for k in ("worker_requests", "d1_queries", "rows_read", "rows_written")}
            out["do_requests"] = sum(counts["do_requests"].values()) / n
            # D1 calls (each a round trip on the platform): single queries plus batches.
            out["d1_calls"] = (counts["d1_queries"] - counts.get("d1_batched", 0) + counts["d1_batches"]) / n
            out["do_by_class"] = {k: v / n for k, v in counts["do_requests"].items()}
            out["cpu_ms"] = cpu * 1000
            out["unmetered"] = counts["unmetered_queries"]
            results[label] = out

        results: dict = {}
        idle_rate = [0.0]
        measure("nothing for 2 s (workerd's idle background CPU, total)", lambda: time.sleep(2), 1)
        idle_rate[0] = results["nothing for 2 s (workerd's idle background CPU, total)"]["cpu_ms"] / 2000
        names = iter(range(10 ** 6))
        users: list = []
        measure("register (password hash)", lambda: users.extend(
            t.anon.register(f"m{next(names)}") for _ in range(3)), 3)
        alice, bob = users[0], users[1]

        def logins():
            for _ in range(3):
                t.anon.call("POST", "/_matrix/client/v3/login", body={
                    "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                    "password": "bench-password-1"})
        measure("login (password hash)", logins, 3)
        rooms: list = []
        measure("createRoom", lambda: rooms.extend(alice.create_room() for _ in range(3)), 3)
        room = rooms[0]
        measure("join", lambda: [bob.join(r) for r in rooms], 3)
        t.alice, t.bob, t.room = alice, bob, room
        t.bob_since = bob.sync()[1]["next_batch"]
        measure("send message", lambda: [alice.send(room, f"m {i}") for i in range(ops)], ops)
        w.catch_up(t)
        measure("incremental /sync, one new event", lambda: w.incremental_one(t, ops, catch=False), ops * 2)
        results["incremental /sync, one new event"] = subtract(
            results["incremental /sync, one new event"], results["send message"])
        w.catch_up(t)
        measure("incremental /sync, nothing new", lambda: w.incremental_none(t, ops, catch=False), ops)
        measure("long-poll /sync that times out (1 s)",
                lambda: [bob.sync(t.bob_since, 1000) for _ in range(3)], 3)
        for i in range(60):
            alice.send(room, f"page {i}")
        measure(f"/messages page of {PAGINATION_PAGE}",
                lambda: [alice.messages(room, None, PAGINATION_PAGE) for _ in range(3)], 3)
        measure("initial /sync (user in 3 rooms)", lambda: [alice.sync() for _ in range(3)], 3)
        results["_errors"] = dict(t.errors)
        return results
    finally:
        server.stop()


def subtract(both: dict, send: dict) -> dict:
    """incremental_one does one send and one sync per op: keep the sync's share."""
    out = {k: both[k] * 2 - send[k] for k in ("worker_requests", "d1_queries", "rows_read", "rows_written",
                                                 "do_requests", "cpu_ms", "d1_calls")}
    out["do_by_class"] = {k: both["do_by_class"].get(k, 0) * 2 - send["do_by_class"].get(k, 0)
                          for k in set(both["do_by_class"]) | set(send["do_by_class"])}
    out["unmetered"] = both["unmetered"]
    return out


def federation_only(workdir: Path, c: dict) -> int:
    rows, errors = federation.compare(workdir, c, alternate, chunks, log, PARK_S)
    meter = federation.meter_pass(workdir, c["FED_METER_OPS"], log)
    print(report.table(rows))
    print("\n".join(report.cost_section(meter)))
    for label, m in meter.items():
        if isinstance(m, dict) and "statements" in m:
            print(f"\n{label}: {m['d1_queries']:.1f} D1 queries in {m['d1_round_trips']:.1f} round trips"
                  f" (a batch is one), {m['rows_read']:.1f} rows read, {m['rows_written']:.1f} written; per statement:")
            for sql, st in sorted(m["statements"].items(), key=lambda kv: -kv[1]["n"]):
                print(f"  {st['n']:5.2f}x  read {st['rows_read']:6.2f}  written {st['rows_written']:5.2f}  {sql}")
    print(json.dumps({"errors": errors}, indent=1))
    return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts; prints the table, writes no doc")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    parser.add_argument("--federation-only", action="store_true",
                        help="only the federation rows and their cost pass; prints them, writes no doc")
    parser.add_argument("--only", choices=["sync"],
                        help="sync: only sends, send-to-seen and incremental /sync rows, then the "
                             "platform-cost pass; prints them, writes no doc")
    args = parser.parse_args()
    c = {k: v for k, v in globals().items() if k.isupper()}
    if args.quick:
        c.update(QUICK)

    # Ctrl-C (even when started with SIGINT ignored, as `cmd &` does) and SIGTERM both raise
    # KeyboardInterrupt, so `finally` stops the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.time()
    load_at_start = loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="matrix-edge-bench-"))
    servers = []
    try:
        log(f"work directory {workdir}")
        if args.federation_only:
            return federation_only(workdir, c)
        ours, synapse = Ours(workdir), Synapse(workdir)
        servers += [ours, synapse]
        log("starting our Worker (scripts/dev.sh, fresh local state)")
        ours.start()
        log(f"  ready after {ours.startup_s:.2f} s; starting Synapse")
        synapse.start()
        log(f"  ready after {synapse.startup_s:.2f} s")
        targets = [w.Target(ours), w.Target(synapse)]
        for t in targets:
            log(f"preparing {t.name}: users, rooms, {c['INITIAL_SYNC_ROOMS']}x{c['INITIAL_SYNC_ROOM_MESSAGES']}"
                f" + {c['PAGINATION_EVENTS']} messages")
            t0 = time.perf_counter()
            if args.only == "sync":
                t.prepare(senders=0, sync_rooms=0, sync_room_messages=0, pagination_events=0)
            else:
                t.prepare(senders=16, sync_rooms=c["INITIAL_SYNC_ROOMS"],
                          sync_room_messages=c["INITIAL_SYNC_ROOM_MESSAGES"],
                          pagination_events=c["PAGINATION_EVENTS"])
            t.prepare_s = time.perf_counter() - t0
            log(f"  {t.prepare_s:.1f} s")
        rows = compare(targets, c, only_sync=args.only == "sync")
        if args.only == "sync":
            for s in servers:
                s.stop()
            log("platform-cost pass (our Worker behind bench/meter.mjs)")
            meter = meter_pass(workdir, c["METER_OPS"])
            print(report.table(rows))
            print("\n".join(report.cost_section(meter)))
            print("\nD1 calls (round trips) per operation:")
            for label, row in meter.items():
                if not label.startswith("_"):
                    print(f"  {label}: {row['d1_calls']:.1f} calls, {row['d1_queries']:.1f} statements")
            print(json.dumps({"errors": {t.name: dict(t.errors) for t in targets}}, indent=1))
            return 0
        for t in targets:
            runtime, everything = w.rss_after(t)
            rows.setdefault("rss", {})[t.name] = [runtime]
            rows.setdefault("rss_all", {})[t.name] = [everything]
            rows.setdefault("startup", {})[t.name] = [t.server.startup_s]
            rows.setdefault("first_request", {})[t.name] = [t.server.first_request_s]
            rows.setdefault("prepare", {})[t.name] = [t.prepare_s]
        errors = {t.name: dict(t.errors) for t in targets}
        for s in servers:
            s.stop()
        fed_rows, fed_errors = federation.compare(workdir, c, alternate, chunks, log, PARK_S)
        rows.update(fed_rows)
        fed_meter = federation.meter_pass(workdir, c["FED_METER_OPS"], log)
        fed_errors["ours"].update(fed_meter.pop("_errors"))
        for name, errs in fed_errors.items():
            errors.setdefault(name, {}).update(errs)
        log("application service row: sends with a registered service that is down, and with none")
        as_samples = appservice.measure(workdir, c["SEQUENTIAL_SENDS"], c["ROUNDS"], log)
        log("platform-cost pass (our Worker behind bench/meter.mjs)")
        meter = meter_pass(workdir, c["METER_OPS"])
        meter.update(fed_meter)
        log("media rows: uploads, downloads, thumbnails (bench/media.py)")
        media_rows = media.measure(workdir, args.quick, log)
        log("sliding sync rows: first and incremental answers (bench/sliding.py)")
        sliding_rows = sliding.measure(workdir, args.quick, log)
        # Last, with both servers stopped: the microbenchmarks want a quiet machine.
        log("hot paths: wasm in Node/V8 and native (bench/hotpaths.py)")
        try:
            hot = hotpaths.measure(["build_event", "verify_pdu"] if args.quick else None)
        except RuntimeError as e:  # a failed build must not cost the rest of the run
            log(f"hot paths not measured: {e}")
            hot = None
        wall = time.time() - started
        table = report.table(rows) + "\n\n" + appservice.row(as_samples)
        print(table)
        print("\n".join(sliding.section(sliding_rows)))
        print(f"\nwall time {wall / 60:.1f} min", flush=True)
        if args.quick:
            print("\n".join(media.section(media_rows)))
            print(json.dumps({"errors": errors, "meter": meter, "hotpaths": hot}, indent=1))
        else:
            hot_section = hotpaths.section(hot, report.largest_request(meter)) if hot else None
            doc = report.document(table, rows, errors, meter, c, wall, report.wasm_sizes(ROOT),
                                  (load_at_start, loadavg()), hot_section)
            doc = doc.rstrip("\n") + "\n\n" + "\n".join(sliding.section(sliding_rows)) + "\n"
            (ROOT / "docs").mkdir(exist_ok=True)
            doc = doc.rstrip("\n") + "\n\n" + "\n".join(media.section(media_rows)) + "\n"
            (ROOT / "docs" / "benchmarks.md").write_text(doc)
            log("wrote docs/benchmarks.md")
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for s in servers:
            s.stop()
        remove_workdir(workdir, args.keep, log)


if __name__ == "__main__":
    sys.exit(main())
