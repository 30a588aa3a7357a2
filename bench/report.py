"""The table and docs/benchmarks.md."""

from __future__ import annotations

import gzip
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path

# (key, label, unit, scale applied to the samples, higher is better)
ROWS = [
    ("seq_send", "Sequential sends (200), latency per send", "ms", 1000, False),
    ("send_receive", "Send → seen by another user's long-polling /sync (50)", "ms", 1000, False),
    ("sync_one", "Incremental /sync, one new event (timeout=0)", "ms", 1000, False),
    ("sync_none", "Incremental /sync, nothing new (timeout=0)", "ms", 1000, False),
    ("initial_sync", "Initial /sync, 20 rooms × 100 messages", "ms", 1000, False),
    ("tp_4_room", "Throughput, 4 concurrent senders, one room", "msg/s", 1, True),
    ("tp_4_room_lat", "  … latency per send", "ms", 1000, False),
    ("tp_16_room", "Throughput, 16 concurrent senders, one room", "msg/s", 1, True),
    ("tp_16_room_lat", "  … latency per send", "ms", 1000, False),
    ("tp_16_rooms", "Throughput, 16 concurrent senders, 16 rooms", "msg/s", 1, True),
    ("tp_16_rooms_lat", "  … latency per send", "ms", 1000, False),
    ("pagination_total", "/messages back-pagination of 1,000 events, total", "ms", 1000, False),
    ("pagination_page", "  … per page of 50 events", "ms", 1000, False),
    ("fed_join", "Federation: join a 3-member room on the peer Synapse, until the join returns", "ms", 1000, False),
    ("fed_join_seen", "  … until the peer's long-polling /sync shows the join", "ms", 1000, False),
    ("fed_out", "Federation: send here → seen by the peer's long-polling /sync", "ms", 1000, False),
    ("fed_in", "Federation: send on the peer → seen here by a long-polling /sync", "ms", 1000, False),
    ("cpu_send", "Server CPU per send (workerd / Synapse process)", "ms", 1000, False),
    ("cpu_sync_none", "Server CPU per empty incremental /sync", "ms", 1000, False),
    ("startup", "Start to first answered request", "s", 1, False),
    ("first_request", "Latency of that first answered request", "ms", 1000, False),
    ("rss", "Resident memory after the run (workerd / Synapse)", "MiB", 1, False),
    ("prepare", "Setup: 19 users, 40 rooms, 3,000 messages (4 threads)", "s", 1, False),
]


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def stats(rows: dict, key: str, scale: float):
    per = rows.get(key, {})
    out = {}
    for name in ("ours", "synapse"):
        xs = [x * scale for x in per.get(name, []) if x is not None]
        out[name] = (median(xs), p90(xs), len(xs)) if xs else None
    return out


def table(rows: dict) -> str:
    lines = ["| measure | unit | ours median | ours p90 | Synapse median | Synapse p90 | ours / Synapse (median) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for key, label, unit, scale, _ in ROWS:
        s = stats(rows, key, scale)
        o, y = s["ours"], s["synapse"]
        if not o or not y:
            continue
        single = o[2] == 1 and y[2] == 1
        p = (lambda v: "–") if single else (lambda v: fmt(v))
        ratio = f"{o[0] / y[0]:.2f}" if y[0] else "–"
        lines.append(f"| {label} | {unit} | {fmt(o[0])} | {p(o[1])} | {fmt(y[0])} | {p(y[1])} | {ratio} |")
    return "\n".join(lines)


def slower_rows(rows: dict) -> list[str]:
    """Keys of the rows where ours is worse than Synapse by more than 10 %."""
    out = []
    for key, _, _, scale, higher_better in ROWS:
        s = stats(rows, key, scale)
        if s["ours"] and s["synapse"] and s["synapse"][0]:
            r = s["ours"][0] / s["synapse"][0]
            if (r < 0.9) if higher_better else (r > 1.1):
                out.append(key)
    return out


def wasm_sizes(root: Path) -> tuple[int, int]:
    raw = (root / "build" / "index_bg.wasm").read_bytes()
    return len(raw), len(gzip.compress(raw, 9))


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
               if l.startswith("MemTotal:"))
    return f"{os.cpu_count()} cores ({cpu}), {mem / 1024 / 1024:.1f} GiB memory, {platform.system()} {platform.release()}"


