"""`make bench-big-join`: how long our user takes to join a Synapse room of 500 members, and where
the time goes; then the same join with a second Synapse in our place, for comparison.

Not part of `make test` or `make bench`. The pairs come from tests/integration/synapse_peer.py
(TLS with a throwaway CA, loopback, relaxed rate limits); the peer Synapse hashes passwords with
`bcrypt_rounds: 4` so that 500 registrations take seconds, not minutes.

The breakdown of our join comes from one log line that join_through (src/runtime/room_object.rs)
writes when EXPOSE_D1_USAGE is on (scripts/dev.sh's default): milliseconds per phase, stamped
after an await each (workerd's clock stands still during pure computation), and from the peer
Synapse's access log (its own processing time of make_join and send_join, and the answer size).

  python bench/big_join.py [--members 500] [--no-reference] [--keep]
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import federation as fed  # noqa: E402
import report  # noqa: E402
import requests  # noqa: E402
from servers import ROOT, _comm, cpu_seconds, remove_workdir  # noqa: E402
from harness import processes_mentioning  # noqa: E402
from synapse_peer import federation_pair  # noqa: E402

THREADS = 8
# Cheap password hashes on both Synapses (registration only; nothing else hashes).
SYNAPSE_CONFIG = {"bcrypt_rounds": 4}
PHASES = [
    ("make_join", "make_join round trip (request signing, Synapse builds the template)"),
    ("send_join", "build and sign our join; send_join round trip (Synapse checks and persists it, answers"
                  " state + auth chain); JSON parse of the answer"),
    ("stash", "stash the answer in the room object's own storage, in chunks of one step each"),
    ("verify", "verify every state and auth-chain event, one chunk per step: hashes, signatures (each signing"
               " key looked up once per step)"),
    ("auth_checks", "order and authorise state + auth chain, restore the room, check our join"),
    ("d1_write", "one D1 batch: every event as an outlier, our join, room state, memberships"),
]


def log(msg: str) -> None:
    print(f"[big-join {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def big_room(side: fed.Side, members: int) -> str:
    """A public room on the peer with `members` joined users (the owner included)."""
    peer_url = side.pair.synapse.client_url
    owner = fed.user(peer_url, side.errors, True, "owner")
    side.owner = owner
    room = owner.create_room()
    done = Counter()

    def one(i: int) -> None:
        u = fed.user(peer_url, side.errors, True, f"m{i}x")
        u.join(room)
        done["n"] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(one, range(members - 1)):
            pass
    log(f"  {members} members in {time.perf_counter() - t0:.1f} s")
    return room


def access_line(log_text: str, what: str) -> tuple[float, int] | None:
    """Synapse's own processing time and answer size of the last `what` request in its access log:
    'Processed request: 0.131sec/0.003sec ru=(..) db=(..) 32505B 200 "PUT /_matrix/...send_join/..."'."""
    found = None
    for m in re.finditer(r"Processed request: ([\d.]+)sec/[\d.]+sec ru=\([^)]*\) db=\([^)]*\) (\d+)B \d+ \"\w+ ([^ \"]+)",
                         log_text):
        if what in m.group(3):
            found = (float(m.group(1)), int(m.group(2)))
    return found


def all_members(c, room: str, want: int, start: float) -> float | None:
    """Seconds from the start of the join until the joiner's server lists `want` joined members
    (GET /members; a partial-state join on Synapse answers it only once its resync is done)."""
    end = time.monotonic() + 300
    while time.monotonic() < end:
        try:
            _, body = c.call("GET", f"/_matrix/client/v3/rooms/{fed.quote(room, safe='')}/members",
                             params={"membership": "join"}, timeout=300)
            if len(body.get("chunk", [])) >= want:
                return time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 - counted, then retried
            c.errors[f"/members during the join: {str(e)[:80]}"] += 1
        time.sleep(0.05)
    return None


def our_phases(log_text: str) -> dict | None:
    lines = [l for l in log_text.splitlines() if "remote join timing:" in l]
    if not lines:
        return None
    line = lines[-1]
    out = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    return out


def workerd_cpu(state_dir: Path) -> float:
    return cpu_seconds([p for p in processes_mentioning(str(state_dir)) if _comm(p) == "workerd"])


def run_pair(workdir: Path, members: int, reference: bool) -> dict:
    name = "synapse" if reference else "ours"
    log(f"{name}: starting the pair")
    # Ours behind bench/meter.mjs: the D1 queries, rows and Durable Object requests of the join.
    with federation_pair(workdir / f"big-{name}", our_env=fed.OUR_ENV, reference=reference,
                         synapse_config=SYNAPSE_CONFIG, our_entry=None if reference else "bench/meter.mjs") as pair:
        side = fed.Side(name, pair)
        log(f"{name}: building a {members}-member room on the peer")
        room = big_room(side, members)
        local = fed.user(side.local_url, side.errors, side.local_verify, "joiner")
        watcher = fed.Reader(side.owner)
        me = local.user_id
        match = lambda e: (e.get("type") == "m.room.member" and e.get("state_key") == me
                           and e.get("content", {}).get("membership") == "join")
        state_dir = getattr(pair.ours, "state_dir", None)
        cpu0 = workerd_cpu(state_dir) if state_dir else None
        meter = (lambda: requests.get(pair.ours.base_url + "/_bench/meter", timeout=10,
                                      verify=str(pair.ca)).json()) if not reference else (lambda: None)
        meter()
        log(f"{name}: joining")
        began: list[float] = []

        def join() -> float:
            began.append(time.perf_counter())
            return local.call("POST", f"/_matrix/client/v3/join/{fed.quote(room, safe='')}",
                              params=[("server_name", side.peer_name), ("via", side.peer_name)],
                              body={}, timeout=600)[0]

        took, seen = fed.timed_wait(watcher, match, room, join, 0.15)
        cpu = workerd_cpu(state_dir) - cpu0 if state_dir else None
        counts = meter()
        full_s = all_members(local, room, members + 1, began[0])
        # The joined user's first /sync: the room with its 500 members reaches the client.
        sync_s, body = local.sync()
        joined = body.get("rooms", {}).get("join", {}).get(room) is not None
        time.sleep(1.5)  # logs are written asynchronously
        peer_log = pair.synapse.log_text()
        result = {"name": name, "members": members, "join_s": took, "seen_s": seen, "full_s": full_s,
                  "first_sync_s": sync_s,
                  "in_first_sync": joined, "workerd_cpu_s": cpu, "errors": dict(side.errors), "meter": counts,
                  "make_join": access_line(peer_log, "/make_join/"),
                  "send_join": access_line(peer_log, "/send_join/")}
        if not reference:
            result["phases"] = our_phases(pair.ours.log_path.read_text(errors="replace"))
        log(f"{name}: join {took:.2f} s, seen by the peer after {seen if seen is None else round(seen, 2)} s")
        return result


def ms(x) -> str:
    return "–" if x is None else report.fmt(x * 1000)


def document(results: list[dict], load: tuple[str, str]) -> str:
    ours = next(r for r in results if r["name"] == "ours")
    ref = next((r for r in results if r["name"] == "synapse"), None)
    members = ours["members"]
    out = [f"# Joining a {members}-member Synapse room", "",
           f"Produced by `make bench-big-join` (`bench/big_join.py`) on {time.strftime('%Y-%m-%d %H:%M %Z')}.",
           f"Machine: {report.machine()}. Load average at the start {load[0]}, at the end {load[1]}"
           " (other work shared the machine when it is well above 2).", "",
           f"A Synapse peer (1.163, SQLite) holds a public room of {members} joined members; a user of the server"
           " under test joins it with `POST /join/{roomId}?server_name=<peer>` (one try, first contact already"
           " made by key fetches). Ours: the release wasm in local workerd over HTTPS, local D1. Synapse column:"
           " a second Synapse in our place (it asks for a partial-state join, `omit_members=true`, and returns"
           " before it has the full member list; we do a full join).", "",
           "| measure | ours | Synapse in our place |", "|---|---:|---:|"]
    rows = [("join request, until it returns (ms)", "join_s"),
            ("until the peer's /sync shows the join (ms)", "seen_s"),
            ("until the joiner's server lists all members, GET /members (ms)", "full_s"),
            ("joiner's first /sync afterwards (ms)", "first_sync_s")]
    for label, key in rows:
        out.append(f"| {label} | {ms(ours[key])} | {ms(ref[key]) if ref else '–'} |")
    for what in ("make_join", "send_join"):
        a, b = ours.get(what), (ref or {}).get(what)
        cell = lambda v: "–" if not v else f"{v[0] * 1000:,.0f} ms, {v[1]:,} bytes"
        out.append(f"| peer Synapse's own processing of {what}, answer size | {cell(a)} | {cell(b)} |")
    out += ["", "## Where our time goes", ""]
    ph = ours.get("phases")
    if ph:
        total = ours["join_s"] * 1000
        out += [f"From the phase log of the remote join (state {ph.get('state', '?')} events, auth chain"
                f" {ph.get('auth_chain', '?')} events, {ph.get('steps', '?')} steps, each its own Durable Object"
                " request):", "",
                "| phase | ms | share of the join request |", "|---|---:|---:|"]
        accounted = 0
        for key, label in PHASES:
            v = ph.get(key)
            if v is None:
                continue
            accounted += v
            out.append(f"| {label} | {v:,} | {v / total:.0%} |")
            peer = ours.get(key) if key in ("make_join", "send_join") else None
            if peer:
                out.append(f"| … of which the peer Synapse's own processing (its access log) | {peer[0] * 1000:,.0f} |"
                           f" {peer[0] * 1000 / total:.0%} |")
        out.append(f"| client → Worker → room Durable Object and back, notify, rest | {max(0, total - accounted):,.0f} |"
                   f" {max(0, total - accounted) / total:.0%} |")
        if ours.get("workerd_cpu_s") is not None:
            out += ["", f"- workerd's CPU time over the join (all threads: Worker, Durable Objects, local D1):"
                        f" {ours['workerd_cpu_s'] * 1000:,.0f} ms."]
        m = ours.get("meter")
        if m:
            out += [f"- Platform cost of the join (bench/meter.mjs; the peer's users' /sync of the join not included):"
                    f" {m['d1_queries']} D1 queries in {m['d1_batches']} batches, {m['rows_read']:,} rows read,"
                    f" {m['rows_written']:,} rows written, {sum(m['do_requests'].values())} Durable Object requests"
                    f" ({', '.join(f'{k} {v}' for k, v in sorted(m['do_requests'].items()))})."]
        events = ph.get("state", 0) + ph.get("auth_chain", 0)
        if events and "verify" in ph:
            wasm = hotpath_verify_us()
            out += [f"- Verification takes {ph['verify'] / events:.2f} ms per event"
                    + (f"; the wasm work of verifying one PDU is about {wasm:.0f} µs (docs/hotpaths.md), and each"
                       " signing key is read from D1 once per step (`KeyMemo` in src/federation/keys.rs)."
                       if wasm else "; each signing key is read from D1 once per step.")]
        out += ["", "The join runs in resumable steps (DESIGN.md invariant 5, src/rooms/join_job.rs): the"
                " answer is stashed in the room object's storage, each step verifies one chunk"
                " (JOIN_STEP_EVENTS events), and the last step checks auth and writes one D1 batch (its"
                " statements grow by about three per hundred members: outliers and state are written 100 rows"
                " per statement). What would shorten it further (not done here): a partial-state join"
                " (`omit_members`, as Synapse does) would make the answer a few KB instead of the full member"
                " list, and let the join return before the member list is checked."]
    else:
        out.append("The phase log line was not found in our Worker's output (EXPOSE_D1_USAGE off?).")
    errs = {r["name"]: r["errors"] for r in results if r["errors"]}
    out += ["", "Errors: " + (str(errs) if errs else "none.") + "", ""]
    return "\n".join(out) + "\n"


def hotpath_verify_us() -> float | None:
    """The wasm median of "Verify an incoming PDU" from docs/hotpaths.md, if that file has it."""
    path = ROOT / "docs" / "hotpaths.md"
    if not path.exists():
        return None
    m = re.search(r"^\| Verify an incoming PDU[^|]*\| ([\d.,]+) \|", path.read_text(), re.M)
    return float(m.group(1).replace(",", "")) if m else None


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--no-reference", action="store_true", help="skip the Synapse-in-our-place join")
    parser.add_argument("--no-doc", action="store_true", help="print only, do not write docs/big_join.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    load0 = loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="matrix-edge-big-join-"))
    try:
        results = [run_pair(workdir, args.members, False)]
        if not args.no_reference:
            results.append(run_pair(workdir, args.members, True))
        doc = document(results, (load0, loadavg()))
        print(doc)
        if not args.no_doc:
            (ROOT / "docs" / "big_join.md").write_text(doc)
            log("wrote docs/big_join.md")
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        remove_workdir(workdir, args.keep, log)


if __name__ == "__main__":
    sys.exit(main())