def versions(root: Path) -> str:
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=30).stdout.strip()
        except OSError:
            return "?"
    pkg = lambda p: json.loads((root / "node_modules" / p / "package.json").read_text())["version"]
    # By distribution name: importing the package would load all of Synapse.
    from importlib.metadata import version
    return (f"matrix-edge {sh('git', 'rev-parse', '--short', 'HEAD')} (release wasm, `worker-build --release --no-opt`), "
            f"wrangler {pkg('wrangler')}, workerd {pkg('workerd')}, {sh('rustc', '--version')}; "
            f"Synapse {version('matrix-synapse')} (SQLite) on Python {platform.python_version()}")


# Published Cloudflare prices and allowances (developers.cloudflare.com pricing pages for
# Workers, Durable Objects and D1, as looked up when this benchmark was written).
FREE_PER_DAY = {"worker_requests": 100_000, "do_requests": 100_000, "rows_read": 5_000_000,
                "rows_written": 100_000}
FREE_DO_GBS_PER_DAY = 13_000
PAID_PER_MILLION = {"worker_requests": 0.30, "do_requests": 0.15, "rows_read": 0.001, "rows_written": 1.00}
PAID_DO_GBS_PER_MILLION = 12.50
DO_GB = 0.128  # a Durable Object is billed at 128 MB; Cloudflare's own examples use 128 MB / 1 GB
LONG_POLL_S = 30

# Why ours is slower on a row, and what would fix it. Printed for the rows where it is.
# (Query counts: the platform-cost table below; the code paths: src/sync/handler.rs,
# src/client/room_read.rs, src/runtime/room_object.rs.)
_SYNC = ("an incremental /sync with news makes two D1 calls: one statement for the token, the stream positions,"
         " memberships, changed rooms, account data and presence, then one batch of the rooms' reads (timelines,"
         " receipts, typing, state, unread counts and summaries); " + "{floor}" +
         ", where Synapse answers from in-memory stream caches in its own process")
_FLOOR = ("local workerd (served as `make dev` serves it: the Worker's own socket, nothing in front) answers a"
          " request for an unknown path in about 1.0 ms wall and 0.4 ms of its CPU, and each"
          " local D1 call adds about 1-1.5 ms of CPU (Miniflare's JavaScript D1 over SQLite) on the one thread that"
          " also runs the Worker and every Durable Object")
_SYNC = _SYNC.replace("{floor}", _FLOOR)
EXPLAIN: dict[str, str] = {
    "seq_send": "a send crosses the Worker, the room's Durable Object, one D1 batch and a notifier request, all"
                " awaited before the answer; answering once the batch commits and notifying in `waitUntil`"
                " would take the notifier hop off the path.",
    "send_receive": "the notifier wakes the parked request in the Worker, which then builds the /sync as"
                    " below (two D1 calls, its token checked again in the first); " + _FLOOR + ".",
    "sync_one": _SYNC + ".",
    "sync_none": "an empty incremental /sync is one D1 statement (token, positions, typing expiry, key"
                 " counts, filter, own presence); what is left is the local runtime: " + _FLOOR + ";"
                 " Synapse's whole answer takes less than that floor.",
    "initial_sync": "the initial /sync reads each of the 20 rooms with its own sequence of D1 queries (state,"
                    " timeline, counts); one `batch()` per stage covering all rooms would make it a handful of round"
                    " trips.",
    "pagination_total": "each page makes several sequential D1 queries (token, membership and visibility checks,"
                        " the page itself) while Synapse serves the checks from caches; folding the checks into"
                        " the page's `batch()` would halve the round trips.",
    "pagination_page": "as above: several sequential D1 round trips per page where one batch would do.",
    "tp_4_room": "every send serializes in the room's Durable Object and then in D1's single writer, and locally the"
                 " objects, D1 and the 4-16 client threads share the same 2 cores in one workerd process; on the"
                 " platform room objects run in parallel and only D1's writer is shared, so this row mostly"
                 " measures the local setup (fewer queries per send would still help).",
    "cpu_send": "workerd's CPU includes the local D1 (SQLite behind Miniflare's JavaScript D1 object, in the same"
                " process) and a JSON round trip per query; fewer, batched queries cut both.",
    "cpu_sync_none": "about 1.5 ms of it is workerd's own cost per request (a 404 answered before any of our"
                     " code costs that) and about 1-1.5 ms the one local D1 statement; the Rust work of an"
                     " empty /sync is under 1 ms.",
    "startup": "`scripts/dev.sh` starts from a migrated template (made untimed before, as `make dev`'s first"
               " run with new migrations does), so this is Node loading Miniflare (about 0.5 s), then workerd"
               " loading the Worker; a deployed Worker has neither.",
    "first_request": "timed from when each server is up: Synapse listens only then, so its port is polled;"
                     " workerd binds its port as it starts but accepts connections only once it has loaded,"
                     " so a client polling it early would wait in the listen queue and time the rest of the"
                     " start again (about 0.2 s, already in the row above). `scripts/serve.mjs` says when"
                     " workerd accepts (Miniflare's ready) by writing a file, and the request sent then is still"
                     " the Worker's first: nothing else asked it anything before.",
    "rss": "workerd holds the Worker, every Durable Object, and Miniflare's local D1 and internal workers in V8"
           " isolates in one process, and wasm linear memory never shrinks; on the platform memory is per isolate"
           " (128 MB limit) and not billed, so this is a cost of local development only.",
}
_OUTBOUND = ("the event goes from the room's Durable Object to the destination's Durable Object, which stores it"
             " in its queue and, when idle, sends the transaction at once (src/runtime/destination.rs); the"
             " queue write is on the path, where Synapse sends from memory")
_INBOUND = ("an incoming /send checks the X-Matrix signature and each PDU's signatures (keys cached per isolate),"
            " reads the transaction's state in one batch, persists the PDU through the room's Durable Object"
            " and one D1 batch that also reads the members' push rules, then wakes the reader through the"
            " notifier and a /sync (four D1 round trips on the way in, src/rooms/object/incoming.rs), where"
            " Synapse serves all of it from one process")
EXPLAIN.update({
    "fed_join": "make_join, send_join, then the answer checked and stored (in the same room object request when"
                " it fits one step, src/rooms/join_job.rs), then the push-rule carry-over and the device-list"
                " announcement before the client is answered; Synapse asks for a partial-state join"
                " (`omit_members`) and returns before it has the member list, which we do not.",
    "fed_join_seen": "the peer has the join once it has processed our send_join, so this row is our path up to"
                     " there: the client request through the Worker (one D1 query for block list, profile, room"
                     " version and residency) to the room's Durable Object and two signed requests (make_join,"
                     " send_join) built in wasm and sent with workerd's fetch.",
    "fed_out": _OUTBOUND + ".",
    "fed_in": _INBOUND + ".",
})
for _k in ("tp_4_room_lat", "tp_16_room", "tp_16_room_lat", "tp_16_rooms", "tp_16_rooms_lat"):
    EXPLAIN[_k] = EXPLAIN["tp_4_room"]


def document(table_md: str, rows: dict, errors: dict, meter: dict, c: dict, wall: float,
             wasm: tuple[int, int], load: tuple[str, str], hot: list[str] | None = None) -> str:
    """`hot`: the hot-path section (bench/hotpaths.py), if measured."""
    root = Path(__file__).resolve().parents[1]
    now = time.strftime("%Y-%m-%d %H:%M %Z")
    out = [
        "# Benchmarks: matrix-edge next to Synapse",
        "",
        f"Produced by one `make bench` run (`bench/run.py`) on {now}, wall time {wall / 60:.1f} min.",
        "",
        f"- Machine: {machine()}.",
        f"- Versions: {versions(root)}.",
        "- Ours: `scripts/dev.sh` (what `make dev` runs): the built release wasm in local workerd through"
        " Miniflare (`scripts/serve.mjs`, the bindings of `wrangler.toml` as wrangler reads them, the Worker's own"
        " socket with no proxy or Miniflare entry worker in front), local D1 and Durable Objects, fresh state,"
        " `AUTH_REQUESTS_PER_MINUTE` raised.",
        "- Synapse: from PyPI, SQLite, one process, a plain-HTTP client listener on 127.0.0.1, fresh data directory,"
        " every `rc_*` rate limit relaxed, open registration, presence off on both (ours with `PRESENCE=false`; presence changes"
        " would wake long-polls), `caches.sync_response_cache_duration: 0` (its default 2-minute /sync answer cache"
        " would otherwise answer the repeated identical syncs).",
        "- Both run side by side on this machine and both are measured by the same Python client (`requests`,"
        " one keep-alive connection per user). Every scenario alternates the servers between rounds"
        f" (A B, B A, …; {c['ROUNDS']} rounds) so drift hits both alike. Medians and p90 over all"
        " samples; ratio below 1 means ours is faster, except on the msg/s rows where above 1 means faster.",
        f"- Throughput rows: {c['THROUGHPUT_MESSAGES']} messages per round split between the senders,"
        f" {c['THROUGHPUT_ROUNDS']} rounds per server; the msg/s columns are the median and p90 over rounds."
        f" Back-pagination: {c['PAGINATIONS']} full passes per server, pages of {c['PAGINATION_PAGE']}.",
        f"- Load average (1, 5, 15 min) at the start {load[0]}, at the end {load[1]}: anything above the"
        " benchmark's own load means other work shared the machine; alternating the servers spreads it over both.",
        "- Both servers run on loopback on the same 2 cores as the client: absolute numbers are for comparison,"
        " not for what a deployed Worker would show (no network, and local D1 is SQLite in the same process).",
        "",
        "## Results",
        "",
        table_md,
        "",
    ]
    slow = slower_rows(rows)
    if slow:
        out += ["Where ours is slower:", ""]
        labels = {k: l.strip(" …") for k, l, *_ in ROWS}
        for key in slow:
            out.append(f"- **{labels[key]}**: {EXPLAIN.get(key, 'not analysed yet.')}")
        out.append("")
    bad = {n: e for n, e in errors.items() if e}
    out += ["Errors and unexpected answers during the run: " +
            ("none." if not bad else "; ".join(f"{n}: " + ", ".join(f"{k} ×{v}" for k, v in e.items())
                                                for n, e in bad.items())), ""]
    out += ["Federation rows (bench/federation.py): our Worker federating with a Synapse, next to a Synapse"
            " federating with a Synapse (the Synapse column: a second Synapse stands in for ours), both pairs from"
            " tests/integration/synapse_peer.py (TLS on loopback with a throwaway test CA, server names"
            f" `localhost:<port>`), alternated like the rows above. {c.get('FED_JOINS', '?')} joins per server, each of"
            " a fresh room created on the peer with 3 members; the time until the peer's users see the join is"
            " measured from the start of the join request by a peer member parked in a long-polling /sync; it is"
            " shorter than the join itself because the peer has the join as soon as it has answered send_join,"
            " while the joining server still checks and stores the room's state."
            f" {c.get('FED_MESSAGES', '?')} messages each way per server. Our client API is HTTPS in these pairs"
            " (one keep-alive connection per user), Synapse's plain HTTP. Big rooms: `make bench-big-join`"
            " ([docs/big_join.md](big_join.md)).", ""]
    out += cost_section(meter)
    out += duration_section(meter)
    out += cpu_section(meter, rows, hot is not None)
    out += hot or []
    raw, gz = wasm
    out += ["## Size and cold start", "",
            f"- `build/index_bg.wasm`: {raw / 1e6:.2f} MB raw, {gz / 1e6:.2f} MB gzip -9 (free plan limit: 3 MB"
            " gzip for the whole Worker; paid: 10 MB).",
            f"- Cold start of our Worker, from starting `scripts/dev.sh` (prebuilt, a fresh state copied from the"
            f" migrated template, then Node with Miniflare and workerd) to the first answered `GET /_matrix/client/versions`:"
            f" {rows['startup']['ours'][0]:.2f} s; that first request took {rows['first_request']['ours'][0] * 1000:.0f} ms."
            f" Synapse (config already generated, empty SQLite): {rows['startup']['synapse'][0]:.2f} s and"
            f" {rows['first_request']['synapse'][0] * 1000:.0f} ms. Both checked every 10 ms (ours: the file"
            " `scripts/serve.mjs` writes when workerd accepts; Synapse: its port). On the platform a cold"
            " isolate start is a different thing (wasm compile of the upload, no Node) and cannot be"
            " measured locally.", ""]
    return "\n".join(out) + "\n"


def cost_section(meter: dict) -> list[str]:
    ops = [k for k in meter if not k.startswith("_")]
    out = ["## Platform cost per operation", "",
           "Counted by `bench/meter.mjs`, a bench-only entry module that wraps the built Worker's D1 and Durable"
           " Object bindings (the server is unchanged): D1 queries, rows read and rows written from D1's own"
           " result metadata (`meta.rows_read`, `meta.rows_written`, as local workerd reports them), and requests"
           " to each Durable Object namespace (each is also a subrequest of the invocation that makes it)."
           " CPU is workerd's CPU time (all threads, from /proc) per operation: an upper bound of the Worker's"
           " own CPU, since it includes workerd's HTTP handling and the local D1's SQLite work, which on the"
           " platform is not billed as Worker CPU. The first row is workerd's background CPU while idle; the"
           " other rows have that background rate subtracted over their wall time.", "",
           "| operation | Worker requests | D1 queries | rows read | rows written | DO requests | local CPU ms |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for op in ops:
        m = meter[op]
        by = ", ".join(f"{k} {v:g}" for k, v in sorted(m["do_by_class"].items()))
        out.append(f"| {op} | {m['worker_requests']:g} | {m['d1_queries']:.1f} | {m['rows_read']:.1f} |"
                   f" {m['rows_written']:.1f} | {m['do_requests']:.1f}{f' ({by})' if by and m['do_requests'] else ''} |"
                   f" {'–' if m['cpu_ms'] is None else format(m['cpu_ms'], '.1f')} |")
    unmetered = sum(meter[op]["unmetered"] for op in ops)
    if unmetered:
        out.append(f"\n{unmetered} queries used `raw()` or `exec()`, which return no row counts.")
    if meter.get("_errors"):
        out.append(f"\nErrors in this pass: {meter['_errors']}.")
    send, poll = meter.get("send message"), meter.get("long-poll /sync that times out (1 s)")
    if send and poll:
        per_msg = {k: send[k] + poll[k] for k in FREE_PER_DAY if k != "do_requests"}
        per_msg["do_requests"] = send["do_requests"] + poll["do_requests"]
        fits = {k: FREE_PER_DAY[k] / v for k, v in per_msg.items() if v}
        limit = min(fits, key=fits.get)
        cost = sum(PAID_PER_MILLION[k] * v for k, v in per_msg.items())
        out += ["", "A message delivered to one reader who long-polls = one send + one long-poll cycle of the reader"
                f" (its /sync, the notifier wait, the /sync again): {per_msg['worker_requests']:g} Worker requests,"
                f" {per_msg['do_requests']:g} Durable Object requests, {per_msg['rows_read']:.0f} rows read,"
                f" {per_msg['rows_written']:.0f} rows written.", "",
                f"- Messages per day that fit the free plan: about **{fits[limit]:,.0f}**, limited by {limit.replace('_', ' ')}"
                " (allowances per day: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in FREE_PER_DAY.items())
                + "). Every further reader of a room adds its own long-poll cycle.",
                f"- Cost per million such messages on the paid plan, beyond the included amounts: about **${cost:.2f}**"
                " (" + ", ".join(f"{k.replace('_', ' ')} ${v}/M" for k, v in PAID_PER_MILLION.items()) +
                "), plus Durable Object duration (next section). The paid plan's included amounts (10 M Worker"
                " requests, 1 M DO requests, 25 B rows read, 50 M rows written per month) cover the first ones.",
                ]
    pdu = meter.get(FED_PDU)
    if pdu:
        fits = {k: FREE_PER_DAY[k] / pdu[k] for k in FREE_PER_DAY if pdu.get(k)}
        limit = min(fits, key=fits.get)
        cost = sum(PAID_PER_MILLION[k] * pdu[k] for k in PAID_PER_MILLION)
        out += [f"- Per incoming federated PDU (a Synapse user's message, one PDU per /send): {pdu['d1_queries']:.1f} D1"
                f" queries, {pdu['rows_read']:.0f} rows read, {pdu['rows_written']:.0f} rows written,"
                f" {pdu['do_requests']:.1f} Durable Object requests. The free plan takes about **{fits[limit]:,.0f}**"
                f" such PDUs a day (limited by {limit.replace('_', ' ')}); a million cost about **${cost:.2f}** on the"
                " paid plan. The rows measured in a pair with a Synapse (bench/federation.py) have no CPU figure:"
                " the Synapse peer shares the machine."]
    if "incoming federated PDU" not in " ".join(ops):
        out += ["- Per incoming federated PDU: not measured in this run."]
    return out + [""]


FED_PDU = "incoming federated PDU (one message per /send)"


def duration_section(meter: dict) -> list[str]:
    poll = meter.get("long-poll /sync that times out (1 s)", {})
    cycles = 86_400 / LONG_POLL_S
    gbs = 86_400 * DO_GB
    rows_read = poll.get("rows_read", 0) * cycles
    out = ["## Durable Object duration of idle clients", "",
           f"By design all `/sync` long-polls of the server park in one notifier Durable Object. A client that is"
           f" connected and idle re-issues a {LONG_POLL_S} s long-poll {cycles:,.0f} times a day; each one keeps"
           " the notifier active (a parked request is billed wall-clock time) and costs, as measured above,"
           f" {poll.get('worker_requests', 1):g} Worker request, {poll.get('do_requests', 1):g} Durable Object request"
           f" and {poll.get('rows_read', 0):.0f} D1 rows read.", "",
           "Because the waiters share one object, the object is active whenever at least one client waits, and"
           f" the duration does not grow with the number of clients: at most 86,400 s × 128 MB = **{gbs:,.0f} GB-s"
           f" per day**, against the free plan's {FREE_DO_GBS_PER_DAY:,} GB-s per day ({gbs / FREE_DO_GBS_PER_DAY:.0%}).", "",
           "| always-connected idle clients | DO GB-s per day | Worker requests per day | DO requests per day | D1 rows read per day |",
           "|---:|---:|---:|---:|---:|"]
    for n in (1, 10, 100):
        out.append(f"| {n} | {gbs:,.0f} ({gbs / FREE_DO_GBS_PER_DAY:.0%} of free) |"
                   f" {n * cycles:,.0f} ({n * cycles / FREE_PER_DAY['worker_requests']:.0%}) |"
                   f" {n * cycles * poll.get('do_requests', 1):,.0f} ({n * cycles * poll.get('do_requests', 1) / FREE_PER_DAY['do_requests']:.0%}) |"
                   f" {n * rows_read:,.0f} ({n * rows_read / FREE_PER_DAY['rows_read']:.0%}) |")
    max_clients = FREE_PER_DAY["worker_requests"] / cycles
    out += ["",
            f"Duration fits the free plan for any number of clients, but only because there is one notifier: one"
            f" object per user or per room would cost {gbs:,.0f} GB-s per day for each of them (two such users"
            " already exceed the allowance). What does not fit is the request count: each idle client makes"
            f" {cycles:,.0f} Worker requests and as many Durable Object requests a day, so about"
            f" {max_clients:.0f} always-connected clients exhaust the free plan's 100,000 daily requests of either"
            " kind, whatever the server does with them, since the clients' own /sync calls are the Worker"
            " requests. Designs that would fit more: WebSocket hibernation between the Worker and the notifier"
            " (the Worker opens a hibernatable WebSocket per parked sync; the object is then not billed while"
            " waiting, duration drops to almost zero, but requests stay one per cycle); and for requests, only"
            " longer client timeouts (clients choose them) or the paid plan help. Neither could be measured"
            " locally: workerd reports no billed duration, so these figures are computed from the design and the"
            " per-cycle counts above.", ""]
    return out


def largest_request(meter: dict) -> tuple[str, float] | None:
    """The client request with the most CPU in the platform-cost pass: (label, ms)."""
    ops = {k: v["cpu_ms"] for k, v in meter.items()
           if not k.startswith("_") and not k.startswith("nothing") and "long-poll" not in k
           and v["cpu_ms"] is not None}
    worst = max(ops, key=ops.get) if ops else None
    return (worst, ops[worst]) if worst else None


def cpu_section(meter: dict, rows: dict, hot_measured: bool) -> list[str]:
    largest = largest_request(meter)
    out = ["## CPU per request and per hot path", ""]
    if largest:
        worst, worst_ms = largest
        out += [f"- Largest CPU time of a single client request, from the pass above: **{worst}**,"
                f" {worst_ms:.1f} ms of local process CPU (upper bound; the free plan allows 10 ms of Worker CPU per"
                " request). The README's PBKDF2 figures (about 7 ms at 30,000 iterations) are the part of a"
                " login or registration that counts as Worker CPU on the platform."]
    cs, cn = rows.get("cpu_send", {}), rows.get("cpu_sync_none", {})
    if cs.get("ours") and cs.get("synapse"):
        ca, na = rows.get("cpu_send_all", {}), rows.get("cpu_sync_none_all", {})
        out += [f"- Server CPU in the comparison above is workerd's alone (it runs the Worker, the Durable Objects"
                f" and local D1). Counting Node too (scripts/serve.mjs, which started workerd and prints its logs), ours uses"
                f" {median(ca['ours']) * 1000:.1f} ms per send and {median(na['ours']) * 1000:.1f} ms per empty"
                f" incremental /sync; Synapse is one process ({median(cs['synapse']) * 1000:.1f} and"
                f" {median(cn['synapse']) * 1000:.1f} ms). Resident memory: workerd {rows['rss']['ours'][0]:.0f} MiB,"
                f" with Node {rows['rss_all']['ours'][0]:.0f} MiB; Synapse {rows['rss']['synapse'][0]:.0f} MiB."]
    if hot_measured:
        out += ["- Microseconds per hot path inside the wasm build: next section.", ""]
        return out
    out += ["- Not measured: microseconds per hot path inside the wasm build (create and sign an event, verify a PDU,"
            " authorise an event, state resolution of 100 and 1,000 conflicted events, password hashing alone)."
            " The release wasm exports only the Worker's fetch handler and the Durable Object classes, so"
            " neither a Node script nor the Worker can call those functions one by one, and local workerd reports"
            " no per-request CPU time. The smallest change that would allow it: a `bench` cargo feature that"
            " adds `#[wasm_bindgen]` wrappers for these five functions (all in the pure, `worker`-free modules),"
            " built by `wasm-bindgen --target nodejs` into a second wasm that a Node script times in a loop;"
            " the deployed Worker would not contain it.", ""]
    return out


def write_section(mark: str, lines: list[str]) -> None:
    """Puts a bench module's section (its first line is `mark`) into docs/benchmarks.md: in place
    of the section that starts with `mark`, else at the end. A section runs to the next heading
    of its level or the next module's marker."""
    doc_path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    doc = doc_path.read_text() if doc_path.exists() else ""
    text = "\n".join(lines)
    if mark in doc:
        head, _, rest = doc.partition(mark)
        body = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
        ends = [i for i in (body.find("\n## "), body.find("\n<!-- ")) if i >= 0]
        doc = head + text + (body[min(ends):] if ends else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    doc_path.write_text(doc)
